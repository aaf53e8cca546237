"""Closeness to known mules: guilt by association, computed without self-leakage.

These features need a set of *known* mule accounts (training labels, confirmed decisions). They are
not part of :func:`mulegraph.features.compute_features`: the model computes them out-of-fold for
training (each account's features come from the labels of the other folds only) and from all known
labels at scoring time (see :mod:`mulegraph.scoring.training`).

The graph is the aggregated account graph with every edge that touches a hub removed (hubs are
settlement and external pseudo-accounts; closeness through them means nothing) and self-transfers
dropped. An account's own label never reaches its own features:

* counts and values only look at *other* accounts (a self-transfer is not an edge);
* two-hop counts only count known mules other than the account itself, so a path a-b-a does not
  count a;
* the hop distance is to the nearest known mule other than the account;
* siblings, co-payers, "synced" contacts and relays (see :data:`FEATURES`) count known mules
  other than the account, and the relay share leaves the account out of both its counts;
* personalised PageRank (over all relationships, and over one-off ones: pairs with a single
  transfer, which is what most laundering hops look like): accounts are split into
  ``ppr_groups`` groups by a stable hash of their id and an account's value comes from a walk that
  restarts only at the known mules outside its own group (for out-of-fold training the groups are
  the folds, and all of them share one pass: :func:`ppr_features`).

Flipping one account's label therefore changes none of its own features (a test checks this).
Hub accounts get zeros (and the largest hop distance): they are never expanded.

Shards: the one-hop features need only the transfers touching the account; two-hop, sibling,
co-payer and synced features need those of its hub-free neighbours too (a one-hop halo); hop
distance and PageRank are graph-wide and run on the aggregated hub-free pair graph (one row per
account pair, small next to the transfers), which shards combine by concatenating their pairs.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from mulegraph.features.pairs import fixed_sum, non_hub_pairs, pairs_with_time, sorted_sums, undirected
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec

__all__ = ["compute", "ppr_features", "closeness_graph", "ClosenessGraph", "PPR_FEATURES", "FEATURES", "FAMILY", "account_groups", "non_hub_pairs", "fixed_sum",
           "SPECS"]

FAMILY = "proximity"

FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("known_mule_in", FAMILY, "distinct known mules that sent money to the account", "count",
                reason="received money from {value:.0f} known mule account(s)"),
    FeatureSpec("known_mule_out", FAMILY, "distinct known mules the account sent money to", "count",
                reason="sent money to {value:.0f} known mule account(s)"),
    FeatureSpec("known_mule_in_value", FAMILY, "value received from known mules", "currency",
                reason="received {value:,.0f} from known mules"),
    FeatureSpec("known_mule_out_value", FAMILY, "value sent to known mules", "currency",
                reason="sent {value:,.0f} to known mules"),
    FeatureSpec("known_mule_in_value_share", FAMILY, "share of inbound value (hubs excluded) that came from known mules", "share",
                reason="{value:.0%} of money received (outside hubs) came from known mules"),
    FeatureSpec("known_mule_out_value_share", FAMILY, "share of outbound value (hubs excluded) that went to known mules", "share",
                reason="{value:.0%} of money sent (outside hubs) went to known mules"),
    FeatureSpec("known_mule_nbr_share", FAMILY, "share of distinct counterparties (hubs excluded) that are known mules", "share",
                reason="{value:.0%} of its counterparties are known mules"),
    FeatureSpec("known_mule_rate", FAMILY, "known mules among counterparties whose label is known (empty if none is)", "share",
                reason="{value:.0%} of its counterparties with a known label are mules"),
    FeatureSpec("known_label_nbrs", FAMILY, "distinct counterparties whose label is known", "count", direction=0),
    FeatureSpec("known_mule_2hop", FAMILY, "distinct known mules two hops away in either direction (hubs excluded)", "count",
                reason="{value:.0f} known mule account(s) two steps away"),
    FeatureSpec("known_mule_2hop_up", FAMILY, "distinct known mules that paid an account which then paid this one", "count",
                reason="money from {value:.0f} known mule account(s) reached it through one intermediary"),
    FeatureSpec("known_mule_2hop_down", FAMILY, "distinct known mules paid by an account this one paid", "count",
                reason="its money reached {value:.0f} known mule account(s) through one intermediary"),
    FeatureSpec("known_mule_hops", FAMILY, "hops to the nearest other known mule, either direction (max_hops + 1 if none)", "count",
                direction=-1, reason="{value:.0f} hop(s) from a known mule"),
    FeatureSpec("known_mule_ppr", FAMILY, "personalised PageRank from known mules (1 = uniform)", "score",
                reason="closeness to known mules (personalised PageRank) of {value:.1f}x the average"),
    FeatureSpec("known_mule_sib_oneoff", FAMILY,
                "distinct known mules paid by an account that also paid this one, each by a single transfer (fan-out siblings)",
                "count", reason="{value:.0f} known mule account(s) were paid once by the same payer"),
    FeatureSpec("known_mule_copay_oneoff", FAMILY,
                "distinct known mules that paid an account this one also paid, each by a single transfer (fan-in co-payers)",
                "count", reason="{value:.0f} known mule account(s) paid the same payee once"),
    FeatureSpec("known_mule_synced", FAMILY,
                "distinct known mules paid or paying once whose own one-off transfers with other known mules "
                "fall within sync_window of that transfer", "count",
                reason="a single transfer each with {value:.0f} known mule account(s) while they moved money among known mules"),
    FeatureSpec("known_mule_relay_synced", FAMILY,
                "distinct known mules two one-off transfers away (through a non-hub account b) whose transfer with b "
                "falls within sync_window of the account's transfer with b", "count",
                reason="one-off payments through the same counterparty as {value:.0f} known mule account(s), within days of each other"),
    FeatureSpec("known_mule_relay_share", FAMILY,
                "highest share, over the account's one-off counterparties b, of b's other one-off counterparties "
                "within sync_window of the account's transfer that are known mules", "share",
                reason="{value:.0%} of the one-off contacts its counterparty had within days of it are known mules"),
    FeatureSpec("known_mule_oneoff", FAMILY, "distinct known mules with exactly one transfer between them and the account", "count",
                reason="a single transfer each with {value:.0f} known mule account(s)"),
    FeatureSpec("known_mule_ppr_oneoff", FAMILY,
                "personalised PageRank from known mules over one-off relationships only (pairs with one transfer; 1 = uniform)",
                "score", reason="closeness to known mules through one-off payments of {value:.1f}x the average"),
)
SPECS: tuple[FeatureSpec, ...] = FEATURES

#: the hop-distance search expands about this many links at a time (:func:`_hops`)
HOPS_BLOCK = 4_000_000

#: the two-hop count builds about this many paths at a time (:func:`_two_hop_counts`)
TWO_HOP_BLOCK = 4_000_000

#: the relay share reads the sorted one-off ends this many at a time (:func:`_relay_share`)
RELAY_BLOCK = 2_000_000

#: the graph-wide PageRank features (see :func:`ppr_features`)
PPR_FEATURES: tuple[str, ...] = ("known_mule_ppr", "known_mule_ppr_oneoff")


def account_groups(account_ids: pl.Series, n_groups: int) -> np.ndarray:
    """A stable group number in ``[0, n_groups)`` per account id (CRC-32 of the id)."""
    return np.fromiter((zlib.crc32(a.encode("utf-8")) % n_groups for a in account_ids.to_list()), dtype=np.int64, count=len(account_ids))


@dataclass(frozen=True)
class ClosenessGraph:
    """The label-free parts of the closeness features of one :class:`Prepared` (see :func:`closeness_graph`)."""

    #: hub-free directed pairs ``src, dst, n, value`` (:func:`non_hub_pairs`)
    pairs: pl.DataFrame
    #: both directions of every hub-free pair: ``a, b, n``
    both: pl.DataFrame
    #: both ends of every hub-free pair with a single transfer: ``a, m, t``
    one_ends: pl.DataFrame
    #: label-free tables derived from the frames above, built on first use (:meth:`derived`)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def derived(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``, kept under ``key``: a table that does not depend on the labels, built once
        for all the known sets (training folds) computed on this graph."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


def closeness_graph(p: Prepared) -> ClosenessGraph:
    """Build the label-free graph frames once, for several calls of :func:`compute` on the same ``p``.

    One sort of the hub-free transfers gives the directed pairs (:func:`~mulegraph.features.pairs.pairs_with_time`);
    the unordered pairs, both directions and the one-off ends are built from those, never from the
    transfers again, and every frame comes out in the same order on every run.
    """
    timed = pairs_with_time(p)
    und = undirected(timed)
    pairs = timed.drop("t")
    del timed
    both = pl.concat([und.select(pl.col("u").alias("a"), pl.col("v").alias("b"), "n"), und.select(pl.col("v").alias("a"), pl.col("u").alias("b"), "n")])
    one = und.filter(pl.col("n") == 1)
    del und
    one_ends = pl.concat([one.select(pl.col("u").alias("a"), pl.col("v").alias("m"), "t"), one.select(pl.col("v").alias("a"), pl.col("u").alias("m"), "t")])
    return ClosenessGraph(pairs=pairs, both=both, one_ends=one_ends)


def _count(df: pl.DataFrame, key: str, name: str) -> pl.DataFrame:
    return df.group_by(key).agg(pl.len().cast(pl.Float64).alias(name)).rename({key: "idx"})


def _adjacency(und: pl.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The hub-free links as compressed rows: ``indptr`` (n + 1) and every account's neighbours."""
    a = und["a"].to_numpy().astype(np.int64)
    nb = und["b"].to_numpy().astype(np.int64)[np.argsort(a, kind="stable")]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=indptr[1:])
    return indptr, nb


