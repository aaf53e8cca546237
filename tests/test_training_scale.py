"""Training that scales: sampling of non-mules, early stopping, the stopping settings search, the thread budget."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mulegraph.core.config import Config, FeatureConfig, ModelConfig
from mulegraph.core.errors import ConfigError, ModelError
from mulegraph.features import compute_features, prepare
from mulegraph.scoring import training
from mulegraph.scoring.estimator import MuleModel
from mulegraph.scoring.persist import load_model, save_model
from mulegraph.scoring.threads import available_cores, prefer_passive_openmp, resolve_threads, thread_budget
from mulegraph.synth import generate

#: small and fast; sample_above low enough that the 600 labelled accounts are sampled
SAMPLED = ModelConfig(random_state=5, cv_folds=3, proximity_folds=4, max_leaf_nodes=(7,), max_iter=40, n_models=1,
                      importance_repeats=0, sample_above=200, negatives_per_mule=4.0)


@pytest.fixture(scope="module")
def data():
    syn = generate(1200, days=30, seed=11, mule_share=0.05)
    fcfg = FeatureConfig()
    p = prepare(syn.transfers, fcfg)
    feats = compute_features(p, fcfg)
    labels = syn.labels.sample(fraction=0.5, seed=1).select("account_id", "is_mule")
    return {"p": p, "features": feats, "labels": labels, "fcfg": fcfg}


@pytest.fixture(scope="module")
def sampled(data):
    return MuleModel(SAMPLED, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])


def _easy(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A problem the trees learn in a few rounds: the label is a threshold on one column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] > 1.6).astype(np.int64)
    folds = np.arange(n) % 3
    return X, y, folds


# -- sampling -------------------------------------------------------------------------------------
def test_sampling_keeps_every_mule_and_weights_sum_to_the_population():
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < 0.02).astype(np.int64)
    folds = rng.integers(0, 5, size=len(y))
    cfg = ModelConfig(sample_above=5_000, negatives_per_mule=10.0, random_state=4)
    s = training.sample_negatives(y, folds, cfg)
    assert s.applied
    assert set(np.flatnonzero(y == 1)) <= set(s.rows.tolist())
    assert np.all(np.diff(s.rows) > 0)
    assert s.weight[y[s.rows] == 1].tolist() == [1.0] * int(y.sum())
    assert s.weight.sum() == pytest.approx(len(y))
    for k in range(5):  # per fold too: the held-out scores of each fold stand for the whole fold
        assert s.weight[folds[s.rows] == k].sum() == pytest.approx((folds == k).sum())
    n_pos = int(y.sum())
    kept_neg = int((y[s.rows] == 0).sum())
    assert kept_neg == pytest.approx(max(10 * n_pos, 5_000 - n_pos), abs=5)
    assert s.summary["mules"] == n_pos and s.summary["not_mules"] == len(y) - n_pos
    assert s.summary["kept_not_mules"] == kept_neg and s.summary["rows"] == len(s.rows)
    assert s.summary["share_not_mules"] == pytest.approx(kept_neg / (len(y) - n_pos))
    assert s.summary["weight_sum"] == pytest.approx(len(y))


def test_no_sampling_up_to_the_threshold_and_same_seed_same_sample():
    rng = np.random.default_rng(1)
    y = (rng.random(4_000) < 0.03).astype(np.int64)
    folds = rng.integers(0, 5, size=len(y))
    whole = training.sample_negatives(y, folds, ModelConfig(sample_above=4_000))
    assert not whole.applied and whole.rows.tolist() == list(range(len(y))) and whole.weight.tolist() == [1.0] * len(y)
    cfg = ModelConfig(sample_above=1_000, negatives_per_mule=5.0, random_state=2)
    a, b = training.sample_negatives(y, folds, cfg), training.sample_negatives(y, folds, cfg)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.weight, b.weight)
    other = training.sample_negatives(y, folds, dataclasses.replace(cfg, random_state=3))
    assert not np.array_equal(a.rows, other.rows)


def test_sampled_model_records_the_sampling_in_its_card(tmp_path, data, sampled):
    sm = sampled.sampling_
    n_lab = sampled.label_counts_["mule"] + sampled.label_counts_["not_mule"]
    assert sm["applied"] and sm["labelled"] == n_lab
    assert sm["mules"] == sampled.label_counts_["mule"]  # every mule trains the trees
    assert sm["rows"] == sm["mules"] + sm["kept_not_mules"] < n_lab
    assert sm["weight_sum"] == pytest.approx(n_lab)
    # the pooled metrics are those of the whole labelled population
    assert sampled.cv_metrics_["prevalence"] == pytest.approx(sm["mules"] / n_lab)
    save_model(sampled, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["training"]["sampling"] == sm
    assert card["training"]["threads"] == sampled.threads_ == resolve_threads(None)
    assert card["training"]["search"] == sampled.search_
    assert card["config"]["model"]["sample_above"] == 200
    md = (tmp_path / "m" / "model_card.md").read_text()
    assert f"{sm['kept_not_mules']:,} of {sm['not_mules']:,} other labelled accounts" in md
    loaded = load_model(tmp_path / "m")
    assert loaded.sampling_ == sm and loaded.threads_ == sampled.threads_
    a = sampled.set_context(data["p"]).predict_scores(data["features"])
    b = loaded.set_context(data["p"]).predict_scores(data["features"])
    assert a["score"].to_list() == b["score"].to_list()


def test_sampled_training_is_deterministic_and_ranks_mules_first(data, sampled):
    again = MuleModel(SAMPLED, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])
    assert again.sampling_ == sampled.sampling_
    a = sampled.set_context(data["p"]).predict_scores(data["features"])
    b = again.set_context(data["p"]).predict_scores(data["features"])
    assert a["score"].to_list() == b["score"].to_list()
    truth = a.join(data["labels"], on="account_id", how="inner")
    assert training.average_precision(truth["is_mule"].to_numpy(), truth["score"].to_numpy()) > 0.5


def test_small_label_sets_are_not_sampled(data):
    m = MuleModel(dataclasses.replace(SAMPLED, sample_above=50_000), data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])
    assert not m.sampling_["applied"] and m.sampling_["rows"] == m.sampling_["labelled"]


# -- early stopping and the settings search -------------------------------------------------------
@pytest.mark.parametrize("tol", [0.0, 0.01])
def test_early_stopping_stops_before_max_iter_on_an_easy_problem(tol):
    X, y, folds = _easy()
    cfg = ModelConfig(cv_folds=3, max_leaf_nodes=(7,), max_iter=600, n_iter_no_change=5, learning_rate=0.3, early_stopping_tol=tol)
    search = training.search_settings(X, y, folds, cfg)
    boosted = search.sizes[0]["rounds_boosted"]
    assert boosted < cfg.max_iter
    assert all(est.n_iter_ == boosted for est in search.fold_models)
    assert [r["max_iter"] for r in search.results] == list(range(10, boosted + 1, 10))
    mean = [r["cv_pr_auc"] for r in search.results]
    assert search.best["cv_pr_auc"] == max(mean)  # the best read wins, however small its gain
    # the last n_iter_no_change evaluations gained no more than tol over everything before them
    assert max(mean[-cfg.n_iter_no_change:]) <= max(mean[:-cfg.n_iter_no_change]) + tol


def test_last_gain_counts_only_gains_above_the_tolerance():
    mean = np.array([0.5, 0.6, 0.60005, 0.61, 0.6101, 0.6102])
    assert training._last_gain(mean, 0.0) == 5
    assert training._last_gain(mean, 0.001) == 3


def test_early_stopping_reads_what_one_longer_fit_would():
    X, y, folds = _easy(seed=3)
    cfg = ModelConfig(cv_folds=3, max_leaf_nodes=(4,), max_iter=120, n_iter_no_change=3, learning_rate=0.3, random_state=1)
    stopped = training.search_settings(X, y, folds, cfg)
    full = training.search_settings(X, y, folds, dataclasses.replace(cfg, n_iter_no_change=0))
    assert full.sizes[0]["rounds_boosted"] == 120
    assert stopped.best == full.best
    assert np.array_equal(stopped.oof, full.oof)
    assert stopped.results == full.results[: len(stopped.results)]


def test_search_stops_at_the_first_size_that_does_not_improve():
    X, y, folds = _easy(seed=2)
    cfg = ModelConfig(cv_folds=3, max_leaf_nodes=(4, 7, 15, 31), max_iter=60, learning_rate=0.3, search_tol=1.0)
    search = training.search_settings(X, y, folds, cfg)
    assert [s["max_leaf_nodes"] for s in search.sizes] == [4, 7]  # 7 cannot beat 4 by a whole PR-AUC
    every = training.search_settings(X, y, folds, dataclasses.replace(cfg, search_tol=0.0, max_leaf_nodes=(4, 7)))
    assert search.best == every.best


def test_weighted_held_out_scores_and_calibration():
    X, y, folds = _easy(seed=4)
    w = np.where(y == 1, 1.0, 3.0)
    cfg = ModelConfig(cv_folds=3, max_leaf_nodes=(4,), max_iter=30)
    plain = training.search_settings(X, y, folds, cfg)
    weighted = training.search_settings(X, y, folds, cfg, sample_weight=w)
    assert np.array_equal(plain.oof, weighted.oof)  # the trees see every row alike
    te = folds == 0
    assert weighted.results[0]["max_iter"] == 10
    ap0 = training.average_precision(y[te], weighted.oof[te], w[te])
    assert 0 < ap0 <= 1
    a1, b1 = training.platt(plain.oof, y)
    a3, b3 = training.platt(plain.oof, y, sample_weight=w)
    assert b3 < b1  # three times the non-mules: lower odds of a mule at the same raw score


# -- thread budget --------------------------------------------------------------------------------
def _openmp_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"}


def test_thread_budget_limits_openmp_and_is_undone():
    before = _openmp_threads()
    with thread_budget(1) as n:
        assert n == 1
        assert _openmp_threads() == {1}
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        assert _openmp_effective_n_threads() == 1  # what histogram gradient boosting reads
    assert _openmp_threads() == before
    assert resolve_threads(None) == available_cores()
    assert resolve_threads(10_000) == available_cores()  # never more than the cores
    assert resolve_threads(1) == 1


def test_training_and_scoring_run_inside_the_budget(data, monkeypatch):
    seen: list[set[int]] = []
    orig_search = training.search_settings

    def search(*args, **kwargs):
        seen.append(_openmp_threads())
        return orig_search(*args, **kwargs)

    monkeypatch.setattr(training, "search_settings", search)
    cfg = dataclasses.replace(SAMPLED, threads=1, max_iter=20)
    m = MuleModel(cfg, data["fcfg"]).set_context(data["p"]).fit(data["features"], data["labels"])
    assert seen == [{1}] and m.threads_ == 1

    import sklearn.ensemble

    def predict_proba(self, X):
        seen.append(_openmp_threads())
        return orig(self, X)

    orig = sklearn.ensemble.HistGradientBoostingClassifier.predict_proba
    monkeypatch.setattr(sklearn.ensemble.HistGradientBoostingClassifier, "predict_proba", predict_proba)
    m.set_context(data["p"]).predict_scores(data["features"])
    assert seen[1:] and all(s == {1} for s in seen[1:])


def test_passive_openmp_is_a_default_only():
    env: dict[str, str] = {}
    assert prefer_passive_openmp(env) and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert not prefer_passive_openmp(env) and env == {"OMP_WAIT_POLICY": "ACTIVE"}


# -- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [{"threads": 0}, {"negatives_per_mule": 0}, {"n_iter_no_change": -1}, {"search_tol": -0.1}, {"sample_above": -5},
     {"early_stopping_tol": -1e-3}],
)
def test_bad_scale_settings_are_refused(changes):
    with pytest.raises(ConfigError):
        Config(model=ModelConfig(**changes))
    with pytest.raises(ModelError):
        training.check_config(ModelConfig(**changes))


def test_scale_settings_from_toml(tmp_path):
    from mulegraph.core.config import load_config

    f = tmp_path / "m.toml"
    f.write_text("[model]\nthreads = 1\nsample_above = 100000\nnegatives_per_mule = 10\nn_iter_no_change = 5\nsearch_tol = 0.002\n"
                 "early_stopping_tol = 0\n")
    m = load_config(f).model
    assert (m.threads, m.sample_above, m.negatives_per_mule, m.n_iter_no_change, m.search_tol, m.early_stopping_tol) == (1, 100_000, 10, 5, 0.002, 0)


# -- the settings search with row weights: the columns binned once ---------------------------------
def _reference_thresholds(col: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Plain loop: midpoints of the distinct values, or for each of the MAX_BINS - 1 cut points the
    smallest value whose cumulative weight reaches that share of the total."""
    keep = ~np.isnan(col) & (w > 0)
    pairs = sorted(zip(col[keep].tolist(), w[keep].tolist()))
    distinct = sorted({v for v, _ in pairs})
    if len(distinct) <= 1:
        return np.empty(0)
    if len(distinct) <= training.MAX_BINS:
        return np.array([(a + b) / 2 for a, b in zip(distinct, distinct[1:])])
    total = sum(x for _, x in pairs)
    cuts = []
    for i in range(1, training.MAX_BINS):
        target, run = total * i / training.MAX_BINS, 0.0
        for v, x in pairs:
            run += x
            if run >= target:
                cuts.append(v)
                break
        else:
            cuts.append(pairs[-1][0])
    return np.unique(cuts)


