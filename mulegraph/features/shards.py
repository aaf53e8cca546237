"""Account shards: a window's features computed a shard of accounts at a time.

The whole-window computation (:func:`mulegraph.features.build.window_features`) holds every
transfer of the window in memory at once. Here the same features are computed in pieces whose
size is set by ``shard_accounts``, with identical results (tested column by column):

1. **Plan** (:func:`plan_shards`): one lazy pass over the window's ``src_account``/``dst_account``
   columns gives every active account, its number of distinct counterparties and so the global hub
   list, and each account's shard: a stable hash of its id (:func:`mulegraph.core.hashing.shard_of`),
   so a shard holds the same accounts on every machine.
2. **Flow families per shard** (:func:`compute_shard`): volume, fan, passthrough, temporal,
   amounts and channel read only the transfers touching an account, so a shard reads exactly the
   transfers touching its accounts (a filter the Parquet scan applies) and computes them. The
   global hub list is passed in, since a hub may not reach its degree within one shard.
3. **Graph families once** (:func:`compute_graph`): patterns and network read the graph around an
   account (pattern search follows chains up to ``chain_cap`` hops, PageRank and components the
   whole graph), so they run once on the *graph table*: the window's transfers without hubs and
   self-transfers, integer-coded (account indices, seconds, amounts; no text columns). The
   network family's neighbour aggregates read the flow features of every account, gathered from
   the shards.

Shards are pure functions of (store, plan, shard number): an engine may run them in any order, in
this process (:class:`LocalEngine`) or elsewhere, and the result is concatenated in account order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import polars as pl

from mulegraph.core.config import FeatureConfig
from mulegraph.core.errors import FeatureError
from mulegraph.core.hashing import shard_of
from mulegraph.core.window import TimeWindow, filter_window
from mulegraph.features import FAMILIES, compute_features, load_families
from mulegraph.features.prepare import Prepared, prepare

__all__ = [
    "FLOW_FAMILIES",
    "GRAPH_FAMILIES",
    "ShardPlan",
    "Engine",
    "LocalEngine",
    "plan_shards",
    "shard_transfers",
    "compute_shard",
    "compute_graph",
    "sharded_features",
]

#: families whose values for an account depend only on the transfers touching it
FLOW_FAMILIES: tuple[str, ...] = ("volume", "fan", "passthrough", "temporal", "amounts", "channel")
#: families that read the graph around an account; computed once on the graph table
GRAPH_FAMILIES: tuple[str, ...] = ("patterns", "network")

_TX_COLUMNS = ("txn_id", "ts", "src_account", "dst_account", "amount")


class Engine(Protocol):
    """Runs ``func`` on every item; returns the results in the order of ``items``."""

    def map(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]: ...


class LocalEngine:
    """Runs shards one after another in this process (memory bounded by one shard)."""

    def __init__(self, progress: Callable[[int, int], None] | None = None) -> None:
        self.progress = progress

    def map(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            out.append(func(item))
            if self.progress:
                self.progress(i + 1, len(items))
        return out


@dataclass(frozen=True)
class ShardPlan:
    """What every shard needs to know: the window, the settings and who is in which shard.

    ``accounts``: ``account_id`` (sorted), ``idx`` (its position: the same integer key the
    whole-window computation uses), ``degree``, ``is_hub`` and ``shard``. ``config`` lists the
    window's hubs in ``hub_accounts``.
    """

    window: TimeWindow
    config: FeatureConfig
    n_shards: int
    accounts: pl.DataFrame

    def shard_accounts(self, k: int) -> pl.Series:
        """The account ids of shard ``k``."""
        return self.accounts.filter(pl.col("shard") == k)["account_id"]


def _scan(store: Any, window: TimeWindow, columns: Iterable[str] | None = None) -> pl.LazyFrame:
    from mulegraph.io.store import Store

    st = store if isinstance(store, Store) else Store.open(store)
    cols = None if columns is None else list(dict.fromkeys([*columns, "ts"]))
    return filter_window(st.scan(cols), window)


def plan_shards(store: Any, window: TimeWindow, config: FeatureConfig, shard_accounts: int) -> ShardPlan:
    """Accounts, degrees, hubs and shards of a window (one pass over the two account columns)."""
    if shard_accounts < 1:
        raise FeatureError(f"shard_accounts must be a positive number of accounts. Got {shard_accounts} instead.")
    lf = _scan(store, window, ["src_account", "dst_account"])
    pairs = pl.concat(
        [
            lf.select(pl.col("src_account").alias("account_id"), pl.col("dst_account").alias("cp")),
            lf.select(pl.col("dst_account").alias("account_id"), pl.col("src_account").alias("cp")),
        ]
    ).unique()
    degree = pairs.group_by("account_id").agg(pl.len().cast(pl.UInt32).alias("degree"))
    acc = degree.sort("account_id").collect(engine="streaming")
    if acc.is_empty():
        raise FeatureError(f"no transfers in the window {window.describe()}; widen --window or ingest exports first.")
    listed = list(config.hub_accounts)
    acc = acc.with_row_index("idx").with_columns(
        pl.col("idx").cast(pl.UInt32),
        ((pl.col("degree") > config.hub_degree) | pl.col("account_id").is_in(listed)).alias("is_hub"),
    )
    n_shards = max(1, math.ceil(acc.height / shard_accounts))
    acc = acc.with_columns(pl.Series("shard", shard_of(acc["account_id"], n_shards)))
    hubs = tuple(sorted(set(listed) | set(acc.filter(pl.col("is_hub"))["account_id"].to_list())))
    return ShardPlan(window=window, config=replace(config, hub_accounts=hubs), n_shards=n_shards, accounts=acc)


def shard_transfers(store: Any, plan: ShardPlan, k: int) -> pl.DataFrame:
    """Every transfer of the window touching an account of shard ``k``."""
    ids = plan.shard_accounts(k).implode()
    lf = _scan(store, plan.window)
    return lf.filter(pl.col("src_account").is_in(ids) | pl.col("dst_account").is_in(ids)).collect()


def compute_shard(store: Any, plan: ShardPlan, k: int, families: Sequence[str] = FLOW_FAMILIES) -> pl.DataFrame:
    """The flow-family features of shard ``k``'s accounts: ``account_id``, ``is_hub``, features.

    A pure function of its arguments: an engine may run it anywhere, any number of times.
    """
    ids = plan.shard_accounts(k)
    if ids.is_empty() or not families:
        return plan.accounts.filter(pl.col("shard") == k).select("account_id", "is_hub")
    tx = shard_transfers(store, plan, k)
    return compute_features(tx, plan.config, families=list(families), accounts=ids.to_list())


def graph_table(store: Any, plan: ShardPlan) -> Prepared:
    """The window's transfers between two non-hub accounts, integer-coded on the plan's indices."""
    ids = plan.accounts.select("account_id", "idx")
    hubs = list(plan.config.hub_accounts)
    tx = (
        _scan(store, plan.window, _TX_COLUMNS)
        .select(*_TX_COLUMNS)
        .filter(
            (pl.col("src_account") != pl.col("dst_account"))
            & ~pl.col("src_account").is_in(hubs)
            & ~pl.col("dst_account").is_in(hubs)
        )
        .join(ids.lazy().rename({"account_id": "src_account", "idx": "src"}), on="src_account")
        .join(ids.lazy().rename({"account_id": "dst_account", "idx": "dst"}), on="dst_account")
        .select("txn_id", pl.col("ts").dt.epoch("s").alias("t"), "src", "dst", "amount")
        .sort(["t", "txn_id"])
        .collect()
        .with_row_index("row")
        .with_columns(pl.col("row").cast(pl.UInt32))
    )
    return Prepared(tx=tx, accounts=plan.accounts.select("idx", "account_id", "is_hub", "degree"), config=plan.config)


def compute_graph(store: Any, plan: ShardPlan, flow: pl.DataFrame, families: Sequence[str] = GRAPH_FAMILIES) -> pl.DataFrame:
    """Graph-family features of every account (``account_id`` plus their columns).

    ``flow``: the flow features of every account (what the shards returned), which the network
    family's neighbour aggregates read.
    """
    p = graph_table(store, plan)
    base = p.accounts.select("idx", "account_id", "is_hub")
    so_far = base.join(flow.drop("is_hub", strict=False), on="account_id", how="left")
    out = base.select("idx")
    for name, mod in load_families(families).items():
        p.extra["so_far"] = so_far
        part = mod.compute(p)
        so_far = so_far.join(part, on="idx", how="left")
        out = out.join(part, on="idx", how="left")
    return out.join(base.select("idx", "account_id"), on="idx").drop("idx")


def sharded_features(
    store: Any,
    window: TimeWindow,
    config: FeatureConfig | None = None,
    *,
    shard_accounts: int,
    families: Iterable[str] | None = None,
    engine: Engine | None = None,
) -> pl.DataFrame:
    """The features :func:`mulegraph.features.compute_features` gives for the window, by shards.

    One row per account, ``account_id``, ``is_hub`` and the feature columns in the same order,
    sorted by account; equal to the whole-window computation.
    """
    config = config or FeatureConfig()
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise FeatureError(f"unknown feature family {', '.join(unknown)}; known: {', '.join(FAMILIES)}.")
    plan = plan_shards(store, window, config, shard_accounts)
    engine = engine or LocalEngine()
    flow_names = [n for n in FLOW_FAMILIES if n in names]
    graph_names = [n for n in GRAPH_FAMILIES if n in names]
    parts = engine.map(partial(compute_shard, store, plan, families=flow_names), list(range(plan.n_shards)))
    parts = [p for p in parts if p.height]
    flow = pl.concat(parts, how="vertical") if parts else pl.DataFrame()
    base = plan.accounts.select("account_id", "is_hub")
    if flow.height:
        out = base.join(flow.drop("is_hub"), on="account_id", how="left")
    else:
        out = base
    if graph_names:
        out = out.join(compute_graph(store, plan, out, graph_names), on="account_id", how="left")
    return out.sort("account_id")