def _hops(und: pl.DataFrame, seeds: pl.Series, max_hops: int, n: int, block: int | None = None,
          adjacency: tuple[np.ndarray, np.ndarray] | None = None) -> pl.DataFrame:
    """Hop distance to the nearest seed other than the account itself (null if > max_hops).

    Multi-source BFS keeping, per node, the two nearest distinct sources: enough to know the
    nearest source other than any single excluded node (the node itself). A node takes a source
    at most twice in all, so it enters the frontier at most twice: the search reads each link at
    most twice per direction. The frontier is expanded about ``block`` (default
    :data:`HOPS_BLOCK`) links at a time, so memory stays bounded whatever the window; which of
    several sources at the same distance a node keeps does not change any distance.
    ``adjacency``: :func:`_adjacency` of ``und``, when already built.
    """
    indptr, nb = adjacency if adjacency is not None else _adjacency(und, n)
    deg = np.diff(indptr)
    src = np.full((n, 2), -1, dtype=np.int64)  # up to two distinct sources per node, nearest first
    dist = np.full((n, 2), -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    start = seeds.cast(pl.Int64).unique().to_numpy()
    src[start, 0], dist[start, 0], count[start] = start, 0, 1
    f_node, f_src = start, start
    step = max(1, block or HOPS_BLOCK)
    for level in range(1, max_hops + 1):
        if not len(f_node):
            break
        new_node, new_src = [], []
        cum = np.cumsum(deg[f_node])
        part = (cum - 1) // step
        for k in np.unique(part):
            sel = part == k
            u, s_ = f_node[sel], f_src[sel]
            d = deg[u]
            # every link of the chunk's frontier: (neighbour, source)
            rep = np.repeat(np.arange(len(u)), d)
            offs = np.arange(int(d.sum())) - np.repeat(np.cumsum(d) - d, d)
            v = nb[indptr[u][rep] + offs]
            s = s_[rep]
            keep = (count[v] < 2) & (src[v, 0] != s) & (src[v, 1] != s)
            v, s = v[keep], s[keep]
            if not len(v):
                continue
            key = np.unique(v * n + s)  # distinct (neighbour, source), sorted by neighbour
            v, s = key // n, key % n
            first = np.r_[True, v[1:] != v[:-1]]
            rank = np.arange(len(v)) - np.maximum.accumulate(np.where(first, np.arange(len(v)), 0))
            slot = count[v] + rank
            ok = slot < 2
            v, s, slot = v[ok], s[ok], slot[ok]
            src[v, slot], dist[v, slot] = s, level
            np.add.at(count, v, 1)
            new_node.append(v)
            new_src.append(s)
        f_node = np.concatenate(new_node) if new_node else np.empty(0, dtype=np.int64)
        f_src = np.concatenate(new_src) if new_src else np.empty(0, dtype=np.int64)
    own = np.arange(n)
    best = np.where(src[:, 0] != own, dist[:, 0], dist[:, 1]).astype(np.float64)
    best[best < 0] = np.nan
    return pl.DataFrame({"idx": pl.Series(own, dtype=pl.UInt32), "known_mule_hops": best}).with_columns(
        pl.col("known_mule_hops").fill_nan(None)
    )


def _ppr(und: pl.DataFrame, n: int, seeds: np.ndarray, groups: np.ndarray, n_groups: int, alpha: float,
         tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Personalised PageRank per account, restarting at the seeds outside the account's group."""
    out = np.zeros(n)
    if len(seeds) == 0 or und.height == 0:
        return out
    a = und["a"].to_numpy().astype(np.int64)
    b = und["b"].to_numpy().astype(np.int64)
    deg = np.bincount(a, minlength=n).astype(np.float64)
    # column-stochastic transition: from a to each neighbour b with probability 1/deg(a)
    w = 1.0 / deg[a]
    trans = sp.csr_matrix((w, (b, a)), shape=(n, n))
    del a, b, w  # the link arrays (three per link) are not held through the walk
    restart = np.zeros((n, n_groups))
    for g in range(n_groups):
        s = seeds[groups[seeds] != g]
        if len(s):
            restart[s, g] = 1.0 / len(s)
    dangling = deg == 0
    # the restart matrix is zero outside the seeds' rows: the restart term is added on those rows
    # only (adding 0.0 elsewhere would change no bit), in place, with one scratch array for the
    # convergence test; at bank scale this is most of the time the walk spends outside the product
    rows = np.flatnonzero(restart.any(axis=1))
    at_rows = restart[rows]
    x = restart  # the walk starts at the restart distribution; each step makes a new array, so no copy
    del restart
    diff = np.empty_like(x)
    for _ in range(max_iter):
        lost = x[dangling].sum(axis=0)
        nxt = trans @ x
        nxt *= alpha
        nxt[rows] += (1 - alpha + alpha * lost) * at_rows
        np.subtract(nxt, x, out=diff)
        np.abs(diff, out=diff)
        if diff.sum() < tol * n_groups:
            x = nxt
            break
        x = nxt
    n_active = max(int((deg > 0).sum()), 1)
    own = x[np.arange(n), groups]
    out[:] = own * n_active
    return out


def compute(
    p: Prepared,
    known_mules: pl.Series,
    known_labelled: pl.Series | None = None,
    *,
    max_hops: int = 4,
    ppr_alpha: float = 0.85,
    ppr_groups: int = 10,
    sync_window: int = 7 * 86_400,
    with_ppr: bool = True,
    graph: ClosenessGraph | None = None,
) -> pl.DataFrame:
    """Closeness features for every account in ``p``.

    Parameters
    ----------
    p : Prepared
        Output of :func:`mulegraph.features.prepare`.
    known_mules : pl.Series
        Account indices (``p.accounts.idx``) of the known mules.
    known_labelled : pl.Series, optional
        Account indices of every account with a known label (mules and not); enables
        ``known_label_nbrs`` and ``known_mule_rate`` (null otherwise).
    max_hops : int
        Hop distances beyond this are reported as ``max_hops + 1``.
    ppr_alpha : float
        Continuation probability of the personalised PageRank walk (restart is ``1 - ppr_alpha``).
    ppr_groups : int
        Number of account groups for the self-exclusion of the PageRank restart set.
    sync_window : int
        Seconds: for ``known_mule_synced``, how close in time the known mule's one-off transfers
        with other known mules must be to its one-off transfer with the account.
    with_ppr : bool
        False leaves the :data:`PPR_FEATURES` columns empty (null), for callers that compute them
        for several known sets at once with :func:`ppr_features`.
    graph : ClosenessGraph, optional
        :func:`closeness_graph` of this same ``p``, when several known sets are computed on one
        graph (the parts that do not depend on the labels are then built once).

    Returns
    -------
    pl.DataFrame
        ``idx`` plus one column per feature in :data:`FEATURES`, one row per account.
    """
    if max_hops < 1 or ppr_groups < 2 or not 0 < ppr_alpha < 1:
        raise ValueError("max_hops must be >= 1, ppr_groups >= 2 and 0 < ppr_alpha < 1")
    n = p.n_accounts
    mules = known_mules.cast(pl.UInt32).unique().rename("idx")
    mset = mules.implode()
    reuse = graph is not None
    graph = graph or closeness_graph(p)

    def derived(key: str, build: Callable[[], Any]) -> Any:
        # kept on a graph the caller reuses over several known sets; otherwise built and let go
        return graph.derived(key, build) if reuse else build()

    pairs, both = graph.pairs, graph.both
    und = both.select("a", "b")
    oneoff = both.filter(pl.col("n") == 1).select("a", "b")
    base = p.accounts.select("idx")

    # one hop, directed
    from_m = pairs.filter(pl.col("src").is_in(mset))
    to_m = pairs.filter(pl.col("dst").is_in(mset))
    # the sums of known mules' value and of all value add up the same way (sorted_sums), so an
    # account whose value all comes from (goes to) known mules gets a share of exactly 1
    in1 = sorted_sums(from_m, ["dst"], "value", "known_mule_in_value", count="known_mule_in").rename({"dst": "idx"}).with_columns(pl.col("known_mule_in").cast(pl.Float64))
    out1 = sorted_sums(to_m, ["src"], "value", "known_mule_out_value", count="known_mule_out").rename({"src": "idx"}).with_columns(pl.col("known_mule_out").cast(pl.Float64))
    in_tot = derived("in_tot", lambda: sorted_sums(pairs, ["dst"], "value", "_in_tot").rename({"dst": "idx"}))
    out_tot = derived("out_tot", lambda: sorted_sums(pairs, ["src"], "value", "_out_tot").rename({"src": "idx"}))
    # the membership test runs before the group_by: inside an aggregation the known set would be
    # broadcast to every group (accounts x known mules in memory)
    nbrs = (
        und.with_columns(pl.col("b").is_in(mset).alias("_is_m"))
        .group_by("a")
        .agg(pl.len().cast(pl.Float64).alias("_nbrs"), pl.col("_is_m").sum().cast(pl.Float64).alias("_m_nbrs"))
        .rename({"a": "idx"})
    )
    # two hops: distinct known mules c != a on a path a - b - c (b not a hub, b != a, b != c)
    adjacency = derived("adjacency", lambda: _adjacency(und, n))
    two = _two_hop_counts(und, mset, degree=np.diff(adjacency[0]))
    up_m = pairs.filter(pl.col("src").is_in(mset)).select(pl.col("src").alias("c"), pl.col("dst").alias("mid"))
    up = pairs.select(pl.col("src").alias("mid"), pl.col("dst").alias("a")).join(up_m, on="mid").filter(pl.col("c") != pl.col("a")).select("a", "c").unique()
    down_m = pairs.filter(pl.col("dst").is_in(mset)).select(pl.col("src").alias("mid"), pl.col("dst").alias("c"))
    down = pairs.select(pl.col("src").alias("a"), pl.col("dst").alias("mid")).join(down_m, on="mid").filter(pl.col("c") != pl.col("a")).select("a", "c").unique()

    # siblings and co-payers over directed pairs with a single transfer
    one_dir = pairs.filter(pl.col("n") == 1).select("src", "dst")
    sib_m = one_dir.filter(pl.col("dst").is_in(mset)).rename({"dst": "c"})
    sib = one_dir.rename({"dst": "a"}).join(sib_m, on="src").filter(pl.col("c") != pl.col("a")).select("a", "c").unique()
    copay_m = one_dir.filter(pl.col("src").is_in(mset)).rename({"src": "c"})
    copay = one_dir.rename({"src": "a"}).join(copay_m, on="dst").filter(pl.col("c") != pl.col("a")).select("a", "c").unique()
    # one-off transfers with a known mule m that fall within sync_window of m's one-off transfers
    # with other known mules c (c != the account): the mule was laundering at the time
    one_ends = graph.one_ends
    to_m = one_ends.filter(pl.col("m").is_in(mset))
    m_m = to_m.filter(pl.col("a").is_in(mset)).select(pl.col("m"), pl.col("a").alias("c"), pl.col("t").alias("t2"))
    synced = (
        to_m.join(m_m, on="m")
        .filter((pl.col("c") != pl.col("a")) & ((pl.col("t") - pl.col("t2")).abs() <= sync_window))
        .select("a", "m")
        .unique()
    )
    # two one-off hops a - b - c (c a known mule, c != a) whose two transfers fall within sync_window
    # of each other: siblings, co-payers and relays of the same scheme, which plays out over days
    # (the fan-out beneficiaries of one payer, the fan-in payers of one payee, a chain's next hop)
    relay = (
        one_ends.select("a", pl.col("m").alias("b"), "t")
        .join(to_m.select(pl.col("a").alias("b"), pl.col("m").alias("c"), pl.col("t").alias("t2")), on="b")
        .filter((pl.col("c") != pl.col("a")) & ((pl.col("t") - pl.col("t2")).abs() <= sync_window))
        .select("a", "c")
        .unique()
    )
    rshare = _relay_share(one_ends, mset, sync_window, n, ends=derived("relay_ends", lambda: _relay_ends(one_ends)))
    hops = _hops(und, mules, max_hops, n, adjacency=adjacency)
    del adjacency  # not held through the PageRank walks unless the graph keeps it
    out = (
        base.join(in1, on="idx", how="left")
        .join(out1, on="idx", how="left")
        .join(in_tot, on="idx", how="left")
        .join(out_tot, on="idx", how="left")
        .join(nbrs, on="idx", how="left")
        .join(two, on="idx", how="left")
        .join(_count(up, "a", "known_mule_2hop_up"), on="idx", how="left")
        .join(_count(down, "a", "known_mule_2hop_down"), on="idx", how="left")
        .join(hops, on="idx", how="left")
        .join(_count(oneoff.filter(pl.col("b").is_in(mset)), "a", "known_mule_oneoff"), on="idx", how="left")
        .join(_count(sib, "a", "known_mule_sib_oneoff"), on="idx", how="left")
        .join(_count(synced, "a", "known_mule_synced"), on="idx", how="left")
        .join(_count(relay, "a", "known_mule_relay_synced"), on="idx", how="left")
        .join(rshare, on="idx", how="left")
        .join(_count(copay, "a", "known_mule_copay_oneoff"), on="idx", how="left")
    )
    if known_labelled is not None:
        lset = known_labelled.cast(pl.UInt32).unique().implode()
        lab = und.filter(pl.col("b").is_in(lset)).group_by("a").agg(pl.len().cast(pl.Float64).alias("known_label_nbrs")).rename({"a": "idx"})
        out = out.join(lab, on="idx", how="left").with_columns(pl.col("known_label_nbrs").fill_null(0.0))
        rate = pl.when(pl.col("known_label_nbrs") > 0).then(pl.col("_m_nbrs").fill_null(0.0) / pl.col("known_label_nbrs")).otherwise(None)
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias("known_label_nbrs"))
        rate = pl.lit(None, dtype=pl.Float64)
    zero = ["known_mule_synced", "known_mule_relay_synced", "known_mule_relay_share", "known_mule_sib_oneoff", "known_mule_copay_oneoff", "known_mule_oneoff", "known_mule_in", "known_mule_out", "known_mule_in_value", "known_mule_out_value", "known_mule_2hop", "known_mule_2hop_up", "known_mule_2hop_down"]
    out = out.with_columns(
        *[pl.col(c).fill_null(0.0) for c in zero],
        pl.col("known_mule_hops").fill_null(float(max_hops + 1)),
        rate.alias("known_mule_rate"),
        pl.when(pl.col("_in_tot") > 0).then(pl.col("known_mule_in_value").fill_null(0.0) / pl.col("_in_tot")).otherwise(0.0).alias("known_mule_in_value_share"),
        pl.when(pl.col("_out_tot") > 0).then(pl.col("known_mule_out_value").fill_null(0.0) / pl.col("_out_tot")).otherwise(0.0).alias("known_mule_out_value_share"),
        pl.when(pl.col("_nbrs") > 0).then(pl.col("_m_nbrs").fill_null(0.0) / pl.col("_nbrs")).otherwise(0.0).alias("known_mule_nbr_share"),
    )
    out = out.sort("idx")
    if with_ppr:
        groups = account_groups(p.accounts.sort("idx")["account_id"], ppr_groups)
        seeds = mules.to_numpy().astype(np.int64)
        order = out["idx"].to_numpy()
        out = out.with_columns(
            pl.Series("known_mule_ppr", _ppr(und, n, seeds, groups, ppr_groups, ppr_alpha)[order]),
            pl.Series("known_mule_ppr_oneoff", _ppr(oneoff, n, seeds, groups, ppr_groups, ppr_alpha)[order]),
        )
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in PPR_FEATURES)
    return out.select("idx", *[s.name for s in FEATURES])


