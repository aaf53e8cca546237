"""Positive-unlabelled training ([model] known_mule_share): labels that name only some of the mules."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest

from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.features import compute_features, prepare
from mulegraph.features.structure import STRUCTURE_FEATURES
from mulegraph.scoring import pu
from mulegraph.scoring.model import MuleModel, load_model, save_model
from mulegraph.scoring.nolabel import NOLABEL_VERSION
from mulegraph.scoring.training import average_precision
from mulegraph.synth import generate

TINY = ModelConfig(random_state=3, cv_folds=3, proximity_folds=4, max_leaf_nodes=(7,), max_iter=40, n_models=1,
                   importance_repeats=1)
SHARE = 0.25
#: model seeds of the positive-unlabelled gain (the last is TINY's, whose model the later checks read)
RANDOM_STATES = (0, 1, 2, 3)
STRUCTURE = [f.name for f in STRUCTURE_FEATURES]


@pytest.fixture(scope="module")
def data():
    """A synthetic bank whose labels name a quarter of the train accounts' mules; the rest of the
    train accounts are labelled non-mule, the hidden mules among them."""
    return _bank(1000)


@pytest.fixture(scope="module")
def larger():
    """The same with 2,000 accounts (about 16 labelled and 49 hidden mules), for the gains."""
    return _bank(2000)


def _bank(n_accounts: int) -> dict:
    syn = generate(n_accounts, days=30, seed=5, mule_share=0.06)
    fcfg = FeatureConfig()
    p = prepare(syn.transfers, fcfg)
    feats = compute_features(p, fcfg)
    truth = syn.labels.select("account_id", "is_mule")
    ids = truth["account_id"].to_numpy()
    rng = np.random.default_rng(2)
    train = set(rng.choice(ids, size=len(ids) // 2, replace=False).tolist())
    train_truth = truth.filter(pl.col("account_id").is_in(list(train)))
    mules = sorted(train_truth.filter(pl.col("is_mule"))["account_id"].to_list())
    known = set(rng.choice(mules, size=round(SHARE * len(mules)), replace=False).tolist())
    labels = train_truth.with_columns(pl.col("account_id").is_in(list(known)).alias("is_mule"))
    test = truth.filter(~pl.col("account_id").is_in(list(train)))
    unlabelled = train_truth.filter(~pl.col("account_id").is_in(list(known)))  # labelled non-mule: the hidden mules among them
    return {"p": p, "features": feats, "labels": labels, "test": test, "unlabelled": unlabelled,
            "hidden": len(mules) - len(known), "fcfg": fcfg}


@pytest.fixture(scope="module")
def plain(data):
    """The model of the default settings: every labelled non-mule a non-mule."""
    return _fit(data, TINY)


def _fit(data, cfg):
    return MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])


def _ap(model, data, accounts):
    """Average precision of the model's scores for the true labels of ``accounts``."""
    scores = model.predict_scores(data["features"]).join(data[accounts], on="account_id")
    return average_precision(scores["is_mule"].to_numpy().astype(int), scores["score"].to_numpy())


def test_hidden_mule_probability_follows_the_label_frequency():
    g = np.array([0.0, 0.1, 0.1, 0.5, 0.9])
    y = np.array([0, 0, 1, 0, 0])
    assert np.array_equal(pu.hidden_mule_probability(g, y, 1.0), np.zeros(5))  # every mule labelled
    w = pu.hidden_mule_probability(g, y, 0.25)
    assert w[0] == 0.0 and w[2] == 0.0  # nothing like a labelled mule; a labelled mule
    assert w[1] == pytest.approx(3 * 0.1 / 0.9)  # (1 - c) / c * g / (1 - g)
    assert w[3] == 1.0 and w[4] == 1.0  # clipped
    with pytest.raises(ValueError, match="share"):
        pu.hidden_mule_probability(g, y, 0.0)


