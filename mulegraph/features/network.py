"""Graph-wide position of an account: component size, PageRank, k-core and 2-hop aggregates.

All of these work on the aggregated account graph of non-hub accounts: transfers touching a hub
(``Prepared.accounts.is_hub``) and self-transfers are dropped, and the remaining transfers are
summed per ordered pair (``value``). Hubs get ``null`` for every feature here; without that, the
two external pseudo-accounts of a typical export would join every account into one component,
take most of the PageRank and make every account a 2-hop neighbour of every other.

* ``wcc_size``: accounts in the weakly connected component (``scipy.sparse.csgraph``).
* ``pagerank``: PageRank (damping 0.85) of the value-weighted directed graph, by power iteration on
  a ``scipy.sparse`` matrix; dangling accounts spread their rank evenly over all non-hub accounts
  (as networkx does). Scaled by the number of non-hub accounts, so 1.0 is the average whatever the
  graph size.
* ``kcore``: core number of the undirected simple graph, by vectorised peeling (all accounts of
  degree <= k are removed at once, their neighbours' degrees drop, repeat); linear in the edges,
  where networkx's ``core_number`` is not on high-degree accounts.
* ``nbr_mean_passthrough_24h``, ``nbr_max_passthrough_24h``, ``nbr_mean_fanin_72h``,
  ``nbr_max_fanin_72h``, ``nbr_mean_forward_ratio``: mean / max over the account's distinct non-hub
  counterparties (either direction) of their ``passthrough_share_24h``, ``fanin_max_72h`` and
  ``forward_ratio``, read from the earlier families' output (``Prepared.extra["so_far"]``). A
  missing source column gives a null column; non-finite values are ignored.
* ``nbr_max_chain_depth``, ``nbr_max_cycle_long``: the same over the patterns family's
  ``chain_depth`` and ``cycle_long_count`` (a mule's counterparties are often mules too).

Shards: these features are not local. The reduce step sums each shard's aggregated pairs into the
global edge table (sums and counts combine by addition), after which components, PageRank and core
numbers are computed once on that table and the results are handed back by account. The 2-hop
aggregates need the per-account features of each account's counterparties, i.e. a 1-hop halo of
feature rows joined after the per-account families have run on every shard.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from mulegraph.features.patterns import pattern_edges
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec

__all__ = ["compute", "adjacency", "pagerank", "core_numbers", "neighbour_stats", "FEATURES", "NEIGHBOUR_SOURCES", "READS",
           "SPECS"]

FAMILY = "network"

#: output name -> (source column from earlier families, aggregate)
NEIGHBOUR_SOURCES: dict[str, tuple[str, str]] = {
    "nbr_mean_passthrough_24h": ("passthrough_share_24h", "mean"),
    "nbr_max_passthrough_24h": ("passthrough_share_24h", "max"),
    "nbr_mean_fanin_72h": ("fanin_max_72h", "mean"),
    "nbr_max_fanin_72h": ("fanin_max_72h", "max"),
    "nbr_mean_forward_ratio": ("forward_ratio", "mean"),
    "nbr_max_chain_depth": ("chain_depth", "max"),
    "nbr_max_cycle_long": ("cycle_long_count", "max"),
}

#: the earlier families' columns this family reads (``Prepared.extra["so_far"]``); a caller that
#: computes the families apart (by shards) passes these only
READS: tuple[str, ...] = tuple(sorted({src for src, _ in NEIGHBOUR_SOURCES.values()}))

FEATURES = [
    FeatureSpec("wcc_size", FAMILY, "accounts in the weakly connected component, hubs removed", "count", 0, evidence="pattern"),
    FeatureSpec("pagerank", FAMILY, "value-weighted PageRank without hubs, times the number of non-hub accounts", "score", 0, evidence="pattern"),
    FeatureSpec("kcore", FAMILY, "core number in the undirected graph without hubs", "count", 1,
                "sits in a densely knit group (k-core {value:.0f})", evidence="pattern"),
    FeatureSpec("nbr_mean_passthrough_24h", FAMILY, "mean 24h pass-through share of the counterparties", "share", 1,
                "its counterparties pass on {value:.0%} of inbound value within 24h on average", evidence="pattern"),
    FeatureSpec("nbr_max_passthrough_24h", FAMILY, "highest 24h pass-through share among the counterparties", "share", 1,
                "trades with an account that passes on {value:.0%} of inbound value within 24h", evidence="pattern"),
    FeatureSpec("nbr_mean_fanin_72h", FAMILY, "mean 72h fan-in of the counterparties", "count", 1,
                "its counterparties receive from {value:.1f} distinct senders in 72h on average", evidence="pattern"),
    FeatureSpec("nbr_max_fanin_72h", FAMILY, "highest 72h fan-in among the counterparties", "count", 1,
                "trades with an account paid by {value:.0f} distinct senders within 72h", evidence="pattern"),
    FeatureSpec("nbr_mean_forward_ratio", FAMILY, "mean forwarded ratio (out value / in value) of the counterparties", "ratio", 1,
                "its counterparties pass on {value:.0%} of what they receive on average", evidence="pattern"),
    FeatureSpec("nbr_max_chain_depth", FAMILY, "longest pass-through chain (chain_depth) among the counterparties", "count", 1,
                "trades with an account in a pass-through chain of {value:.0f} transfers", evidence="pattern"),
    FeatureSpec("nbr_max_cycle_long", FAMILY, "most cycles of 3+ accounts (cycle_long_count) among the counterparties", "count", 1,
                "trades with an account on {value:.0f} cycles through three or more accounts", evidence="pattern"),
]
SPECS: tuple[FeatureSpec, ...] = tuple(FEATURES)


def adjacency(p: Prepared) -> sp.csr_matrix:
    """Value-weighted adjacency of the non-hub graph (rows pay columns), ``n_accounts`` square.

    Built from :func:`mulegraph.features.patterns.pattern_edges`; parallel transfers are summed.
    """
    e = pattern_edges(p)
    n = p.n_accounts
    a = sp.csr_matrix((e["m"].to_numpy(), (e["s"].to_numpy().astype(np.int64), e["d"].to_numpy().astype(np.int64))), shape=(n, n))
    a.sum_duplicates()
    return a


def pagerank(a: sp.csr_matrix, nodes: np.ndarray, alpha: float = 0.85, tol: float = 1e-8, max_iter: int = 200) -> np.ndarray:
    """PageRank over the accounts where ``nodes`` is true, on the weighted adjacency ``a``.

    Rows of ``a`` are sources. Dangling accounts (no outbound weight) and the teleport spread evenly
    over ``nodes``. Returns ranks summing to 1 (0 outside ``nodes``). Stops when the L1 change is
    below ``tol`` (about 80 iterations at the default; relative error per account about 1e-5).
    """
    n_nodes = int(nodes.sum())
    x = np.zeros(a.shape[0])
    if n_nodes == 0:
        return x
    uniform = nodes / n_nodes
    out_w = np.asarray(a.sum(axis=1)).ravel()
    dangling = nodes & (out_w <= 0)
    inv = np.divide(1.0, out_w, out=np.zeros_like(out_w), where=out_w > 0)
    pt = (sp.diags(inv) @ a).T.tocsr()  # column-stochastic transition matrix
    x = uniform.copy()
    for _ in range(max_iter):
        new = alpha * (pt @ x + x[dangling].sum() * uniform) + (1 - alpha) * uniform
        done = np.abs(new - x).sum() < tol
        x = new
        if done:
            break
    return x


def core_numbers(s: sp.csr_matrix) -> np.ndarray:
    """Core numbers of the undirected simple graph ``s`` (symmetric 0/1, no diagonal), by peeling.

    Each round removes every remaining account whose degree is at most ``k`` (its core number is
    ``k``) and lowers its neighbours' degrees; when none is left at ``k``, ``k`` rises to the
    smallest remaining degree.
    """
    n = s.shape[0]
    deg = np.diff(s.indptr).astype(np.int64)
    core = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    k = 0
    remaining = n
    while remaining:
        cand = np.flatnonzero(alive & (deg <= k))
        if cand.size == 0:
            k = int(deg[alive].min())
            continue
        core[cand] = k
        alive[cand] = False
        remaining -= cand.size
        nbrs = s[cand].indices
        if nbrs.size:
            deg -= np.bincount(nbrs, minlength=n)
    return core


def neighbour_stats(sym: sp.csr_matrix, so_far: pl.DataFrame | None) -> dict[str, np.ndarray]:
    """The ``NEIGHBOUR_SOURCES`` aggregates over distinct counterparties, as arrays (NaN = none).

    ``sym`` is the symmetric 0/1 neighbour matrix; ``so_far`` the earlier families' output (``idx``
    plus feature columns). Missing, null and non-finite values are ignored; a missing column gives
    all-NaN.
    """
    n = sym.shape[0]
    cols = set(so_far.columns) if so_far is not None else set()
    out: dict[str, np.ndarray] = {}
    starts = sym.indptr[:-1]
    nonempty = np.flatnonzero(np.diff(sym.indptr) > 0)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (src, how) in NEIGHBOUR_SOURCES.items():
        res = np.full(n, np.nan)
        if src in cols:
            if src not in cache:
                vals = np.full(n, np.nan)
                col = so_far[src].cast(pl.Float64).fill_null(np.nan).to_numpy()
                vals[so_far["idx"].to_numpy().astype(np.int64)] = col
                cache[src] = (vals, np.isfinite(vals))
            vals, ok = cache[src]
            if how == "mean":
                cnt = sym @ ok.astype(np.float64)
                tot = sym @ np.where(ok, vals, 0.0)
                np.divide(tot, cnt, out=res, where=cnt > 0)
            else:
                seg = np.where(ok, vals, -np.inf)[sym.indices]
                if nonempty.size:
                    res[nonempty] = np.maximum.reduceat(seg, starts[nonempty])
                res[~np.isfinite(res)] = np.nan
        out[name] = res
    return out


def compute(p: Prepared) -> pl.DataFrame:
    """Network features for every account (see the module docstring)."""
    n = p.n_accounts
    is_hub = p.accounts.sort("idx")["is_hub"].to_numpy()
    a = adjacency(p)
    _, labels = connected_components(a, directed=True, connection="weak")
    wcc = np.bincount(labels)[labels]
    pr = pagerank(a, ~is_hub) * (~is_hub).sum()
    b = a.copy()
    b.data[:] = 1.0
    sym = (b + b.T).tocsr()
    sym.data[:] = 1.0
    core = core_numbers(sym)
    cols = {"wcc_size": wcc.astype(np.int64), "pagerank": pr, "kcore": core}
    cols.update(neighbour_stats(sym, p.extra.get("so_far")))
    out = pl.DataFrame({"idx": np.arange(n, dtype=np.uint32), **cols, "hub": is_hub})
    names = [f.name for f in FEATURES]
    return out.select(
        "idx",
        *[pl.when(pl.col("hub")).then(None).otherwise(pl.col(c).fill_nan(None) if out[c].dtype == pl.Float64 else pl.col(c)).alias(c)
          for c in names],
    )
