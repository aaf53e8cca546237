"""Closeness to known mules: networkx references, self-exclusion, label-flip invariance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import networkx as nx
import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mulegraph.core.config import FeatureConfig
from mulegraph.features import prepare
from mulegraph.features import proximity
from mulegraph.features.registry import REGISTRY

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
SYNC = 5 * 3600  # transfers in the tests are an hour apart


def _transfers(edges: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "txn_id": [f"t{i:04d}" for i in range(len(edges))],
            "ts": [T0 + timedelta(hours=i) for i in range(len(edges))],
            "src_account": [f"a{s}" for s, _, _ in edges],
            "dst_account": [f"a{d}" for _, d, _ in edges],
            "amount": [float(v) for _, _, v in edges],
            "currency": ["EUR"] * len(edges),
            "channel": [None] * len(edges),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "channel": pl.String},
    )


def _reference(p, mules: set[int], labelled: set[int] | None, max_hops: int, alpha: float, groups_n: int) -> dict[int, dict[str, float]]:
    """Plain networkx / loop reference of every proximity feature, keyed by account index."""
    hubs = set(p.hub_idx.to_list())
    g = nx.DiGraph()
    g.add_nodes_from(range(p.n_accounts))
    for r in p.tx.group_by("src", "dst").agg(pl.col("amount").sum(), pl.len().alias("n")).to_dicts():
        s, d = r["src"], r["dst"]
        if s == d or s in hubs or d in hubs:
            continue
        g.add_edge(s, d, value=r["amount"], n=r["n"])
    u = g.to_undirected()
    ids = p.accounts.sort("idx")["account_id"]
    grp = proximity.account_groups(ids, groups_n)
    ntx, when = {}, {}
    for r in p.tx.select("src", "dst", "t").to_dicts():
        if r["src"] != r["dst"] and r["src"] not in hubs and r["dst"] not in hubs:
            key = frozenset((r["src"], r["dst"]))
            ntx[key] = ntx.get(key, 0) + 1
            when[key] = r["t"]
    one = nx.Graph()
    one.add_nodes_from(range(p.n_accounts))
    one.add_edges_from(tuple(k) for k, c in ntx.items() if c == 1)

    def ppr_of(graph):
        active = [n for n in graph if graph.degree(n) > 0]
        ppr = {}
        for k in range(groups_n):
            seeds = [m for m in mules if grp[m] != k]
            if not seeds or not active:
                continue
            pr = nx.pagerank(graph, alpha=alpha, personalization={s: 1.0 for s in seeds}, weight=None, tol=1e-12, max_iter=1000)
            for a in range(p.n_accounts):
                if grp[a] == k:
                    ppr[a] = pr[a] * len(active)
        return ppr

    ppr, ppr_one = ppr_of(u), ppr_of(one)
    out = {}
    for a in range(p.n_accounts):
        preds, succs, nbrs = set(g.predecessors(a)), set(g.successors(a)), set(u[a])
        in_val = sum(g[s][a]["value"] for s in preds)
        out_val = sum(g[a][d]["value"] for d in succs)
        m_in = [s for s in preds if s in mules]
        m_out = [d for d in succs if d in mules]
        two = {c for b in nbrs for c in u[b] if c != a and c in mules}
        up = {c for b in preds for c in g.predecessors(b) if c != a and c in mules}
        down = {c for b in succs for c in g.successors(b) if c != a and c in mules}
        dist = nx.single_source_shortest_path_length(u, a, cutoff=max_hops)
        hops = min((d for c, d in dist.items() if c != a and c in mules), default=max_hops + 1)
        row = {
            "known_mule_in": len(m_in),
            "known_mule_out": len(m_out),
            "known_mule_in_value": sum(g[s][a]["value"] for s in m_in),
            "known_mule_out_value": sum(g[a][d]["value"] for d in m_out),
            "known_mule_in_value_share": sum(g[s][a]["value"] for s in m_in) / in_val if in_val > 0 else 0.0,
            "known_mule_out_value_share": sum(g[a][d]["value"] for d in m_out) / out_val if out_val > 0 else 0.0,
            "known_mule_nbr_share": len([b for b in nbrs if b in mules]) / len(nbrs) if nbrs else 0.0,
            "known_mule_2hop": len(two),
            "known_mule_2hop_up": len(up),
            "known_mule_2hop_down": len(down),
            "known_mule_hops": hops,
            "known_mule_ppr": ppr.get(a, 0.0),
            "known_mule_oneoff": len([b for b in one[a] if b in mules]),
            "known_mule_synced": len({
                m for m in one[a] if m in mules
                for c in one[m] if c != a and c in mules
                and abs(when[frozenset((a, m))] - when[frozenset((m, c))]) <= SYNC
            }),
            "known_mule_relay_synced": len({
                c for b in one[a] for c in one[b] if c != a and c in mules
                and abs(when[frozenset((a, b))] - when[frozenset((b, c))]) <= SYNC
            }),
            "known_mule_relay_share": max((_share_near(one, when, mules, a, b) for b in one[a]), default=0.0),
            "known_mule_sib_oneoff": len({c for b in g.predecessors(a) if g[b][a]["n"] == 1
                                         for c in g.successors(b) if c != a and c in mules and g[b][c]["n"] == 1}),
            "known_mule_copay_oneoff": len({c for b in g.successors(a) if g[a][b]["n"] == 1
                                           for c in g.predecessors(b) if c != a and c in mules and g[c][b]["n"] == 1}),
            "known_mule_ppr_oneoff": ppr_one.get(a, 0.0),
        }
        if labelled is not None:
            lab_n = [b for b in nbrs if b in labelled]
            row["known_label_nbrs"] = len(lab_n)
            row["known_mule_rate"] = len([b for b in nbrs if b in mules]) / len(lab_n) if lab_n else None
        out[a] = row
    return out


def _share_near(one, when, mules, a: int, b: int) -> float:
    """Known mules among b's one-off counterparties other than a within SYNC of a's transfer with b."""
    t = when[frozenset((a, b))]
    near = [c for c in one[b] if c != a and abs(when[frozenset((b, c))] - t) <= SYNC]
    return sum(c in mules for c in near) / len(near) if near else 0.0


def _check_agrees(p, mules, labelled, max_hops=3, alpha=0.85, groups=3):
    got = proximity.compute(
        p,
        pl.Series(sorted(mules), dtype=pl.UInt32),
        None if labelled is None else pl.Series(sorted(labelled), dtype=pl.UInt32),
        max_hops=max_hops,
        ppr_alpha=alpha,
        ppr_groups=groups,
        sync_window=SYNC,
    )
    assert got.height == p.n_accounts
    ref = _reference(p, mules, labelled, max_hops, alpha, groups)
    for row in got.to_dicts():
        exp = ref[row["idx"]]
        for k, v in exp.items():
            if v is None:
                assert row[k] is None, (k, row)
            else:
                assert row[k] == pytest.approx(v, rel=1e-6, abs=1e-7), (k, row["idx"], row[k], v)
        if labelled is None:
            assert row["known_label_nbrs"] is None and row["known_mule_rate"] is None


edge_lists = st.lists(
    st.tuples(st.integers(0, 11), st.integers(0, 11), st.floats(1, 1000, allow_nan=False)), min_size=1, max_size=40
)


@given(edges=edge_lists, mule_bits=st.integers(0, 2**12 - 1), lab_bits=st.integers(0, 2**12 - 1), hub_degree=st.sampled_from([3, 5, 1000]))
def test_agrees_with_networkx_reference(edges, mule_bits, lab_bits, hub_degree):
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=hub_degree))
    mules = {i for i in range(p.n_accounts) if mule_bits >> i & 1}
    labelled = mules | {i for i in range(p.n_accounts) if lab_bits >> i & 1}
    _check_agrees(p, mules, labelled)


@given(edges=edge_lists, mule_bits=st.integers(0, 2**12 - 1), who=st.integers(0, 11))
def test_flipping_own_label_changes_none_of_own_features(edges, mule_bits, who):
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000))
    who = who % p.n_accounts
    mules = {i for i in range(p.n_accounts) if mule_bits >> i & 1}
    labelled = pl.Series(list(range(p.n_accounts)), dtype=pl.UInt32)
    with_me = proximity.compute(p, pl.Series(sorted(mules | {who}), dtype=pl.UInt32), labelled, ppr_groups=3)
    without = proximity.compute(p, pl.Series(sorted(mules - {who}), dtype=pl.UInt32), labelled, ppr_groups=3)
    a = with_me.filter(pl.col("idx") == who).drop("idx").to_dicts()[0]
    b = without.filter(pl.col("idx") == who).drop("idx").to_dicts()[0]
    assert a == pytest.approx(b)


def test_golden_chain_and_self_loop():
    # a0 -> a1 -> a2 -> a3, a1 <-> a1 self-transfer; a1 is the only known mule
    p = prepare(_transfers([(0, 1, 100), (1, 2, 90), (2, 3, 80), (1, 1, 5)]))
    f = proximity.compute(p, pl.Series([1], dtype=pl.UInt32), None, max_hops=2).sort("idx")
    rows = {r["idx"]: r for r in f.to_dicts()}
    assert rows[0]["known_mule_out"] == 1 and rows[0]["known_mule_out_value"] == 100
    assert rows[2]["known_mule_in"] == 1 and rows[2]["known_mule_in_value_share"] == 1.0
    assert rows[3]["known_mule_2hop"] == 1 and rows[3]["known_mule_2hop_up"] == 1 and rows[3]["known_mule_2hop_down"] == 0
    # the mule itself: its own label and its self-transfer count for nothing
    assert rows[1]["known_mule_in"] == 0 and rows[1]["known_mule_2hop"] == 0 and rows[1]["known_mule_hops"] == 3
    assert [rows[i]["known_mule_hops"] for i in (0, 2, 3)] == [1, 1, 2]
    # a path a0 - a1 - a0 must not count a0 (not a mule) nor reach a mule through itself
    assert rows[0]["known_mule_2hop"] == 0


def test_hubs_are_not_expanded():
    # a9 pays everybody: with hub_degree 3 it is a hub, so a mule behind it is not "two hops away"
    edges = [(9, i, 10) for i in range(5)] + [(0, 1, 50)]
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=3))
    ids = p.accounts.select("idx", "account_id")
    idx = dict(zip(ids["account_id"], ids["idx"]))
    f = proximity.compute(p, pl.Series([idx["a4"]], dtype=pl.UInt32), None)
    rows = {r["idx"]: r for r in f.to_dicts()}
    for a in ("a0", "a1", "a2", "a3", "a9"):
        assert rows[idx[a]]["known_mule_2hop"] == 0
        assert rows[idx[a]]["known_mule_hops"] == 5


def test_registered_under_family_proximity():
    for s in proximity.FEATURES:
        assert REGISTRY[s.name].family == "proximity"


def test_bad_parameters_rejected():
    p = prepare(_transfers([(0, 1, 1.0)]))
    with pytest.raises(ValueError, match="max_hops"):
        proximity.compute(p, pl.Series([0], dtype=pl.UInt32), max_hops=0)


def test_no_known_mules_gives_zeros():
    p = prepare(_transfers([(0, 1, 1.0), (1, 2, 2.0)]))
    f = proximity.compute(p, pl.Series([], dtype=pl.UInt32), None, max_hops=2)
    assert f["known_mule_in"].sum() == 0 and f["known_mule_ppr"].sum() == 0
    assert (f["known_mule_hops"] == 3).all()
    assert np.isfinite(f["known_mule_ppr"].to_numpy()).all()


def _nx_ppr_one_set(p, seeds: list[int], one_off: bool) -> dict[int, float]:
    """networkx reference: PageRank restarting at ``seeds`` (times the active accounts) on the hub-free graph."""
    hubs = set(p.hub_idx.to_list())
    count: dict[frozenset, int] = {}
    for r in p.tx.select("src", "dst").to_dicts():
        if r["src"] != r["dst"] and r["src"] not in hubs and r["dst"] not in hubs:
            key = frozenset((r["src"], r["dst"]))
            count[key] = count.get(key, 0) + 1
    g = nx.Graph()
    g.add_nodes_from(range(p.n_accounts))
    g.add_edges_from(tuple(k) for k, c in count.items() if c == 1 or not one_off)
    active = [n for n in g if g.degree(n) > 0]
    if not seeds or not active:
        return {}
    pr = nx.pagerank(g, alpha=0.85, personalization={s: 1.0 for s in seeds}, weight=None, tol=1e-12, max_iter=1000)
    return {a: pr[a] * len(active) for a in g}


@given(edges=edge_lists, mule_bits=st.integers(0, 2**12 - 1), group_list=st.lists(st.integers(0, 3), min_size=12, max_size=12))
def test_ppr_features_all_groups_in_one_pass_match_one_walk_per_group(edges, mule_bits, group_list):
    # the multi-column pass (one restart column per group) equals a separate walk per group that
    # restarts at the mules outside that group, read for the accounts of that group
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=5))
    n = p.n_accounts
    groups = np.array(group_list[:n])
    mules = [i for i in range(n) if mule_bits >> i & 1]
    got = proximity.ppr_features(p, pl.Series(mules, dtype=pl.UInt32), groups, 4)
    assert got["idx"].to_list() == list(range(n))
    for col, one_off in (("known_mule_ppr", False), ("known_mule_ppr_oneoff", True)):
        for k in range(4):
            ref = _nx_ppr_one_set(p, [m for m in mules if groups[m] != k], one_off)
            for a in np.flatnonzero(groups == k):
                assert got[col][int(a)] == pytest.approx(ref.get(int(a), 0.0), rel=1e-6, abs=1e-7), (col, k, a)


def test_ppr_features_match_compute_with_hash_groups():
    edges = [(0, 1, 5.0), (1, 2, 3.0), (2, 3, 1.0), (3, 0, 2.0), (1, 3, 4.0), (4, 5, 1.0), (5, 1, 1.0)]
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000))
    mules = pl.Series([1, 3, 5], dtype=pl.UInt32)
    groups = proximity.account_groups(p.accounts.sort("idx")["account_id"], 3)
    full = proximity.compute(p, mules, None, ppr_groups=3).sort("idx")
    alone = proximity.ppr_features(p, mules, groups, 3)
    for c in proximity.PPR_FEATURES:
        assert alone[c].to_list() == pytest.approx(full[c].to_list())
        assert full[c].sum() > 0
    # without PageRank the other columns are unchanged and the PageRank ones empty
    lean = proximity.compute(p, mules, None, ppr_groups=3, with_ppr=False).sort("idx")
    assert lean.drop(*proximity.PPR_FEATURES).equals(full.drop(*proximity.PPR_FEATURES))
    # the label-free graph built once and shared gives the same features for other known sets too
    graph = proximity.closeness_graph(p)
    for known in ([1, 3, 5], [0, 2], []):
        k = pl.Series(known, dtype=pl.UInt32)
        assert proximity.compute(p, k, k, ppr_groups=3, graph=graph).equals(proximity.compute(p, k, k, ppr_groups=3))
    assert all(lean[c].null_count() == lean.height for c in proximity.PPR_FEATURES)


def test_ppr_features_bad_groups_rejected():
    p = prepare(_transfers([(0, 1, 1.0), (1, 2, 1.0)]))
    with pytest.raises(ValueError, match="groups"):
        proximity.ppr_features(p, pl.Series([0], dtype=pl.UInt32), np.array([0, 1, 5]), 3)


@given(edges=edge_lists, mule_bits=st.integers(0, 2**12 - 1), block=st.integers(1, 5))
def test_relay_share_is_the_same_for_any_block(edges, mule_bits, block):
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000))
    mules = pl.Series(sorted(i for i in range(p.n_accounts) if mule_bits >> i & 1), dtype=pl.UInt32)
    one_ends = proximity.closeness_graph(p).one_ends
    whole = proximity._relay_share(one_ends, mules.implode(), SYNC, p.n_accounts)
    parts = proximity._relay_share(one_ends, mules.implode(), SYNC, p.n_accounts, block=block)
    assert whole.equals(parts) and whole.height == p.n_accounts


@given(edges=edge_lists, mule_bits=st.integers(0, 2**12 - 1), block=st.integers(1, 6))
def test_two_hop_count_is_the_same_for_any_block(edges, mule_bits, block):
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000))
    mules = pl.Series(sorted(i for i in range(p.n_accounts) if mule_bits >> i & 1), dtype=pl.UInt32)
    und = proximity.closeness_graph(p).both.select("a", "b")
    whole = proximity._two_hop_counts(und, mules.implode()).sort("idx")
    parts = proximity._two_hop_counts(und, mules.implode(), block=block).sort("idx")
    assert whole.equals(parts)


@given(edges=edge_lists, mule_bits=st.integers(0, 2**12 - 1), block=st.integers(1, 6), max_hops=st.integers(1, 4))
def test_hop_distance_is_the_same_for_any_block(edges, mule_bits, block, max_hops):
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000))
    mules = pl.Series(sorted(i for i in range(p.n_accounts) if mule_bits >> i & 1), dtype=pl.UInt32)
    und = proximity.closeness_graph(p).both.select("a", "b")
    whole = proximity._hops(und, mules, max_hops, p.n_accounts)
    parts = proximity._hops(und, mules, max_hops, p.n_accounts, block=block)
    assert whole.equals(parts) and whole.height == p.n_accounts