def test_relabel_splits_each_non_mule_into_a_weighted_pair():
    X = np.arange(12, dtype=float).reshape(6, 2)
    y = np.array([1, 0, 0, 0, 1, 0])
    folds = np.array([0, 1, 2, 0, 1, 2])
    hidden = np.array([0.0, 0.5, 0.001, 0.2, 0.0, 1.0])
    weight = np.array([1.0, 2.0, 2.0, 2.0, 1.0, 2.0])
    rel = pu.relabel(X, y, folds, hidden, 0.25, weight=weight)
    copies = [1, 3, 5]  # the non-mules that may be hidden mules (row 2 is below MIN_COPY_WEIGHT)
    assert rel.n_labelled == 6 and len(rel.y) == 9
    assert np.array_equal(rel.X[6:], X[copies]) and np.array_equal(rel.folds[6:], folds[copies])
    assert np.array_equal(rel.y, np.r_[y, [1, 1, 1]])
    assert np.allclose(rel.fit_weight[:6], [1.0, 1.0, 1.998, 1.6, 1.0, 0.0])
    assert np.allclose(rel.fit_weight[6:], [1.0, 0.4, 2.0])  # a pair weighs what its row weighed
    assert np.array_equal(rel.eval_weight, np.r_[weight, [0.0, 0.0, 0.0]])  # held-out scores read the labels as given
    assert rel.summary["mule_copies"] == 3 and rel.summary["hidden_mules_estimated"] == pytest.approx(3.402)


def test_default_trains_exactly_as_before(plain):
    assert ModelConfig().known_mule_share == 1.0
    assert plain.pu_ is None and "pu" not in plain.fit_seconds_


