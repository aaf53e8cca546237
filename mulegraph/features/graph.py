"""The aggregated account graph: one edge per ordered account pair.

Transfers are aggregated in Polars first (``count``, ``value``, ``first_ts`` and ``last_ts`` per
ordered pair ``src -> dst``); networkx only ever sees these aggregated edges, and usually only a
candidate subgraph around some accounts (investigators' views, expensive algorithms). The helpers
work on canonical transfers (``src_account``, ``dst_account``, ``ts``) as well as on the
integer-keyed ``Prepared.tx`` frame of the feature engine (``src``, ``dst``, ``t``).

Hubs (processors, settlement and external pseudo-accounts) join almost every path; pass them as
``exclude`` to keep neighbourhoods small: an excluded account is never expanded and its edges are
dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx
import polars as pl

from mulegraph.core.errors import InputError

__all__ = ["aggregate_edges", "to_networkx", "neighbourhood", "subgraph_edges", "drop_accounts", "shard_with_halo"]


def _columns(frame: pl.DataFrame | pl.LazyFrame) -> tuple[str, str, str]:
    names = frame.collect_schema().names()
    if "src_account" in names and "dst_account" in names and "ts" in names:
        return "src_account", "dst_account", "ts"
    if "src" in names and "dst" in names and "t" in names:
        return "src", "dst", "t"
    raise InputError(
        "transfers need src_account, dst_account and ts columns (canonical schema) or src, dst and t; "
        "pass canonical transfers."
    )


def drop_accounts(frame: pl.DataFrame, exclude: Iterable | pl.Series | None) -> pl.DataFrame:
    """Rows of a transfer or edge frame with neither end in ``exclude`` (typically the hubs).

    The two ends are the first two columns of an edge frame, or the ``src``/``dst`` columns of
    transfers.
    """
    if exclude is None:
        return frame
    names = frame.columns
    if "src_account" in names:
        src, dst = "src_account", "dst_account"
    elif "src" in names:
        src, dst = "src", "dst"
    else:
        src, dst = names[0], names[1]
    ex = exclude if isinstance(exclude, pl.Series) else pl.Series(list(exclude))
    if ex.len() == 0:
        return frame
    ex = ex.cast(frame.schema[src]).implode()
    return frame.filter(~pl.col(src).is_in(ex) & ~pl.col(dst).is_in(ex))


def aggregate_edges(transfers: pl.DataFrame | pl.LazyFrame, exclude: Iterable | None = None) -> pl.DataFrame:
    """One row per ordered pair: ``src``, ``dst``, ``count``, ``value``, ``first_ts``, ``last_ts``.

    The key columns keep the input's names and types (``src_account``/``dst_account`` for canonical
    transfers, ``src``/``dst`` for the feature engine's frame); times keep their type too.
    Self-transfers are kept as self-loops. ``exclude`` drops every transfer touching those accounts.

    >>> import polars as pl
    >>> tx = pl.DataFrame({"src": [1, 1, 2], "dst": [2, 2, 3], "t": [5, 9, 7], "amount": [10.0, 5.0, 3.0]})
    >>> aggregate_edges(tx).sort("src").rows()
    [(1, 2, 2, 15.0, 5, 9), (2, 3, 1, 3.0, 7, 7)]
    """
    src, dst, t = _columns(transfers)
    df = transfers.collect() if isinstance(transfers, pl.LazyFrame) else transfers
    df = drop_accounts(df, exclude)
    return df.group_by(src, dst).agg(
        pl.len().cast(pl.Int64).alias("count"),
        pl.col("amount").sum().alias("value"),
        pl.col(t).min().alias("first_ts"),
        pl.col(t).max().alias("last_ts"),
    )


def to_networkx(edges: pl.DataFrame, nodes: Iterable | None = None) -> nx.DiGraph:
    """A :class:`networkx.DiGraph` from aggregated edges (as made by :func:`aggregate_edges`).

    Each edge carries ``count``, ``value``, ``first_ts`` and ``last_ts``; ``nodes`` adds accounts
    without edges. Build it from a subgraph's edges when the whole graph has millions of pairs.
    """
    src, dst = edges.columns[0], edges.columns[1]
    attrs = [c for c in ("count", "value", "first_ts", "last_ts") if c in edges.columns]
    g = nx.DiGraph()
    if nodes is not None:
        g.add_nodes_from(nodes)
    cols = [edges[c].to_list() for c in (src, dst, *attrs)]
    g.add_edges_from((row[0], row[1], dict(zip(attrs, row[2:]))) for row in zip(*cols))
    return g


def neighbourhood(edges: pl.DataFrame, seeds: Iterable, hops: int = 1, exclude: Iterable | None = None) -> pl.Series:
    """Accounts within ``hops`` undirected hops of ``seeds`` (seeds included).

    Accounts in ``exclude`` are neither reached nor expanded, so a hub does not pull in the whole
    graph. Each hop is one semi-join over the aggregated edges.
    """
    if hops < 0:
        raise InputError(f"The 'hops' must be zero or more. Got '{hops}' instead.")
    exclude = None if exclude is None else list(exclude)
    src, dst = edges.columns[0], edges.columns[1]
    dtype = edges.schema[src]
    edges = drop_accounts(edges, exclude)
    und = pl.concat(
        [
            edges.select(pl.col(src).alias("a"), pl.col(dst).alias("b")),
            edges.select(pl.col(dst).alias("a"), pl.col(src).alias("b")),
        ]
    )
    seen = pl.Series("account", list(seeds), dtype=dtype).unique()
    if exclude is not None:
        seen = seen.filter(~seen.is_in(pl.Series(list(exclude), dtype=dtype).implode()))
    frontier = seen
    for _ in range(hops):
        if frontier.len() == 0:
            break
        nxt = und.filter(pl.col("a").is_in(frontier.implode()))["b"].unique()
        frontier = nxt.filter(~nxt.is_in(seen.implode())).rename("account")
        seen = pl.concat([seen, frontier])
    return seen.sort()


def subgraph_edges(edges: pl.DataFrame, seeds: Iterable, hops: int = 1, exclude: Iterable | None = None) -> pl.DataFrame:
    """The aggregated edges among the accounts within ``hops`` of ``seeds`` (see :func:`neighbourhood`)."""
    keep = neighbourhood(edges, seeds, hops, exclude).implode()
    src, dst = edges.columns[0], edges.columns[1]
    return edges.filter(pl.col(src).is_in(keep) & pl.col(dst).is_in(keep))


def shard_with_halo(transfers: pl.DataFrame, accounts: Iterable, hops: int = 2, hubs: Iterable = ()) -> pl.DataFrame:
    """The transfers a shard of ``accounts`` needs: those touching the shard's accounts or any
    account within ``hops`` undirected non-hub hops of them.

    Pattern features of the shard's accounts computed from these transfers equal the whole-graph
    values when ``hops >= max(2, chain_cap - 1)``: transfers touching every account within ``h``
    hops include every transfer between accounts within ``h + 1`` hops, so ``hops = 2`` covers cycles
    of up to 5 accounts, scatter-gather and gather-scatter, and ``chain_cap - 1`` covers chains and the hub list is decided on the whole graph and passed in
    (``FeatureConfig.hub_accounts``): a hub must not be expanded, and within a shard it may not
    reach the degree that marks it.
    """
    hubs, accounts = list(hubs), list(accounts)
    edges = aggregate_edges(transfers, exclude=hubs)
    src, dst, _ = _columns(transfers)
    own = pl.Series("account", accounts, dtype=transfers.schema[src])
    keep = pl.concat([neighbourhood(edges, accounts, hops, exclude=hubs), own]).unique().implode()
    return transfers.filter(pl.col(src).is_in(keep) | pl.col(dst).is_in(keep))
