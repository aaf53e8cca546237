"""The one-off structure features in the supervised model: on by default, computed once, and a
model trained without them keeps scoring exactly as before."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import half_labelled_bank
from mulegraph.core.config import ModelConfig
from mulegraph.features import prepare
from mulegraph.features.structure import STRUCTURE_FEATURES, structure_features
from mulegraph.scoring import estimator as estimator_module
from mulegraph.scoring import score as score_module
from mulegraph.scoring.model import MuleModel, load_model, save_model
from mulegraph.scoring.score import score_features

TINY = ModelConfig(random_state=3, cv_folds=3, proximity_folds=4, max_leaf_nodes=(7,), max_iter=20, n_models=1,
                   importance_repeats=0)
STRUCTURE = [s.name for s in STRUCTURE_FEATURES]


@pytest.fixture(scope="module")
def data():
    """A synthetic bank with planted mules; half of the accounts' labels known."""
    return half_labelled_bank(1000, seed=11, mule_share=0.05, label_seed=0)


def _fit(data, cfg=TINY, features=None):
    feats = data["features"] if features is None else features
    return MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(feats, data["labels"])


def _count_calls(monkeypatch, module):
    """Count the calls of ``structure_features`` made through ``module``."""
    calls = []

    def counted(p, *args, **kwargs):
        calls.append(p)
        return structure_features(p, *args, **kwargs)

    monkeypatch.setattr(module, "structure_features", counted)
    return calls


def _refuse(monkeypatch):
    """Make any structure computation fail (for models that must not need one)."""
    def refused(*args, **kwargs):
        raise AssertionError("structure features computed for a model that does not read them")

    monkeypatch.setattr(estimator_module, "structure_features", refused)
    monkeypatch.setattr(score_module, "structure_features", refused)


def test_structure_features_are_model_columns_by_default_and_named_in_the_card(data, tmp_path):
    assert ModelConfig().structure_features is True
    assert not set(STRUCTURE) & set(data["features"].columns)  # not a default feature family
    model = _fit(data)
    assert set(STRUCTURE) <= set(model.feature_names_)
    assert model.fit_seconds_["structure"] >= 0.0
    save_model(model, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    families = {f["name"]: f["family"] for f in card["features"]}
    assert all(families[name] == "structure" for name in STRUCTURE)
    assert card["config"]["model"]["structure_features"] is True
    assert "structure (5)" in (tmp_path / "m" / "model_card.md").read_text()


def test_given_structure_columns_train_the_same_model(data, monkeypatch):
    computed = _fit(data)
    given = data["features"].join(structure_features(data["p"]), on="account_id", how="left")
    calls = _count_calls(monkeypatch, estimator_module)
    model = _fit(data, features=given)
    assert not calls  # the frame had them: nothing computed
    assert model.training_hash_ == computed.training_hash_
    assert model.predict_scores(given).equals(computed.predict_scores(data["features"]))


def test_the_setting_off_gives_the_feature_list_of_before(data):
    off = dataclasses.replace(TINY, structure_features=False)
    plain = _fit(data, off)
    assert not set(STRUCTURE) & set(plain.feature_names_)
    given = data["features"].join(structure_features(data["p"]), on="account_id", how="left")
    also = _fit(data, off, features=given)  # columns present but not used
    assert also.feature_names_ == plain.feature_names_
    assert also.training_hash_ == plain.training_hash_


def test_computed_once_per_context_and_once_per_scoring_run(data, tmp_path, monkeypatch):
    calls = _count_calls(monkeypatch, estimator_module)
    model = _fit(data)
    assert len(calls) == 1
    model.set_context(data["p"]).predict_scores(data["features"])
    model.set_seeds(data["labels"].head(50)).predict_scores(data["features"])
    assert len(calls) == 1  # the same context: kept
    copy = prepare(data["p"].canonical(), data["fcfg"])
    model.set_context(copy).predict_scores(data["features"])
    assert len(calls) == 2  # another context: computed again
    save_model(model, tmp_path / "m")
    in_score = _count_calls(monkeypatch, score_module)
    scores = score_features(data["features"], data["p"], load_model(tmp_path / "m"))
    assert len(in_score) == 1 and len(calls) == 2  # the run computes them once, for the model and the reasons
    named = {r["feature"] for rs in scores["reasons"].to_list() for r in rs}
    assert named & set(STRUCTURE)  # the reasons can show them


def test_a_model_trained_without_them_loads_and_scores_as_before(data, tmp_path, monkeypatch):
    """A folder saved before the setting existed: its card has no ``structure_features`` and its
    feature list no structure column; it loads, never computes them, and scores the same."""
    from mulegraph.scoring import integrity

    old = _fit(data, dataclasses.replace(TINY, structure_features=False))
    before = old.predict_scores(data["features"])
    through_score = score_features(data["features"], data["p"], old)
    d = tmp_path / "old"
    save_model(old, d)
    card = json.loads((d / "model_card.json").read_text())
    del card["config"]["model"]["structure_features"]
    (d / "model_card.json").write_text(json.dumps(card, indent=2))
    integrity.seal(d, list(json.loads((d / integrity.CHECKSUMS_NAME).read_text())["files"]))
    _refuse(monkeypatch)
    loaded = load_model(d)
    assert loaded.config.structure_features is True  # the default of today ...
    assert not set(STRUCTURE) & set(loaded.feature_names_)  # ... but the model reads its own columns
    assert loaded.set_context(data["p"]).predict_scores(data["features"]).equals(before)
    again = score_features(data["features"], data["p"], load_model(d))
    assert again.drop("model_version").equals(through_score.drop("model_version"))