def test_partial_labels_rank_the_hidden_mules_higher(larger, tmp_path):
    # the reweighting alone (the no-label rule score, on by default with few labels, tested below)
    # a few labelled mules: one model seed alone says little, so the gains are read as the mean
    # over four model seeds (RANDOM_STATES), the estimate of the hidden mules on every one
    data = larger
    pu_ap, plain_ap = {"unlabelled": [], "test": []}, {"unlabelled": [], "test": []}
    for seed in RANDOM_STATES:
        cfg = dataclasses.replace(TINY, random_state=seed)
        base = _fit(data, cfg)
        model = _fit(data, dataclasses.replace(cfg, known_mule_share=SHARE, nolabel_feature="off"))
        assert model.pu_["known_mule_share"] == SHARE and model.pu_["labelled_mules"] == int(data["labels"]["is_mule"].sum())
        assert 0.5 * data["hidden"] <= model.pu_["hidden_mules_estimated"] <= 2 * data["hidden"]
        for part in pu_ap:
            pu_ap[part].append(_ap(model, data, part))
            plain_ap[part].append(_ap(base, data, part))
    # the hidden mules among the accounts labelled non-mule are no longer learnt as non-mules ...
    assert np.mean(pu_ap["unlabelled"]) > np.mean(plain_ap["unlabelled"]) + 0.01
    # ... and the test accounts' mules, whom no label names, rank higher
    assert np.mean(pu_ap["test"]) > np.mean(plain_ap["test"]) + 0.03
    assert set(model.importance_) == set(model.feature_names_)  # read on the labelled rows
    assert 0.0 < model.cv_metrics_["prevalence"] < 0.05  # the labels as given, not the copies
    save_model(model, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["training"]["pu"] == model.pu_
    assert "positive-unlabelled training" in (tmp_path / "m" / "model_card.md").read_text()
    loaded = load_model(tmp_path / "m")
    assert loaded.pu_ == model.pu_ and loaded.config.known_mule_share == SHARE
    assert loaded.set_context(data["p"]).predict_scores(data["features"]).equals(model.predict_scores(data["features"]))


def test_more_rounds_reestimate_the_hidden_mules(data):
    """pu_rounds = 2: the hidden mules re-read from the first positive-unlabelled search, one more search."""
    assert ModelConfig().pu_rounds == 1
    one = _fit(data, dataclasses.replace(TINY, known_mule_share=SHARE))
    two = _fit(data, dataclasses.replace(TINY, known_mule_share=SHARE, pu_rounds=2))
    assert one.pu_["rounds"] == 1 and two.pu_["rounds"] == 2
    assert two.pu_["hidden_mules_estimated"] != pytest.approx(one.pu_["hidden_mules_estimated"])
    assert two.pu_["labelled_mules"] == one.pu_["labelled_mules"]
    assert not two.predict_scores(data["features"]).equals(one.predict_scores(data["features"]))
    assert 0.0 < two.cv_metrics_["prevalence"] < 0.05  # held-out metrics still read the labels as given
    assert _ap(two, data, "test") > 0.3
    # without positive-unlabelled training the rounds change nothing
    plain_two = _fit(data, dataclasses.replace(TINY, pu_rounds=2))
    assert plain_two.pu_ is None


def test_pu_rounds_is_checked():
    from mulegraph.core.config import load_config
    from mulegraph.core.errors import ConfigError

    with pytest.raises(ConfigError, match="pu_rounds"):
        load_config(data={"model": {"pu_rounds": 0}})
    assert load_config(data={"model": {"pu_rounds": 2}}).model.pu_rounds == 2


# -- the no-label rule score as a model feature ([model] nolabel_feature) ----------------------


@pytest.fixture(scope="module")
def few(data):
    """Positive-unlabelled training with the default nolabel_feature ('auto')."""
    return _fit(data, dataclasses.replace(TINY, known_mule_share=SHARE))


def test_nolabel_feature_follows_the_known_share(data, plain, few):
    """'auto' (the default): the rule score is a model feature only with few labels (share below 1)."""
    from mulegraph.scoring.estimator import NOLABEL_FEATURE

    assert ModelConfig().nolabel_feature == "auto"
    assert NOLABEL_FEATURE not in plain.feature_names_ and plain.nolabel_version_ is None
    assert NOLABEL_FEATURE in few.feature_names_ and few.nolabel_version_ == NOLABEL_VERSION
    assert few.fit_seconds_["nolabel"] >= 0.0 and NOLABEL_FEATURE in few.importance_
    off = _fit(data, dataclasses.replace(TINY, known_mule_share=SHARE, nolabel_feature="off"))
    assert NOLABEL_FEATURE not in off.feature_names_ and off.nolabel_version_ is None
    assert off.feature_names_ == [c for c in few.feature_names_ if c != NOLABEL_FEATURE]
    assert not off.predict_scores(data["features"]).equals(few.predict_scores(data["features"]))
    on = _fit(data, dataclasses.replace(TINY, nolabel_feature="on"))
    assert NOLABEL_FEATURE in on.feature_names_ and on.pu_ is None
    # a column of that name in the rows given is replaced by the model's own
    bogus = data["features"].with_columns(pl.lit(0.5).alias(NOLABEL_FEATURE))
    assert few.predict_scores(bogus).equals(few.predict_scores(data["features"]))


def test_nolabel_feature_is_the_nolabel_mode_score(data, few):
    """The column the trees read is the no-label mode's score, percentiles among the rows given."""
    from mulegraph.scoring.estimator import NOLABEL_FEATURE
    from mulegraph.scoring.score import score_features

    col = few.feature_names_.index(NOLABEL_FEATURE)
    feats = data["features"]
    nolabel = score_features(feats, data["p"], None, run_id="t").select("account_id", "score")  # non-hub accounts
    got = pl.DataFrame({"account_id": feats["account_id"], "col": few._matrix(feats)[:, col]})
    both = got.join(nolabel, on="account_id")
    assert both.height == nolabel.height > 0.9 * feats.height
    assert np.allclose(both["col"], both["score"]) and both["col"].std() > 0
    assert not any(c in few.feature_names_ for c in ("oneoff_fanin_14d", "few_payments"))  # rule inputs, not model features
    # read among the rows given: a window of other accounts gives other percentiles
    half = feats.filter(pl.col("account_id").is_in(nolabel["account_id"].head(nolabel.height // 2).to_list()))
    mine = got.join(half.select("account_id"), on="account_id", how="semi")
    assert not np.allclose(few._matrix(half)[:, col], mine["col"].to_numpy())


def test_nolabel_feature_is_saved_with_its_rule_version(data, few, tmp_path, monkeypatch):
    """The model folder records the rule version; a model of another rule version refuses to score."""
    import mulegraph.scoring.estimator as estimator
    from mulegraph.core.errors import ModelError

    save_model(few, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["training"]["nolabel_version"] == NOLABEL_VERSION and card["config"]["model"]["nolabel_feature"] == "auto"
    assert "no-label mode's rule score" in (tmp_path / "m" / "model_card.md").read_text()
    loaded = load_model(tmp_path / "m").set_context(data["p"])
    assert loaded.nolabel_version_ == NOLABEL_VERSION
    assert loaded.predict_scores(data["features"]).equals(few.predict_scores(data["features"]))
    monkeypatch.setattr(estimator, "NOLABEL_VERSION", "nolabel-other")
    with pytest.raises(ModelError, match="rule score"):
        loaded.predict_scores(data["features"])


def test_nolabel_feature_is_checked():
    from mulegraph.core.config import load_config
    from mulegraph.core.errors import ConfigError, ModelError
    from mulegraph.scoring.training import check_config

    with pytest.raises(ConfigError, match="nolabel_feature"):
        load_config(data={"model": {"nolabel_feature": "maybe"}})
    assert load_config(data={"model": {"nolabel_feature": "on"}}).model.nolabel_feature == "on"
    with pytest.raises(ModelError, match="nolabel_feature"):
        check_config(dataclasses.replace(TINY, nolabel_feature="yes"))
