"""The supervised model: train, save, load, predict, and its model card.

:class:`MuleModel` follows the scikit-learn estimator contract: ``__init__`` stores settings,
:meth:`MuleModel.fit` returns ``self`` and fitted state ends in ``_``; randomness comes only from
``ModelConfig.random_state``.

Training, in order:

1. **Folds.** The labelled, non-hub accounts are split into ``cv_folds`` stratified folds. When
   the hub-free account graph falls apart into components that keep connected patterns together
   (no component holds more than half of the labelled accounts), the folds are grouped by
   component, so that one pattern never sits on both sides of a fold; otherwise (one giant
   component, common in real exports) the folds are stratified only. The model card records which.
2. **Closeness to known mules, out-of-fold.** The labelled accounts are split again into
   ``proximity_folds`` stratified folds; accounts of fold *k* get their
   :mod:`~mulegraph.features.proximity` features from the labels of the other folds only, so no
   account's label reaches its own features (the PageRank walks of all folds run in one pass,
   restarting at the known mules outside the account's fold). More folds make the training features closer to
   scoring time, when every training label is known.
3. **Settings by cross-validation** on the folds of step 1: each candidate tree size is fitted per fold
   (one ensemble, to keep it cheap) and scored (average precision) every 10 boosting rounds; the
   best size and round count win.
4. **Calibration.** A logistic (Platt) map from the out-of-fold raw scores to probabilities: it is
   monotone, so it keeps the ranking, and gives scores in 0..1 that track the mule rate.
5. **Final fit** on every labelled account (``n_models`` boosted ensembles with derived seeds,
   averaged), and the known set for scoring: every labelled account (mules are the seeds).

At scoring time (:meth:`MuleModel.predict`) the closeness features come from all known labels stored
in the model. Hub accounts are never ranked: ``predict`` leaves them out.

Persistence (:func:`save_model`, :func:`load_model`): a directory with ``estimator.skops`` (loaded
with :mod:`skops.io` and an explicit list of trusted types, so a swapped file cannot run code),
``known.parquet`` (the known labels), and ``model_card.json`` / ``model_card.md``. The card holds the
sha256 of every file, checked before anything is loaded; a mismatch, a missing feature, a feature
of another version or a card of another format version is refused with a :class:`ModelError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.version import __version__
from mulegraph.core.atomic import write_bytes_atomic
from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.core.errors import InputError, ModelError
from mulegraph.features import proximity
from mulegraph.features.prepare import Prepared, prepare
from mulegraph.features.registry import REGISTRY

__all__ = [
    "MuleModel",
    "train",
    "train_from_store",
    "save_model",
    "load_model",
    "make_folds",
    "oof_proximity",
    "feature_matrix_columns",
    "MODEL_FORMAT",
    "TRUSTED_TYPES",
    "IMPORTANCE_MAX_ROWS",
]

#: format version of the model directory; a different major number is refused on load
MODEL_FORMAT = "1.0"

#: types skops may rebuild beyond its own safe defaults; nothing else is accepted on load
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
)

_EXCLUDE = {"account_id", "idx", "is_hub"}
_EVAL_EVERY = 10
#: held-out rows per fold (all mules kept, non-mules sampled) for the permutation importance
IMPORTANCE_MAX_ROWS = 5000


def _proba_at(est: Any, X: np.ndarray, n_iter: int) -> np.ndarray:
    """Mule probability from the first ``n_iter`` boosting rounds of ``est``."""
    if n_iter >= est.n_iter_:
        return est.predict_proba(X)[:, 1]
    from itertools import islice

    return next(islice(est.staged_predict_proba(X), n_iter - 1, None))[:, 1]


def feature_matrix_columns(features: pl.DataFrame) -> list[str]:
    """The label-free feature columns the model uses: numeric and boolean columns except ids and ``is_hub``."""
    cols = []
    for name, dtype in features.schema.items():
        if name in _EXCLUDE or name in {s.name for s in proximity.FEATURES}:
            continue
        if dtype.is_numeric() or dtype == pl.Boolean:
            cols.append(name)
    return cols


def _to_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy().astype(np.float64, copy=False)


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if y.any() and not y.all() else float("nan")


def _components(p: Prepared) -> np.ndarray:
    """Weakly connected component per account index of the hub-free graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = proximity.non_hub_pairs(p)
    n = p.n_accounts
    g = csr_matrix((np.ones(pairs.height), (pairs["src"].to_numpy(), pairs["dst"].to_numpy())), shape=(n, n))
    return connected_components(g, directed=True, connection="weak")[1]


