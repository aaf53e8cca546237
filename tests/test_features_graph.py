"""Pattern and network feature families against slow references (tests/graph_reference.py)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import networkx as nx
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph_reference import (
    ref_chains,
    ref_cycles,
    ref_gather_scatter,
    ref_network,
    ref_neighbour_stats,
    ref_scatter_gather,
)
from conftest import canonical_transfers
from mulegraph.core.config import FeatureConfig
from mulegraph.features import patterns
from mulegraph.features.prepare import prepare
from mulegraph.features.graph import aggregate_edges, neighbourhood, subgraph_edges, to_networkx

BASE = datetime(2025, 1, 6, tzinfo=timezone.utc)
DAY = 86400


def frame(rows):
    """Canonical transfers from (src, dst, seconds after BASE, amount) tuples."""
    return canonical_transfers(rows, BASE)


def prep(rows, **cfg):
    return prepare(frame(rows), FeatureConfig(**cfg))


def by_account(p, out, col):
    """{account id: value} for non-zero, non-null values of one column."""
    df = out.join(p.accounts.select("idx", "account_id"), on="idx").filter(
        pl.col(col).is_not_null() & (pl.col(col) != 0)
    )
    return dict(zip(df["account_id"].to_list(), df[col].to_list()))


def named(p, d):
    ids = p.accounts["account_id"].to_list()
    return {ids[k]: v for k, v in d.items() if v}


# --------------------------------------------------------------------------------------------
# golden cases


def test_three_cycle_with_increasing_times_is_found():
    p = prep([("A", "B", 0, 100), ("B", "C", 3600, 95), ("C", "A", 7200, 90)])
    out = patterns.compute(p)
    assert by_account(p, out, "cycle_count") == {"A": 1, "B": 1, "C": 1}
    assert by_account(p, out, "cycle_value") == {"A": 90.0, "B": 90.0, "C": 90.0}
    assert by_account(p, out, "cycle_count_consistent") == {"A": 1, "B": 1, "C": 1}
    assert by_account(p, out, "cycle_long_count") == {"A": 1, "B": 1, "C": 1}


def test_three_cycle_whose_times_do_not_increase_is_not_found():
    p = prep([("A", "B", 7200, 100), ("B", "C", 3600, 95), ("C", "A", 0, 90), ("C", "D", 10, 5)])
    out = patterns.compute(p)
    # rotations: B->C (1h), C->A (0) decreases; C->A (0), A->B (2h), B->C (1h) decreases; ...
    assert by_account(p, out, "cycle_count") == {}


def test_cycle_spanning_more_than_the_window_is_not_found():
    p = prep([("A", "B", 0, 100), ("B", "C", 3 * DAY, 95), ("C", "A", 8 * DAY, 90)])
    assert by_account(p, patterns.compute(p), "cycle_count") == {}
    p = prep([("A", "B", 0, 100), ("B", "C", 3 * DAY, 95), ("C", "A", 8 * DAY, 90)], cycle_window="9d")
    assert by_account(p, patterns.compute(p), "cycle_count") == {"A": 1, "B": 1, "C": 1}


def test_equal_timestamps_count_as_possibly_after_and_once():
    # whole-day data: all three on the same day form one cycle, counted once
    p = prep([("A", "B", 0, 100), ("B", "C", 0, 100), ("C", "A", 0, 100)])
    assert by_account(p, patterns.compute(p), "cycle_count") == {"A": 1, "B": 1, "C": 1}


def test_inconsistent_amounts_are_a_cycle_but_not_a_consistent_one():
    p = prep([("A", "B", 0, 100), ("B", "C", 10, 30), ("C", "A", 20, 29)])
    out = patterns.compute(p)
    assert by_account(p, out, "cycle_count") == {"A": 1, "B": 1, "C": 1}
    assert by_account(p, out, "cycle_count_consistent") == {}


def test_five_cycle_and_parallel_transfers():
    ring = [("A", "B", 0, 100), ("B", "C", 10, 99), ("C", "D", 20, 98), ("D", "E", 30, 97), ("E", "A", 40, 96)]
    p = prep(ring + [("C", "D", 25, 98)])  # a parallel hop gives a second cycle
    assert by_account(p, patterns.compute(p), "cycle_count") == {k: 2 for k in "ABCDE"}
    p = prep([("A", "B", 0, 100), ("B", "A", 10, 99)])
    out = patterns.compute(p)
    assert by_account(p, out, "cycle_count") == {"A": 1, "B": 1} and by_account(p, out, "cycle_long_count") == {}
    p = prep(ring, max_cycle_length=4)
    assert by_account(p, patterns.compute(p), "cycle_count") == {}


def test_scatter_gather_credits_every_role():
    rows = [("S", "M1", 0, 500), ("S", "M2", 10, 500), ("M1", "T", 100, 480), ("M2", "T", 200, 470)]
    p = prep(rows)
    out = patterns.compute(p)
    assert by_account(p, out, "sg_count") == {"S": 1}
    assert by_account(p, out, "sg_mid_count") == {"M1": 1, "M2": 1}
    assert by_account(p, out, "sg_target_count") == {"T": 1}
    assert by_account(p, out, "sg_role_count") == {"S": 1, "M1": 1, "M2": 1, "T": 1}
    # money that reached T before it left S is no scatter-gather
    p = prep([("S", "M1", 300, 500), ("S", "M2", 10, 500), ("M1", "T", 100, 480), ("M2", "T", 200, 470)])
    assert by_account(p, patterns.compute(p), "sg_count") == {}


def test_gather_scatter_and_chains():
    rows = [("A", "M", 0, 100), ("B", "M", 5, 100), ("M", "X", 10, 90), ("M", "Y", 20, 90)]
    p = prep(rows)
    out = patterns.compute(p)
    assert by_account(p, out, "gs_count") == {"M": 4}
    chain = [("A", "B", 0, 1000), ("B", "C", 10, 950), ("C", "D", 20, 900), ("D", "E", 30, 880)]
    p = prep(chain + [("B", "Z", -5, 900)])  # outbound before the inbound it would forward: no hop
    out = patterns.compute(p)
    assert by_account(p, out, "chain_depth") == {"B": 4, "C": 4, "D": 4}
    assert by_account(p, out, "chain_hops") == {"B": 1, "C": 1, "D": 1}


def test_hubs_are_left_out_and_get_null():
    rows = [("A", "H", 0, 100), ("H", "B", 10, 95), ("B", "A", 20, 90)]
    p = prep(rows, hub_accounts=("H",))
    out = patterns.compute(p).join(p.accounts.select("idx", "account_id"), on="idx")
    assert out.filter(pl.col("account_id") == "H")["cycle_count"].to_list() == [None]
    assert out.filter(pl.col("account_id") != "H")["cycle_count"].to_list() == [0, 0]


# --------------------------------------------------------------------------------------------
# fast == reference on random small graphs

accounts = st.sampled_from(list("ABCDEFG"))
transfer = st.tuples(
    accounts,
    accounts,
    st.integers(0, 10).map(lambda h: h * 12 * 3600),  # half-day steps: ties and window edges
    st.sampled_from([100.0, 95.0, 90.0, 80.0, 60.0, 20.0]),
)
graphs = st.lists(transfer, min_size=1, max_size=22)


@given(graphs, st.booleans())
def test_patterns_match_reference(rows, with_hub):
    cfg = dict(cycle_window="2d", chain_cap=4, hub_accounts=("G",) if with_hub else ())
    p = prep(rows, **cfg)
    out = patterns.compute(p)
    w = 2 * DAY
    count, value, consistent, long = ref_cycles(p, w, 5, 0.8)
    assert by_account(p, out, "cycle_count") == named(p, count)
    got = by_account(p, out, "cycle_value")
    want = named(p, value)
    assert got.keys() == want.keys() and all(math.isclose(got[k], want[k]) for k in got)
    assert by_account(p, out, "cycle_count_consistent") == named(p, consistent)
    assert by_account(p, out, "cycle_long_count") == named(p, long)
    src, mid, tgt = ref_scatter_gather(p, w)
    assert by_account(p, out, "sg_count") == named(p, src)
    assert by_account(p, out, "sg_mid_count") == named(p, mid)
    assert by_account(p, out, "sg_target_count") == named(p, tgt)
    assert by_account(p, out, "gs_count") == named(p, ref_gather_scatter(p, w))
    hops, depth = ref_chains(p, w, 0.7, 4)
    assert by_account(p, out, "chain_hops") == named(p, hops)
    assert by_account(p, out, "chain_depth") == named(p, depth)


@given(graphs, st.integers(1, 6))
def test_two_paths_in_blocks_equal_one_join(rows, block):
    """The 2-path join taken a few first hops at a time gives the same rows in the same order."""
    p = prep(rows, cycle_window="2d")
    e = patterns.pattern_edges(p)
    whole = patterns.two_paths(e, 2 * DAY, block=10**9)
    assert patterns.two_paths(e, 2 * DAY, block=block).equals(whole)


def test_pattern_features_do_not_depend_on_the_two_path_block(monkeypatch):
    rows = [(a, b, h * 6 * 3600, 100.0 - h) for h, (a, b) in enumerate(
        ["AB", "BC", "CA", "AD", "DC", "BD", "DA", "CB", "AC", "CD", "DB", "BA"] * 2)]
    p = prep(rows, cycle_window="2d")
    whole = patterns.compute(p)
    monkeypatch.setattr(patterns, "TWO_PATH_BLOCK", 2)
    p = prep(rows, cycle_window="2d")
    assert patterns.compute(p).equals(whole)
    assert whole["cycle_count"].sum() > 0 and whole["sg_count"].sum() > 0


# --------------------------------------------------------------------------------------------
# network family

from mulegraph.features import network  # noqa: E402


def by_idx(out, col):
    df = out.filter(pl.col(col).is_not_null())
    return dict(zip(df["idx"].to_list(), df[col].to_list()))


network_graphs = st.lists(
    st.tuples(st.integers(0, 11), st.integers(0, 11), st.integers(0, 5).map(lambda d: d * DAY),
              st.floats(1, 1000, allow_nan=False)),
    min_size=1, max_size=40,
)


@given(network_graphs, st.booleans(), st.data())
def test_network_matches_networkx(rows, with_hub, data):
    p = prep(rows, hub_accounts=("0",) if with_hub else ())
    so_far = p.accounts.select("idx", "account_id", "is_hub").with_columns(
        passthrough_share_24h=pl.Series(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, None]), min_size=p.n_accounts, max_size=p.n_accounts))),
        fanin_max_72h=pl.Series(data.draw(st.lists(st.integers(0, 9), min_size=p.n_accounts, max_size=p.n_accounts))),
        forward_ratio=pl.Series(data.draw(st.lists(st.sampled_from([0.5, 2.0, float("inf"), float("nan")]), min_size=p.n_accounts, max_size=p.n_accounts))),
        chain_depth=pl.Series(data.draw(st.lists(st.sampled_from([0, 2, 5, None]), min_size=p.n_accounts, max_size=p.n_accounts)), dtype=pl.Int64),
        cycle_long_count=pl.Series(data.draw(st.lists(st.integers(0, 4), min_size=p.n_accounts, max_size=p.n_accounts)), dtype=pl.Int64),
    )
    p.extra["so_far"] = so_far
    out = network.compute(p)
    wcc, pr, core = ref_network(p)
    assert by_idx(out, "wcc_size") == wcc
    assert by_idx(out, "kcore") == core
    got = by_idx(out, "pagerank")
    assert got.keys() == pr.keys() and all(math.isclose(got[k], pr[k], rel_tol=1e-5, abs_tol=1e-9) for k in got)
    for col, name in (("passthrough_share_24h", "passthrough_24h"), ("fanin_max_72h", "fanin_72h"), ("forward_ratio", "forward_ratio")):
        vals = dict(zip(so_far["idx"].to_list(), so_far[col].to_list()))
        mean, mx = ref_neighbour_stats(p, vals)
        got_mean = by_idx(out, f"nbr_mean_{name}")
        assert got_mean.keys() == mean.keys() and all(math.isclose(got_mean[k], mean[k]) for k in got_mean)
        if name != "forward_ratio":
            assert by_idx(out, f"nbr_max_{name}") == mx
    for col, name in (("chain_depth", "nbr_max_chain_depth"), ("cycle_long_count", "nbr_max_cycle_long")):
        _, mx = ref_neighbour_stats(p, dict(zip(so_far["idx"].to_list(), so_far[col].to_list())))
        assert by_idx(out, name) == mx


def test_network_without_earlier_columns_gives_null_aggregates():
    p = prep([("A", "B", 0, 10), ("B", "C", 10, 10)])
    out = network.compute(p)  # no p.extra["so_far"]: the flow families have not run
    assert out["nbr_mean_passthrough_24h"].null_count() == 3
    assert out["wcc_size"].to_list() == [3, 3, 3]


def test_core_numbers_on_a_hub_star_and_a_clique():
    # a star around X (many leaves) plus a 4-clique: leaves have core 1, the clique 3
    rows = [("X", f"L{i}", i, 1) for i in range(30)]
    rows += [(a, b, 100, 1) for a in "PQRS" for b in "PQRS" if a < b]
    p = prep(rows)
    out = network.compute(p).join(p.accounts.select("idx", "account_id"), on="idx")
    core = dict(zip(out["account_id"].to_list(), out["kcore"].to_list()))
    assert core["X"] == 1 and core["L3"] == 1 and core["P"] == 3 and core["S"] == 3
    g = nx.Graph([(a, b) for a, b, _, _ in rows])
    assert core == nx.core_number(g)


# --------------------------------------------------------------------------------------------
# graph helpers


def test_aggregate_edges_and_networkx_graph():
    tx = frame([("A", "B", 0, 10), ("A", "B", 50, 5), ("B", "C", 20, 1), ("H", "A", 1, 7)])
    edges = aggregate_edges(tx, exclude=["H"]).sort("src_account")
    assert edges.select("src_account", "dst_account", "count", "value").rows() == [("A", "B", 2, 15.0), ("B", "C", 1, 1.0)]
    g = to_networkx(edges)
    assert g["A"]["B"]["count"] == 2 and g["A"]["B"]["last_ts"] == BASE + timedelta(seconds=50)
    full = aggregate_edges(tx)
    assert neighbourhood(full, ["C"], hops=2).to_list() == ["A", "B", "C"]
    assert neighbourhood(full, ["C"], hops=3).to_list() == ["A", "B", "C", "H"]
    assert neighbourhood(full, ["C"], hops=2, exclude=["A"]).to_list() == ["B", "C"]
    assert subgraph_edges(full, ["B"], hops=1).height == 2
    assert neighbourhood(full, ["C"], hops=3, exclude=(a for a in ["A"])).to_list() == ["B", "C"]


@given(graphs, st.lists(accounts, min_size=1, max_size=3, unique=True))
def test_shard_with_halo_gives_whole_graph_pattern_values(rows, shard):
    from mulegraph.features import compute_features
    from mulegraph.features.graph import shard_with_halo

    cfg = FeatureConfig(cycle_window="2d", chain_cap=3, hub_accounts=("G",))
    tx = frame(rows)
    whole = compute_features(tx, cfg, families=["patterns"])
    part_tx = shard_with_halo(tx, shard, hops=2, hubs=["G"])
    present = [a for a in shard if a in set(whole["account_id"].to_list())]
    part = compute_features(part_tx, cfg, families=["patterns"], accounts=present)
    want = whole.filter(pl.col("account_id").is_in(present)).sort("account_id")
    assert part.sort("account_id").equals(want)


def test_halo_of_one_hop_misses_a_five_cycle():
    from mulegraph.features import compute_features
    from mulegraph.features.graph import shard_with_halo

    ring = frame([("A", "B", 0, 100), ("B", "C", 10, 99), ("C", "D", 20, 98), ("D", "E", 30, 97), ("E", "A", 40, 96)])
    cfg = FeatureConfig()
    near = compute_features(shard_with_halo(ring, ["A"], hops=1), cfg, families=["patterns"], accounts=["A"])
    full = compute_features(shard_with_halo(ring, ["A"], hops=2), cfg, families=["patterns"], accounts=["A"])
    assert near["cycle_count"].to_list() == [0] and full["cycle_count"].to_list() == [1]


def test_busy_account_is_left_out_like_a_hub():
    # M is paid by five accounts and pays five others within a day: 25 two-hop pairs through it
    rows = [(f"I{i}", "M", i, 100) for i in range(5)] + [("M", f"O{i}", 10 + i, 90) for i in range(5)]
    rows += [("A", "B", 0, 100), ("B", "C", 5, 95), ("C", "A", 9, 90), ("I0", "A", 1, 50), ("A", "I0", 2, 45)]
    capped = prep(rows, pattern_max_paths=20)
    out = patterns.compute(capped)
    as_hub = prep(rows, hub_accounts=("M",))
    ref = patterns.compute(as_hub)
    assert out.equals(ref)
    assert by_account(capped, out, "gs_count") == {}  # only M had a gather-scatter
    assert by_account(capped, out, "cycle_count") == {"A": 2, "B": 1, "C": 1, "I0": 1}
    uncapped = prep(rows)
    assert by_account(uncapped, patterns.compute(uncapped), "gs_count") == {"M": 25}
    assert patterns.busy_accounts(patterns.pattern_edges(capped), 7 * DAY, 20).to_list() == [
        capped.accounts.filter(pl.col("account_id") == "M")["idx"].item()
    ]


@pytest.mark.parametrize(
    "rows, hubs",
    [([], ()), ([("A", "A", 0, 5)], ()), ([("A", "B", 0, 5), ("B", "A", 1, 5)], ("A", "B"))],
)
def test_graph_families_on_empty_self_only_and_all_hub_input(rows, hubs):
    from mulegraph.features import compute_features

    out = compute_features(frame(rows), FeatureConfig(hub_accounts=hubs), families=["patterns", "network"])
    assert out.height == len({r[0] for r in rows} | {r[1] for r in rows})
    names = [s.name for s in patterns.FEATURES + network.FEATURES]
    assert set(names) <= set(out.columns)
    if hubs:
        assert out.select(names).null_count().row(0) == (out.height,) * len(names)


@pytest.mark.parametrize("bad", [dict(max_cycle_length=6), dict(max_cycle_length=1), dict(chain_cap=0), dict(chain_keep_low=1.5)])
def test_invalid_pattern_settings_are_a_clear_error(bad):
    from mulegraph.core.errors import FeatureError

    with pytest.raises(FeatureError, match="must be"):
        patterns.compute(prep([("A", "B", 0, 1)], **bad))


def test_invalid_cycle_window_is_an_input_error():
    from mulegraph.core.errors import InputError

    with pytest.raises(InputError, match="cycle_window"):
        patterns.compute(prep([("A", "B", 0, 1)], cycle_window="-3h"))


def _by_idx(frame: pl.DataFrame) -> dict:
    return {r["idx"]: tuple(v for k, v in sorted(r.items()) if k != "idx") for r in frame.to_dicts()}


@given(graphs, st.integers(1, 8))
def test_scatter_gather_by_blocks_of_middle_accounts_equals_one_pass(rows, block):
    """Found a share of the middle accounts at a time, the scatter-gather and gather-scatter
    counts are those of one pass over every 2-hop path."""
    p = prep(rows, cycle_window="2d")
    p3 = patterns.two_paths(patterns.pattern_edges(p), 2 * DAY).filter(pl.col("c") != pl.col("a"))
    sg, gs = patterns._scatter_gather(p3, block=10**9)
    sg_b, gs_b = patterns._scatter_gather(p3, block=block)
    assert _by_idx(sg_b) == _by_idx(sg) and _by_idx(gs_b) == _by_idx(gs)
    assert sg_b.schema == sg.schema and gs_b.schema == gs.schema


def test_pattern_features_do_not_depend_on_the_scatter_gather_block(monkeypatch):
    rows = [(a, b, h * 6 * 3600, 100.0 - h) for h, (a, b) in enumerate(
        ["AB", "BC", "AD", "DC", "AE", "EC", "BF", "DF", "EF", "CB", "CD", "FA"] * 2)]
    whole = patterns.compute(prep(rows, cycle_window="2d"))
    assert whole["sg_role_count"].sum() > 0 and whole["gs_count"].sum() > 0
    monkeypatch.setattr(patterns, "SG_BLOCK", 3)
    assert patterns.compute(prep(rows, cycle_window="2d")).equals(whole)
