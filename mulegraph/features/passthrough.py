"""Pass-through: how much of the money an account receives leaves again, and how fast.

**The FIFO model.** Each account's inbound money joins a first-in-first-out queue in time order;
each outbound transfer takes money from the front of the queue, as much as is there. An outbound
larger than the queue is partly paid from money the account held before (outside the data): that
excess is lost to the matching and never consumes money that arrives later. So money that arrived
after an outbound is never counted as passed through by it.

**Equal timestamps.** Some exports carry whole days only, so an equal timestamp counts as possibly
after: at one instant all inbound transfers join the queue before any outbound takes from it (an
outbound at the same instant as an inbound can forward it). Ties within a direction follow the
transfer order (``row``).

**Vectorised.** On the merged event stream of one account (sorted by time, inbound first at equal
times), with cumulative inbound ``cin`` and outbound ``cout``, the money lost to the matching so far
is ``L = max(0, running max of (cout - cin))`` and the queue has been consumed up to ``C = cout - L``
(in units of cumulative inbound value). Inbound ``i`` occupies ``[cin_i - a_i, cin_i)``, so by time
``tau`` it has been forwarded by ``clip(C(tau) - (cin_i - a_i), 0, a_i)``; ``C(t_i + H)`` comes from
one ``join_asof``. The dwell times come from the pieces where inbound and outbound intervals
overlap in that cumulative space (at most ``n_in + n_out`` pieces per account), found with two more
``join_asof`` lookups. Everything is sorting and searching: ``O(n log n)``, no join of every
inbound with every outbound, so hubs cost no more than their transfer count.

Features: ``forward_ratio`` (out value / in value), ``passthrough_share_<H>`` for each
``FeatureConfig.passthrough_windows`` (share of inbound value forwarded within ``H``, inclusive),
``dwell_median_h`` / ``dwell_p10_h`` (value-weighted median / 10th percentile of the FIFO dwell
time of forwarded money, in hours: the smallest dwell ``d`` with at least that share of forwarded
value at dwell <= ``d``), ``retained_share`` (share of inbound value never forwarded in the data),
``split_count`` / ``split_share`` (number / value share of inbound transfers followed, within the
longest pass-through window, by ``k >= 2`` consecutive outbound transfers, the first at or after the
inbound's time, whose sum lies in ``[split_low, split_high]`` of the inbound amount).

All values depend only on the transfers touching the account: shards combine by concatenation.
"""

from __future__ import annotations

import polars as pl

from ..window import parse_duration
from .prepare import Prepared
from .registry import FeatureSpec, register
from .volume import account_events

__all__ = ["compute", "window_specs", "fifo_state", "REL_TOL"]

#: relative tolerance of amount comparisons (sums of floats), shared with the test references
REL_TOL = 1e-9


def window_specs(windows) -> list[FeatureSpec]:
    """The specs of ``passthrough_share_<H>`` for the given horizon texts."""
    return [
        FeatureSpec(
            f"passthrough_share_{w}", "passthrough",
            f"Share of inbound value that left again within {w} (FIFO).", "share", 1,
            f"{{value:.0%}} of received value left again within {w}",
        )
        for w in windows
    ]


register(
    FeatureSpec("forward_ratio", "passthrough", "Outbound value divided by inbound value.", "ratio", 1,
                "sent on {value:.0%} of the value received"),
    *window_specs(("24h", "72h")),
    FeatureSpec("dwell_median_h", "passthrough", "Value-weighted median time forwarded money stayed (FIFO).",
                "hours", -1, "forwarded money stayed {value:.1f} h (median)"),
    FeatureSpec("dwell_p10_h", "passthrough", "Value-weighted 10th percentile of the time forwarded money stayed.",
                "hours", -1, "the fastest tenth of forwarded money stayed under {value:.1f} h"),
    FeatureSpec("retained_share", "passthrough", "Share of inbound value never forwarded (FIFO).", "share", -1,
                "kept only {value:.0%} of the value received"),
    FeatureSpec("split_count", "passthrough",
                "Inbound transfers split into two or more outbound transfers summing to most of them.", "count", 1,
                "{value:.0f} inbound transfers were split into several outbound ones"),
    FeatureSpec("split_share", "passthrough", "Share of inbound value in inbound transfers that were split on.",
                "share", 1, "{value:.0%} of received value was split into several outbound transfers"),
)


