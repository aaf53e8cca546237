"""Reason codes: percentiles against a plain-loop reference, reason choice, texts, evidence."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mulegraph.scoring.explain import (
    Signal,
    choose_reasons,
    directional,
    evidence,
    explain,
    explain_chunks,
    feature_columns,
    percentiles,
    reason_text,
)
from mulegraph.features import prepare
from mulegraph.features.registry import REGISTRY, FeatureSpec, register
from mulegraph.core.schema import REASONS_DTYPE, TRANSFER_SCHEMA, reasons_from_json, reasons_to_json

register(
    FeatureSpec("test_share_xx", "passthrough", "Test share.", "share", 1, "{value:.0%} of received value left"),
    FeatureSpec("test_low_xx", "temporal", "Test lower-is-suspicious.", "hours", -1),
)


def percentile_reference(values: list[float | None]) -> list[float | None]:
    """Share of the other (non-missing) values that are strictly lower, by plain loops."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    out = []
    for v in values:
        if v is None or math.isnan(v):
            out.append(None)
            continue
        lower = sum(1 for w in present if w < v)
        out.append(lower / len(present))
    return out


values_st = st.lists(
    st.one_of(st.none(), st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1)), st.just(float("nan"))),
    min_size=1,
    max_size=40,
)


@given(values_st)
def test_percentile_matches_reference(values):
    frame = pl.DataFrame({"account_id": [f"a{i}" for i in range(len(values))], "f": values}, schema={"account_id": pl.String, "f": pl.Float64})
    got = percentiles(frame)["f"].to_list()
    want = percentile_reference(values)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or math.isnan(g)
        else:
            assert g == pytest.approx(w)


@given(values_st)
def test_directional_lower_is_share_higher(values):
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    got = directional(x, -1)
    present = x[~np.isnan(x)]
    for g, v in zip(got, x):
        if np.isnan(v):
            assert np.isnan(g)
        else:
            assert g == pytest.approx((present > v).sum() / present.size)


def test_percentile_golden():
    frame = pl.DataFrame({"account_id": ["a", "b", "c", "d"], "f": [0.0, 0.0, 5.0, 9.0]})
    assert percentiles(frame)["f"].to_list() == [0.0, 0.0, 0.5, 0.75]


def test_feature_columns_skip_identifiers():
    frame = pl.DataFrame({"account_id": ["a"], "is_hub": [False], "x": [1.0], "n": [2], "s": ["no"]})
    assert feature_columns(frame) == ["x", "n"]


def test_choose_reasons_takes_unusual_first_and_fills_to_three():
    strength = np.array([[0.9, 0.2, 0.8, 0.1, np.nan], [0.99, 0.98, 0.97, 0.96, 0.95]])
    unusual = strength.copy()
    got = choose_reasons(strength, unusual, n_reasons=5, min_reasons=3, min_unusual=0.5)
    assert got[0] == [0, 2, 1]  # two qualify, filled with the next strongest that has a value
    assert got[1] == [0, 1, 2, 3, 4]


def test_reason_text_uses_template_and_floors_percent():
    text = reason_text("test_share_xx", 0.97, 0.9996)
    assert text == "97% of received value left; higher than 99.9% of accounts"
    low = reason_text("test_low_xx", 2.0, 0.95)
    assert "lower than 95.0% of accounts" in low
    assert "Test lower-is-suspicious" in low


def _random_transfers(seed: int, n_acc: int = 12, n_tx: int = 120) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n_acc, n_tx)
    dst = (src + rng.integers(1, n_acc, n_tx)) % n_acc
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    ts = [t0 + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 10, n_tx)]
    return pl.DataFrame(
        {
            "txn_id": [f"T{i:04d}" for i in range(n_tx)],
            "ts": ts,
            "src_account": [f"A{s:02d}" for s in src],
            "dst_account": [f"A{d:02d}" for d in dst],
            "amount": np.round(rng.lognormal(5, 1, n_tx), 2),
            "currency": ["EUR"] * n_tx,
            "channel": rng.choice(["TRANSFER", "CASH", None], n_tx).tolist(),
        },
        schema=TRANSFER_SCHEMA,
    )


FEATURES = [
    "passthrough_share_24h",
    "fanin_max_72h",
    "fanout_max_24h",
    "first_time_in_share",
    "in_cp",
    "out_cp",
    "structuring_share",
    "cash_out_share",
    "night_share",
    "cycle_count",
    "fresh_sg_role_count",
    "fresh_square_share",
    "in_value",
    "out_value",
    "velocity",
]


