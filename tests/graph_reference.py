"""Slow, obviously-correct references for the pattern and network families (plain loops, networkx).

They read the prepared transfer frame (``Prepared.tx``) and the hub list, and return
``{account index: value}`` dictionaries for accounts with a non-zero value.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import networkx as nx

__all__ = [
    "transfers",
    "ref_cycles",
    "ref_scatter_gather",
    "ref_gather_scatter",
    "ref_chains",
    "ref_network",
    "ref_neighbour_stats",
]


def transfers(p):
    """Pattern transfers as tuples (row, src, dst, t, amount): no hub at either end, no self-transfer."""
    hubs = set(p.hub_idx.to_list())
    rows = zip(*(p.tx[c].to_list() for c in ("row", "src", "dst", "t", "amount")))
    return [r for r in rows if r[1] != r[2] and r[1] not in hubs and r[2] not in hubs]


def _hop_ok(first, second, w):
    return first[3] <= second[3] <= first[3] + w


def ref_cycles(p, w, max_len, low):
    """networkx simple cycles on the aggregated graph, expanded into every choice of transfers,
    kept when some rotation of the transfers is non-decreasing in time and spans at most ``w``."""
    tx = transfers(p)
    on_pair = defaultdict(list)
    for r in tx:
        on_pair[(r[1], r[2])].append(r)
    g = nx.DiGraph(list(on_pair))
    count, value, consistent, long = defaultdict(int), defaultdict(float), defaultdict(int), defaultdict(int)
    for nodes in nx.simple_cycles(g, length_bound=max_len):
        k = len(nodes)
        hops = [on_pair[(nodes[i], nodes[(i + 1) % k])] for i in range(k)]
        for choice in itertools.product(*hops):
            valid = []
            for s in range(k):
                seq = choice[s:] + choice[:s]
                times = [x[3] for x in seq]
                if all(a <= b for a, b in zip(times, times[1:])) and times[-1] - times[0] <= w:
                    valid.append(seq)
            if not valid:
                continue
            seq = min(valid, key=lambda q: q[0][0])  # all times equal: start at the lowest row
            amounts = [x[4] for x in seq]
            ok = all(low * a <= b <= a for a, b in zip(amounts, amounts[1:]))
            for n in nodes:
                count[n] += 1
                value[n] += min(amounts)
                consistent[n] += ok
                long[n] += k >= 3
    nonzero = lambda d: {a: b for a, b in d.items() if b}  # noqa: E731
    return dict(count), dict(value), nonzero(consistent), nonzero(long)


def _two_paths(tx, w):
    return [(x, y) for x in tx for y in tx if x[2] == y[1] and x[1] != y[2] and _hop_ok(x, y, w)]


def ref_scatter_gather(p, w):
    """Loops: pairs (s, d) with two or more intermediaries m joined by time-respecting 2-paths."""
    mids = defaultdict(set)
    for x, y in _two_paths(transfers(p), w):
        mids[(x[1], y[2])].add(x[2])
    src, mid, tgt = defaultdict(int), defaultdict(int), defaultdict(int)
    for (s, d), ms in mids.items():
        if len(ms) >= 2:
            src[s] += 1
            tgt[d] += 1
            for m in ms:
                mid[m] += 1
    return dict(src), dict(mid), dict(tgt)


def ref_gather_scatter(p, w):
    """Loops: per middle account, distinct (sender, receiver) pairs when >= 2 of each."""
    pairs = defaultdict(set)
    for x, y in _two_paths(transfers(p), w):
        pairs[x[2]].add((x[1], y[2]))
    out = {}
    for v, ps in pairs.items():
        if len({a for a, _ in ps}) >= 2 and len({c for _, c in ps}) >= 2:
            out[v] = len(ps)
    return out


def ref_chains(p, w, keep, cap):
    """Loops: hops forwarding keep..1.0 of the inbound; longest walks by depth-first search."""
    tx = transfers(p)
    hops = [(x, y) for x, y in _two_paths(tx, w) if keep * x[4] <= y[4] <= x[4]]
    succ, pred = defaultdict(list), defaultdict(list)
    for x, y in hops:
        succ[x[0]].append(y[0])
        pred[y[0]].append(x[0])

    def longest(r, nxt, budget):
        if budget == 1:
            return 1
        return 1 + max((longest(q, nxt, budget - 1) for q in nxt[r]), default=0)

    n_hops, depth = defaultdict(int), defaultdict(int)
    for x, y in hops:
        v = x[2]
        n_hops[v] += 1
        depth[v] = max(depth[v], longest(x[0], pred, cap) + longest(y[0], succ, cap))
    return dict(n_hops), dict(depth)


def ref_network(p, alpha=0.85):
    """networkx on the aggregated non-hub graph: component size, PageRank x n, core number."""
    hubs = set(p.hub_idx.to_list())
    nodes = [i for i in p.accounts["idx"].to_list() if i not in hubs]
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for r in transfers(p):
        if g.has_edge(r[1], r[2]):
            g[r[1]][r[2]]["weight"] += r[4]
        else:
            g.add_edge(r[1], r[2], weight=r[4])
    wcc = {}
    for comp in nx.weakly_connected_components(g):
        for n in comp:
            wcc[n] = len(comp)
    pr = nx.pagerank(g, alpha=alpha, weight="weight", tol=1e-12, max_iter=10_000) if nodes else {}
    pr = {k: v * len(nodes) for k, v in pr.items()}
    und = nx.Graph(g.to_undirected())
    core = nx.core_number(und) if nodes else {}
    return wcc, pr, core


def ref_neighbour_stats(p, values):
    """Mean and max of ``values[u]`` over the distinct non-hub counterparties u of each account."""
    nbrs = defaultdict(set)
    for r in transfers(p):
        nbrs[r[1]].add(r[2])
        nbrs[r[2]].add(r[1])
    mean, mx = {}, {}
    for v, us in nbrs.items():
        vals = [values[u] for u in us if values.get(u) is not None and math.isfinite(values[u])]
        if vals:
            mean[v] = sum(vals) / len(vals)
            mx[v] = max(vals)
    return mean, mx
