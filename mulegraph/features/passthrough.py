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
one ``join_asof`` on a single (account, time) integer key. The dwell times come from the pieces
where inbound and outbound intervals overlap in that cumulative space (at most ``n_in + n_out``
pieces per account), found by sorting the interval ends and filling backwards. Everything is
sorting, running sums and searching: ``O(n log n)``, no join of every inbound with every outbound,
so a hub costs no more than its transfer count.

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

from mulegraph.core.errors import FeatureError
from mulegraph.core.window import parse_duration
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.volume import TIME_BITS, account_events

__all__ = ["compute", "window_specs", "fifo_state", "REL_TOL", "SPECS"]

#: relative tolerance of amount comparisons (sums of floats), shared with the test references
REL_TOL = 1e-9


def window_specs(windows) -> list[FeatureSpec]:
    """The specs of ``passthrough_share_<H>`` for the given horizon texts."""
    return [
        FeatureSpec(
            f"passthrough_share_{w}", "passthrough",
            f"Share of inbound value that left again within {w} (FIFO).", "share", 1,
            f"{{value:.0%}} of received value left again within {w}", evidence="passthrough", horizon=w,
        )
        for w in windows
    ]


#: the default horizons' specs; other horizons of ``FeatureConfig.passthrough_windows`` are registered
#: by :func:`mulegraph.features.registry.register_windows`
SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("forward_ratio", "passthrough", "Outbound value divided by inbound value.", "ratio", 1,
                "sent on {value:.0%} of the value received", evidence="passthrough"),
    *window_specs(("24h", "72h")),
    FeatureSpec("dwell_median_h", "passthrough", "Value-weighted median time forwarded money stayed (FIFO).",
                "hours", -1, "forwarded money stayed {value:.1f} h (median)", evidence="passthrough"),
    FeatureSpec("dwell_p10_h", "passthrough", "Value-weighted 10th percentile of the time forwarded money stayed.",
                "hours", -1, "the fastest tenth of forwarded money stayed under {value:.1f} h",
                evidence="passthrough"),
    FeatureSpec("retained_share", "passthrough", "Share of inbound value never forwarded (FIFO).", "share", -1,
                "kept only {value:.0%} of the value received", evidence="passthrough"),
    FeatureSpec("split_count", "passthrough",
                "Inbound transfers split into two or more outbound transfers summing to most of them.", "count", 1,
                "{value:.0f} inbound transfers were split into several outbound ones",
                evidence="passthrough"),
    FeatureSpec("split_share", "passthrough", "Share of inbound value in inbound transfers that were split on.",
                "share", 1, "{value:.0%} of received value was split into several outbound transfers",
                evidence="passthrough"),
)


def fifo_state(ev: pl.DataFrame) -> pl.DataFrame:
    """Add ``cin``, ``cout``, ``C`` (queue consumed up to) and ``C_prev`` to sorted account events."""
    amt_in = pl.when(pl.col("kind") == 0).then(pl.col("amount")).otherwise(0.0)
    amt_out = pl.when(pl.col("kind") == 1).then(pl.col("amount")).otherwise(0.0)
    s = ev.select("acc", "t", "k", "kind", "amount").with_columns(
        amt_in.cum_sum().over("acc").alias("cin"), amt_out.cum_sum().over("acc").alias("cout")
    )
    lost = pl.max_horizontal((pl.col("cout") - pl.col("cin")).cum_max().over("acc"), pl.lit(0.0))
    s = s.with_columns((pl.col("cout") - lost).alias("C"))
    first = (pl.col("acc") != pl.col("acc").shift(1)).fill_null(True)
    return s.with_columns(pl.when(first).then(0.0).otherwise(pl.col("C").shift(1)).alias("C_prev"))


def _last_per_key(key: str) -> pl.Expr:
    return (pl.col(key) != pl.col(key).shift(-1)).fill_null(True)


