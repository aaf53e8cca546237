"""The hub-free account-pair tables that the closeness features read, and sums whose bits never vary.

A window's transfers are aggregated once per (payer, payee) pair without hubs and self-transfers
(:func:`non_hub_pairs`); the closeness features, the fold grouping of training and the PageRank
walks read that table, not the transfers. At bank scale it is built from tens of millions of
transfers, so it is built with one sort and array sums (:func:`sorted_sums`): no per-group lists
and no hash table of every pair.

Every sum here adds a group's values in ascending order, so it has the same bits on every run,
whatever the thread count or the order of the input rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mulegraph.features.prepare import Prepared, between_non_hubs

__all__ = ["fixed_sum", "sorted_sums", "non_hub_pairs", "pairs_with_time", "undirected"]


def fixed_sum(column: str) -> pl.Expr:
    """A group's sum taken over its values in sorted order: the same bits on every run and thread count.

    For small tables inside a ``group_by`` (a list per group is built). (``sort().sum()`` is not
    enough in a lazy query: the optimiser drops a sort before a sum.)
    """
    return pl.col(column).sort().implode().list.sum()


def sorted_sums(frame: pl.DataFrame | pl.LazyFrame, keys: list[str], value: str, alias: str, *,
                count: str | None = None, minimum: dict[str, str] | None = None) -> pl.DataFrame:
    """Per group of ``keys``: the sum of ``value`` over the group's rows in ascending order of value.

    One sort of ``keys, value`` and one array reduction: the same bits for any order of the input
    rows and any thread count, without the per-group lists of :func:`fixed_sum`. ``count`` adds the
    group's rows (``UInt32``) under that name; ``minimum`` maps a column to the name of its
    smallest value in the group. The groups come out sorted by ``keys``.
    """
    minimum = minimum or {}
    extra = [c for c in minimum if c not in keys and c != value]
    s = frame.lazy().select(*keys, value, *extra).sort([*keys, value]).collect()
    key_cols = [s[k].to_numpy() for k in keys]
    start = np.zeros(0, dtype=np.int64)
    if s.height:
        change = np.zeros(s.height, dtype=bool)
        change[0] = True
        for c in key_cols:
            change[1:] |= c[1:] != c[:-1]
        start = np.flatnonzero(change)
    out: dict[str, pl.Series] = {k: pl.Series(k, c[start], dtype=s.schema[k]) for k, c in zip(keys, key_cols)}
    if count is not None:
        out[count] = pl.Series(count, np.diff(np.r_[start, s.height]), dtype=pl.UInt32)
    vals = s[value].to_numpy()
    out[alias] = pl.Series(alias, np.add.reduceat(vals, start) if len(start) else vals[:0], dtype=pl.Float64)
    for col, name in minimum.items():
        arr = s[col].to_numpy()
        out[name] = pl.Series(name, np.minimum.reduceat(arr, start) if len(start) else arr[:0], dtype=s.schema[col])
    return pl.DataFrame(list(out.values()))


def pairs_with_time(p: Prepared) -> pl.DataFrame:
    """:func:`non_hub_pairs` plus ``t``, the pair's earliest transfer time (its only one where ``n`` is 1)."""
    hub_free = p.tx.lazy().filter(between_non_hubs(p.hub_idx))
    return sorted_sums(hub_free, ["src", "dst"], "amount", "value", count="n", minimum={"t": "t"}).select("src", "dst", "n", "value", "t")


def non_hub_pairs(p: Prepared) -> pl.DataFrame:
    """Aggregated directed edges ``src, dst, n, value`` without hub endpoints and self-transfers, sorted by pair."""
    return pairs_with_time(p).drop("t")


def undirected(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each unordered pair of :func:`pairs_with_time` once, ``u < v``, with the transfers both ways
    ``n`` and the earliest ``t``; sorted by ``u, v``. Built from the directed pairs, not the
    transfers: a group_by of one row per pair."""
    return (
        pairs.lazy()
        .select(pl.min_horizontal("src", "dst").alias("u"), pl.max_horizontal("src", "dst").alias("v"), "n", "t")
        .group_by("u", "v")
        .agg(pl.col("n").sum(), pl.col("t").min())
        .sort("u", "v")
        .collect()
    )
