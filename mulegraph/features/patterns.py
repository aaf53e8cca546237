"""Laundering typologies on the transfer graph: cycles, scatter-gather, gather-scatter, chains.

Every pattern is made of *time-respecting* hops: a transfer ``u -> v`` at ``t1`` followed by a
transfer ``v -> w`` at ``t2`` with ``t1 <= t2 <= t1 + W`` (``W`` = ``FeatureConfig.cycle_window``,
7 days by default, used for every pattern here). An equal timestamp counts as possibly after,
because some exports carry whole days only; the transfer order (``row``) is only a tie-break that
keeps each cycle counted once.

Features (per account; ``null`` for hubs and busy accounts, ``0`` for an account in no pattern):

* ``cycle_count``, ``cycle_value``: simple cycles of 2..``max_cycle_length`` distinct accounts
  through the account whose transfers are non-decreasing in time, all within ``W`` of the first
  one. A cycle is a sequence of distinct transfers, so parallel transfers on one pair give separate
  cycles. Each cycle is counted once: it is anchored at its first transfer (the one after the only
  drop in time around the cycle; when all its times are equal, the one with the lowest row). The
  value of a cycle is its smallest transfer amount (what went all the way round);
  ``cycle_count_consistent`` counts cycles in which every hop carries between
  ``pattern_keep_low`` and 1.0 times the previous hop's amount (money passed on less a fee), and
  ``cycle_long_count`` those through three or more accounts (two-account cycles are common among
  people who pay each other back).
* ``sg_count`` (as the source), ``sg_mid_count`` (as an intermediary), ``sg_target_count`` (as
  the target), ``sg_role_count`` (their sum): scatter-gather, a pair ``(s, d)`` joined by
  time-respecting 2-hop paths ``s -> m -> d`` (each within ``W``) through at least two distinct
  intermediaries ``m``. Counts are numbers of such pairs.
* ``gs_count``: gather-scatter, the number of distinct (sender, receiver) pairs joined through the
  account by time-respecting hops within ``W``, when there are at least two distinct senders and
  two distinct receivers (``0`` otherwise).
* ``chain_hops``: pass-through hops through the account that forward between ``chain_keep_low``
  and 1.0 times the inbound amount; ``chain_depth``: the number of transfers in the longest
  time-respecting chain of such hops that passes through the account (upstream plus downstream,
  each side counted up to ``chain_cap`` transfers; ``0`` when the account makes no such hop).

Hubs (``Prepared.accounts.is_hub``): every transfer touching a hub is left out of pattern search,
so a hub is never a node of a pattern. A non-hub account through which more than
``pattern_max_paths`` 2-hop pairs would be formed (counted per time bucket before any join, see
:func:`busy_accounts`) is treated the same way and also gets ``null``: the 2-path work per account
is bounded, so no single account makes the search quadratic. The 2-hop path table is built by one equi-join on
(middle account, time bucket of width ``W``), which never forms the pairs that are more than one
bucket apart. 3- and 4-cycles close the 2-path table with one more join on both ends (meet in the
middle); 5-cycles join a 3-hop prefix with a 2-hop suffix, partitioned by start account so memory
stays bounded.

Shards: every account of a cycle (<= 5 accounts), scatter-gather or gather-scatter through an
account lies within two undirected non-hub hops of it, and a chain counted up to ``chain_cap``
transfers on each side within ``chain_cap`` hops. A shard therefore gives the whole-graph values
when it is computed from the transfers touching its accounts and their non-hub halo of
``max(2, chain_cap - 1)`` hops (:func:`mulegraph.graph.shard_with_halo`), with the hub list decided
on the whole graph and passed in; outputs are then kept for the shard's own accounts. A test checks
this equality.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from mulegraph.core.errors import FeatureError
from mulegraph.core.window import parse_duration
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec

__all__ = ["compute", "pattern_edges", "busy_accounts", "two_paths", "enumerate_cycles", "chain_depths", "FEATURES", "SPECS"]

FAMILY = "patterns"

FEATURES = [
    FeatureSpec("cycle_count", FAMILY, "time-respecting cycles (2-5 accounts, within the cycle window) through the account", "count", 1,
                "part of {value:.0f} time-respecting cycles of transfers", evidence="pattern"),
    FeatureSpec("cycle_value", FAMILY, "sum over those cycles of the smallest transfer amount in the cycle", "currency", 1,
                "{value:,.0f} moved round time-respecting cycles", evidence="pattern"),
    FeatureSpec("cycle_count_consistent", FAMILY, "cycles in which each hop passes on 80-100% of the previous amount", "count", 1,
                "part of {value:.0f} cycles that pass the same money on, less a fee", evidence="pattern"),
    FeatureSpec("cycle_long_count", FAMILY, "time-respecting cycles of 3 or more accounts through the account", "count", 1,
                "part of {value:.0f} time-respecting cycles through three or more accounts", evidence="pattern"),
    FeatureSpec("sg_count", FAMILY, "scatter-gather pairs where the account is the source (>=2 intermediaries to one target)", "count", 1,
                "scatters money through intermediaries that gather it again ({value:.0f} times)", evidence="pattern"),
    FeatureSpec("sg_mid_count", FAMILY, "scatter-gather pairs where the account is an intermediary", "count", 1,
                "intermediary in {value:.0f} scatter-gather structures", evidence="pattern"),
    FeatureSpec("sg_target_count", FAMILY, "scatter-gather pairs where the account is the target", "count", 1,
                "gathers money that was scattered through intermediaries ({value:.0f} times)", evidence="pattern"),
    FeatureSpec("sg_role_count", FAMILY, "scatter-gather pairs the account takes part in, any role", "count", 1,
                "takes part in {value:.0f} scatter-gather structures", evidence="pattern"),
    FeatureSpec("gs_count", FAMILY, "gather-scatter: distinct sender-receiver pairs joined through the account within the window", "count", 1,
                "gathers from several senders and scatters to several receivers ({value:.0f} pairs)", evidence="pattern"),
    FeatureSpec("chain_hops", FAMILY, "pass-through hops (forwarding 70-100% of an inbound within the window)", "count", 1,
                "forwards most of an inbound transfer {value:.0f} times", evidence="pattern"),
    FeatureSpec("chain_depth", FAMILY, "transfers in the longest time-respecting pass-through chain through the account", "count", 1,
                "sits in a pass-through chain of {value:.0f} transfers", evidence="pattern"),
]
SPECS: tuple[FeatureSpec, ...] = tuple(FEATURES)

_U32 = pl.UInt32


def _pair(x: str, y: str) -> pl.Expr:
    """Two indices (accounts or time buckets, below 2**32) packed into one UInt64 key: joins and
    group-bys on one integer key are faster."""
    return pl.col(x).cast(pl.UInt64) * (1 << 32) + pl.col(y).cast(pl.UInt64)


def pattern_edges(p: Prepared) -> pl.DataFrame:
    """Transfers used for graph work: no hub at either end, no self-transfer.

    Columns ``r`` (row), ``s``, ``d`` (account indices), ``t`` (seconds since the earliest transfer)
    and ``m`` (amount). Kept in ``p.extra["pattern_edges"]`` so that the network family reuses it.
    """
    cached = p.extra.get("pattern_edges")
    if cached is not None:
        return cached
    tx = p.tx
    hub = p.accounts.sort("idx")["is_hub"].to_numpy()
    src, dst = tx["src"].to_numpy(), tx["dst"].to_numpy()
    keep = (src != dst) & ~hub[src] & ~hub[dst]
    t0 = tx["t"].min() if tx.height else 0
    # a window read without hubs and self-transfers (the graph step's) is kept whole: not copied
    e = (tx if keep.all() else tx.filter(pl.Series(keep))).select(
        pl.col("row").cast(_U32).alias("r"),
        pl.col("src").cast(_U32).alias("s"),
        pl.col("dst").cast(_U32).alias("d"),
        (pl.col("t") - t0).alias("t"),
        pl.col("amount").alias("m"),
    )
    p.extra["pattern_edges"] = e
    return e


def busy_accounts(e: pl.DataFrame, w: int, cap: int) -> pl.Series:
    """Accounts through which more than ``cap`` time-bucketed 2-hop pairs would pass.

    For each account, sums over time buckets ``b`` (width ``w``) of outbound(b) x (inbound(b) +
    inbound(b - 1)): exactly the pairs the 2-path join forms before its time filter, so it bounds
    the join's work per account. Computed from counts only.
    """
    if e.height == 0:
        return pl.Series("idx", [], dtype=_U32)
    bucket = (e["t"].to_numpy() // w).astype(np.uint64)
    nb = np.uint64(int(bucket.max()) + 2)
    in_keys, in_n = np.unique(e["d"].to_numpy().astype(np.uint64) * nb + bucket, return_counts=True)
    # inbound in bucket b counts for outbound in b and b + 1
    keys, inv = np.unique(np.concatenate([in_keys, in_keys + np.uint64(1)]), return_inverse=True)
    n_in = np.bincount(inv, weights=np.concatenate([in_n, in_n]).astype(np.float64))
    out_keys, out_n = np.unique(e["s"].to_numpy().astype(np.uint64) * nb + bucket, return_counts=True)
    pos = np.searchsorted(keys, out_keys).clip(max=keys.size - 1)
    matched = keys[pos] == out_keys
    pairs = np.where(matched, n_in[pos], 0.0) * out_n
    acc = (out_keys // nb).astype(np.int64)
    per_acc = np.bincount(acc, weights=pairs)
    return pl.Series("idx", np.flatnonzero(per_acc > cap).astype(np.uint32))


#: the 2-path join takes this many first hops at a time, so that the rows it forms before its
#: time filter (up to twice the output at bank scale) stay bounded whatever the size of the window
TWO_PATH_BLOCK = 2_000_000


def two_paths(e: pl.DataFrame, w: int, block: int | None = None) -> pl.DataFrame:
    """Time-respecting 2-hop paths ``a -> v -> c``: ``t1 <= t2 <= t1 + w`` (``c == a`` included).

    Columns ``r1, a, v, t1, m1, r2, c, t2, m2``. Joined on one integer key made of the middle
    account and the time bucket ``t // w``: a second hop within ``w`` lies in the first hop's
    bucket or the next one, so no pair further apart is ever formed. Transfers into an account
    that never pays out (or out of one never paid) are dropped before the join. The first hops are
    joined ``block`` (default :data:`TWO_PATH_BLOCK`) at a time, for the first hop's bucket, then
    for the next one; the rows come in that order (the first hops' order within each, then the
    second hops'), whatever the block.
    """
    block = max(1, block or TWO_PATH_BLOCK)
    payers = e.select(pl.col("s").unique())["s"].implode()
    payees = e.select(pl.col("d").unique())["d"].implode()
    first = e.filter(pl.col("d").is_in(payers)).select(
        pl.col("r").alias("r1"), pl.col("s").alias("a"), pl.col("d").alias("v"), pl.col("t").alias("t1"),
        pl.col("m").alias("m1"), (pl.col("t") // w).alias("b"),
    )
    second = e.filter(pl.col("s").is_in(payees)).select(
        pl.col("r").alias("r2"), pl.col("d").alias("c"), pl.col("t").alias("t2"), pl.col("m").alias("m2"),
        pl.col("s").alias("v"), (pl.col("t") // w).alias("b"),
    ).select(pl.exclude("v", "b"), _pair("v", "b").alias("k"))
    parts = []
    for shift in (0, 1):
        for lo in range(0, max(first.height, 1), block):
            left = first.slice(lo, block).with_columns(pl.col("b") + shift).with_columns(k=_pair("v", "b"))
            parts.append(
                left.join(second, on="k", maintain_order="left_right")
                .filter((pl.col("t2") >= pl.col("t1")) & (pl.col("t2") <= pl.col("t1") + w))
                .select("r1", "a", "v", "t1", "m1", "r2", "c", "t2", "m2")
            )
    return pl.concat(parts, rechunk=False)


def _anchored(t_first: str, t_last: str, r_first: str, others: list[str]) -> pl.Expr:
    """The cycle is counted from this start: its times rise somewhere, or all are equal and the
    start has the lowest row."""
    return (pl.col(t_last) > pl.col(t_first)) | (pl.col(r_first) < pl.min_horizontal(*others))


def _consistent(amounts: list[str], low: float) -> pl.Expr:
    cond = pl.lit(True)
    for prev, nxt in zip(amounts, amounts[1:]):
        cond = cond & (pl.col(nxt) >= low * pl.col(prev)) & (pl.col(nxt) <= pl.col(prev))
    return cond


def _cycle_rows(df: pl.DataFrame, nodes: list[str], amounts: list[str], low: float) -> pl.DataFrame:
    """One row per (cycle, account): ``node``, ``value`` (smallest amount), ``consistent``, ``k``."""
    if df.height == 0:
        return pl.DataFrame(schema={"node": _U32, "value": pl.Float64, "consistent": pl.Boolean, "k": pl.Int8})
    cyc = df.select(
        *nodes,
        pl.min_horizontal(*amounts).alias("value"),
        _consistent(amounts, low).alias("consistent"),
        pl.lit(len(nodes), pl.Int8).alias("k"),
    )
    return pl.concat([cyc.select(pl.col(n).alias("node"), "value", "consistent", "k") for n in nodes])


def enumerate_cycles(e: pl.DataFrame, p2: pl.DataFrame, w: int, max_len: int, low: float,
                     max_rows: int = 20_000_000, *, p3: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per-account cycle totals: ``idx``, ``cycle_count``, ``cycle_value``, ``cycle_count_consistent``,
    ``cycle_long_count``.

    ``e`` are the pattern edges and ``p2`` their 2-hop paths (:func:`two_paths`). ``max_rows``
    bounds the intermediate 3-hop table of the 5-cycle step (it is split by start account).
    ``p3``: the paths of ``p2`` with ``c != a``, when the caller has them (``p2`` then needs only
    the others).
    """
    parts: list[pl.DataFrame] = []
    end = pl.col("t1") + w
    if max_len >= 2:
        c2 = p2.filter((pl.col("c") == pl.col("a")) & _anchored("t1", "t2", "r1", ["r2"]))
        parts.append(_cycle_rows(c2, ["a", "v"], ["m1", "m2"], low))
    if p3 is None:
        p3 = p2.filter(pl.col("c") != pl.col("a"))
    if max_len >= 3:
        closing = e.select(pl.col("r").alias("r3"), pl.col("s").alias("c"), pl.col("d").alias("a"),
                           pl.col("t").alias("t3"), pl.col("m").alias("m3"))
        c3 = p3.with_columns(_pair("c", "a").alias("k")).join(
            closing.select(_pair("c", "a").alias("k"), "r3", "t3", "m3"), on="k"
        ).filter(
            (pl.col("t3") >= pl.col("t2")) & (pl.col("t3") <= end) & _anchored("t1", "t3", "r1", ["r2", "r3"])
        )
        parts.append(_cycle_rows(c3, ["a", "v", "c"], ["m1", "m2", "m3"], low))
    if max_len >= 4:
        back = p3.select(pl.col("r1").alias("r3"), pl.col("a").alias("c"), pl.col("v").alias("x"),
                         pl.col("c").alias("a"), pl.col("t1").alias("t3"), pl.col("m1").alias("m3"),
                         pl.col("r2").alias("r4"), pl.col("t2").alias("t4"), pl.col("m2").alias("m4"))
        c4 = p3.with_columns(_pair("c", "a").alias("k")).join(
            back.select(_pair("c", "a").alias("k"), pl.exclude("c", "a")), on="k"
        ).filter(
            (pl.col("t3") >= pl.col("t2")) & (pl.col("t4") <= end) & (pl.col("x") != pl.col("v"))
            & _anchored("t1", "t4", "r1", ["r2", "r3", "r4"])
        )
        parts.append(_cycle_rows(c4, ["a", "v", "c", "x"], ["m1", "m2", "m3", "m4"], low))
    if max_len >= 5:
        parts.extend(_five_cycles(e, p3, w, low, max_rows))
    rows = pl.concat(parts)
    return rows.group_by("node").agg(
        pl.len().cast(pl.Int64).alias("cycle_count"),
        pl.col("value").sum().alias("cycle_value"),
        pl.col("consistent").sum().cast(pl.Int64).alias("cycle_count_consistent"),
        (pl.col("k") >= 3).sum().cast(pl.Int64).alias("cycle_long_count"),
    ).rename({"node": "idx"})


def _five_cycles(e: pl.DataFrame, p3: pl.DataFrame, w: int, low: float, max_rows: int) -> list[pl.DataFrame]:
    """5-cycles a -> v -> c -> d -> x -> a: a 3-hop prefix joined with a 2-hop suffix on (d, a)."""
    hop = e.select(pl.col("r").alias("r3"), pl.col("s").alias("c"), pl.col("d").alias("d"),
                   pl.col("t").alias("t3"), pl.col("m").alias("m3"))
    back = p3.select(pl.col("r1").alias("r4"), pl.col("a").alias("d"), pl.col("v").alias("x"),
                     pl.col("c").alias("a"), pl.col("t1").alias("t4"), pl.col("m1").alias("m4"),
                     pl.col("r2").alias("r5"), pl.col("t2").alias("t5"), pl.col("m2").alias("m5"))
    # only prefixes whose start is the end of some suffix, and hops out of a suffix start, can close
    prefix = p3.join(back.select("a").unique(), on="a", how="semi")
    hop = hop.join(back.select(pl.col("d")).unique(), on="d", how="semi")
    est = (
        prefix.group_by("c").len().join(hop.group_by("c").len(), on="c").select(
            (pl.col("len").cast(pl.Int64) * pl.col("len_right").cast(pl.Int64)).sum()
        ).item()
        or 0
    )
    k = max(1, math.ceil(est / max_rows))
    end = pl.col("t1") + w
    out = []
    for part in range(k):
        pre = prefix if k == 1 else prefix.filter(pl.col("a") % k == part)
        bk = back if k == 1 else back.filter(pl.col("a") % k == part)
        q = pre.join(hop, on="c").filter(
            (pl.col("t3") >= pl.col("t2")) & (pl.col("t3") <= end) & (pl.col("d") != pl.col("a"))
            & (pl.col("d") != pl.col("v"))
        )
        c5 = q.with_columns(_pair("d", "a").alias("k")).join(
            bk.select(_pair("d", "a").alias("k"), pl.exclude("d", "a")), on="k"
        ).filter(
            (pl.col("t4") >= pl.col("t3")) & (pl.col("t5") <= end) & (pl.col("x") != pl.col("v"))
            & (pl.col("x") != pl.col("c")) & _anchored("t1", "t5", "r1", ["r2", "r3", "r4", "r5"])
        )
        out.append(_cycle_rows(c5, ["a", "v", "c", "d", "x"], ["m1", "m2", "m3", "m4", "m5"], low))
    return out


#: the distinct (sender, middle, receiver) triples of the 2-hop paths are found this many paths
#: at a time (the paths of a share of the middle accounts), so that the hash tables stay bounded
SG_BLOCK = 2_000_000


def _scatter_gather(p3: pl.DataFrame, block: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scatter-gather counts per role, and gather-scatter counts, from the 2-hop paths (a != c).

    The distinct triples and the gather-scatter counts, which each concern one middle account,
    are found for the middle accounts ``v`` with ``v % k == j``, one ``j`` at a time (``k`` such
    that a part holds about ``block``, default :data:`SG_BLOCK`, paths): the same counts whatever
    the block.
    """
    k = max(1, -(-p3.height // max(1, block or SG_BLOCK)))
    parts, gs_parts = [], []
    for j in range(k):
        paths = p3 if k == 1 else p3.filter(pl.col("v") % k == j)
        part = paths.select(_pair("a", "c").alias("ac"), "v").unique()
        del paths
        gs_parts.append(
            part.with_columns((pl.col("ac") // (1 << 32)).alias("a"), (pl.col("ac") % (1 << 32)).alias("c"))
            .group_by("v")
            .agg(pl.len().alias("n"), pl.col("a").n_unique().alias("ns"), pl.col("c").n_unique().alias("nr"))
            .filter((pl.col("ns") >= 2) & (pl.col("nr") >= 2))
            .select(pl.col("v").alias("idx"), pl.col("n").cast(pl.Int64).alias("gs_count"))
        )
        parts.append(part)
    triples = pl.concat(parts, rechunk=False)
    del parts
    gs = pl.concat(gs_parts)
    pairs = triples.group_by("ac").agg(pl.len().alias("n_mid")).filter(pl.col("n_mid") >= 2).select(
        "ac", (pl.col("ac") // (1 << 32)).cast(_U32).alias("a"), (pl.col("ac") % (1 << 32)).cast(_U32).alias("c")
    )
    src = pairs.group_by("a").agg(pl.len().cast(pl.Int64).alias("sg_count")).rename({"a": "idx"})
    tgt = pairs.group_by("c").agg(pl.len().cast(pl.Int64).alias("sg_target_count")).rename({"c": "idx"})
    mid = (
        triples.join(pairs.select("ac"), on="ac", how="semi")
        .group_by("v").agg(pl.len().cast(pl.Int64).alias("sg_mid_count")).rename({"v": "idx"})
    )
    sg = src.join(tgt, on="idx", how="full", coalesce=True).join(mid, on="idx", how="full", coalesce=True)
    return sg, gs


def chain_depths(hops: pl.DataFrame, cap: int) -> pl.DataFrame:
    """Per middle account ``v``: ``chain_hops`` and ``chain_depth`` from pass-through hops.

    ``hops`` has ``r1`` (inbound transfer), ``v`` and ``r2`` (outbound transfer). ``up(e)`` is the
    length in transfers of the longest chain of hops ending with transfer ``e`` and ``down(e)`` the
    longest starting with it, both capped at ``cap``; computed by ``cap - 1`` rounds of relaxation
    (round ``k`` knows every chain of up to ``k + 1`` transfers). A chain may revisit an account
    (money can go round), which the cap keeps finite.
    """
    if hops.height == 0:
        return pl.DataFrame(schema={"idx": _U32, "chain_hops": pl.Int64, "chain_depth": pl.Int64})
    edges = hops.select("r1", "r2").unique()
    up = pl.concat([edges.select(pl.col("r1").alias("r")), edges.select(pl.col("r2").alias("r"))]).unique()
    up = up.with_columns(pl.lit(1, pl.Int64).alias("n"))
    down = up.clone()

    def relax(lengths: pl.DataFrame, frm: str, to: str) -> pl.DataFrame:
        for _ in range(cap - 1):
            best = (
                edges.join(lengths.rename({"r": frm}), on=frm)
                .group_by(to).agg((pl.col("n").max() + 1).alias("cand"))
                .rename({to: "r"})
            )
            new = lengths.join(best, on="r", how="left").select(
                "r", pl.max_horizontal("n", pl.col("cand").clip(upper_bound=cap)).alias("n")
            )
            if new["n"].sum() == lengths["n"].sum():  # lengths never shrink: equal sums, no change
                break
            lengths = new
        return lengths

    up = relax(up, "r1", "r2")
    down = relax(down, "r2", "r1")
    return (
        hops.join(up.rename({"r": "r1", "n": "up"}), on="r1")
        .join(down.rename({"r": "r2", "n": "down"}), on="r2")
        .group_by("v")
        .agg(pl.len().cast(pl.Int64).alias("chain_hops"), (pl.col("up") + pl.col("down")).max().cast(pl.Int64).alias("chain_depth"))
        .rename({"v": "idx"})
    )


def compute(p: Prepared) -> pl.DataFrame:
    """Pattern features for every account (see the module docstring)."""
    cfg = p.config
    w = int(parse_duration(cfg.cycle_window, name="cycle_window").total_seconds())
    if not 2 <= cfg.max_cycle_length <= 5:
        raise FeatureError(f"max_cycle_length must be between 2 and 5. Got {cfg.max_cycle_length} instead.")
    if cfg.chain_cap < 1 or cfg.pattern_max_paths < 1:
        raise FeatureError("chain_cap and pattern_max_paths must be positive; fix the [features] section.")
    if not (0 < cfg.pattern_keep_low <= 1 and 0 < cfg.chain_keep_low <= 1):
        raise FeatureError("pattern_keep_low and chain_keep_low must be shares in (0, 1]; fix the [features] section.")
    e = pattern_edges(p)
    busy = busy_accounts(e, w, cfg.pattern_max_paths)
    if busy.len():
        b = busy.implode()
        e = e.filter(~pl.col("s").is_in(b) & ~pl.col("d").is_in(b))
    p2 = two_paths(e, w)
    # the paths back to their start (2-cycles) and the others, without keeping both and the whole
    p3 = p2.filter(pl.col("c") != pl.col("a"))
    p2 = p2.filter(pl.col("c") == pl.col("a"))
    cycles = enumerate_cycles(e, p2, w, cfg.max_cycle_length, cfg.pattern_keep_low, p3=p3)
    del p2
    sg, gs = _scatter_gather(p3)
    hops = p3.filter((pl.col("m2") >= cfg.chain_keep_low * pl.col("m1")) & (pl.col("m2") <= pl.col("m1"))).select("r1", "v", "r2")
    chains = chain_depths(hops, cfg.chain_cap)
    out = p.accounts.select("idx", "is_hub")
    for part in (cycles, sg, gs, chains):
        out = out.join(part.with_columns(pl.col("idx").cast(_U32)), on="idx", how="left")
    names = [s.name for s in FEATURES]
    out = out.with_columns(
        (pl.col("sg_count").fill_null(0) + pl.col("sg_mid_count").fill_null(0) + pl.col("sg_target_count").fill_null(0)).alias("sg_role_count")
    )
    zero = {"cycle_value": 0.0}
    out = out.with_columns(pl.col("is_hub") | pl.col("idx").is_in(busy.implode()))
    return out.select(
        "idx",
        *[
            pl.when(pl.col("is_hub")).then(None).otherwise(pl.col(n).fill_null(zero.get(n, 0))).alias(n)
            for n in names
        ],
    )
