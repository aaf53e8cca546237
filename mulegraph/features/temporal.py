"""Temporal: new or dormant accounts that suddenly get busy, and activity at night.

Days are UTC calendar days (``t // 86400``); an account's transfers are its inbound and outbound
transfers together (a transfer to itself counts twice).

* ``age_at_first_in_d``: days from the account's first transfer of any kind in the data to its first
  inbound transfer (0 when it starts by receiving; null without inbound). Equal timestamps count as
  possibly after, so an inbound at the first instant gives 0.
* ``max_dormancy_d``: the longest run of inactive days between two active days (0 with one active
  day or none skipped).
* ``burst_ratio``: transfers on the busiest day divided by the median transfers per active day.
* ``velocity``: transfers per active day.
* ``night_share``: share of transfers in the night hours ``FeatureConfig.night_hours`` (``[start,
  end)`` UTC, wrapping past midnight when start > end); null when every one of the account's
  timestamps is exactly midnight (an export with whole days only has no time of day).

All values depend only on the transfers touching the account: shards combine by concatenation.
"""

from __future__ import annotations

import polars as pl

from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.volume import DAY, account_events

__all__ = ["compute", "SPECS"]

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("age_at_first_in_d", "temporal", "Days from the account's first transfer to its first inbound.",
                "days", -1, "first received money {value:.0f} days after its first transfer"),
    FeatureSpec("max_dormancy_d", "temporal", "Longest run of inactive days between two active days.", "days", 1,
                "woke up after {value:.0f} dormant days"),
    FeatureSpec("burst_ratio", "temporal", "Transfers on the busiest day over the median active day.", "ratio", 1,
                "its busiest day had {value:.1f}x its usual number of transfers"),
    FeatureSpec("velocity", "temporal", "Transfers per active day.", "count", 1,
                "{value:.1f} transfers per active day"),
    FeatureSpec("night_share", "temporal", "Share of transfers in the night hours (UTC).", "share", 1,
                "{value:.0%} of transfers at night", evidence="night"),
)


def compute(p: Prepared) -> pl.DataFrame:
    """Age at first inbound, dormancy, burst ratio, velocity, night-time share."""
    ev = account_events(p).select("acc", "t", "kind").with_columns((pl.col("t") // DAY).alias("day"))
    start, end = p.config.night_hours
    hour = (pl.col("t") % DAY) // 3600
    night = ((hour >= start) & (hour < end)) if start <= end else ((hour >= start) | (hour < end))
    first = ev.group_by("acc").agg(
        ((pl.col("t").filter(pl.col("kind") == 0).min() - pl.col("t").min()) / DAY).alias("age_at_first_in_d"),
        pl.when((pl.col("t") % DAY != 0).any()).then(night.mean()).alias("night_share"),
    )
    # transfers per (account, day): events are sorted by account then time, so the runs of one
    # (account, day) key are consecutive and a run-length encoding counts them without hashing
    d0 = p.extra["flow_t_min"] // DAY
    day_key = (pl.col("acc").cast(pl.Int64) * (1 << 24) + (pl.col("day") - d0)).alias("dk")
    runs = ev.select(day_key)["dk"].rle().struct.unnest()
    per_day = runs.select(
        (pl.col("value") // (1 << 24)).cast(pl.UInt32).alias("acc"), (pl.col("value") % (1 << 24)).alias("day"),
        pl.col("len").alias("n"),
    )
    same = pl.col("acc") == pl.col("acc").shift(1)
    per_day = per_day.with_columns(pl.when(same).then(pl.col("day") - pl.col("day").shift(1) - 1).alias("gap"))
    days = per_day.group_by("acc").agg(
        pl.col("gap").max().fill_null(0).cast(pl.Int64).alias("max_dormancy_d"),
        (pl.col("n").max() / pl.col("n").median()).alias("burst_ratio"),
        (pl.col("n").sum() / pl.len()).alias("velocity"),
    )
    return first.join(days, on="acc", how="left").select(
        pl.col("acc").alias("idx"), "age_at_first_in_d", "max_dormancy_d", "burst_ratio", "velocity", "night_share"
    )