def make_folds(y: np.ndarray, groups: np.ndarray | None, n_folds: int, random_state: int) -> tuple[np.ndarray, str]:
    """A fold number per labelled account and the scheme used (``grouped`` or ``stratified``).

    Folds are grouped by ``groups`` (connected components) when no group holds more than half of the
    accounts and every fold can still get mules; otherwise plain stratified folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n_pos = int(y.sum())
    if n_pos < n_folds or len(y) - n_pos < n_folds:
        raise ModelError(
            f"too few labels to train: need at least {n_folds} mules and {n_folds} non-mules among the labelled "
            f"accounts with transfers (got {n_pos} and {len(y) - n_pos}); add labels or lower model.cv_folds."
        )
    folds = np.empty(len(y), dtype=np.int64)
    if groups is not None:
        _, counts = np.unique(groups, return_counts=True)
        pos_groups = len(np.unique(groups[y == 1]))
        if counts.max() <= len(y) / 2 and pos_groups >= n_folds:
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
            for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
                folds[test] = k
            return folds, "grouped"
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        folds[test] = k
    return folds, "stratified"


def _proximity_kwargs(config: ModelConfig) -> dict[str, Any]:
    from mulegraph.core.window import parse_duration

    try:
        sync = int(parse_duration(config.sync_window, name="model.sync_window").total_seconds())
    except InputError as err:
        raise ModelError(str(err)) from None
    return {"max_hops": config.max_hops, "ppr_alpha": config.ppr_alpha, "ppr_groups": config.ppr_groups, "sync_window": sync}


def oof_proximity(p: Prepared, idx: np.ndarray, y: np.ndarray, folds: np.ndarray, config: ModelConfig) -> pl.DataFrame:
    """Out-of-fold closeness features for the labelled accounts ``idx`` (one row each, in order).

    Accounts of fold *k* get features computed from the labels of the other folds only. The
    PageRank features of every fold come from one pass (:func:`~mulegraph.features.proximity.ppr_features`
    with the folds as exclusion groups: an account's walk restarts at the known mules outside its
    own fold); the other features are computed per fold.
    """
    parts = []
    kw = _proximity_kwargs(config)
    fold_ids, fold_no = np.unique(folds, return_inverse=True)
    graph = proximity.closeness_graph(p)  # the label-free parts, built once for every fold
    for k in range(len(fold_ids)):
        other = fold_no != k
        known_m = pl.Series("idx", idx[other & (y == 1)], dtype=pl.UInt32)
        known_l = pl.Series("idx", idx[other], dtype=pl.UInt32)
        feats = proximity.compute(p, known_m, known_l, with_ppr=False, graph=graph, **kw).drop(*proximity.PPR_FEATURES)
        mine = pl.DataFrame({"idx": pl.Series(idx[fold_no == k], dtype=pl.UInt32), "_pos": np.flatnonzero(fold_no == k)})
        parts.append(mine.join(feats, on="idx", how="left"))
    groups = np.zeros(p.n_accounts, dtype=np.int64)
    groups[idx] = fold_no
    ppr = proximity.ppr_features(p, pl.Series(idx[y == 1], dtype=pl.UInt32), groups, len(fold_ids), ppr_alpha=config.ppr_alpha, graph=graph)
    out = pl.concat(parts).join(ppr, on="idx", how="left").sort("_pos")
    return out.select(s.name for s in proximity.FEATURES)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


class MuleModel:
    """Gradient-boosted mule classifier over label-free and out-of-fold closeness features.

    Parameters
    ----------
    config : ModelConfig, optional
        Training settings (``random_state`` among them).
    feature_config : FeatureConfig, optional
        The feature settings the label-free features were computed with; its hub settings also
        decide which edges the closeness features ignore.
    """

    def __init__(self, config: ModelConfig | None = None, feature_config: FeatureConfig | None = None) -> None:
        self.config = config
        self.feature_config = feature_config

    # -- helpers -------------------------------------------------------------------------------
    def _cfg(self) -> ModelConfig:
        return self.config or ModelConfig()

    def _fcfg(self) -> FeatureConfig:
        return self.feature_config or FeatureConfig()

    def _prepared(self, transfers: Prepared | pl.DataFrame | pl.LazyFrame) -> Prepared:
        if isinstance(transfers, Prepared):
            return transfers
        if isinstance(transfers, (pl.DataFrame, pl.LazyFrame)):
            return prepare(transfers, self._fcfg())
        raise InputError(f"transfers must be a polars DataFrame of canonical transfers or a Prepared frame. Got {type(transfers).__name__} instead.")

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimators_"):
            raise ModelError("this model is not trained yet; call fit() or load a trained model with load_model().")

    @staticmethod
    def _check_features(features: Any) -> pl.DataFrame:
        if not isinstance(features, pl.DataFrame):
            raise InputError(f"features must be a polars DataFrame with an account_id column. Got {type(features).__name__} instead.")
        if "account_id" not in features.columns:
            raise InputError("features lack the account_id column; pass the output of compute_features().")
        if features["account_id"].is_duplicated().any():
            raise InputError("features have duplicate account_id rows; pass one row per account.")
        return features

    def _estimators(self, params: dict[str, Any], n_iter: int, n_models: int) -> list:
        from sklearn.ensemble import HistGradientBoostingClassifier

        cfg = self._cfg()
        seeds = np.random.default_rng(cfg.random_state).integers(0, 2**31 - 1, size=n_models)
        return [
            HistGradientBoostingClassifier(
                learning_rate=cfg.learning_rate,
                max_iter=n_iter,
                max_leaf_nodes=params["max_leaf_nodes"],
                min_samples_leaf=cfg.min_samples_leaf,
                l2_regularization=cfg.l2_regularization,
                max_features=cfg.max_features,
                class_weight=None if cfg.class_weight == "none" else cfg.class_weight,
                early_stopping=False,
                random_state=int(s),
            )
            for s in seeds
        ]

    # -- training ------------------------------------------------------------------------------
    def fit(self, features: pl.DataFrame, labels: pl.DataFrame, transfers: Prepared | pl.DataFrame) -> "MuleModel":
        """Train on the labelled accounts; returns ``self``.

        ``features``: one row per account (``compute_features`` output). ``labels``: ``account_id``,
        ``is_mule`` (see :mod:`mulegraph.labels`). ``transfers``: the canonical transfers the features
        came from (or their :class:`Prepared` form), for the closeness features.
        """
        cfg = self._cfg()
        if cfg.cv_folds < 2:
            raise ModelError("model.cv_folds must be at least 2.")
        if cfg.class_weight not in ("balanced", "none"):
            raise ModelError(f"model.class_weight must be 'balanced' or 'none'. Got '{cfg.class_weight}' instead.")
        if cfg.proximity_folds < 2 or cfg.max_hops < 1 or cfg.ppr_groups < 2 or not 0 < cfg.ppr_alpha < 1:
            raise ModelError("model.proximity_folds and model.ppr_groups must be at least 2, model.max_hops at least 1, and 0 < model.ppr_alpha < 1.")
        if not cfg.max_leaf_nodes or cfg.max_iter < _EVAL_EVERY:
            raise ModelError(f"model.max_leaf_nodes needs at least one size and model.max_iter at least {_EVAL_EVERY}.")
        features = self._check_features(features)
        if not isinstance(labels, pl.DataFrame) or not {"account_id", "is_mule"} <= set(labels.columns):
            raise InputError("labels must be a polars DataFrame with account_id and is_mule; read files with mulegraph.labels.load_labels().")
        if labels["is_mule"].dtype != pl.Boolean or labels["is_mule"].null_count():
            raise InputError("labels.is_mule must be a boolean column without empty values.")
        t_stage = time.perf_counter()
        seconds: dict[str, float] = {}

        def lap(stage: str) -> None:
            nonlocal t_stage
            now = time.perf_counter()
            seconds[stage] = round(now - t_stage, 3)
            t_stage = now

        p = self._prepared(transfers)
        columns = feature_matrix_columns(features)
        # a column with no value at all (e.g. night-time share on day-resolution data) carries nothing
        columns = [c for c in columns if features[c].null_count() + (features[c].is_nan().sum() if features[c].dtype.is_float() else 0) < features.height]

        acc = p.accounts.select("idx", "account_id", "is_hub")
        lab = (
            labels.select("account_id", "is_mule")
            .unique("account_id", keep="last")
            .join(features.select("account_id"), on="account_id", how="inner")
            .join(acc, on="account_id", how="inner")
            .filter(~pl.col("is_hub"))
            .sort("account_id")
        )
        n_unmatched = labels.height - lab.height
        idx = lab["idx"].to_numpy().astype(np.int64)
        y = lab["is_mule"].to_numpy().astype(np.int64)
        comp = _components(p)[idx]
        folds, scheme = make_folds(y, comp, cfg.cv_folds, cfg.random_state)
        lap("folds")

        # as many closeness folds as asked for, but never more than there are mules (or non-mules)
        n_pf = min(cfg.proximity_folds, int(y.sum()), int(len(y) - y.sum()))
        pfolds, _ = make_folds(y, None, max(n_pf, 2), cfg.random_state + 1)
        prox = oof_proximity(p, idx, y, pfolds, cfg)
        base = lab.select("account_id").join(features, on="account_id", how="left")
        all_columns = columns + [s.name for s in proximity.FEATURES]
        X = np.hstack([_to_matrix(base, columns), _to_matrix(prox, [s.name for s in proximity.FEATURES])])
        lap("closeness")

        # settings by cross-validation: tree size x boosting rounds, average precision per fold
        grid = [{"max_leaf_nodes": int(m)} for m in cfg.max_leaf_nodes]
        checkpoints = list(range(_EVAL_EVERY, cfg.max_iter + 1, _EVAL_EVERY))
        results = []
        fold_models: list[list] = []
        oof_raw: dict[tuple[int, int], np.ndarray] = {}
        for gi, params in enumerate(grid):
            ap = np.zeros((cfg.cv_folds, len(checkpoints)))
            raw = np.zeros((len(checkpoints), len(y)))
            for k in range(cfg.cv_folds):
                tr, te = folds != k, folds == k
                staged = np.zeros((len(checkpoints), int(te.sum())))
                est = self._estimators(params, cfg.max_iter, 1)[0]
                est.fit(X[tr], y[tr])
                if k == 0:
                    fold_models.append([])
                fold_models[gi].append(est)
                for j, proba in enumerate(est.staged_predict_proba(X[te])):
                    if (j + 1) % _EVAL_EVERY == 0:
                        staged[(j + 1) // _EVAL_EVERY - 1] = _logit(proba[:, 1])
                raw[:, te] = staged
                for c in range(len(checkpoints)):
                    ap[k, c] = _average_precision(y[te], staged[c])
            mean_ap = np.nanmean(ap, axis=0)
            for c, n_iter in enumerate(checkpoints):
                results.append({"max_leaf_nodes": params["max_leaf_nodes"], "max_iter": n_iter, "cv_pr_auc": float(mean_ap[c]),
                                "cv_pr_auc_std": float(np.nanstd(ap[:, c]))})
                oof_raw[(gi, c)] = raw[c]
        best_i = int(np.nanargmax([r["cv_pr_auc"] for r in results]))
        best = results[best_i]
        gi, ci = divmod(best_i, len(checkpoints))
        oof = oof_raw[(gi, ci)]
        lap("cv")

        # Platt calibration on the out-of-fold raw scores
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        platt = LogisticRegression(C=1e6).fit(oof.reshape(-1, 1), y)
        self.calibration_ = (float(platt.coef_[0, 0]), float(platt.intercept_[0]))
        oof_score = _sigmoid(self.calibration_[0] * oof + self.calibration_[1])

        self.estimators_ = self._estimators({"max_leaf_nodes": best["max_leaf_nodes"]}, best["max_iter"], cfg.n_models)
        for est in self.estimators_:
            est.fit(X, y)
        lap("final")
        self.feature_names_ = all_columns
        self.best_params_ = {"max_leaf_nodes": best["max_leaf_nodes"], "max_iter": best["max_iter"]}
        self.cv_results_ = results
        self.cv_metrics_ = {
            "folds": cfg.cv_folds,
            "fold_scheme": scheme,
            "pr_auc": best["cv_pr_auc"],
            "pr_auc_std": best["cv_pr_auc_std"],
            "pr_auc_pooled": _average_precision(y, oof),
            "roc_auc_pooled": float(roc_auc_score(y, oof)),
            "brier_calibrated": float(np.mean((oof_score - y) ** 2)),
            "prevalence": float(y.mean()),
        }
        self.known_ = lab.select("account_id", "is_mule")
        self.label_counts_ = {"mule": int(y.sum()), "not_mule": int(len(y) - y.sum()), "unmatched": int(n_unmatched)}
        self.training_hash_ = _hash_training(lab["account_id"], y, X)
        self.importance_ = self._importance(X, y, folds, fold_models[gi]) if cfg.importance_repeats > 0 else {}
        lap("importance")
        #: seconds per training stage (not saved; for benchmarks)
        self.fit_seconds_ = seconds
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.mean([_logit(est.predict_proba(X)[:, 1]) for est in self.estimators_], axis=0)

    def _importance(self, X: np.ndarray, y: np.ndarray, folds: np.ndarray, fold_models: list | None = None,
                    max_rows: int | None = None) -> dict[str, float]:
        """Permutation importance on held-out folds: mean drop in average precision per feature.

        For each CV fold, the ensemble of the settings search with the chosen tree size, read at
        the chosen number of rounds (the first rounds of a longer fit are exactly the shorter fit),
        scores the held-out rows with each feature shuffled in turn among them. ``fold_models``:
        those estimators, one per fold (refitted when not given). On a held-out fold of more than
        ``max_rows`` rows (default :data:`IMPORTANCE_MAX_ROWS`), every mule and a random sample of
        the non-mules are used, so the cost stays bounded on large banks.
        """
        cfg = self._cfg()
        rng = np.random.default_rng(cfg.random_state)
        params = {"max_leaf_nodes": self.best_params_["max_leaf_nodes"]}
        n_iter = self.best_params_["max_iter"]
        max_rows = IMPORTANCE_MAX_ROWS if max_rows is None else max_rows
        drops = np.zeros(len(self.feature_names_))
        n_used = 0
        for k in np.unique(folds):
            tr, te = folds != k, folds == k
            if not y[te].any():
                continue
            if fold_models is not None:
                est = fold_models[int(k)]
            else:
                est = self._estimators(params, n_iter, 1)[0].fit(X[tr], y[tr])
            rows = np.flatnonzero(te)
            if max_rows and len(rows) > max_rows:
                pos, neg = rows[y[rows] == 1], rows[y[rows] == 0]
                keep = max(max_rows - len(pos), 1)
                rows = np.sort(np.concatenate([pos, rng.choice(neg, size=min(keep, len(neg)), replace=False)]))
            Xte, yte = X[rows], y[rows]
            base = _average_precision(yte, _proba_at(est, Xte, n_iter))
            for j in range(X.shape[1]):
                for _ in range(cfg.importance_repeats):
                    Xp = Xte.copy()
                    Xp[:, j] = Xte[rng.permutation(len(Xte)), j]
                    drops[j] += (base - _average_precision(yte, _proba_at(est, Xp, n_iter))) / cfg.importance_repeats
            n_used += 1
        return {name: float(d / max(n_used, 1)) for name, d in zip(self.feature_names_, drops)}

    @property
    def feature_importance(self) -> dict[str, float]:
        """Importance per feature (held-out permutation drop in PR-AUC, negatives set to 0, sums to 1)."""
        self._check_fitted()
        pos = {k: max(v, 0.0) for k, v in self.importance_.items()}
        total = sum(pos.values())
        if total <= 0:
            return {k: 1.0 / len(self.feature_names_) for k in self.feature_names_}
        return {k: v / total for k, v in sorted(pos.items(), key=lambda kv: -kv[1])}

    @property
    def model_version(self) -> str:
        """A short id of the trained model: ``mulegraph-`` and 12 hex digits of its training-data hash."""
        self._check_fitted()
        return f"mulegraph-{self.training_hash_[:12]}"

    # -- scoring -------------------------------------------------------------------------------
    def closeness(self, transfers: Prepared | pl.DataFrame) -> pl.DataFrame:
        """Closeness-to-known-mules features of every account from the known labels in the model."""
        self._check_fitted()
        p = self._prepared(transfers)
        ids = p.accounts.select("idx", "account_id")
        known = self.known_.join(ids, on="account_id", how="inner")
        feats = proximity.compute(
            p, known.filter(pl.col("is_mule"))["idx"], known["idx"], **_proximity_kwargs(self._cfg())
        )
        return ids.join(feats, on="idx", how="left").drop("idx")

    def predict(self, features: pl.DataFrame, transfers: Prepared | pl.DataFrame) -> pl.DataFrame:
        """Calibrated mule probability per account: ``account_id, score`` (hubs left out)."""
        self._check_fitted()
        features = self._check_features(features)
        p = self._prepared(transfers)
        base_cols = [c for c in self.feature_names_ if c not in {s.name for s in proximity.FEATURES}]
        missing = [c for c in base_cols if c not in features.columns]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ModelError(f"features lack {len(missing)} column(s) the model was trained on ({shown}); recompute features with the feature set of the model.")
        hubs = p.accounts.filter(pl.col("is_hub")).select("account_id")
        frame = features.join(hubs, on="account_id", how="anti")
        if "is_hub" in frame.columns:
            frame = frame.filter(~pl.col("is_hub").fill_null(False))
        frame = frame.join(self.closeness(p), on="account_id", how="left")
        X = _to_matrix(frame, self.feature_names_)
        a, b = self.calibration_
        score = _sigmoid(a * self._raw(X) + b)
        return pl.DataFrame({"account_id": frame["account_id"], "score": score})


def train(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    transfers: Prepared | pl.DataFrame,
    config: ModelConfig | None = None,
    feature_config: FeatureConfig | None = None,
) -> MuleModel:
    """Train a :class:`MuleModel` (see the module docs for the procedure)."""
    return MuleModel(config, feature_config).fit(features, labels, transfers)


def train_from_store(
    store: Any,
    labels: pl.DataFrame,
    *,
    window: str = "all",
    as_of: Any = None,
    config: Any = None,
    progress: Any = None,
) -> tuple[MuleModel, dict[str, Any]]:
    """Read a window of a store (or canonical transfers), compute features, train.

    ``store``: a store directory, a :class:`~mulegraph.store.Store` or canonical transfers.
    ``labels``: a label table (:func:`mulegraph.labels.load_labels`). ``config``: a
    :class:`~mulegraph.config.Config` (``features`` and ``model`` sections). Returns the model and
    a dict with ``transfers``, ``accounts`` and ``window``.
    """
    from mulegraph.core.config import Config
    from mulegraph.features import compute_features
    from mulegraph.scoring.score import read_transfers

    config = config or Config()
    if progress:
        progress("reading transfers")
    transfers, desc = read_transfers(store, window=window, as_of=as_of, require_rows=True)
    if progress:
        progress("computing features")
    p = prepare(transfers, config.features)
    features = compute_features(p, config.features)
    if progress:
        progress("training")
    model = MuleModel(config.model, config.features).fit(features, labels, p)
    model.training_data_ = {"window": desc, "transfers": transfers.height, "accounts": features.height}
    return model, {"transfers": transfers.height, "accounts": features.height, "window": desc}


# -- persistence -------------------------------------------------------------------------------
def _hash_training(ids: pl.Series, y: np.ndarray, X: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update("\n".join(ids.to_list()).encode("utf-8"))
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(np.nan_to_num(X, nan=-1e300), dtype=np.float64).tobytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _versions() -> dict[str, str]:
    import scipy
    import sklearn
    import skops

    return {
        "mulegraph": __version__,
        "python": platform.python_version(),
        "polars": pl.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def _feature_entries(names: list[str]) -> list[dict[str, Any]]:
    out = []
    for n in names:
        spec = REGISTRY.get(n)
        out.append({"name": n, "family": spec.family if spec else None, "version": spec.version if spec else None})
    return out


def _card_markdown(card: dict[str, Any]) -> str:
    cv = card["cv_metrics"]
    lines = [
        "# mulegraph model card",
        "",
        f"- created: {card['created']}",
        f"- model format: {card['format']}; mulegraph {card['versions']['mulegraph']}, scikit-learn {card['versions']['scikit-learn']}",
        f"- estimator: {card['estimator']['kind']}, {card['estimator']['n_models']} averaged, settings {json.dumps(card['estimator']['best_params'])}",
        f"- labels: {card['labels']['mule']} mules, {card['labels']['not_mule']} not mules ({card['labels']['unmatched']} labels without transfers or on hubs, unused)",
        f"- training data sha256: `{card['training_data_sha256']}`",
        *(
            [f"- training data: {td['transfers']:,} transfers, {td['accounts']:,} accounts, window {td['window']}"]
            if (td := card.get("training_data")) else []
        ),
        "",
        "## Cross-validated metrics (training labels only)",
        "",
        f"{cv['folds']} {cv['fold_scheme']} folds; closeness features out-of-fold.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| PR-AUC (mean over folds) | {cv['pr_auc']:.3f} ± {cv['pr_auc_std']:.3f} |",
        f"| PR-AUC (pooled out-of-fold) | {cv['pr_auc_pooled']:.3f} |",
        f"| ROC-AUC (pooled out-of-fold) | {cv['roc_auc_pooled']:.3f} |",
        f"| Brier score, calibrated | {cv['brier_calibrated']:.4f} |",
        f"| prevalence | {cv['prevalence']:.4f} |",
        "",
        "## Most important features (permutation on held-out folds, PR-AUC drop)",
        "",
        "| feature | family | share |",
        "|---|---|---|",
    ]
    fam = {f["name"]: f["family"] for f in card["features"]}
    for name, v in [kv for kv in card["feature_importance"].items() if kv[1] > 0][:15]:
        lines.append(f"| {name} | {fam.get(name) or '-'} | {v:.3f} |")
    lines += ["", f"{len(card['features'])} features in all; see model_card.json for the full list, the config and the file hashes.", ""]
    return "\n".join(lines)


def save_model(model: MuleModel, directory: str | os.PathLike) -> Path:
    """Write a trained model to ``directory`` (created if needed); returns the card path."""
    import skops.io as sio

    model._check_fitted()
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ModelError(f"model path '{d}' is a file; give a directory for the model.")
    d.mkdir(parents=True, exist_ok=True)
    payload = sio.dumps({"estimators": model.estimators_})
    untrusted = set(sio.get_untrusted_types(data=payload))
    if not untrusted <= set(TRUSTED_TYPES):
        raise ModelError("the model holds object types outside mulegraph's trusted list and cannot be saved safely.")
    write_bytes_atomic(d / "estimator.skops", payload)
    buf = io.BytesIO()
    model.known_.write_parquet(buf)
    write_bytes_atomic(d / "known.parquet", buf.getvalue())
    cfg = model._cfg()
    card = {
        "format": MODEL_FORMAT,
        "kind": "mulegraph.MuleModel",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "features": _feature_entries(model.feature_names_),
        "estimator": {"kind": "HistGradientBoostingClassifier", "n_models": len(model.estimators_), "best_params": model.best_params_},
        "calibration": {"kind": "platt", "slope": model.calibration_[0], "intercept": model.calibration_[1]},
        "labels": model.label_counts_,
        "training_data_sha256": model.training_hash_,
        "training_data": getattr(model, "training_data_", None),
        "cv_metrics": model.cv_metrics_,
        "cv_results": model.cv_results_,
        "feature_importance": model.feature_importance,
        "feature_importance_raw": model.importance_,
        "config": {"model": dataclasses.asdict(cfg), "features": dataclasses.asdict(model._fcfg())},
        "files": {"estimator.skops": _sha256(d / "estimator.skops"), "known.parquet": _sha256(d / "known.parquet")},
    }
    write_bytes_atomic(d / "model_card.md", _card_markdown(card).encode("utf-8"))
    write_bytes_atomic(d / "model_card.json", json.dumps(card, indent=2, sort_keys=False).encode("utf-8"))
    return d / "model_card.json"


def _tuple_fields(cls, data: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ModelError(f"the model card has unknown {cls.__name__} setting(s) {', '.join(sorted(unknown))}; retrain the model with this mulegraph version.")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kw)


def load_model(directory: str | os.PathLike) -> MuleModel:
    """Load a model written by :func:`save_model`, checking its card, file hashes and feature set.

    Raises :class:`ModelError` when the directory is not a model, a file was changed since it was
    saved, the format or a feature version differs from this mulegraph, or the file holds types
    outside the trusted list. Nothing in the files can run code.
    """
    import skops.io as sio

    d = Path(directory)
    card_path = d / "model_card.json"
    if not card_path.is_file():
        raise ModelError(f"'{d}' is not a mulegraph model directory (no model_card.json); train one with 'mulegraph train'.")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelError("the model card is not valid JSON; the model directory is damaged, train the model again.") from None
    if not isinstance(card, dict) or card.get("kind") != "mulegraph.MuleModel":
        raise ModelError("the model card does not describe a mulegraph model; train the model again.")
    fmt = str(card.get("format", ""))
    if fmt.split(".")[0] != MODEL_FORMAT.split(".")[0]:
        raise ModelError(f"the model has format {fmt or 'unknown'} but this mulegraph reads format {MODEL_FORMAT}; retrain it with this version.")
    import sklearn

    made_with = str((card.get("versions") or {}).get("scikit-learn", ""))
    if made_with.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"the model was made with scikit-learn {made_with or 'unknown'} but this installation has {sklearn.__version__}; "
            "retrain it here or install the same scikit-learn version."
        )
    files = card.get("files") or {}
    for name in ("estimator.skops", "known.parquet"):
        path = d / name
        if not path.is_file():
            raise ModelError(f"the model file {name} is missing; the model directory is incomplete, train the model again.")
        if files.get(name) != _sha256(path):
            raise ModelError(f"the model file {name} does not match the sha256 in its model card; it was changed after training, so it is refused.")
    # feature set: every feature must exist here with the version it was trained with
    from mulegraph.features import load_families

    try:
        load_families()
    except Exception:  # noqa: BLE001 - a family that cannot be imported simply leaves its features unregistered
        pass
    feats = card.get("features") or []
    unknown = [f["name"] for f in feats if f.get("version") is not None and f["name"] not in REGISTRY]
    changed = [f["name"] for f in feats if f["name"] in REGISTRY and f.get("version") is not None and REGISTRY[f["name"]].version != f["version"]]
    if unknown or changed:
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} feature(s) unknown to this version (e.g. {unknown[0]})")
        if changed:
            parts.append(f"{len(changed)} feature(s) of another version (e.g. {changed[0]})")
        raise ModelError(f"the model was made with another feature set: {'; '.join(parts)}; retrain it with this mulegraph version.")
    try:
        obj = sio.loads((d / "estimator.skops").read_bytes(), trusted=list(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - skops raises several types for untrusted or broken payloads
        raise ModelError(f"the model file estimator.skops cannot be loaded safely ({type(err).__name__}); train the model again.") from None
    try:
        known = pl.read_parquet(d / "known.parquet")
        cfg = _tuple_fields(ModelConfig, card["config"]["model"])
        fcfg = _tuple_fields(FeatureConfig, card["config"]["features"])
        model = MuleModel(cfg, fcfg)
        model.estimators_ = list(obj["estimators"])
        model.calibration_ = (float(card["calibration"]["slope"]), float(card["calibration"]["intercept"]))
        model.feature_names_ = [f["name"] for f in feats]
        model.best_params_ = card["estimator"]["best_params"]
        model.cv_results_ = card.get("cv_results", [])
        model.cv_metrics_ = card["cv_metrics"]
        model.known_ = known.select("account_id", "is_mule")
        model.label_counts_ = card["labels"]
        model.training_hash_ = card["training_data_sha256"]
        if card.get("training_data"):
            model.training_data_ = card["training_data"]
        model.importance_ = card.get("feature_importance_raw", {})
    except (KeyError, TypeError, ValueError, pl.exceptions.PolarsError) as err:
        raise ModelError(f"the model card is incomplete ({type(err).__name__}); train the model again.") from None
    n_in = [getattr(e, "n_features_in_", None) for e in model.estimators_]
    if any(n != len(model.feature_names_) for n in n_in):
        raise ModelError("the model's estimator and its card list different numbers of features; train the model again.")
    return model