def _two_hop_counts(und: pl.DataFrame, mset: pl.Series, block: int | None = None, degree: np.ndarray | None = None) -> pl.DataFrame:
    """``known_mule_2hop``: per account a, the distinct known mules c != a on a path a - b - c.

    The paths are built for the known mules a block at a time (about ``block``, default
    :data:`TWO_HOP_BLOCK`, paths each, cut by the mules' path counts), so memory stays bounded
    whatever the window: the distinct pairs of one block share no mule with another, so the counts
    of the blocks add up to the whole. ``degree``: every account's number of links, when known.
    """
    und_m = und.filter(pl.col("b").is_in(mset)).rename({"a": "mid", "b": "c"})
    if degree is None:
        deg = und.group_by("a").agg(pl.len().cast(pl.Int64).alias("_deg")).rename({"a": "mid"})
    else:
        linked = np.flatnonzero(degree)
        deg = pl.DataFrame({"mid": pl.Series(linked, dtype=und.schema["a"]), "_deg": degree[linked].astype(np.int64)})
    per_mule = (
        und_m.join(deg, on="mid", how="left").group_by("c").agg(pl.col("_deg").sum().alias("_paths")).sort("c")
    )
    cum = per_mule["_paths"].cum_sum().to_numpy()
    step = max(1, block or TWO_HOP_BLOCK)
    part = (cum - 1) // step if len(cum) else cum
    mules = per_mule.with_columns(pl.Series("_part", part))
    counts = []
    for k in np.unique(part):
        chunk = mules.filter(pl.col("_part") == k).select("c")
        m = und_m.join(chunk, on="c", how="semi")
        two = und.join(m, left_on="b", right_on="mid").filter(pl.col("c") != pl.col("a")).select("a", "c").unique()
        counts.append(two.group_by("a").agg(pl.len().alias("known_mule_2hop")))
    if not counts:
        return pl.DataFrame(schema={"idx": pl.UInt32, "known_mule_2hop": pl.Float64})
    return (
        pl.concat(counts).group_by("a").agg(pl.col("known_mule_2hop").sum().cast(pl.Float64)).rename({"a": "idx"})
    )