@pytest.mark.parametrize("seed", range(6))
def test_evidence_belongs_to_the_account(seed):
    tx = _random_transfers(seed)
    p = prepare(tx)
    accounts = p.accounts["account_id"].to_list()
    rng = np.random.default_rng(seed)
    feats = pl.DataFrame({"account_id": accounts, "cycle_count": rng.integers(0, 2, len(accounts))})
    owner = {}
    for row in tx.select("txn_id", "src_account", "dst_account").to_dicts():
        owner[row["txn_id"]] = {row["src_account"], row["dst_account"]}
    nonempty = 0
    for f in FEATURES:
        ev = evidence(p, accounts, f, features=feats, max_txn_ids=7)
        for acc, ids in ev.items():
            assert len(ids) <= 7
            assert ids == sorted(set(ids))
            for tid in ids:
                assert acc in owner[tid], (f, acc, tid)
            nonempty += bool(ids)
    assert nonempty > 0


def _transfers(rows: list[tuple]) -> pl.DataFrame:
    """Canonical EUR transfers from ``(txn_id, ts, src, dst, amount)`` tuples."""
    n = len(rows)
    return pl.DataFrame(
        {
            "txn_id": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "src_account": [r[2] for r in rows],
            "dst_account": [r[3] for r in rows],
            "amount": [r[4] for r in rows],
            "currency": ["EUR"] * n,
            "channel": [None] * n,
        },
        schema=TRANSFER_SCHEMA,
    )


def test_passthrough_evidence_pairs_inbound_with_later_outbound():
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [
        ("T1", t0, "X", "M", 1000.0),  # in
        ("T2", t0 + timedelta(hours=2), "M", "Y", 950.0),  # forwarded within 24h
        ("T3", t0 + timedelta(days=5), "M", "Z", 10.0),  # nothing arrived within 24h before
        ("T4", t0 + timedelta(days=6), "Q", "M", 5.0),  # arrives after T3: never matched with it
    ]
    tx = _transfers(rows)
    p = prepare(tx)
    ev = evidence(p, ["M"], "passthrough_share_24h")
    assert ev["M"] == ["T1", "T2"]


def test_fanin_evidence_is_busiest_window():
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    ids, ts, src = [], [], []
    for i in range(5):  # five senders within 10 hours
        ids.append(f"B{i}")
        ts.append(t0 + timedelta(days=3, hours=2 * i))
        src.append(f"S{i}")
    for i in range(2):  # two spread-out senders
        ids.append(f"L{i}")
        ts.append(t0 + timedelta(days=10 * i + 20))
        src.append(f"R{i}")
    n = len(ids)
    tx = pl.DataFrame(
        {"txn_id": ids, "ts": ts, "src_account": src, "dst_account": ["M"] * n, "amount": [100.0] * n,
         "currency": ["EUR"] * n, "channel": [None] * n},
        schema=TRANSFER_SCHEMA,
    )
    ev = evidence(prepare(tx), ["M"], "fanin_max_24h")
    assert ev["M"] == [f"B{i}" for i in range(5)]


def test_explain_json_shape_and_evidence_only_for_top():
    tx = _random_transfers(3, n_acc=15, n_tx=200)
    p = prepare(tx)
    accounts = p.accounts["account_id"].to_list()
    rng = np.random.default_rng(0)
    feats = pl.DataFrame({"account_id": accounts, **{f: rng.random(len(accounts)) for f in FEATURES[:6]}})
    sigs = [Signal("CODE_" + f.upper(), f, 1.0) for f in FEATURES[:6]] + [Signal("MISSING", "not_a_column")]
    order = sorted(accounts)
    reasons = explain(feats, sigs, prepared=p, order=order, evidence_top=4)
    assert reasons.len() == len(accounts)
    assert reasons.dtype == REASONS_DTYPE
    for acc, items in zip(accounts, reasons.to_list()):
        assert 3 <= len(items) <= 5
        assert {"code", "feature", "family", "text", "value", "percentile", "txn_ids"} <= set(items[0])
        assert len({i["feature"] for i in items}) == len(items)
        if acc not in order[:4]:
            assert all(i["txn_ids"] == [] for i in items)
        # ordered by strength (equal weights: by how unusual)
        pcts = [i["percentile"] for i in items]
        assert pcts == sorted(pcts, reverse=True)
    assert any(items[0]["txn_ids"] for a, items in zip(accounts, reasons.to_list()) if a in order[:4])
    assert "not_a_column" not in REGISTRY
    # the JSON wire format round-trips exactly, values rounded to 6 significant digits
    frame = pl.DataFrame({"reasons": reasons})
    text = frame.select(reasons_to_json())
    assert text.select(reasons_from_json()).equals(frame)
    first = json.loads(text["reasons"][0])
    assert first == reasons.to_list()[0]
    assert all(len(repr(r["value"]).lstrip("-0.").replace(".", "")) <= 7 for r in first if r["value"] is not None)


