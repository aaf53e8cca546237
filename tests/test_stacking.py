"""Neighbours' scores as model features ([model] neighbour_scores, mulegraph.scoring.stacking)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import canonical_transfers, half_labelled_bank
from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.features import prepare
from mulegraph.scoring import stacking
from mulegraph.scoring.model import MuleModel, load_model, save_model

BASE = datetime(2025, 1, 6, tzinfo=timezone.utc)
DAY = 86400
NAMES = list(stacking.NEIGHBOUR_FEATURES)


def frame(rows):
    """Canonical transfers from (src, dst, seconds after BASE) tuples."""
    return canonical_transfers(rows, BASE)


def reference(rows, hubs, scores):
    """The neighbour features by plain loops over the transfers: {account: {feature: value}}."""
    accounts = sorted({str(a) for r in rows for a in r[:2]})
    ranked = [a for a in accounts if a not in hubs]
    s = {a: (0.0 if a in hubs else float(scores.get(a, 0.0))) for a in accounts}
    threshold = np.quantile([s[a] for a in ranked], 1.0 - stacking.TOP_SHARE) if ranked else 0.0
    top = {a: a in ranked and s[a] >= threshold for a in accounts}
    pairs = Counter()
    for src, dst, _ in rows:
        src, dst = str(src), str(dst)
        if src != dst and src not in hubs and dst not in hubs:
            pairs[frozenset((src, dst))] += 1
    out_once, in_once, once, every = defaultdict(set), defaultdict(set), defaultdict(set), defaultdict(set)
    for src, dst, _ in rows:
        src, dst = str(src), str(dst)
        if src == dst or src in hubs or dst in hubs:
            continue
        every[src].add(dst)
        every[dst].add(src)
        if pairs[frozenset((src, dst))] == 1:  # one transfer in the window: a one-off relationship
            out_once[src].add(dst)
            in_once[dst].add(src)
            once[src].add(dst)
            once[dst].add(src)
    result = {}
    for a in ranked:
        result[a] = {
            "nbr_oneoff_out_max": max([s[b] for b in out_once[a]], default=0.0),
            "nbr_oneoff_in_max": max([s[b] for b in in_once[a]], default=0.0),
            "nbr_oneoff_sum": sum(s[b] for b in once[a]),
            "nbr_all_max": max([s[b] for b in every[a]], default=0.0),
            "nbr_all_sum": sum(s[b] for b in every[a]),
            "nbr_all_top": float(sum(top[b] for b in every[a])),
            "nbr_oneoff_top": float(sum(top[b] for b in once[a])),
        }
    return result


transfers = st.lists(
    st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 5).map(lambda d: d * DAY)), min_size=1, max_size=40
)


@given(transfers, st.booleans(), st.data())
def test_neighbour_features_match_plain_loops(rows, with_hub, data):
    hubs = {"0"} if with_hub else set()
    p = prepare(frame(rows), FeatureConfig(hub_accounts=tuple(hubs)))
    ids = p.accounts["account_id"].to_list()
    values = data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), min_size=len(ids), max_size=len(ids)))
    scores = dict(zip(ids, values))
    got = stacking.neighbour_features(p, pl.DataFrame({"account_id": ids, "score": values}))
    want = reference(rows, hubs, scores)
    assert got.columns == ["account_id", *NAMES]
    for row in got.iter_rows(named=True):
        a = row["account_id"]
        if a in hubs:
            assert all(row[c] is None for c in NAMES)
        else:
            assert row == pytest.approx({"account_id": a, **want[a]})


def test_accounts_without_a_score_count_zero():
    p = prepare(frame([("a", "b", 0), ("b", "c", DAY)]), FeatureConfig())
    got = stacking.neighbour_features(p, pl.DataFrame({"account_id": ["a"], "score": [0.8]}))
    row = {r["account_id"]: r for r in got.iter_rows(named=True)}
    assert row["b"]["nbr_oneoff_in_max"] == 0.8 and row["b"]["nbr_all_sum"] == 0.8 and row["c"]["nbr_all_max"] == 0.0


def test_out_of_fold_keeps_each_label_out_of_its_own_features():
    """A first stage that memorises its labels (an account scores 1 when it paid a labelled mule
    once) must not hand a labelled mule its own label back through its payer's score."""
    rows = [(f"u{i}", f"m{i}", 0) for i in range(12)] + [(f"u{i}", f"n{i}", DAY) for i in range(12, 40)]
    p = prepare(frame(rows), FeatureConfig())
    labels = pl.DataFrame({"account_id": [f"m{i}" for i in range(12)] + [f"n{i}" for i in range(12, 40)],
                           "is_mule": [True] * 12 + [False] * 28})
    payer = {dst: src for src, dst, _ in rows}
    calls = []

    def score(lab):
        calls.append(lab.height)
        mules = set(lab.filter(pl.col("is_mule"))["account_id"].to_list())
        return pl.DataFrame({"account_id": [payer[m] for m in mules], "score": [1.0] * len(mules)}, schema={"account_id": pl.String, "score": pl.Float64})

    feats, full = stacking.out_of_fold(p, labels, score, random_state=0)
    assert calls == [32, 32, 32, 32, 32, 40]  # five folds without their labels, then all labels
    got = dict(zip(feats["account_id"], feats["nbr_oneoff_in_max"]))
    assert all(got[f"m{i}"] == 0.0 for i in range(12))  # the payer's score never saw m_i's own label
    # the first stage of all labels (kept for scoring) does know them
    assert set(full["account_id"]) == {f"u{i}" for i in range(12)}
    at_scoring = dict(zip(*stacking.neighbour_features(p, full).select("account_id", "nbr_oneoff_in_max")))
    assert all(at_scoring[f"m{i}"] == 1.0 for i in range(12))
    from mulegraph.core.errors import ModelError

    with pytest.raises(ModelError, match="at least 2 mules"):
        stacking.out_of_fold(p, labels.with_columns(pl.col("account_id").eq("m0").alias("is_mule")), score, random_state=0)


