"""The supervised model: estimator contract, out-of-fold features, persistence, labels, CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import FeatureConfig, ModelConfig, load_config
from mulegraph.core.errors import ConfigError, InputError, ModelError
from mulegraph.scoring.evaluate import evaluate
from mulegraph.features import compute_features, prepare
from mulegraph.features import proximity
from mulegraph.io.labels import combine_labels, load_labels, read_decisions, read_labels
from mulegraph.scoring.model import MuleModel, load_model, make_folds, oof_proximity, save_model, train
from mulegraph.scoring.training import PORTABLE_SEED_SHARE, check_config, seed_mules, seed_share
from mulegraph.scoring.signals import NotFittedModelError
from mulegraph.synth import generate

FAST = ModelConfig(random_state=3, cv_folds=3, proximity_folds=4, max_leaf_nodes=(7,), max_iter=40, n_models=2, importance_repeats=1)
TINY = dataclasses.replace(FAST, max_iter=10, n_models=2, importance_repeats=0)


@pytest.fixture(scope="module")
def data():
    """Synthetic bank with planted mules; half of the accounts' labels are 'known' (training)."""
    syn = generate(1200, days=30, seed=7, mule_share=0.05)
    fcfg = FeatureConfig()
    p = prepare(syn.transfers, fcfg)
    feats = compute_features(p, fcfg)
    rng = np.random.default_rng(0)
    ids = syn.labels["account_id"].to_numpy()
    train_ids = set(rng.choice(ids, size=len(ids) // 2, replace=False).tolist())
    split = pl.DataFrame({"account_id": ids, "split": ["train" if a in train_ids else "test" for a in ids]})
    train_labels = syn.labels.join(split.filter(pl.col("split") == "train"), on="account_id").select("account_id", "is_mule")
    return {"syn": syn, "p": p, "features": feats, "split": split, "train_labels": train_labels, "fcfg": fcfg}


@pytest.fixture(scope="module")
def fitted(data):
    return MuleModel(FAST, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["train_labels"])


def _scores(model, data):
    return model.set_context(data["p"]).predict_scores(data["features"])


# -- estimator contract ------------------------------------------------------------------------
def test_fit_returns_self_and_sets_trailing_underscore_state(data):
    m = MuleModel(TINY, data["fcfg"])
    assert not [k for k in vars(m) if k.endswith("_")]
    assert m.set_context(data["p"]) is m
    assert not [k for k in vars(m) if k.endswith("_")]  # the graph context is not fitted state
    assert m.fit(data["features"], data["train_labels"]) is m
    for attr in ("estimators_", "calibration_", "feature_names_", "known_", "cv_metrics_", "best_params_", "classes_"):
        assert hasattr(m, attr)
    assert m.config is TINY  # settings are stored untouched


def test_get_params_set_params_and_clone(data):
    from sklearn.base import clone, is_classifier

    m = MuleModel(TINY, data["fcfg"])
    assert m.get_params() == {"config": TINY, "feature_config": data["fcfg"]}
    assert is_classifier(m)
    other = dataclasses.replace(TINY, random_state=9)
    assert m.set_params(config=other) is m and m.config is other
    fitted = MuleModel(TINY, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["train_labels"])
    copy = clone(fitted)
    assert copy.get_params()["config"] == TINY and copy.get_params()["feature_config"] == data["fcfg"]
    assert not hasattr(copy, "estimators_")  # clone copies settings, not fitted state or the context
    with pytest.raises(InputError, match="set_context"):
        copy.fit(data["features"], data["train_labels"])
    again = copy.set_context(data["p"]).fit(data["features"], data["train_labels"])
    assert _scores(again, data).equals(_scores(fitted, data))


def test_unfitted_model_raises_not_fitted_error(data):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    m = MuleModel(FAST).set_context(data["p"])
    with pytest.raises(NotFittedError):
        check_is_fitted(m)
    for call in (m.predict_proba, m.predict, m.predict_scores):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call(data["features"])
    with pytest.raises(ModelError, match="not fitted yet"):  # one line on the command line
        m.closeness()
    with pytest.raises(NotFittedModelError):
        m.feature_importance  # noqa: B018


def test_fit_takes_labels_aligned_with_the_rows_too(data, fitted):
    feats = data["features"]
    known = dict(data["train_labels"].iter_rows())
    y = [known.get(a) for a in feats["account_id"].to_list()]  # None: no label
    m = MuleModel(FAST, data["fcfg"]).set_context(data["p"]).fit(feats, y)
    assert m.training_hash_ == fitted.training_hash_
    assert _scores(m, data).equals(_scores(fitted, data))
    with pytest.raises(InputError, match="one label"):
        MuleModel(TINY, data["fcfg"]).set_context(data["p"]).fit(feats, y[:-1])


def test_predict_proba_is_one_row_per_feature_row(data, fitted):
    proba = fitted.set_context(data["p"]).predict_proba(data["features"])
    assert proba.shape == (data["features"].height, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    scores = _scores(fitted, data)
    pos = dict(zip(data["features"]["account_id"].to_list(), proba[:, 1].tolist()))
    assert [pos[a] for a in scores["account_id"].to_list()] == scores["score"].to_list()
    assert (fitted.predict(data["features"]) == (proba[:, 1] >= 0.5)).all()


def test_same_seed_same_scores_other_seed_differs(data):
    first = train(data["features"], data["train_labels"], data["p"], TINY, data["fcfg"])
    again = train(data["features"], data["train_labels"], data["p"], TINY, data["fcfg"])
    a = _scores(first, data)
    b = _scores(again, data)
    assert a.equals(b)
    other = train(data["features"], data["train_labels"], data["p"], dataclasses.replace(TINY, random_state=4), data["fcfg"])
    c = _scores(other, data)
    assert not np.allclose(a["score"].to_numpy(), c["score"].to_numpy())


def test_scores_are_probabilities_and_hubs_are_left_out(data, fitted):
    s = _scores(fitted, data)
    assert s.columns == ["account_id", "score"]
    assert ((s["score"] >= 0) & (s["score"] <= 1)).all()
    hubs = set(data["p"].accounts.filter(pl.col("is_hub"))["account_id"].to_list())
    assert not hubs & set(s["account_id"].to_list())
    assert s.height == data["features"].height - len(hubs)


def test_planted_mules_rank_at_the_top(data, fitted):
    s = _scores(fitted, data)
    res = evaluate(s, data["syn"].labels, data["split"], budgets=(0.02,))
    prev = res["prevalence"]
    assert res["mules"] >= 10
    # far above a random ranking on accounts whose labels the model never saw
    assert res["pr_auc"] > max(0.5, 8 * prev)
    assert res["budgets"][0]["precision"] >= 0.6


def test_calibration_tracks_mule_rate(data, fitted):
    s = _scores(fitted, data).join(data["syn"].labels, on="account_id")
    # mean calibrated score and mule share agree within a factor of two over all accounts
    ratio = s["score"].mean() / s["is_mule"].mean()
    assert 0.5 < ratio < 2.0


def test_wrong_inputs_are_clear_errors(data):
    m = MuleModel(TINY, data["fcfg"]).set_context(data["p"])
    with pytest.raises(InputError, match="account_id"):
        m.fit(data["features"].drop("account_id"), data["train_labels"])
    with pytest.raises(InputError, match="DataFrame"):
        m.fit({"account_id": ["a"]}, data["train_labels"])
    with pytest.raises(InputError, match="is_mule"):
        m.fit(data["features"], data["train_labels"].drop("is_mule"))
    with pytest.raises(InputError, match="transfers"):
        MuleModel(TINY).set_context("not transfers")
    with pytest.raises(InputError, match="set_context"):
        MuleModel(TINY).fit(data["features"], data["train_labels"])
    few = data["train_labels"].with_columns(pl.lit(False).alias("is_mule"))
    with pytest.raises(ModelError, match="too few labels"):
        m.fit(data["features"], few)
    with pytest.raises(ModelError, match="ppr_alpha"):
        MuleModel(dataclasses.replace(TINY, ppr_alpha=1.5)).set_context(data["p"]).fit(data["features"], data["train_labels"])
    with pytest.raises(ModelError, match="sync_window"):
        MuleModel(dataclasses.replace(TINY, sync_window="soon")).set_context(data["p"]).fit(data["features"], data["train_labels"])
    with pytest.raises(ModelError, match="class_weight"):
        MuleModel(dataclasses.replace(TINY, class_weight="heavy")).set_context(data["p"]).fit(data["features"], data["train_labels"])


def test_few_mules_still_train_with_fewer_closeness_folds(data):
    lab = data["train_labels"]
    mules = lab.filter(pl.col("is_mule")).head(4)
    few = pl.concat([mules, lab.filter(~pl.col("is_mule"))])
    m = MuleModel(dataclasses.replace(TINY, proximity_folds=10), data["fcfg"]).set_context(data["p"]).fit(data["features"], few)
    assert m.label_counts_["mule"] == 4


def test_missing_feature_column_at_predict(data, fitted):
    col = next(c for c in fitted.feature_names_ if c not in {s.name for s in proximity.FEATURES})
    with pytest.raises(ModelError, match="lack 1 column"):
        fitted.set_context(data["p"]).predict_scores(data["features"].drop(col))


def test_feature_importance_is_a_distribution_over_features(fitted):
    imp = fitted.feature_importance
    assert set(imp) <= set(fitted.feature_names_)
    assert sum(imp.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in imp.values())


def test_importance_from_search_models_equals_refitting(data, monkeypatch):
    # the settings-search ensembles read at the chosen round count are the refitted ones exactly
    from mulegraph.scoring import training

    seen = {}
    orig = training.permutation_drops

    def spy(X, y, folds, cfg, best_params, fold_models=None, max_rows=None, transform=None):
        seen.update(X=X, y=y, folds=folds, cfg=cfg, best_params=best_params, fold_models=fold_models, transform=transform)
        return orig(X, y, folds, cfg, best_params, fold_models, max_rows, transform=transform)

    monkeypatch.setattr(training, "permutation_drops", spy)
    cfg = dataclasses.replace(FAST, max_iter=30, n_models=1)
    m = MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["train_labels"])
    assert seen["fold_models"] is not None and len(seen["fold_models"]) == cfg.cv_folds
    assert seen["transform"] is None  # every label as given: the trees read the raw matrix
    assert m.best_params_["max_iter"] <= cfg.max_iter
    assert list(m.importance_.values()) == orig(seen["X"], seen["y"], seen["folds"], cfg, m.best_params_, seen["fold_models"]).tolist()
    args = (seen["X"], seen["y"], seen["folds"], cfg, m.best_params_)
    reused = orig(*args, seen["fold_models"], max_rows=0)
    refit = orig(*args, None, max_rows=0)
    assert reused == pytest.approx(refit, abs=1e-12)
    assert reused.max() > 0
    # a row cap smaller than a held-out fold samples non-mules (every mule kept): still a valid result
    capped = orig(*args, seen["fold_models"], max_rows=60)
    assert capped.shape == reused.shape and np.isfinite(capped).all()
    assert not np.array_equal(capped, reused)


# -- out-of-fold closeness -----------------------------------------------------------------------
def test_oof_features_ignore_own_label(data):
    p = data["p"]
    lab = data["train_labels"].join(p.accounts.select("idx", "account_id"), on="account_id")
    idx = lab["idx"].to_numpy().astype(np.int64)
    y = lab["is_mule"].to_numpy().astype(np.int64)
    folds, _ = make_folds(y, None, 3, 0)
    base = oof_proximity(p, idx, y, folds, FAST)
    for who in (int(np.flatnonzero(y == 1)[0]), int(np.flatnonzero(y == 0)[0])):
        flipped = y.copy()
        flipped[who] = 1 - flipped[who]
        other = oof_proximity(p, idx, flipped, folds, FAST)
        assert base.row(who) == pytest.approx(other.row(who))
        # ... while the flip is visible to accounts in other folds that are its neighbours
    assert not base.equals(oof_proximity(p, idx, 1 - y, folds, FAST))


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_oof_pagerank_of_all_folds_in_one_pass_matches_one_walk_per_fold(data, share):
    # reference: for each fold, a networkx PageRank restarting at the mules of the other folds only;
    # with closeness_seed_share below 1, at the seed mules of the other folds only
    import networkx as nx

    p = data["p"]
    lab = data["train_labels"].join(p.accounts.filter(~pl.col("is_hub")).select("idx", "account_id"), on="account_id")
    idx = lab["idx"].to_numpy().astype(np.int64)
    y = lab["is_mule"].to_numpy().astype(np.int64)
    folds, _ = make_folds(y, None, 3, 0)
    cfg = dataclasses.replace(FAST, closeness_seed_share=share)
    got = oof_proximity(p, idx, y, folds, cfg)
    seed = seed_mules(y, share, cfg.random_state)
    assert seed.sum() == (y.sum() if share == 1.0 else round(share * y.sum()))
    pairs = proximity.non_hub_pairs(p)
    g = nx.Graph()
    g.add_nodes_from(range(p.n_accounts))
    g.add_edges_from(zip(pairs["src"].to_list(), pairs["dst"].to_list()))
    n_active = sum(1 for a in g if g.degree(a) > 0)
    for k in range(3):
        seeds = idx[(folds != k) & seed].tolist()
        pr = nx.pagerank(g, alpha=FAST.ppr_alpha, personalization={s: 1.0 for s in seeds}, weight=None, tol=1e-12, max_iter=1000)
        rows = np.flatnonzero(folds == k)
        exp = [pr[int(a)] * n_active for a in idx[rows]]
        assert got["known_mule_ppr"].to_numpy()[rows] == pytest.approx(exp, rel=1e-5, abs=1e-7)
    # the other columns still come from the other folds' labels: same as a direct call per fold
    k = 1
    other = folds != k
    labelled = idx[other & seed] if share < 1.0 else idx[other]  # with part of the mules, only seeds count as labelled
    direct = proximity.compute(p, pl.Series(idx[other & seed], dtype=pl.UInt32), pl.Series(labelled, dtype=pl.UInt32),
                               max_hops=FAST.max_hops, ppr_groups=FAST.ppr_groups, sync_window=7 * 86_400)
    mine = pl.DataFrame({"idx": pl.Series(idx[folds == k], dtype=pl.UInt32)}).join(direct, on="idx", how="left")
    cols = [s.name for s in proximity.FEATURES if s.name not in proximity.PPR_FEATURES]
    from polars.testing import assert_frame_equal

    assert_frame_equal(got.filter(pl.Series(folds == k)).select(cols), mine.select(cols), check_exact=False, rel_tol=1e-9)


def test_seed_mules_draws_a_seeded_share_of_the_mules():
    y = np.array([1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1])  # 10 mules
    assert np.array_equal(seed_mules(y, 1.0, 0), y == 1)
    half = seed_mules(y, 0.5, 0)
    assert half.sum() == 5 and not (half & (y == 0)).any()
    assert np.array_equal(half, seed_mules(y, 0.5, 0))  # seeded
    assert any(not np.array_equal(half, seed_mules(y, 0.5, rs)) for rs in range(1, 6))
    assert seed_mules(y, 0.01, 0).sum() == 1  # never no seed at all


def test_closeness_seed_share_setting():
    assert seed_share("auto") == 1.0 and seed_share("auto", portable=True) == PORTABLE_SEED_SHARE < 1.0
    assert seed_share(0.3, portable=True) == 0.3 and seed_share(1) == 1.0
    for bad in (0, 1.5, -0.2, "half", True):
        with pytest.raises(ModelError, match="closeness_seed_share"):
            seed_share(bad)
        with pytest.raises(ModelError, match="closeness_seed_share"):
            check_config(dataclasses.replace(TINY, closeness_seed_share=bad))
    with pytest.raises(ConfigError, match="closeness_seed_share"):  # a word other than auto in a config file
        load_config(data={"model": {"closeness_seed_share": "half"}})


def test_folds_grouped_by_component_when_possible():
    y = np.array([1, 0, 0, 0] * 10)
    groups = np.repeat(np.arange(20), 2)
    folds, scheme = make_folds(y, groups, 4, 0)
    assert scheme == "grouped"
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    folds, scheme = make_folds(y, np.zeros(40, dtype=int), 4, 0)  # one giant component
    assert scheme == "stratified"
    assert all(y[folds == k].sum() >= 2 for k in range(4))


# -- persistence ---------------------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_scores(tmp_path, data, fitted):
    save_model(fitted, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["labels"]["mule"] == int(data["train_labels"]["is_mule"].sum())
    assert {"scikit-learn", "polars", "mulegraph"} <= set(card["versions"])
    assert card["training_data_sha256"] == fitted.training_hash_
    assert "PR-AUC" in (tmp_path / "m" / "model_card.md").read_text()
    loaded = load_model(tmp_path / "m")
    assert _scores(loaded, data).equals(_scores(fitted, data))
    assert loaded.get_params() == fitted.get_params() and loaded.n_features_in_ == fitted.n_features_in_
    assert loaded.feature_importance == pytest.approx(fitted.feature_importance)
    assert loaded.model_version == fitted.model_version and fitted.model_version.startswith("mulegraph-")


def _reseal(d):
    """Compute a model folder's checksum manifest again after an edit (what a forger without a key
    can do, and what a model of another version carries): the checks behind the seal are reached."""
    from mulegraph.scoring import integrity

    integrity.seal(d, list(json.loads((d / integrity.CHECKSUMS_NAME).read_text())["files"]))


@pytest.mark.parametrize("name", ["estimator.skops", "known.parquet"])
def test_tampered_file_is_refused(tmp_path, fitted, name):
    d = tmp_path / "m"
    save_model(fitted, d)
    raw = bytearray((d / name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / name).write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="sha256"):
        load_model(d)


class _Gadget:
    def __init__(self):
        self.x = 1


def test_untrusted_type_is_refused_even_with_matching_hash(tmp_path, fitted):
    import hashlib

    import skops.io as sio

    d = tmp_path / "m"
    save_model(fitted, d)
    (d / "estimator.skops").write_bytes(sio.dumps({"estimators": [_Gadget()]}))
    sums = json.loads((d / "checksums.json").read_text())
    sums["files"]["estimator.skops"] = hashlib.sha256((d / "estimator.skops").read_bytes()).hexdigest()
    (d / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(ModelError, match="cannot be loaded safely"):
        load_model(d)


def test_other_feature_set_or_format_is_refused(tmp_path, fitted):
    d = tmp_path / "m"
    save_model(fitted, d)
    card = json.loads((d / "model_card.json").read_text())
    bad = json.loads(json.dumps(card))
    bad["features"][0]["version"] = 99
    (d / "model_card.json").write_text(json.dumps(bad))
    _reseal(d)
    with pytest.raises(ModelError, match="another feature set"):
        load_model(d)
    bad = json.loads(json.dumps(card))
    bad["features"].append({"name": "feature_from_the_future", "family": "x", "version": 1})
    (d / "model_card.json").write_text(json.dumps(bad))
    _reseal(d)
    with pytest.raises(ModelError, match="unknown to this version"):
        load_model(d)
    bad = json.loads(json.dumps(card))
    bad["versions"]["scikit-learn"] = "0.24.2"
    (d / "model_card.json").write_text(json.dumps(bad))
    _reseal(d)
    with pytest.raises(ModelError, match="scikit-learn 0.24.2"):
        load_model(d)
    bad = dict(card, format="2.0")
    (d / "model_card.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="format"):
        load_model(d)
    (d / "model_card.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(d)
    shutil.rmtree(d)
    with pytest.raises(ModelError, match="not a mulegraph model"):
        load_model(d)


# -- labels and decisions ----------------------------------------------------------------------
def test_read_labels_accepts_common_boolean_forms(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("account_id,is_mule,typology\na,1,\nb,no,\nc,TRUE,fan_in|cycle\nc,true,\n")
    lab = read_labels(f)
    assert lab.to_dicts() == [
        {"account_id": "a", "is_mule": True, "typology": None},
        {"account_id": "b", "is_mule": False, "typology": None},
        {"account_id": "c", "is_mule": True, "typology": "fan_in|cycle"},
    ]
    pq = tmp_path / "l.parquet"
    pl.DataFrame({"account_id": ["x"], "is_mule": [False]}).write_parquet(pq)
    assert read_labels(pq)["is_mule"].to_list() == [False]


@pytest.mark.parametrize(
    "text,match",
    [
        ("account_id,label\na,1\n", "lack column"),
        ("account_id,is_mule\na,maybe\n", "true/false"),
        ("account_id,is_mule\na,1\na,0\n", "both mule and not mule"),
        ("account_id,is_mule\n,1\n", "account_id is empty"),
        ("account_id,is_mule\na,\n", "is_mule is empty"),
    ],
)
def test_bad_labels_are_clear_errors(tmp_path, text, match):
    f = tmp_path / "l.csv"
    f.write_text(text)
    with pytest.raises(InputError, match=match):
        read_labels(f)


def test_label_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_labels(tmp_path / "none.csv")
    (tmp_path / "l.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown type"):
        read_labels(tmp_path / "l.xlsx")


def test_latest_decision_overrides_label(tmp_path):
    lab = tmp_path / "l.csv"
    lab.write_text("account_id,is_mule,typology\na,1,stack\nb,0,\nc,1,fan_in\n")
    dec = tmp_path / "d.csv"
    dec.write_text(
        "account_id,decision,date,note\n"
        "a,confirmed,2025-01-01,first look\na,cleared,2025-02-01,false alarm\n"
        "b,Confirmed,2025-03-01T10:00:00,\nd,confirmed,2025-01-05,new\n"
    )
    t = load_labels(lab, dec)
    got = {r["account_id"]: (r["is_mule"], r["source"]) for r in t.to_dicts()}
    assert got == {"a": (False, "decision"), "b": (True, "decision"), "c": (True, "label"), "d": (True, "decision")}
    assert t.filter(pl.col("account_id") == "c")["typology"].item() == "fan_in"
    only = combine_labels(None, read_decisions(dec))
    assert only.height == 3


@pytest.mark.parametrize(
    "text,match",
    [
        ("account_id,decision,date\na,escalated,2025-01-01\n", "confirmed"),
        ("account_id,decision,date\na,cleared,yesterday\n", "ISO date"),
        ("account_id,decision\na,cleared\n", "lack column"),
    ],
)
def test_bad_decisions_are_clear_errors(tmp_path, text, match):
    f = tmp_path / "d.csv"
    f.write_text(text)
    with pytest.raises(InputError, match=match):
        read_decisions(f)


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_train_then_evaluate(tmp_path, data):
    from mulegraph.ingest import ingest

    syn = data["syn"]
    export = tmp_path / "export.parquet"
    syn.transfers.write_parquet(export)
    ingest([export], tmp_path / "store")
    labels = tmp_path / "labels.csv"
    data["train_labels"].write_csv(labels)
    cfg = tmp_path / "mulegraph.toml"
    cfg.write_text(
        "[model]\nrandom_state = 3\ncv_folds = 3\nproximity_folds = 3\nmax_leaf_nodes = [7]\nmax_iter = 30\nn_models = 1\nimportance_repeats = 0\n"
    )
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--store", str(tmp_path / "store"), "--labels", str(labels), "--config", str(cfg), "--out", str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    assert "cross-validated" in res.output
    model = load_model(tmp_path / "model")
    assert model.training_data_["transfers"] == syn.transfers.height
    assert "training data:" in (tmp_path / "model" / "model_card.md").read_text()
    scores = _scores(model, data)
    scores.write_parquet(tmp_path / "scores.parquet")
    all_labels = tmp_path / "all.parquet"
    syn.labels.write_parquet(all_labels)
    split = tmp_path / "split.parquet"
    data["split"].write_parquet(split)
    res = runner.invoke(app, ["evaluate", "--scores", str(tmp_path / "scores.parquet"), "--labels", str(all_labels), "--split", str(split), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pr_auc"] > 0.3 and out["n"] == data["split"].filter(pl.col("split") == "test").height
    res = runner.invoke(app, ["train", "--store", str(tmp_path / "store"), "--labels", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m2")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_train_from_store_refuses_an_empty_window(data):
    from mulegraph.scoring.model import train_from_store

    oldest = data["syn"].transfers["ts"].min()
    before = oldest - pl.select(pl.duration(days=5)).item()
    with pytest.raises(InputError, match="no transfers in the chosen window"):
        train_from_store(data["syn"].transfers, data["train_labels"], window="1d", as_of=before)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 40), cols=st.integers(1, 6), block=st.integers(1, 50), fortran=st.booleans(), seed=st.integers(0, 2**16))
def test_training_hash_by_blocks_is_the_hash_of_the_whole_matrix(rows, cols, block, fortran, seed):
    # the training matrix is hashed a block of rows at a time (no two copies of a 1.6 GB matrix at
    # 2M labelled accounts); the digest is the one of the whole matrix's bytes, NaN and inf included
    import hashlib

    from mulegraph.scoring import estimator as E

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[rng.random(X.shape) < 0.05] = np.inf
    if fortran:
        X = np.asfortranarray(X)
    y = rng.integers(0, 2, rows)
    ids = pl.Series("account_id", [f"A{i}" for i in range(rows)])
    whole = hashlib.sha256()
    whole.update("\n".join(ids.to_list()).encode("utf-8"))
    whole.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    whole.update(np.ascontiguousarray(np.nan_to_num(X, nan=-1e300), dtype=np.float64).tobytes())
    old = E.HASH_ROWS
    try:
        E.HASH_ROWS = block
        assert E._hash_training(ids, y, X) == whole.hexdigest()
    finally:
        E.HASH_ROWS = old


@pytest.mark.parametrize("block", [1, 3, 65_536])
def test_stacked_matrix_is_the_hstack_of_the_frames_matrices(block, monkeypatch):
    from mulegraph.scoring import training as T

    monkeypatch.setattr(T, "MATRIX_ROWS", block)
    a = pl.DataFrame({"x": [1.5, None, 3.0, float("nan")], "b": [True, False, None, True], "n": [1, 2, None, 4]},
                     schema={"x": pl.Float64, "b": pl.Boolean, "n": pl.Int64})
    c = pl.DataFrame({"p": [0.25, None, 1e300, -2.0], "q": pl.Series([7, 8, 9, 10], dtype=pl.UInt32)})
    want = np.hstack([T.to_matrix(a, ["x", "b", "n"]), T.to_matrix(c, ["q", "p"])])
    got = T.stacked_matrix([(a, ["x", "b", "n"]), (c, ["q", "p"])])
    assert got.dtype == np.float64 and got.flags["C_CONTIGUOUS"] and got.shape == (4, 5)
    assert np.array_equal(got, want, equal_nan=True) and got.tobytes() == np.ascontiguousarray(want).tobytes()
    assert T.stacked_matrix([(a.head(0), ["x"]), (c.head(0), ["p"])]).shape == (0, 2)
    # a part with row positions reads those rows of its frame, in that order
    rows = np.array([3, 0, 0, 2])
    want = np.hstack([T.to_matrix(a[rows.tolist()], ["n", "x"]), T.to_matrix(c, ["p"])])
    got = T.stacked_matrix([(a, ["n", "x"], rows), (c, ["p"])])
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def test_scores_by_blocks_of_rows_are_the_scores_of_the_whole_matrix(data, fitted, monkeypatch):
    import mulegraph.scoring.estimator as E

    m = fitted.set_context(data["p"])
    feats = data["features"]
    whole = m._proba(m._matrix(feats))
    for rows in (1, 7, 1000, 10**6):
        monkeypatch.setattr(E, "SCORE_ROWS", rows)
        assert m._proba_of(feats).tobytes() == whole.tobytes()
    # rows in another order: each account keeps its own score (the closeness columns stay aligned)
    shuffled = feats.sample(fraction=1.0, shuffle=True, seed=5)
    assert shuffled["account_id"].to_list() != feats["account_id"].to_list()
    pos = dict(zip(feats["account_id"].to_list(), whole.tolist()))
    assert m._proba_of(shuffled).tolist() == [pos[a] for a in shuffled["account_id"].to_list()]
    scores = m.predict_scores(shuffled)
    assert scores["score"].to_list() == [pos[a] for a in scores["account_id"].to_list()]