def test_no_reasons_is_an_empty_list_and_json_brackets():
    feats = pl.DataFrame({"account_id": ["a", "b"], "x": [1.0, 2.0]})
    reasons = explain(feats, [Signal("MISSING", "not_a_column")])
    assert reasons.dtype == REASONS_DTYPE and reasons.to_list() == [[], []]
    assert pl.DataFrame({"reasons": reasons}).select(reasons_to_json())["reasons"].to_list() == ["[]", "[]"]


def test_evidence_kind_and_horizon_come_from_the_feature_spec():
    """Evidence follows the spec's fields, not the feature's name."""
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [("T1", t0, "X", "M", 1000.0), ("T2", t0 + timedelta(hours=30), "M", "Y", 950.0)]
    p = prepare(_transfers(rows))
    register(FeatureSpec("zz_forwarding_48h_test", "custom", "Test.", "share", 1, evidence="passthrough", horizon="48h"),
             FeatureSpec("zz_forwarding_short_test", "custom", "Test.", "share", 1, evidence="passthrough", horizon="1d"))
    assert evidence(p, ["M"], "zz_forwarding_48h_test")["M"] == ["T1", "T2"]  # 30 h apart: within 48h
    assert evidence(p, ["M"], "zz_forwarding_short_test").get("M", []) == []  # ... but not within 1d
    assert REGISTRY["passthrough_share_24h"].evidence == "passthrough" and REGISTRY["passthrough_share_24h"].horizon == "24h"
    assert REGISTRY["fanin_max_72h"].evidence == "busiest_in" and REGISTRY["fresh_square_share"].evidence == "one_off"
    with pytest.raises(ValueError, match="evidence must be one of"):
        FeatureSpec("zz_bad", "custom", "Test.", "share", 1, evidence="guess")


def test_structure_evidence_uses_one_off_transfers_only():
    t0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
    rows = [
        ("T1", 0, "S", "M1"), ("T2", 1, "S", "M2"), ("T3", 30, "M1", "D"), ("T4", 40, "M2", "D"),
        *[(f"Q{i}", 24 * 7 * i + 2, "Y", "D") for i in range(4)],  # a standing relationship
    ]
    tx = _transfers([(i, t0 + timedelta(hours=h), a, b, 100.0) for i, h, a, b in rows])
    p = prepare(tx)
    feats = pl.DataFrame({"account_id": ["D", "M1", "M2", "S", "Y"], "fresh_sg_role_count": [1.0, 1.0, 1.0, 1.0, 0.0]})
    ev = evidence(p, ["D", "S"], "fresh_sg_role_count", features=feats)
    assert ev["D"] == ["T3", "T4"]
    assert ev["S"] == ["T1", "T2"]


def choose_reference(strength, unusual, n_reasons, min_reasons, min_unusual):
    """Reason choice by plain loops: qualifying signals by strength, then fill-up to the minimum."""
    out = []
    for srow, urow in zip(strength.tolist(), unusual.tolist()):
        idx = [j for j in range(len(srow)) if not math.isnan(srow[j])]
        idx.sort(key=lambda j: (-srow[j], j))
        good = [j for j in idx if not math.isnan(urow[j]) and urow[j] >= min_unusual][:n_reasons]
        if len(good) < min_reasons:
            rest = [j for j in idx if j not in good and not (not math.isnan(urow[j]) and urow[j] >= min_unusual)]
            good = good + rest[: min_reasons - len(good)]
            good.sort(key=lambda j: (-srow[j], j))
        out.append(good)
    return out


