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

import numpy as np
import polars as pl

from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.volume import TIME_BITS, account_events

__all__ = ["compute", "MATCH_LOW", "MATCH_WINDOW", "REL_TOL", "is_round", "is_structuring", "SPECS"]

#: an outbound matches an inbound when its amount is in [MATCH_LOW, 1] of it
MATCH_LOW = 0.8
#: ... and the inbound arrived at most this many seconds before it
MATCH_WINDOW = 72 * 3600
REL_TOL = 1e-9
#: bits an Int64 sort key may use; beyond, (account, bucket) pairs are ranked first
KEY_BITS = 62

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("round_share", "amounts", "Share of transfers with a round amount.", "share", 1,
                "{value:.0%} of transfers were round amounts"),
    FeatureSpec("structuring_share", "amounts", "Share of transfers just below a reporting threshold.", "share", 1,
                "{value:.0%} of transfers were just below a reporting threshold",
                evidence="structuring"),
    FeatureSpec("amount_match_share", "amounts",
                "Share of outbound transfers of 80-100% of an inbound amount received in the 72h before.", "share", 1,
                "{value:.0%} of outbound transfers passed on most of a recent inbound amount",
                evidence="passthrough", horizon="72h"),
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
    # bucket of ratio 1.25, kept in [1, 254] (amounts between about 1e-12 and 1e12)
    bucket = (pl.col("amount").log() / math.log(ratio)).floor().clip(-126, 126).cast(pl.Int64) + 128
    ev = ev.with_columns(bucket.alias("b"))
    inb = ev.filter(pl.col("kind") == 0)
    outb = ev.filter(pl.col("kind") == 1).with_row_index("q")
    # One sorted column holds, per (account, bucket), the inbound amounts and two kinds of query rows
    # for each outbound: "same" rows in its own bucket (some recent inbound >= a? all of that bucket
    # are <= 1.25 a) and "up" rows in the next bucket (some recent inbound <= 1.25 a? all of that
    # bucket are > a). The key (account, bucket, time) makes rolling windows need no per-group pass.
    span = int(ev["t"].max() or t_min) - t_min + 1 + MATCH_WINDOW  # groups must lie a window apart
    n_acc = int(ev["acc"].max() or 0) + 1
    if (n_acc * 256).bit_length() + span.bit_length() <= KEY_BITS:
        group, tb = pl.col("acc").cast(pl.Int64) * 256 + pl.col("b"), span.bit_length()
    else:  # rank the (account, bucket) pairs densely so that the key fits Int64
        group, tb = (pl.col("acc").cast(pl.Int64) * 256 + pl.col("b")).rank("dense").cast(pl.Int64), TIME_BITS
    rows = pl.concat([
        inb.select(pl.col("acc"), "b", "t", "amount", pl.lit(None, pl.UInt32).alias("q"), pl.lit(0, pl.Int8).alias("r")),
        outb.select(pl.col("acc"), "b", "t", "amount", "q", pl.lit(1, pl.Int8).alias("r")),
        outb.select(pl.col("acc"), pl.col("b") + 1, "t", "amount", "q", pl.lit(2, pl.Int8).alias("r")),
    ])
    rows = rows.select((group * (1 << tb) + (pl.col("t") - t_min)).alias("key"), "amount", "q", "r").sort("key")
    inbound_amount = pl.when(pl.col("r") == 0).then(pl.col("amount"))
    win = f"{MATCH_WINDOW}i"
    rows = rows.with_columns(
        inbound_amount.rolling_max_by("key", window_size=win, closed="both").alias("mx"),
        inbound_amount.rolling_min_by("key", window_size=win, closed="both").alias("mn"),
    )
    a = pl.col("amount")
    hit = pl.when(pl.col("r") == 1).then(pl.col("mx") * (1 + REL_TOL) >= a).otherwise(
        pl.col("mn") * MATCH_LOW * (1 - REL_TOL) <= a
    ).fill_null(False)
    hits = rows.filter((pl.col("r") > 0) & hit)["q"].to_numpy()
    matched = np.zeros(outb.height, dtype=bool)
    matched[hits] = True  # either query row of an outbound may hit
    return outb.with_columns(pl.Series("hit", matched)).group_by("acc").agg(
        pl.col("hit").mean().alias("amount_match_share")
    )