def _relay_ends(one_ends: pl.DataFrame) -> pl.DataFrame:
    """The one-off ends as :func:`_relay_share` reads them: ``b, t, a`` sorted by (b, t)."""
    return one_ends.select(pl.col("m").alias("b"), "t", "a").sort("b", "t")


def _relay_share(one_ends: pl.DataFrame, mset: pl.Series, window: int, n_accounts: int, block: int | None = None,
                 ends: pl.DataFrame | None = None) -> pl.DataFrame:
    """``known_mule_relay_share``: per account a, the highest share, over its one-off transfers
    (with b, at time t), of known mules among b's *other* one-off counterparties whose transfer
    with b falls within ``window`` of t (0 where b has none). Whether a itself is a known mule
    never counts.

    One sort and two binary searches: the ends of every one-off pair sorted by (b, t) as one
    integer key, so each end's window among b's ends is a contiguous run, and the known mules in
    it a difference of a running count. Linear in the one-off pairs, whatever b's degree. The
    sorted ends are read ``block`` (default :data:`RELAY_BLOCK`) at a time, cut between accounts
    b, so the working arrays stay bounded whatever the window: the same values for any block.

    ``ends``: :func:`_relay_ends` of ``one_ends``, when already built.

    Returns ``idx`` (every account) and the share (0 without one-off transfers).
    """
    e = ends if ends is not None else _relay_ends(one_ends)
    best = np.zeros(n_accounts)
    b_all = e["b"].to_numpy()
    t_all = e["t"].to_numpy()
    a_all = e["a"].to_numpy()
    k_all = e.select(pl.col("a").is_in(mset))["a"].to_numpy()
    step = max(1, block or RELAY_BLOCK)
    start = 0
    while start < len(b_all):
        # the block ends after the last end of the account it would cut: a window never crosses b
        stop = int(np.searchsorted(b_all, b_all[min(start + step, len(b_all)) - 1], side="right"))
        b = b_all[start:stop].astype(np.int64)
        t = t_all[start:stop].astype(np.int64)
        k = k_all[start:stop].astype(np.int32)
        # b's keys lie in [b * span, b * span + t range]: a window never reaches another account's run
        t0 = int(t.min())
        span = int(t.max()) - t0 + 2 * window + 1
        key = b * span + (t - t0)
        lo = np.searchsorted(key, key - window, side="left")
        hi = np.searchsorted(key, key + window, side="right")
        ck = np.concatenate([[0], np.cumsum(k, dtype=np.int64)])
        n_all = hi - lo - 1
        n_known = ck[hi] - ck[lo] - k
        share = np.where(n_all > 0, n_known / np.maximum(n_all, 1), 0.0)
        np.maximum.at(best, a_all[start:stop].astype(np.int64), share)
        start = stop
    return pl.DataFrame({"idx": pl.Series(np.arange(n_accounts), dtype=pl.UInt32), "known_mule_relay_share": best})