def test_weighted_bins_match_a_loop_reference():
    rng = np.random.default_rng(0)
    n = 2000
    X = np.column_stack([
        rng.normal(size=n),  # many distinct values: weighted quantiles
        rng.integers(0, 12, size=n).astype(float),  # few: midpoints
        np.where(rng.random(n) < 0.2, np.nan, rng.exponential(size=n)),  # missing values
        np.full(n, 3.0),  # constant
    ])
    w = rng.random(n) * np.where(rng.random(n) < 0.1, 0.0, 1.0)  # some rows weigh nothing
    bins = training.WeightedBins(X, w)
    for j in range(X.shape[1]):
        assert np.allclose(bins.thresholds[j], _reference_thresholds(X[:, j], w)), j
    mapped = bins(X)
    assert np.array_equal(np.isnan(mapped), np.isnan(X))  # missing stays missing
    for j in range(X.shape[1]):
        col, out = X[:, j], mapped[:, j]
        ok = ~np.isnan(col)
        assert len(np.unique(out[ok])) <= training.MAX_BINS
        # bin i holds exactly the values in (threshold i - 1, threshold i]
        thr = np.r_[-np.inf, bins.thresholds[j], np.inf]
        idx = out[ok].astype(int)
        assert np.all(col[ok] > thr[idx]) and np.all(col[ok] <= thr[idx + 1])