@given(
    st.lists(
        st.lists(st.one_of(st.just(float("nan")), st.sampled_from([0.0, 0.2, 0.5, 0.7, 0.9, 1.0])), min_size=6, max_size=6),
        min_size=1,
        max_size=12,
    ),
    st.integers(3, 5),
)
def test_choose_reasons_matches_reference(matrix, n_reasons):
    unusual = np.array(matrix, dtype=float)
    weights = np.array([1.0, 0.5, 1.0, 0.25, 2.0, 1.0])
    strength = unusual * weights
    got = choose_reasons(strength, unusual, n_reasons=n_reasons, min_reasons=3, min_unusual=0.5)
    assert got == choose_reference(strength, unusual, n_reasons, 3, 0.5)


def test_passthrough_evidence_skips_hub_to_hub_money():
    from mulegraph.core.config import FeatureConfig

    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [
        ("S1", t0, "EMPLOYER", "M", 3000.0),  # salary from a hub
        ("S2", t0 + timedelta(hours=3), "M", "SHOP", 50.0),  # card spending at a hub
        ("P1", t0 + timedelta(days=3), "X", "M", 800.0),  # from a person
        ("P2", t0 + timedelta(days=3, hours=1), "M", "SHOP", 780.0),  # forwarded to a hub
    ]
    tx = _transfers(rows)
    p = prepare(tx, FeatureConfig(hub_accounts=("EMPLOYER", "SHOP")))
    assert evidence(p, ["M"], "passthrough_share_24h")["M"] == ["P1", "P2"]


def test_reasons_json_wire_format_is_pinned():
    """The JSON text of CSV and JSON outputs: compact, fields in contract order, nulls as null."""
    reasons = pl.DataFrame(
        {"reasons": [[{"code": "RAPID_PASSTHROUGH", "feature": "passthrough_share_24h", "family": "passthrough",
                       "text": "97% left; higher than 99.6% of accounts", "value": 0.970123, "percentile": 0.996,
                       "txn_ids": ["T1", "T9"]},
                      {"code": "X", "feature": "f", "family": None, "text": "é", "value": None, "percentile": None,
                       "txn_ids": []}], []]},
        schema={"reasons": REASONS_DTYPE},
    )
    text = reasons.select(reasons_to_json())["reasons"].to_list()
    assert text == [
        '[{"code":"RAPID_PASSTHROUGH","feature":"passthrough_share_24h","family":"passthrough",'
        '"text":"97% left; higher than 99.6% of accounts","value":0.970123,"percentile":0.996,"txn_ids":["T1","T9"]},'
        '{"code":"X","feature":"f","family":null,"text":"é","value":null,"percentile":null,"txn_ids":[]}]',
        "[]",
    ]
    assert pl.DataFrame({"reasons": text}).select(reasons_from_json()).equals(reasons)


def _explain_inputs(seed: int):
    tx = _random_transfers(seed, n_acc=20, n_tx=300)
    p = prepare(tx)
    accounts = p.accounts["account_id"].to_list()
    rng = np.random.default_rng(seed)
    cols = {f: rng.choice([0.0, 0.0, 1.0, 2.5, np.nan, float(i)], len(accounts)) for i, f in enumerate(FEATURES)}
    cols["in_cp"] = rng.integers(0, 4, len(accounts))  # an integer column, with ties
    feats = pl.DataFrame({"account_id": accounts, **cols})
    sigs = [Signal("CODE_" + f.upper(), f, w) for f, w in zip(FEATURES, [1.0, 0.5, 0.25] * 5)]
    order = [accounts[i] for i in rng.permutation(len(accounts))]
    return p, feats, sigs, order


@pytest.mark.parametrize("seed", range(3))
def test_explain_by_chunks_equals_all_at_once(seed):
    """Percentiles are read against the whole population, so the chunk size changes nothing."""
    p, feats, sigs, order = _explain_inputs(seed)
    whole = explain(feats, sigs, prepared=p, order=order, evidence_top=6, chunk_rows=10**6)
    assert any(r["txn_ids"] for items in whole.to_list() for r in items)
    for chunk_rows in (1, 3, 7):
        got = explain(feats, sigs, prepared=p, order=order, evidence_top=6, chunk_rows=chunk_rows)
        assert got.dtype == REASONS_DTYPE and got.name == "reasons"
        assert got.equals(whole)
    with pytest.raises(ValueError, match="chunk_rows"):
        explain(feats, sigs, chunk_rows=0)
    assert explain(feats.head(0), sigs).to_list() == []


