"""Fan-in and fan-out: many distinct counterparties in a short time, first-time payers, concentration.

``fanin_max_<W>`` / ``fanout_max_<W>`` is the largest number of distinct senders / payees among the
account's inbound / outbound transfers that fall in any window ``[s, s + W)``: two transfers at
times ``t1 <= t2`` can share a window when ``t2 - t1 < W``. It is computed exactly by an interval
sweep: a counterparty paid at time ``t`` counts for every window start in ``(t - W, t]``; those
intervals are merged per (account, counterparty), and a running sum of +1 at each merged interval's
start and -1 after its end gives, at its maximum, the answer. The work is sorting, so a hub costs
``O(n log n)`` in its number of transfers. Window lengths come from ``FeatureConfig.fan_windows``.

``first_time_in_share`` is the share of inbound value from senders that had not paid the account
before that transfer (within the window of transfers given). Equal timestamps count as possibly
after: every transfer at a sender's first timestamp is a first-time payment.

``out_hhi`` is the Herfindahl index of outbound value over payees (1 = all to one payee).

All values depend only on the transfers touching the account: shards combine by concatenation.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mulegraph.core.window import parse_duration
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.volume import account_events, time_key

__all__ = ["compute", "window_specs", "max_distinct_in_window", "pair_order", "SPECS"]


def window_specs(windows) -> list[FeatureSpec]:
    """The specs of the windowed fan features for the given window texts (e.g. ``"24h"``)."""
    out = []
    for w in windows:
        out.append(FeatureSpec(
            f"fanin_max_{w}", "fan", f"Most distinct senders paying the account within any {w}.", "count", 1,
            f"{{value:.0f}} distinct senders paid in within {w}", evidence="busiest_in", horizon=w,
        ))
        out.append(FeatureSpec(
            f"fanout_max_{w}", "fan", f"Most distinct payees paid by the account within any {w}.", "count", 1,
            f"paid {{value:.0f}} distinct payees within {w}", evidence="busiest_out", horizon=w,
        ))
    return out


#: the default windows' specs; other windows of ``FeatureConfig.fan_windows`` are registered by
#: :func:`mulegraph.features.registry.register_windows`
SPECS: tuple[FeatureSpec, ...] = (
    *window_specs(("24h", "72h")),
    FeatureSpec(
        "first_time_in_share", "fan",
        "Share of inbound value from senders that never paid the account before.", "share", 1,
        "{value:.0%} of received value came from first-time senders", evidence="first_in",
    ),
    FeatureSpec(
        "out_hhi", "fan", "Herfindahl concentration of outbound value over payees (1 = one payee).", "ratio", 0,
        evidence="outbound",
    ),
)


def max_distinct_in_window(by_pair: pl.DataFrame, widths: dict[str, int]) -> dict[str, pl.DataFrame]:
    """Per ``acc``: most distinct ``cp`` among rows whose ``t`` lie in any ``[s, s + width)``.

    ``by_pair`` is :func:`pair_order` of events sorted by ``acc`` then ``t``. Returns, per name in
    ``widths``, a frame of ``acc`` and ``n`` (Int64).

    One stable sort by (account, counterparty) finds, for each width, where a counterparty's run
    of transfers (gaps < width) starts and ends. A run from ``first`` to ``last`` covers the window
    starts ``[first - width + 1, last + 1)``. Back in time order the run starts and the run ends
    are each already sorted, so one linear merge gives the +1/-1 marks of an account in order
    (ends before starts at one position), and their running sum peaks at the answer.
    """
    same_prev = (pl.col("acc") == pl.col("acc").shift(1)) & (pl.col("cp") == pl.col("cp").shift(1))
    same_next = (pl.col("acc") == pl.col("acc").shift(-1)) & (pl.col("cp") == pl.col("cp").shift(-1))
    flags = by_pair.select(
        "i",
        *[(~(same_prev & ((pl.col("t") - pl.col("t").shift(1)) < w)).fill_null(False)).alias(f"s_{n}")
          for n, w in widths.items()],
        *[(~(same_next & ((pl.col("t").shift(-1) - pl.col("t")) < w)).fill_null(False)).alias(f"e_{n}")
          for n, w in widths.items()],
    )
    order = flags["i"].to_numpy()
    cols = {}
    for c, src in (("acc", by_pair), ("t", by_pair), *((c, flags) for c in flags.columns[1:])):
        vals = src[c].to_numpy()
        back = np.empty_like(vals)
        back[order] = vals  # back to time order: a scatter, not a sort
        cols[c] = back
    timeline = pl.DataFrame(cols)
    out = {}
    t_min = int(by_pair["t"].min() or 0) - max(widths.values(), default=0)
    for n, w in widths.items():
        starts = timeline.filter(f"s_{n}").select("acc", (time_key("acc", pl.col("t") - w + 1, t_min) * 2 + 1).alias("key"))
        ends = timeline.filter(f"e_{n}").select("acc", (time_key("acc", pl.col("t") + 1, t_min) * 2).alias("key"))
        marks = starts.merge_sorted(ends, "key")
        # every account's marks sum to zero, so a running sum over all accounts is each account's own
        open_ = (pl.col("key") % 2 * 2 - 1).cast(pl.Int32).cum_sum()
        out[n] = marks.select("acc", open_.alias("open")).group_by("acc").agg(
            pl.col("open").max().cast(pl.Int64).alias("n")
        )
    return out


def pair_order(ev: pl.DataFrame) -> pl.DataFrame:
    """``i`` (position in ``ev``), ``acc``, ``cp``, ``t``, ``amount`` sorted by account, counterparty, time.

    ``ev`` must be sorted by account then time: a stable sort on one (account, counterparty) key
    then keeps time order within each pair.
    """
    return (
        ev.select("acc", "cp", "t", "amount")
        .with_row_index("i")
        .sort(pl.col("acc").cast(pl.UInt64) * (1 << 32) + pl.col("cp"), maintain_order=True)
    )


def compute(p: Prepared) -> pl.DataFrame:
    """Windowed fan-in/fan-out, first-time sender share and outbound concentration."""
    ev = account_events(p)
    windows = tuple(p.config.fan_windows)
    out = ev.select(pl.col("acc").unique())
    inb = ev.filter(pl.col("kind") == 0)
    outb = ev.filter(pl.col("kind") == 1)
    widths = {w: int(parse_duration(w, name="fan_windows").total_seconds()) for w in windows}
    inb_pairs, outb_pairs = pair_order(inb), pair_order(outb)
    fin, fout = max_distinct_in_window(inb_pairs, widths), max_distinct_in_window(outb_pairs, widths)
    for w in windows:
        out = out.join(fin[w].rename({"n": f"fanin_max_{w}"}), on="acc", how="left")
        out = out.join(fout[w].rename({"n": f"fanout_max_{w}"}), on="acc", how="left")
        out = out.with_columns(pl.col(f"fanin_max_{w}", f"fanout_max_{w}").fill_null(0))
    new_pair = ((pl.col("acc") != pl.col("acc").shift(1)) | (pl.col("cp") != pl.col("cp").shift(1))).fill_null(True)
    pair_first_t = pl.when(new_pair).then(pl.col("t")).forward_fill()
    first = (
        inb_pairs.with_columns((pl.col("t") == pair_first_t).alias("first"))
        .group_by("acc")
        .agg((pl.col("amount").filter(pl.col("first")).sort().sum() / pl.col("amount").sort().sum()).alias("first_time_in_share"))
    )
    hhi = (
        outb_pairs.group_by("acc", "cp")
        .agg(pl.col("amount").sort().sum().alias("v"))
        .sort("acc", "cp")  # fixed summation orders: the same bits on every run and in every shard
        .group_by("acc", maintain_order=True)
        .agg(((pl.col("v") / pl.col("v").sum()) ** 2).sum().alias("out_hhi"))
    )
    out = out.join(first, on="acc", how="left").join(hhi, on="acc", how="left")
    cols = [c for w in windows for c in (f"fanin_max_{w}", f"fanout_max_{w}")]
    return out.select(pl.col("acc").alias("idx"), *cols, "first_time_in_share", "out_hhi")
