"""Collection accounts: many one-off payers in a short time, little activity of the account's own.

A fan-in mule (and the collecting end of a gather-scatter or bipartite scheme) is paid by many
people who have nothing else to do with it, within days, and the money leaves in a few lumps (cash,
one transfer on) instead of being lived on: rent, groceries and bills make the many payments of an
ordinary account. These three signals are read together by the no-label rule ``ONE_OFF_COLLECTION``
(:mod:`mulegraph.scoring.nolabel`):

* ``oneoff_fanin_14d``: the most distinct one-off senders (:func:`mulegraph.features.structure.fresh_transfers`:
  a sender whose only transfer with the account in the scored window is this one, neither of them
  a hub) that paid the account within any :data:`COLLECTION_WINDOW` (14 days: a window ``(t - 14d, t]``
  ending at one of those payments). One-off relationships have a single transfer, so distinct
  senders and transfers are the same count. 0 when none.
* ``few_payments``: the number of transfers the account sent in the window, to anyone; lower is
  more suspicious. It is the volume family's ``out_count`` under the direction this rule reads it
  in, so that a reason on it says "only N payments" rather than "many".
* ``everyday_payments``: the number of transfers the account sent to hubs (the large merchants,
  billers and processors that ordinary spending goes to; ``FeatureConfig.hub_accounts`` or above
  ``hub_degree``); lower is more suspicious.

The two payment counts are null, not 0, for an account that made no such payment at all: a pure
sink such as a shop's, biller's or cash machine's account collects from many one-off payers too
but moves nothing on, and where no account pays a hub (a small bank with none configured) there is
no everyday spending to compare, so the rule stays silent rather than firing on everyone.

Like the one-off structure features, these are not a default feature family and **not model
features**: the no-label mode adds them to the features it scores
(:func:`mulegraph.scoring.score.score_features`); the supervised model does not read them. Hubs
get null.
"""

from __future__ import annotations

import polars as pl

from mulegraph.core.window import parse_duration
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.structure import fresh_transfers

__all__ = ["FAMILY", "SPECS", "COLLECTION_FEATURES", "COLLECTION_WINDOW", "collection_features"]

FAMILY = "collection"

#: how long the many one-off payments of a collection may take (first to last)
COLLECTION_WINDOW = "14d"

COLLECTION_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("oneoff_fanin_14d", FAMILY,
                "most distinct one-off senders (one transfer each, no other relationship) paying the account "
                "within 14 days", "count", 1,
                "paid by {value:.0f} one-off senders within 14 days", evidence="one_off", horizon="14d"),
    FeatureSpec("few_payments", FAMILY,
                "transfers the account sent in the window (lower is more suspicious next to many one-off payers; "
                "null when it sent none)",
                "count", -1, "made only {value:.0f} payments of its own", evidence="outbound"),
    FeatureSpec("everyday_payments", FAMILY,
                "transfers the account sent to hubs: everyday spending at large merchants and billers (lower is "
                "more suspicious next to many one-off payers; null when it paid no hub)",
                "count", -1, "only {value:.0f} everyday payments to merchants and billers", evidence="outbound"),
)
SPECS: tuple[FeatureSpec, ...] = COLLECTION_FEATURES


def _max_in_window(events: pl.LazyFrame, key: str, w: int) -> pl.LazyFrame:
    """Per ``key``: the most events within any window ``(t - w, t]`` ending at one of them."""
    return (
        events.select(pl.col(key).alias("idx"), "t")
        .sort("idx", "t")
        .rolling(index_column="t", period=f"{w}i", group_by="idx")
        .agg(pl.len().alias("_n"))
        .group_by("idx")
        .agg(pl.col("_n").max().cast(pl.Float64).alias("oneoff_fanin_14d"))
    )


def collection_features(p: Prepared, window: str = COLLECTION_WINDOW) -> pl.DataFrame:
    """``account_id`` and the :data:`COLLECTION_FEATURES` for every account of ``p`` (hubs null).

    ``window``: how close together the one-off payments must be (the feature keeps its name).
    """
    w = int(parse_duration(window, name="collection window").total_seconds())
    fanin = _max_in_window(fresh_transfers(p).lazy().select("dst", "t"), "dst", w)
    sent = (
        p.tx.lazy()
        .group_by(pl.col("src").alias("idx"))
        .agg(
            pl.len().cast(pl.Float64).alias("few_payments"),
            pl.col("dst").is_in(p.hub_idx.implode()).sum().cast(pl.Float64).alias("everyday_payments"),
        )
    )
    out = (
        p.accounts.lazy().select("idx", "account_id", "is_hub")
        .join(fanin, on="idx", how="left")
        .join(sent, on="idx", how="left")
        .collect()
    )
    return out.select(
        "account_id",
        pl.when(pl.col("is_hub")).then(None).otherwise(pl.col("oneoff_fanin_14d").fill_null(0.0)).alias("oneoff_fanin_14d"),
        *[pl.when(pl.col("is_hub") | (pl.col(c) == 0)).then(None).otherwise(pl.col(c)).alias(c)
          for c in ("few_payments", "everyday_payments")],
    )