TINY = ModelConfig(random_state=3, cv_folds=3, proximity_folds=4, max_leaf_nodes=(7,), max_iter=40, n_models=1,
                   importance_repeats=1)


@pytest.fixture(scope="module")
def data():
    return half_labelled_bank(1000, seed=5, mule_share=0.06, label_seed=2)


@pytest.fixture(scope="module")
def stacked(data):
    cfg = dataclasses.replace(TINY, neighbour_scores=True)
    return MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])


def test_off_by_default_and_no_columns_without_it(data):
    assert ModelConfig().neighbour_scores is False
    plain = MuleModel(TINY, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])
    assert plain.stage1_ is None and not any(c in plain.feature_names_ for c in NAMES)
    # columns of those names in the rows given are not model features of a model trained without them
    bogus = data["features"].with_columns(*[pl.lit(1.0).alias(c) for c in NAMES])
    again = MuleModel(TINY, data["fcfg"]).set_context(data["p"]).fit(bogus, data["labels"])
    assert again.feature_names_ == plain.feature_names_


def test_the_model_reads_its_neighbours_scores(data, stacked):
    assert all(c in stacked.feature_names_ for c in NAMES)
    assert stacked.stage1_ is not None and not any(c in stacked.stage1_.feature_names_ for c in NAMES)
    assert stacked.stage1_.stage1_ is None and stacked.fit_seconds_["neighbours"] > 0
    assert set(NAMES) <= set(stacked.importance_)
    scores = stacked.predict_scores(data["features"])
    assert scores.height > 0.9 * data["features"].height and scores["score"].is_between(0, 1).all()
    # the columns come from the first stage's scores of the rows given, whatever the rows hold
    bogus = data["features"].with_columns(*[pl.lit(7.0).alias(c) for c in NAMES])
    assert stacked.predict_scores(bogus).equals(scores)
    first = stacked.stage1_.predict_scores(data["features"])
    cols = [stacked.feature_names_.index(c) for c in NAMES]
    expected = stacking.neighbour_features(data["p"], first).join(data["features"].select("account_id"), on="account_id", how="right")
    assert np.allclose(stacked._matrix(data["features"])[:, cols], expected.select(NAMES).to_numpy(), equal_nan=True)


def test_saved_and_loaded_with_its_first_stage(data, stacked, tmp_path):
    save_model(stacked, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    stage = card["training"]["neighbour_stage"]
    assert stage["features"] == stacked.stage1_.feature_names_ and card["config"]["model"]["neighbour_scores"] is True
    assert "reads its neighbours' scores" in (tmp_path / "m" / "model_card.md").read_text()
    loaded = load_model(tmp_path / "m").set_context(data["p"])
    assert loaded.stage1_ is not None
    assert loaded.predict_scores(data["features"]).equals(stacked.predict_scores(data["features"]))
    # seeds given at scoring reach the first stage too
    seeds = data["labels"].head(50)
    assert loaded.set_seeds(seeds).predict_scores(data["features"]).equals(stacked.set_seeds(seeds).predict_scores(data["features"]))
    stacked.set_seeds(None)


def test_neighbour_scores_is_checked():
    from mulegraph.core.config import load_config
    from mulegraph.core.errors import ConfigError

    with pytest.raises(ConfigError, match="neighbour_scores"):
        load_config(data={"model": {"neighbour_scores": "yes"}})
    assert load_config(data={"model": {"neighbour_scores": True}}).model.neighbour_scores is True