def compute(p: Prepared) -> pl.DataFrame:
    """Forward ratio, FIFO pass-through shares, dwell times, retained share, split signature."""
    cfg = p.config
    windows = tuple(cfg.passthrough_windows)
    if not windows:
        raise FeatureError("passthrough_windows is empty; list at least one duration such as \"24h\" in [features].")
    horizons = {w: int(parse_duration(w, name="passthrough_windows").total_seconds()) for w in windows}
    ev = account_events(p)
    st = fifo_state(ev)
    last_of_acc = (pl.col("acc") != pl.col("acc").shift(-1)).fill_null(True)
    totals = st.filter(last_of_acc).select(
        "acc", pl.col("cin").alias("in_value"), pl.col("cout").alias("out_value"), pl.col("C").alias("C_end")
    )
    inb = st.filter(pl.col("kind") == 0).select(
        "acc", "t", "k", "amount", (pl.col("cin") - pl.col("amount")).alias("before"), "cin"
    )
    # C at each (account, time): the last event of that key holds the largest C. Keys are sorted and
    # k + h stays inside the account's key range, which holds the inbound itself: no grouping needed.
    c_at = st.filter(_last_per_key("k")).select("k", "C")
    fwd = inb.select("acc", "before", "amount", "k")
    for w, h in horizons.items():
        got = fwd.select((pl.col("k") + h).alias("k")).join_asof(c_at, on="k", strategy="backward", check_sortedness=False)
        fwd = fwd.with_columns(
            (got["C"] - pl.col("before")).clip(0.0, pl.col("amount")).alias(f"fwd_{w}")
        )
    # sorted within each account before summing: a fixed order gives the same bits on every run
    sums = fwd.group_by("acc").agg(pl.col(f"fwd_{w}").sort().sum() for w in windows)
    totals = totals.join(sums, on="acc", how="left")

    dwell = _weighted_quantiles(_dwell_pieces(st, inb), {"dwell_median_h": 0.5, "dwell_p10_h": 0.1})
    split = _split_signature(st, inb, cfg.split_low, cfg.split_high, max(horizons.values()))

    inv = pl.col("in_value")
    return (
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


def _dwell_pieces(st: pl.DataFrame, inb: pl.DataFrame) -> pl.DataFrame:
    """Where inbound and outbound intervals overlap in cumulative-inbound space: acc, dwell, w.

    Boundaries are the inbound ends (``cin``) and the outbound consumption ends (``C``). Sorted by
    (acc, boundary), the inbound covering the segment that ends at a boundary is the next inbound
    end at or after it, and likewise the outbound: two backward fills. A boundary beyond the
    account's last consumption finds the next account's outbound and is dropped.
    """
    outc = st.filter((pl.col("kind") == 1) & (pl.col("C") > pl.col("C_prev"))).select(
        "acc", pl.col("C").alias("y"), pl.lit(None, pl.Int64).alias("t_in"), pl.col("t").alias("t_out"),
        pl.lit(None, pl.UInt32).alias("acc_in"), pl.col("acc").alias("acc_out"),
    )
    ends = inb.select(
        "acc", pl.col("cin").alias("y"), pl.col("t").alias("t_in"), pl.lit(None, pl.Int64).alias("t_out"),
        pl.col("acc").alias("acc_in"), pl.lit(None, pl.UInt32).alias("acc_out"),
    )
    # a stable sort: rows of equal y (floating-point running sums can repeat a value) stay in
    # event order, so the result depends only on the account's own events, never on its neighbours
    b = pl.concat([ends, outc]).sort(["acc", "y"], maintain_order=True).with_columns(
        pl.col("t_in", "t_out", "acc_in", "acc_out").backward_fill()
    )
    new_acc = (pl.col("acc") != pl.col("acc").shift(1)).fill_null(True)
    b = b.filter(new_acc | (pl.col("y") != pl.col("y").shift(1)))  # first row of each tie group
    x = pl.when(new_acc).then(0.0).otherwise(pl.col("y").shift(1))
    return b.with_columns(x.alias("x")).filter(
        (pl.col("acc_out") == pl.col("acc")) & (pl.col("acc_in") == pl.col("acc"))
    ).select("acc", (pl.col("t_out") - pl.col("t_in")).alias("dwell"), (pl.col("y") - pl.col("x")).alias("w"))


def _weighted_quantiles(pieces: pl.DataFrame, qs: dict[str, float]) -> pl.DataFrame:
    """Per ``acc``: smallest ``dwell`` with cumulative ``w`` >= q * total, for each named q.

    Pieces with equal dwell need no merging: the first row whose running sum reaches the level has
    the same dwell as when equal dwells are summed first.
    """
    s = pieces.sort(pl.col("acc").cast(pl.Int64) * (1 << TIME_BITS) + pl.col("dwell"))
    s = s.with_columns(pl.col("w").cum_sum().over("acc").alias("cw"), pl.col("w").sum().over("acc").alias("tot"))
    return s.group_by("acc").agg(
        (pl.col("dwell").filter(pl.col("cw") >= q * pl.col("tot")).first() / 3600.0).alias(name)
        for name, q in qs.items()
    )


def _split_signature(st: pl.DataFrame, inb: pl.DataFrame, low: float, high: float, horizon: int) -> pl.DataFrame:
    """Per account: count and value of inbounds split into >= 2 consecutive outbounds (see module doc)."""
    outs = st.filter(pl.col("kind") == 1).select("acc", "t", "k", "amount", pl.col("cout").alias("cum")).with_row_index("gi")
    outs = outs.with_columns(pl.col("gi").cast(pl.Int64))
    # the first outbound at or after each inbound's time (equal times count as after)
    q = inb.select("acc", "t", "k", "amount").join_asof(
        outs.select("k", pl.col("gi").alias("g1"), pl.col("acc").alias("acc1"), (pl.col("cum") - pl.col("amount")).alias("base")),
        on="k", strategy="forward", check_sortedness=False,
    ).filter(pl.col("acc1") == pl.col("acc"))
    q = q.with_columns((pl.col("base") + low * pl.col("amount") * (1 - REL_TOL)).alias("need"))
    # the first outbound whose running sum reaches ``need``: sums grow, so one merge finds it
    merged = pl.concat([
        q.select("acc", pl.col("need").alias("v"), pl.lit(0, pl.Int8).alias("typ"), pl.col("g1"), pl.col("t"),
                 pl.col("amount"), pl.col("base"), pl.lit(None, pl.Int64).alias("gj"), pl.lit(None, pl.UInt32).alias("accj")),
        outs.select("acc", pl.col("cum").alias("v"), pl.lit(1, pl.Int8).alias("typ"), pl.lit(None, pl.Int64).alias("g1"),
                    pl.lit(None, pl.Int64).alias("t"), pl.lit(None, pl.Float64).alias("amount"),
                    pl.lit(None, pl.Float64).alias("base"), pl.col("gi").alias("gj"), pl.col("acc").alias("accj")),
    ]).sort(["acc", "v", "typ"]).with_columns(pl.col("gj", "accj").backward_fill())
    found = merged.filter((pl.col("typ") == 0) & (pl.col("accj") == pl.col("acc")))
    found = found.with_columns(pl.max_horizontal("gj", pl.col("g1") + 1).alias("gi"))
    found = found.join(outs.select("gi", pl.col("acc").alias("accx"), pl.col("t").alias("tx"), pl.col("cum").alias("cx")),
                       on="gi", how="inner")
    hit = (
        (pl.col("accx") == pl.col("acc"))
        & (pl.col("tx") <= pl.col("t") + horizon)
        & ((pl.col("cx") - pl.col("base")) <= high * pl.col("amount") * (1 + REL_TOL))
    )
    return found.filter(hit).group_by("acc").agg(
        pl.len().cast(pl.Int64).alias("split_count"), pl.col("amount").sort().sum().alias("split_value")
    )
