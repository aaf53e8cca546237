"""Volume and degree: how much money moves through an account, and with how many counterparties.

Every family in this package reads transfers from the account's point of view through
:func:`account_events`: one row per (account, transfer) with ``kind`` 0 for inbound (the account is
the payee) and 1 for outbound (the account is the payer). A transfer from an account to itself is
both. All values are per account and depend only on the transfers that touch the account, so a
shard that holds every transfer touching its accounts gives exactly the values of a whole-store
run; shards combine by concatenating their rows.

Hubs (``Prepared.accounts.is_hub``) get their own values too: everything here is a group-by.
"""

from __future__ import annotations

import polars as pl

from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec

__all__ = ["compute", "account_events", "time_key", "TIME_BITS", "DAY", "SPECS"]

#: seconds in a day; days are UTC calendar days (``t // DAY``)
DAY = 86_400

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("in_count", "volume", "Number of inbound transfers.", "count", 1, "received {value:.0f} transfers",
                evidence="inbound"),
    FeatureSpec("out_count", "volume", "Number of outbound transfers.", "count", 1, "sent {value:.0f} transfers",
                evidence="outbound"),
    FeatureSpec("in_cp", "volume", "Distinct senders paying the account.", "count", 1, "paid by {value:.0f} distinct senders",
                evidence="first_in"),
    FeatureSpec("out_cp", "volume", "Distinct payees the account paid.", "count", 1, "paid {value:.0f} distinct payees",
                evidence="first_out"),
    FeatureSpec("in_value", "volume", "Total inbound value.", "currency", 1, "received {value:,.0f} in total",
                evidence="inbound"),
    FeatureSpec("out_value", "volume", "Total outbound value.", "currency", 1, "sent {value:,.0f} in total",
                evidence="outbound"),
    FeatureSpec("in_mean", "volume", "Mean inbound amount (null without inbound).", "currency", 0, evidence="inbound"),
    FeatureSpec("out_mean", "volume", "Mean outbound amount (null without outbound).", "currency", 0, evidence="outbound"),
    FeatureSpec("in_max", "volume", "Largest inbound amount.", "currency", 0, evidence="inbound"),
    FeatureSpec("out_max", "volume", "Largest outbound amount.", "currency", 0, evidence="outbound"),
    FeatureSpec("in_std", "volume", "Population standard deviation of inbound amounts.", "currency", 0,
                evidence="inbound"),
    FeatureSpec("out_std", "volume", "Population standard deviation of outbound amounts.", "currency", 0,
                evidence="outbound"),
    FeatureSpec("active_days", "volume", "Distinct UTC days with any transfer.", "days", 0),
)


def account_events(p: Prepared) -> pl.DataFrame:
    """Transfers seen from each account: ``acc``, ``cp``, ``t``, ``k``, ``amount``, ``kind``, ``row`` (+ extras).

    ``kind`` is 0 for inbound and 1 for outbound. Rows are sorted by ``acc``, ``t``, ``kind``,
    ``row``: at equal times inbound comes first, so that an outbound at the same instant may forward
    it (exports with whole days only make equal times common). ``k`` is the single sortable Int64
    key ``acc * 2**33 + (t - t_min)`` (see :func:`time_key`): searches and rolling windows on it
    need no per-account grouping. When ``p.targets`` is set only the target accounts' events are
    kept. The frame is cached in ``p.extra``.
    """
    cached = p.extra.get("flow_events")
    if cached is not None:
        return cached
    keep = [c for c in ("currency", "channel", "src_country", "dst_country") if c in p.tx.columns]
    base = ["row", "t", "amount", *keep]
    inb = p.tx.select(pl.col("dst").alias("acc"), pl.col("src").alias("cp"), *base, pl.lit(0, pl.Int8).alias("kind"))
    outb = p.tx.select(pl.col("src").alias("acc"), pl.col("dst").alias("cp"), *base, pl.lit(1, pl.Int8).alias("kind"))
    ev = pl.concat([inb, outb])
    if p.targets is not None:
        ev = ev.filter(pl.col("acc").is_in(p.targets.implode()))
    t_min = int(p.tx["t"].min() or 0)
    p.extra["flow_t_min"] = t_min
    ev = ev.with_columns(time_key("acc", pl.col("t"), t_min).alias("k"))
    # one Int64 sort key (acc, t, kind); the stable sort keeps row order (tx is sorted by t, txn_id)
    ev = ev.sort(pl.col("k") * 2 + pl.col("kind"), maintain_order=True)
    p.extra["flow_events"] = ev
    return ev


#: bits of the time part of :func:`time_key` (2**33 s is about 272 years)
TIME_BITS = 33


def time_key(acc: str | pl.Expr, t: pl.Expr, t_min: int) -> pl.Expr:
    """``acc * 2**33 + (t - t_min)`` as Int64: sorts by account then time in one integer column."""
    a = pl.col(acc) if isinstance(acc, str) else acc
    return a.cast(pl.Int64) * (1 << TIME_BITS) + (t - t_min)


def compute(p: Prepared) -> pl.DataFrame:
    """Counts, distinct counterparties, value sum/mean/max/std per direction, and active days."""
    ev = account_events(p)
    parts = []
    for kind, d in ((0, "in"), (1, "out")):
        parts.append(
            ev.filter(pl.col("kind") == kind)
            .group_by("acc")
            .agg(
                pl.len().cast(pl.Int64).alias(f"{d}_count"),
                pl.col("cp").n_unique().cast(pl.Int64).alias(f"{d}_cp"),
                pl.col("amount").sum().alias(f"{d}_value"),
                pl.col("amount").mean().alias(f"{d}_mean"),
                pl.col("amount").max().alias(f"{d}_max"),
                pl.col("amount").std(ddof=0).alias(f"{d}_std"),
            )
        )
    days = ev.group_by("acc").agg((pl.col("t") // DAY).n_unique().cast(pl.Int64).alias("active_days"))
    out = days
    for part in parts:
        out = out.join(part, on="acc", how="left")
    out = out.with_columns(
        pl.col(c).fill_null(0) for c in ("in_count", "out_count", "in_cp", "out_cp", "in_value", "out_value")
    )
    cols = ["in_count", "out_count", "in_cp", "out_cp", "in_value", "out_value", "in_mean", "out_mean",
            "in_max", "out_max", "in_std", "out_std", "active_days"]
    return out.select(pl.col("acc").alias("idx"), *cols)