def test_weighted_search_bins_once_and_trains_the_trees_scikit_learn_would():
    """With at most MAX_BINS distinct values per column, scikit-learn's own weighted binning and
    the binned matrix give the same partition: the same trees, the same held-out scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    X, y, folds = _easy(n=1500, seed=5)
    X = np.round(X, 1)  # few distinct values per column
    X[rng.random(X.shape) < 0.05] = np.nan
    fw = np.where(y == 1, 1.0, rng.uniform(0.2, 1.0, len(y)))
    cfg = ModelConfig(cv_folds=3, max_leaf_nodes=(4,), max_iter=30, learning_rate=0.3, random_state=2)
    search = training.search_settings(X, y, folds, cfg, fit_weight=fw)
    assert isinstance(search.transform, training.WeightedBins)
    rounds = search.sizes[0]["rounds_boosted"]
    for k, est in enumerate(search.fold_models):
        tr, te = folds != k, folds == k
        raw = training.make_estimators(cfg, 4, rounds, 1)[0].fit(X[tr], y[tr], sample_weight=fw[tr])
        assert isinstance(raw, HistGradientBoostingClassifier) and est.n_iter_ == raw.n_iter_ == rounds
        assert np.allclose(est.predict_proba(search.transform(X[te])), raw.predict_proba(X[te]))
    # the permutation importance reads the fold models through the same map
    drops = training.permutation_drops(X, y, folds, dataclasses.replace(cfg, importance_repeats=1), search.best,
                                       search.fold_models, transform=search.transform)
    assert drops.shape == (X.shape[1],) and np.abs(drops).sum() > 0
    # without row weights nothing is binned
    assert training.search_settings(X, y, folds, cfg).transform is None
