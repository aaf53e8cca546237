"""Channel, currency and country: cash-outs, currency changes and money crossing borders.

* ``cash_out_share``: share of outbound value sent through a cash channel
  (``FeatureConfig.cash_channels``, compared case-insensitively after trimming), among outbound
  transfers whose channel is known; null when none is (or the export has no channel column).
* ``cross_currency_share``: share of the account's transfers (inbound and outbound) in a currency
  other than its main one (the currency of most of its transfers); null when no currency is known.
* ``cross_border_share``: share of the account's transfers whose payer and payee countries are both
  known and differ; null when the export has no country columns or none is known for the account.

All values depend only on the transfers touching the account: shards combine by concatenation.
"""

from __future__ import annotations

import polars as pl

from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.volume import account_events

__all__ = ["compute", "SPECS"]

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("cash_out_share", "channel", "Share of outbound value withdrawn as cash.", "share", 1,
                "{value:.0%} of the value sent was cashed out", evidence="cash"),
    FeatureSpec("cross_currency_share", "channel", "Share of transfers not in the account's main currency.",
                "share", 1, "{value:.0%} of transfers in another currency"),
    FeatureSpec("cross_border_share", "channel", "Share of transfers between different countries.", "share", 1,
                "{value:.0%} of transfers crossed a border"),
)


def compute(p: Prepared) -> pl.DataFrame:
    """Cash-out, cross-currency and cross-border shares."""
    ev = account_events(p)
    cash = [c.strip().upper() for c in p.config.cash_channels]
    ch = pl.col("channel").cast(pl.String).str.strip_chars().str.to_uppercase()
    out = (
        ev.filter((pl.col("kind") == 1) & pl.col("channel").is_not_null())
        .group_by("acc")
        .agg((pl.col("amount").filter(ch.is_in(cash)).sum() / pl.col("amount").sum()).alias("cash_out_share"))
    )
    res = ev.select(pl.col("acc").unique()).join(out, on="acc", how="left")

    cur = ev.filter(pl.col("currency").is_not_null()).select("acc", pl.col("currency").cast(pl.String))
    counts = cur.group_by("acc", "currency").agg(pl.len().alias("n"))
    main = counts.group_by("acc").agg(pl.col("n").max().alias("main_n"), pl.col("n").sum().alias("tot"))
    res = res.join(
        main.select("acc", (1.0 - pl.col("main_n") / pl.col("tot")).alias("cross_currency_share")), on="acc", how="left"
    )

    if {"src_country", "dst_country"} <= set(ev.columns):
        known = ev.filter(pl.col("src_country").is_not_null() & pl.col("dst_country").is_not_null())
        border = known.group_by("acc").agg(
            (pl.col("src_country") != pl.col("dst_country")).mean().alias("cross_border_share")
        )
        res = res.join(border, on="acc", how="left")
    else:
        res = res.with_columns(pl.lit(None, pl.Float64).alias("cross_border_share"))
    # the last flow family in a run: release the shared event table before the graph families
    p.extra.pop("flow_events", None)
    return res.select(pl.col("acc").alias("idx"), "cash_out_share", "cross_currency_share", "cross_border_share")