def fifo_state(ev: pl.DataFrame) -> pl.DataFrame:
    """Add ``cin``, ``cout``, ``C`` (queue consumed up to) and ``C_prev`` to sorted account events."""
    amt_in = pl.when(pl.col("kind") == 0).then(pl.col("amount")).otherwise(0.0)
    amt_out = pl.when(pl.col("kind") == 1).then(pl.col("amount")).otherwise(0.0)
    s = ev.select("acc", "t", "kind", "row", "amount").with_columns(
        amt_in.cum_sum().over("acc").alias("cin"), amt_out.cum_sum().over("acc").alias("cout")
    )
    s = s.with_columns(
        (pl.col("cout") - pl.max_horizontal((pl.col("cout") - pl.col("cin")).cum_max().over("acc"), pl.lit(0.0))).alias("C")
    )
    return s.with_columns(pl.col("C").shift(1, fill_value=0.0).over("acc").alias("C_prev"))


def _weighted_quantiles(pieces: pl.DataFrame, qs: dict[str, float]) -> pl.DataFrame:
    """Per ``acc``: smallest ``dwell`` with cumulative ``w`` >= q * total, for each named q."""
    agg = pieces.group_by("acc", "dwell").agg(pl.col("w").sum()).sort(["acc", "dwell"])
    agg = agg.with_columns(pl.col("w").cum_sum().over("acc").alias("cw"), pl.col("w").sum().over("acc").alias("tot"))
    return agg.group_by("acc").agg(
        (pl.col("dwell").filter(pl.col("cw") >= q * pl.col("tot")).first() / 3600.0).alias(name)
        for name, q in qs.items()
    )


def compute(p: Prepared) -> pl.DataFrame:
    """Forward ratio, FIFO pass-through shares, dwell times, retained share, split signature."""
    cfg = p.config
    windows = tuple(cfg.passthrough_windows)
    register(*window_specs(windows))
    horizons = {w: int(parse_duration(w, name="passthrough_windows").total_seconds()) for w in windows}
    ev = account_events(p)
    st = fifo_state(ev)
    inb = st.filter(pl.col("kind") == 0).select(
        "acc", "t", "row", "amount", (pl.col("cin") - pl.col("amount")).alias("before"), "cin"
    )
    totals = st.group_by("acc").agg(
        pl.col("cin").last().alias("in_value"), pl.col("cout").last().alias("out_value"), pl.col("C").last().alias("C_end")
    )
    # C at each (account, time): the last event at that time holds the largest C
    c_at = st.group_by("acc", "t").agg(pl.col("C").max()).sort("t")
    shares = inb.select("acc", "t", "before", "amount")
    for w, h in horizons.items():
        look = shares.select("acc", (pl.col("t") + h).alias("tq"), "before", "amount").sort("tq")
        got = look.join_asof(
            c_at.rename({"t": "tq"}), on="tq", by="acc", strategy="backward", check_sortedness=False
        )
        part = got.group_by("acc").agg(
            (pl.col("C") - pl.col("before")).clip(0.0, pl.col("amount")).sum().alias(f"fwd_{w}")
        )
        totals = totals.join(part, on="acc", how="left")

    # dwell pieces: boundaries of inbound ends and outbound consumption ends, up to C_end
    outc = st.filter((pl.col("kind") == 1) & (pl.col("C") > pl.col("C_prev"))).select("acc", pl.col("t").alias("t_out"), "C")
    bounds = pl.concat([inb.select("acc", pl.col("cin").alias("y")), outc.select("acc", pl.col("C").alias("y"))])
    bounds = (
        bounds.join(totals.select("acc", "C_end"), on="acc")
        .filter(pl.col("y") <= pl.col("C_end"))
        .unique(["acc", "y"])
        .sort(["acc", "y"])
        .with_columns(pl.col("y").shift(1, fill_value=0.0).over("acc").alias("x"))
        .filter(pl.col("y") > pl.col("x"))
    )
    pieces = (
        bounds.join_asof(inb.select("acc", pl.col("cin").alias("y"), pl.col("t").alias("t_in")).sort(["acc", "y"]),
                         on="y", by="acc", strategy="forward", check_sortedness=False)
        .join_asof(outc.rename({"C": "y"}).sort(["acc", "y"]), on="y", by="acc", strategy="forward",
                   check_sortedness=False)
        .select("acc", (pl.col("t_out") - pl.col("t_in")).alias("dwell"), (pl.col("y") - pl.col("x")).alias("w"))
    )
    dwell = _weighted_quantiles(pieces, {"dwell_median_h": 0.5, "dwell_p10_h": 0.1})

    split = _split_signature(ev, inb, cfg.split_low, cfg.split_high, max(horizons.values()))

    inv = pl.col("in_value")
    out = (
        totals.join(dwell, on="acc", how="left")
        .join(split, on="acc", how="left")
        .select(
            pl.col("acc").alias("idx"),
            pl.when(inv > 0).then(pl.col("out_value") / inv).alias("forward_ratio"),
            *[pl.when(inv > 0).then(pl.col(f"fwd_{w}") / inv).alias(f"passthrough_share_{w}") for w in windows],
            "dwell_median_h",
            "dwell_p10_h",
            pl.when(inv > 0).then(((inv - pl.col("C_end")) / inv).clip(0.0, 1.0)).alias("retained_share"),
            pl.col("split_count").fill_null(0),
            pl.when(inv > 0).then(pl.col("split_value").fill_null(0.0) / inv).alias("split_share"),
        )
    )
    return out


