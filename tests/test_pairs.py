"""The hub-free pair tables of the closeness features: loop references and order-free bits."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mulegraph.core.config import FeatureConfig
from mulegraph.features import prepare, proximity
from mulegraph.features.pairs import fixed_sum, non_hub_pairs, pairs_with_time, sorted_sums, undirected

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)

# amounts in cents, as banks export them: most are not exact in binary, so the order of addition
# shows in the last bits of a sum
amounts = st.integers(1, 10**8).map(lambda cents: cents / 100)
rows = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), amounts, st.integers(0, 50)), min_size=0, max_size=60)


def _frame(rs: list[tuple[int, int, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"src": [r[0] for r in rs], "dst": [r[1] for r in rs], "amount": [r[2] for r in rs], "t": [r[3] for r in rs]},
        schema={"src": pl.UInt32, "dst": pl.UInt32, "amount": pl.Float64, "t": pl.Int64},
    )


@given(rs=rows, seed=st.integers(0, 2**32 - 1))
def test_sorted_sums_match_a_loop_and_ignore_row_order(rs, seed):
    frame = _frame(rs)
    got = sorted_sums(frame, ["src", "dst"], "amount", "value", count="n", minimum={"t": "t_min"})
    groups: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    for s, d, a, t in rs:
        groups[(s, d)].append((a, t))
    keys = sorted(groups)
    assert list(zip(got["src"].to_list(), got["dst"].to_list())) == keys  # sorted by the keys
    assert got["n"].to_list() == [len(groups[k]) for k in keys]
    assert got["t_min"].to_list() == [min(t for _, t in groups[k]) for k in keys]
    assert got["value"].to_list() == pytest.approx([sum(sorted(a for a, _ in groups[k])) for k in keys], rel=1e-12)
    # any order of the input rows gives the very same bits
    shuffled = frame[np.random.default_rng(seed).permutation(frame.height).tolist()] if frame.height else frame
    again = sorted_sums(shuffled, ["src", "dst"], "amount", "value", count="n", minimum={"t": "t_min"})
    assert again.equals(got)
    assert got.schema == {"src": pl.UInt32, "dst": pl.UInt32, "n": pl.UInt32, "value": pl.Float64, "t_min": pl.Int64}


def test_sorted_sums_agree_with_fixed_sum_to_rounding():
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"k": rng.integers(0, 50, 5000).astype(np.uint32), "x": rng.uniform(0, 1e4, 5000).round(2)})
    got = sorted_sums(frame, ["k"], "x", "s")
    ref = frame.group_by("k").agg(fixed_sum("x").alias("s")).sort("k")
    assert got["k"].equals(ref["k"])
    assert got["s"].to_list() == pytest.approx(ref["s"].to_list(), rel=1e-13)


def _transfers(edges: list[tuple[int, int, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "txn_id": [f"t{i:04d}" for i in range(len(edges))],
            "ts": [T0 + timedelta(hours=h) for _, _, _, h in edges],
            "src_account": [f"a{s}" for s, _, _, _ in edges],
            "dst_account": [f"a{d}" for _, d, _, _ in edges],
            "amount": [v for _, _, v, _ in edges],
            "currency": ["EUR"] * len(edges),
            "channel": [None] * len(edges),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "channel": pl.String},
    )


edge_lists = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), amounts, st.integers(0, 200)), min_size=1, max_size=40)


@settings(max_examples=60)
@given(edges=edge_lists, hub=st.integers(0, 8))
def test_pair_tables_match_a_loop_over_transfers(edges, hub):
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000, hub_accounts=(f"a{hub}",)))
    hubs = set(p.hub_idx.to_list())
    directed: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    for si, di, v, t in zip(p.tx["src"].to_list(), p.tx["dst"].to_list(), p.tx["amount"].to_list(), p.tx["t"].to_list()):
        if si != di and si not in hubs and di not in hubs:
            directed[(si, di)].append((v, t))
    timed = pairs_with_time(p)
    keys = sorted(directed)
    assert list(zip(timed["src"].to_list(), timed["dst"].to_list())) == keys
    assert timed["n"].to_list() == [len(directed[k]) for k in keys]
    assert timed["value"].to_list() == pytest.approx([sum(v for v, _ in directed[k]) for k in keys], rel=1e-12)
    assert timed["t"].to_list() == [min(t for _, t in directed[k]) for k in keys]
    assert non_hub_pairs(p).equals(timed.drop("t"))
    # unordered pairs: the transfers both ways, u < v
    und_ref: dict[tuple[int, int], int] = defaultdict(int)
    for (a, b), vs in directed.items():
        und_ref[(min(a, b), max(a, b))] += len(vs)
    und = undirected(timed)
    assert list(zip(und["u"].to_list(), und["v"].to_list())) == sorted(und_ref)
    assert und["n"].to_list() == [und_ref[k] for k in sorted(und_ref)]
    # the closeness graph: both directions of every unordered pair, and both ends of the one-off ones
    g = proximity.closeness_graph(p)
    both = sorted(zip(g.both["a"].to_list(), g.both["b"].to_list(), g.both["n"].to_list()))
    assert both == sorted([(a, b, n) for (a, b), n in und_ref.items()] + [(b, a, n) for (a, b), n in und_ref.items()])
    ends = sorted(zip(g.one_ends["a"].to_list(), g.one_ends["m"].to_list(), g.one_ends["t"].to_list()))
    one_ref = []
    for (a, b), n in und_ref.items():
        if n == 1:
            ((_, t),) = directed.get((a, b), []) + directed.get((b, a), [])
            one_ref += [(a, b, t), (b, a, t)]
    assert ends == sorted(one_ref)


@settings(max_examples=100)
@given(values=st.lists(amounts, min_size=3, max_size=12))
def test_value_share_is_exactly_one_when_all_value_is_with_known_mules(values):
    # account 0 pays known mules 1..k once each; account 99 is paid by the same known mules only
    k = len(values)
    edges = [(0, 1 + i, v, i) for i, v in enumerate(values)] + [(1 + i, 99, v, 100 + i) for i, v in enumerate(reversed(values))]
    p = prepare(_transfers(edges), FeatureConfig(hub_degree=1000))
    idx = dict(zip(p.accounts["account_id"].to_list(), p.accounts["idx"].to_list()))
    mules = pl.Series([idx[f"a{1 + i}"] for i in range(k)], dtype=pl.UInt32)
    f = proximity.compute(p, mules, mules, with_ppr=False)
    row = {r["idx"]: r for r in f.iter_rows(named=True)}
    assert row[idx["a0"]]["known_mule_out_value_share"] == 1.0
    assert row[idx["a99"]]["known_mule_in_value_share"] == 1.0
    assert row[idx["a0"]]["known_mule_out_value"] == pytest.approx(sum(values), rel=1e-12)
