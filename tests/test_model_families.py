"""``[model] families``: a model trained on some feature families only (the closeness features always)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE, half_labelled_bank
from mulegraph.cli import app
from mulegraph.core.config import ConfigError, FeatureConfig, ModelConfig, load_config
from mulegraph.core.errors import ModelError
from mulegraph.features import load_families, proximity
from mulegraph.features.registry import REGISTRY, families, register
from mulegraph.features.spec import FeatureSpec
from mulegraph.features.structure import STRUCTURE_FEATURES
from mulegraph.scoring.estimator import NOLABEL_FEATURE
from mulegraph.scoring.model import MuleModel, load_model, save_model
from mulegraph.scoring.training import model_families

TINY = ModelConfig(random_state=3, cv_folds=3, proximity_folds=4, max_leaf_nodes=(7,), max_iter=20, n_models=1,
                   importance_repeats=0)
STRUCTURE = [s.name for s in STRUCTURE_FEATURES]
CLOSENESS = [s.name for s in proximity.FEATURES]
#: mulegraph's own feature families that models read
BUILT_IN = {"volume", "fan", "passthrough", "amounts", "temporal", "channel", "patterns", "network", "structure", "proximity"}


@pytest.fixture(scope="module")
def data():
    """A synthetic bank with planted mules, features with a non-default fan window; half the labels known."""
    return half_labelled_bank(800, seed=5, mule_share=0.05, label_seed=1, fcfg=FeatureConfig(fan_windows=("24h", "48h")))


def _fit(data, **settings):
    cfg = dataclasses.replace(TINY, **settings)
    return MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])


def _family(name: str) -> str:
    return REGISTRY[name].family


def test_the_families_a_model_can_name_are_the_registered_ones_but_collection():
    load_families()
    names = model_families()
    # the built-in families, each of which a default model reads (below), and no collection family
    assert BUILT_IN <= set(names)
    assert "collection" not in names and names == sorted(set(families()) - {"collection"})


def test_every_family_by_default(data):
    model = _fit(data)
    used = {_family(c) for c in model.feature_names_}
    assert used == BUILT_IN


def test_structure_only_model_reads_structure_and_closeness_and_scores_after_a_round_trip(data, tmp_path):
    model = _fit(data, families=("structure",))
    assert model.feature_names_ == [*STRUCTURE, *CLOSENESS]
    save_model(model, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["config"]["model"]["families"] == ["structure"]
    assert "(only structure and the closeness: [model] families)" in (tmp_path / "m" / "model_card.md").read_text()
    loaded = load_model(tmp_path / "m")
    assert loaded._cfg().families == ("structure",)
    # it needs none of the other families' columns to score
    lean = data["features"].select("account_id", "is_hub")
    a = model.predict_scores(data["features"]).sort("account_id")
    b = loaded.set_context(data["p"]).predict_scores(lean).sort("account_id")
    assert a["account_id"].to_list() == b["account_id"].to_list()
    np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())


def test_named_families_keep_their_windowed_columns_and_nothing_else(data):
    model = _fit(data, families=("fan", "passthrough"))
    label_free = [c for c in model.feature_names_ if c not in CLOSENESS]
    assert label_free and {_family(c) for c in label_free} == {"fan", "passthrough"}
    assert "fanin_max_48h" in label_free  # a window of this config, not of the defaults
    expected = [c for c in data["features"].columns if c in REGISTRY and _family(c) in ("fan", "passthrough")]
    assert sorted(label_free) == sorted(expected)
    assert model.feature_names_[-len(CLOSENESS):] == CLOSENESS


def test_structure_named_but_switched_off_leaves_the_closeness_alone(data):
    model = _fit(data, families=("structure",), structure_features=False)
    assert model.feature_names_ == CLOSENESS
    scores = model.predict_scores(data["features"])  # a matrix of the closeness columns alone
    assert scores.height == data["features"].height and scores["score"].is_between(0, 1).all()


def test_the_no_label_score_of_a_few_label_model_stays_with_families_named(data):
    model = _fit(data, families=("volume",), known_mule_share=0.5)
    assert NOLABEL_FEATURE in model.feature_names_
    assert {_family(c) for c in model.feature_names_ if c not in (*CLOSENESS, NOLABEL_FEATURE)} == {"volume"}


def test_an_unknown_family_is_refused_with_the_choices(data, tmp_path):
    with pytest.raises(ModelError, match="unknown families: graphs.*structure"):
        _fit(data, families=("graphs",))
    with pytest.raises(ModelError, match="unknown families: collection"):
        _fit(data, families=("structure", "collection"))  # the no-label mode's own features, not a model's
    cfg = tmp_path / "mulegraph.toml"
    cfg.write_text('[model]\nfamilies = "structure"\n')
    with pytest.raises(ConfigError, match=r"families must be a list of text"):
        load_config(cfg)
    cfg.write_text('[model]\nfamilies = ["structure", "patterns"]\n')
    assert load_config(cfg).model.families == ("structure", "patterns")


def test_a_family_a_bank_registered_can_be_named(data):
    spec = FeatureSpec("zz_bank_signal_families_test", "zz_bank_families_test", "A bank's own signal (test).", "share")
    register(spec)
    rng = np.random.default_rng(0)
    feats = data["features"].with_columns(pl.Series(spec.name, rng.random(data["features"].height)))
    assert "zz_bank_families_test" in model_families()
    cfg = dataclasses.replace(TINY, families=("zz_bank_families_test",))
    model = MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(feats, data["labels"])
    assert model.feature_names_ == [spec.name, *CLOSENESS]


def test_a_portable_structure_only_model_from_the_cli_scores_another_store_with_known_mules(tmp_path):
    cfg = tmp_path / "fam.toml"
    cfg.write_text(
        f'[store]\npath = "{(tmp_path / "store").as_posix()}"\nmapping = "{(SAMPLE / "mapping.toml").as_posix()}"\n'
        "[features]\nhub_degree = 200\n"
        '[model]\nfamilies = ["structure"]\nmax_leaf_nodes = [7]\nmax_iter = 20\nn_models = 1\ncv_folds = 3\n'
        "importance_repeats = 0\n"
    )
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(SAMPLE / "transfers.csv"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--store", str(tmp_path / "store"), "--labels", str(SAMPLE / "labels.csv"),
                              "--out", str(tmp_path / "m"), "--portable", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert {f["family"] for f in card["features"]} == {"structure", "proximity"}
    labels = (SAMPLE / "labels.csv").read_text().splitlines()
    mules = [line.split(",")[0] for line in labels[1:] if line.split(",")[1].strip().lower() == "true"][:8]
    (tmp_path / "known.csv").write_text("account_id\n" + "\n".join(mules) + "\n")
    res = runner.invoke(app, ["score", "--store", str(tmp_path / "store"), "--model", str(tmp_path / "m"), "--known",
                              str(tmp_path / "known.csv"), "--window", "all", "--out", str(tmp_path / "s.parquet"),
                              "--json"])
    assert res.exit_code == 0, res.output
    scores = pl.read_parquet(tmp_path / "s.parquet")
    assert scores.height > 1000 and scores["score"].is_between(0, 1).all()
