"""Amounts: round sums, amounts just under reporting thresholds, outbound amounts that echo inbound ones.

An account's transfers are its inbound and outbound transfers together (a transfer to itself counts
twice).

* ``round_share``: share of transfers whose amount is a whole multiple of ``FeatureConfig.round_unit``.
* ``structuring_share``: share of transfers with an amount in ``[T * (1 - structuring_margin), T)``
  for any ``T`` in ``FeatureConfig.structuring_thresholds``.
* ``amount_match_share``: share of outbound transfers whose amount is 80-100% of some inbound
  transfer that arrived in the 72 hours before it. Equal timestamps count as possibly before (an
  inbound at the same instant matches). Comparisons carry a relative tolerance of 1e-9.

``amount_match_share`` is found without pairing every inbound with every outbound: amounts fall in
geometric buckets of ratio 1.25, so the inbound amounts in ``[a, 1.25 a]`` lie in the outbound's
bucket (they must be >= ``a``: the largest of that bucket's recent inbound amounts decides) or the
next one up (they must be <= ``1.25 a``: the smallest decides). Both are time-windowed rolling
max/min per (account, bucket), linear after sorting, so hubs cost no more than their transfer count.

All values depend only on the transfers touching the account: shards combine by concatenation.
"""

from __future__ import annotations

import math

import polars as pl

from .prepare import Prepared
from .registry import FeatureSpec, register
from .volume import TIME_BITS, account_events

__all__ = ["compute", "MATCH_LOW", "MATCH_WINDOW", "REL_TOL", "is_round", "is_structuring"]

#: an outbound matches an inbound when its amount is in [MATCH_LOW, 1] of it
MATCH_LOW = 0.8
#: ... and the inbound arrived at most this many seconds before it
MATCH_WINDOW = 72 * 3600
REL_TOL = 1e-9

register(
    FeatureSpec("round_share", "amounts", "Share of transfers with a round amount.", "share", 1,
                "{value:.0%} of transfers were round amounts"),
    FeatureSpec("structuring_share", "amounts", "Share of transfers just below a reporting threshold.", "share", 1,
                "{value:.0%} of transfers were just below a reporting threshold"),
    FeatureSpec("amount_match_share", "amounts",
                "Share of outbound transfers of 80-100% of an inbound amount received in the 72h before.", "share", 1,
                "{value:.0%} of outbound transfers passed on most of a recent inbound amount"),
)


def is_round(amount: pl.Expr, unit: float) -> pl.Expr:
    """True where ``amount`` is a whole multiple (>= 1) of ``unit``."""
    r = amount / unit
    return (r >= 1 - 1e-6) & ((r - r.round()).abs() < 1e-6)


def is_structuring(amount: pl.Expr, thresholds, margin: float) -> pl.Expr:
    """True where ``amount`` lies in ``[T * (1 - margin), T)`` for some threshold ``T``."""
    cond = pl.lit(False)
    for thr in thresholds:
        cond = cond | ((amount >= thr * (1 - margin)) & (amount < thr))
    return cond


def compute(p: Prepared) -> pl.DataFrame:
    """Round-amount share, structuring share and inbound/outbound amount matching."""
    cfg = p.config
    ev = account_events(p).select("acc", "t", "kind", "row", "amount")
    shares = ev.group_by("acc").agg(
        is_round(pl.col("amount"), cfg.round_unit).mean().alias("round_share"),
        is_structuring(pl.col("amount"), cfg.structuring_thresholds, cfg.structuring_margin).mean().alias(
            "structuring_share"
        ),
    )
    return shares.join(_amount_match(ev, p.extra["flow_t_min"]), on="acc", how="left").select(
        pl.col("acc").alias("idx"), "round_share", "structuring_share", "amount_match_share"
    )


def _amount_match(ev: pl.DataFrame, t_min: int) -> pl.DataFrame:
    ratio = 1.0 / MATCH_LOW
    # bucket of ratio 1.25, kept in [-120, 120] (amounts between about 1e-12 and 4e11)
    bucket = (pl.col("amount").log() / math.log(ratio)).floor().clip(-120, 120).cast(pl.Int64) + 128
    ev = ev.with_columns(bucket.alias("b"))
    inb = ev.filter(pl.col("kind") == 0)
    outb = ev.filter(pl.col("kind") == 1).with_row_index("q")
    win = f"{MATCH_WINDOW}i"
    gv = pl.col("acc").cast(pl.Int64) * 256 + pl.col("b")

    def rolled(shift: int, how: str) -> pl.Series:
        # one sortable key per (account, bucket, time), so the rolling window needs no per-group
        # pass; (account, bucket) pairs are ranked densely so the key fits Int64 for any size
        rows = pl.concat([
            inb.select(gv.alias("g"), "t", "amount", pl.lit(None, pl.UInt32).alias("q")),
            outb.select((gv + shift).alias("g"), "t", pl.lit(None, pl.Float64).alias("amount"), "q"),
        ])
        key = pl.col("g").rank("dense").cast(pl.Int64) * (1 << TIME_BITS) + (pl.col("t") - t_min)
        rows = rows.select(key.alias("key"), "amount", "q").sort("key")
        expr = pl.col("amount").rolling_max_by if how == "max" else pl.col("amount").rolling_min_by
        return (
            rows.with_columns(expr("key", window_size=win, closed="both").alias("m"))
            .filter(pl.col("q").is_not_null())
            .sort("q")["m"]
        )

    # same bucket: some recent inbound >= a (all of that bucket are <= 1.25 a);
    # next bucket up: some recent inbound <= 1.25 a (all of that bucket are > a)
    a = pl.col("amount")
    outb = outb.with_columns(rolled(0, "max").alias("m"), rolled(1, "min").alias("m_up"))
    hit = (pl.col("m") * (1 + REL_TOL) >= a).fill_null(False) | (
        pl.col("m_up") * MATCH_LOW * (1 - REL_TOL) <= a
    ).fill_null(False)
    return outb.group_by("acc").agg(hit.mean().alias("amount_match_share"))