def ppr_features(p: Prepared, known_mules: pl.Series, groups: np.ndarray, n_groups: int, *, ppr_alpha: float = 0.85,
                 graph: ClosenessGraph | None = None) -> pl.DataFrame:
    """The PageRank features of :data:`PPR_FEATURES` with the self-exclusion groups given.

    Every account's walk restarts only at the known mules whose group differs from its own;
    ``groups`` holds a group in ``[0, n_groups)`` per account index. All groups share one pass
    (one sparse product with an ``n_groups``-column restart matrix per step). :func:`compute` uses
    hash groups; out-of-fold training (:func:`mulegraph.scoring.training.oof_proximity`) uses the folds, so one
    call serves every fold.

    Returns ``idx`` plus the two columns, one row per account, sorted by ``idx``.
    """
    if not 0 < ppr_alpha < 1 or n_groups < 1:
        raise ValueError("0 < ppr_alpha < 1 and n_groups >= 1 are required")
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != (p.n_accounts,) or (len(groups) and (groups.min() < 0 or groups.max() >= n_groups)):
        raise ValueError("groups must hold one group in [0, n_groups) per account")
    both = (graph or closeness_graph(p)).both
    seeds = known_mules.cast(pl.UInt32).unique().to_numpy().astype(np.int64)
    n = p.n_accounts
    return pl.DataFrame(
        {
            "idx": pl.Series(np.arange(n), dtype=pl.UInt32),
            "known_mule_ppr": _ppr(both.select("a", "b"), n, seeds, groups, n_groups, ppr_alpha),
            "known_mule_ppr_oneoff": _ppr(both.filter(pl.col("n") == 1).select("a", "b"), n, seeds, groups, n_groups, ppr_alpha),
        }
    )