def _split_signature(ev: pl.DataFrame, inb: pl.DataFrame, low: float, high: float, horizon: int) -> pl.DataFrame:
    """Per account: count and value of inbounds split into >= 2 consecutive outbounds (see module doc)."""
    outs = (
        ev.filter(pl.col("kind") == 1)
        .select("acc", "t", "amount")
        .with_columns(
            pl.col("amount").cum_sum().over("acc").alias("cum"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("acc").alias("rank"),
        )
    )
    # cumulative outbound strictly before each inbound's time (equal times count as after)
    before = outs.group_by("acc", "t").agg(pl.col("cum").max(), pl.col("rank").max()).sort("t")
    q = inb.select("acc", "t", "amount", (pl.col("t") - 1).alias("tb")).sort("tb")
    q = q.join_asof(before.rename({"t": "tb", "cum": "base", "rank": "r0"}), on="tb", by="acc",
                    strategy="backward", check_sortedness=False)
    q = q.with_columns(pl.col("base").fill_null(0.0), pl.col("r0").fill_null(0))
    # first outbound whose cumulative sum reaches the low bound (sums grow: one search suffices)
    q = q.with_columns((pl.col("base") + low * pl.col("amount") * (1 - REL_TOL)).alias("need")).sort(["acc", "need"])
    q = q.join_asof(outs.select("acc", pl.col("cum").alias("need"), pl.col("rank").alias("rj")).sort(["acc", "need"]),
                    on="need", by="acc", strategy="forward", check_sortedness=False)
    q = q.with_columns(pl.max_horizontal("rj", pl.col("r0") + 2).alias("rank")).filter(pl.col("rj").is_not_null())
    q = q.join(outs.select("acc", "rank", pl.col("t").alias("tj"), "cum"), on=["acc", "rank"], how="inner")
    hit = (pl.col("tj") <= pl.col("t") + horizon) & (
        (pl.col("cum") - pl.col("base")) <= high * pl.col("amount") * (1 + REL_TOL)
    )
    return q.filter(hit).group_by("acc").agg(
        pl.len().cast(pl.Int64).alias("split_count"), pl.col("amount").sum().alias("split_value")
    )