@pytest.mark.parametrize("seed", range(3))
def test_one_off_transfers_of_some_accounts_are_those_of_all(seed):
    from mulegraph.features.structure import fresh_transfers

    p = prepare(_random_transfers(seed, n_acc=30, n_tx=60))
    idx = p.accounts["idx"].head(7)
    every = fresh_transfers(p, "10d")
    want = every.filter(pl.col("src").is_in(idx.implode()) | pl.col("dst").is_in(idx.implode()))
    got = fresh_transfers(p, "10d", touching=idx)
    assert sorted(got["txn_id"].to_list()) == sorted(want["txn_id"].to_list())
    assert not want.is_empty()


@pytest.mark.parametrize("seed", range(4))
def test_square_share_by_blocks_is_bit_identical(seed, monkeypatch):
    """The 2-hop products are built a block of rows at a time; the sums keep their order exactly."""
    import mulegraph.features.structure as structure

    rng = np.random.default_rng(seed)
    n = 40
    edges = pl.DataFrame({"src": rng.integers(0, n, 300).astype(np.uint32), "dst": rng.integers(0, n, 300).astype(np.uint32)})
    whole = structure._square_share(edges, n)
    assert (whole["fresh_square_share"] > 0).any()
    for block in (1, 5, 50):
        monkeypatch.setattr(structure, "SQUARE_BLOCK_PATHS", block)
        got = structure._square_share(edges, n)
        assert got["idx"].equals(whole["idx"])
        assert np.array_equal(got["fresh_square_share"].to_numpy().view(np.int64), whole["fresh_square_share"].to_numpy().view(np.int64))


def test_texts_format_each_value_as_reason_text_does():
    """_texts formats each distinct (value, percentile) once: repeats, -0.0 and NaN must read as one by one."""
    from mulegraph.scoring.explain import _texts, reason_text

    values = np.array([3.0, 3.0, 0.0, -0.0, 0.0, np.nan, np.nan, 2.5, 3.0, -0.0])
    unusual = np.array([0.9, 0.9, 0.5, 0.5, np.nan, 0.7, 0.7, 0.9, 0.91, 0.5])
    for feature in ("fanin_max_24h", "forward_ratio", "not_a_registered_feature"):
        got = _texts(feature, values, unusual)
        want = [
            reason_text(feature, None if math.isnan(v) else v, None if math.isnan(u) else u)
            for v, u in zip(values.tolist(), unusual.tolist())
        ]
        assert got == want
    assert _texts("fanin_max_24h", values, unusual)[3] != _texts("fanin_max_24h", values, unusual)[2]


pop_values_st = st.lists(
    st.one_of(st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0]), st.floats(-5, 5, allow_nan=False), st.just(float("nan"))),
    min_size=0,
    max_size=60,
)


@given(pop_values_st, pop_values_st)
def test_a_population_of_distinct_values_gives_the_shares_of_the_sorted_values(population, values):
    """Held as distinct values and counts, a population gives bit for bit the shares (both ways,
    and the directional ones) that its sorted values give: ties, NaN and -0.0 included."""
    from mulegraph.scoring.signals import Population, present_sorted, share_beyond_sorted

    pop = np.array(population, dtype=float)
    x = np.array(values, dtype=float)
    held = Population.of(pop)
    ref = present_sorted(pop)
    assert held.size == ref.size and held.values.size <= ref.size
    for higher in (False, True):
        np.testing.assert_array_equal(held.share_beyond(x, higher=higher), share_beyond_sorted(ref, x, higher=higher))
    for d in (-1, 0, 1):
        np.testing.assert_array_equal(held.directional(x, d), directional(x, d, ref))


@pytest.mark.parametrize("seed", range(3))
def test_explaining_rows_in_a_given_order_equals_explaining_them_reordered(seed):
    """``take`` explains the rows in its order without a reordered copy: the reasons, evidence
    included, are those of the reordered frame, for any chunk size."""
    p, feats, sigs, order = _explain_inputs(seed)
    row_of = {a: i for i, a in enumerate(feats["account_id"])}
    take = pl.Series([row_of[a] for a in order], dtype=pl.UInt32)
    reordered = feats[take.to_numpy()]
    assert reordered["account_id"].to_list() == order
    want = explain(reordered, sigs, prepared=p, order=order, evidence_top=6)
    assert any(r["txn_ids"] for items in want.to_list() for r in items)
    for chunk_rows in (1, 4, 10**6):
        got = pl.concat(list(explain_chunks(feats, sigs, prepared=p, order=order, evidence_top=6, chunk_rows=chunk_rows,
                                            take=take)))
        assert got.equals(want)
