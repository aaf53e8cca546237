"""The supervised model: a scikit-learn classifier over label-free and out-of-fold closeness features.

:class:`MuleModel` follows the scikit-learn estimator contract: ``__init__`` stores the settings
only, :meth:`~MuleModel.fit` returns ``self``, fitted state ends in ``_``, randomness comes only from
``ModelConfig.random_state``; :func:`sklearn.base.clone` and ``get_params`` work, and an unfitted
model raises :class:`~mulegraph.scoring.signals.NotFittedModelError` (a scikit-learn
``NotFittedError``).

What scikit-learn does not know about is the **graph context**: the closeness features of an
account (:mod:`mulegraph.features.proximity`) depend on the transfers around it and on the known
labels. :meth:`~MuleModel.set_context` gives the model the (prepared) transfers the feature rows
came from; :meth:`~MuleModel.fit` computes the closeness features of the training accounts from it
out-of-fold, and the predicting methods compute every account's closeness from all known labels.
The one-off structure features (:mod:`mulegraph.features.structure`, not a default feature family)
come from the context too, when the feature rows lack them: at fit time when
``ModelConfig.structure_features`` is set (the default), at scoring time when the model was
trained on them (a model trained without them never computes them). So does the no-label mode's
rule score (:data:`NOLABEL_FEATURE`, ``ModelConfig.nolabel_feature``; by default only with
``known_mule_share`` below 1), computed from the feature rows and the context's collection
features: its percentiles are read among the non-hub rows given (the window's accounts when
scoring a window), with the rules of :mod:`mulegraph.scoring.nolabel` as they were at training
(a model trained on another rule version refuses to score).
Give the scoring window's transfers before predicting on another window::

    model = MuleModel(config.model, config.features).set_context(prepared).fit(features, labels)
    model.set_context(new_prepared).predict_scores(new_features)

The training procedure is described in :mod:`mulegraph.scoring.training`; persistence in
:mod:`mulegraph.scoring.persist`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin

from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.core.errors import InputError, ModelError
from mulegraph.features import proximity
from mulegraph.features.collection import COLLECTION_FEATURES, collection_features
from mulegraph.features.prepare import Prepared, prepare
from mulegraph.features.structure import STRUCTURE_FEATURES, structure_features
from mulegraph.scoring import pu, stacking, training
from mulegraph.scoring.blend import few_label_weight
from mulegraph.scoring.nolabel import NOLABEL_VERSION, NoLabelScorer
from mulegraph.scoring.signals import require_fitted
from mulegraph.scoring.threads import thread_budget

__all__ = ["MuleModel", "labels_frame"]

_CLOSENESS = tuple(s.name for s in proximity.FEATURES)
_STRUCTURE = tuple(s.name for s in STRUCTURE_FEATURES)
_NEIGHBOUR = tuple(stacking.NEIGHBOUR_FEATURES)
#: the no-label mode's rule score as a model feature (``ModelConfig.nolabel_feature``)
NOLABEL_FEATURE = "nolabel_rule_score"
#: rows scored at a time by :meth:`MuleModel.predict_scores` (their matrix: 0.2M x 100 columns, 160 MB)
SCORE_ROWS = 200_000


def uses_nolabel_feature(cfg: ModelConfig) -> bool:
    """Whether a fit with ``cfg`` trains on :data:`NOLABEL_FEATURE` ("auto": only with few labels)."""
    return cfg.nolabel_feature == "on" or (cfg.nolabel_feature == "auto" and cfg.known_mule_share < 1.0)


def _check_features(features: Any) -> pl.DataFrame:
    if not isinstance(features, pl.DataFrame):
        raise InputError(f"features must be a polars DataFrame with an account_id column. Got {type(features).__name__} instead.")
    if "account_id" not in features.columns:
        raise InputError("features lack the account_id column; pass the output of compute_features().")
    if features["account_id"].is_duplicated().any():
        raise InputError("features have duplicate account_id rows; pass one row per account.")
    return features


def labels_frame(X: pl.DataFrame, y: Any) -> pl.DataFrame:
    """``y`` as a label table (``account_id``, ``is_mule``).

    ``y`` is either a label table already (see :mod:`mulegraph.io.labels`), or one boolean per row
    of ``X`` (a sequence, numpy array or polars Series) with None for accounts without a label.
    """
    if isinstance(y, pl.DataFrame):
        if not {"account_id", "is_mule"} <= set(y.columns):
            raise InputError("labels must be a polars DataFrame with account_id and is_mule; read files with mulegraph.labels.load_labels().")
        labels = y
    else:
        try:
            values = pl.Series("is_mule", y, dtype=pl.Boolean, strict=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            raise InputError(f"y must be a label table or one boolean per feature row. Got {type(y).__name__} instead.") from None
        if values.len() != X.height:
            raise InputError(f"y has {values.len()} values for {X.height} feature rows; give one label (or None) per row.")
        labels = pl.DataFrame({"account_id": X["account_id"], "is_mule": values}).drop_nulls("is_mule")
    if labels["is_mule"].dtype != pl.Boolean or labels["is_mule"].null_count():
        raise InputError("labels.is_mule must be a boolean column without empty values.")
    return labels


#: rows of the training matrix hashed at a time (the hash is that of the whole matrix's bytes)
HASH_ROWS = 65_536


def _hash_training(ids: pl.Series, y: np.ndarray, X: np.ndarray) -> str:
    """sha256 of the training accounts, labels and matrix (C order, NaN as -1e300), read in blocks
    of :data:`HASH_ROWS` rows: the same digest as hashing the whole matrix at once, without two
    copies of it (at 2M labelled accounts the matrix is 1.6 GB)."""
    h = hashlib.sha256()
    h.update("\n".join(ids.to_list()).encode("utf-8"))
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    for start in range(0, X.shape[0], HASH_ROWS):
        block = np.nan_to_num(X[start:start + HASH_ROWS], nan=-1e300)
        h.update(np.ascontiguousarray(block, dtype=np.float64).tobytes())
    return h.hexdigest()


class MuleModel(ClassifierMixin, BaseEstimator):
    """Gradient-boosted mule classifier over label-free and out-of-fold closeness features.

    Parameters
    ----------
    config : ModelConfig, optional
        Training settings (``random_state`` among them); defaults when None.
    feature_config : FeatureConfig, optional
        The feature settings the label-free features were computed with; its hub settings also
        decide which edges the closeness features ignore, and transfers given to
        :meth:`set_context` are prepared with it.

    Attributes
    ----------
    estimators_ : list of HistGradientBoostingClassifier
        The averaged ensembles of the final fit.
    calibration_ : tuple of float
        Slope and intercept of the Platt map from raw scores to probabilities.
    feature_names_ : list of str
        The columns the ensembles read, closeness features last (the one-off structure features
        among them when ``config.structure_features`` was set at fit time).
    known_ : polars.DataFrame
        The labelled accounts (``account_id``, ``is_mule``): the known set for scoring.
    best_params_, cv_results_, cv_metrics_, label_counts_, training_hash_, importance_
        The chosen settings, the settings search, cross-validated metrics, label counts, the hash
        of the training data and the raw permutation importance per feature.
    sampling_ : dict
        Which labelled accounts trained the trees (:func:`~mulegraph.scoring.training.sample_negatives`):
        counts before and after, the share of non-mules kept, their weights.
    search_ : list of dict
        Per tree size tried: the rounds boosted before early stopping and its best entry.
    threads_ : int
        The thread budget training ran with (:mod:`mulegraph.scoring.threads`).
    pu_ : dict or None
        Positive-unlabelled training (``config.known_mule_share`` below 1, :mod:`mulegraph.scoring.pu`):
        the share assumed, the labelled mules, the hidden mules estimated among the labelled
        non-mules and how many of those were counted partly as mules (in the last of
        ``config.pu_rounds`` rounds), the rounds; None otherwise.
    nolabel_version_ : str or None
        The no-label rule version (:data:`~mulegraph.scoring.nolabel.NOLABEL_VERSION`) of the
        :data:`NOLABEL_FEATURE` column when the model trained on it; None otherwise.
    stage1_ : MuleModel or None
        With ``config.neighbour_scores``: the first-stage model whose scores of the window give the
        neighbour-score columns (:mod:`mulegraph.scoring.stacking`); None otherwise.
    classes_ : numpy.ndarray
        ``[False, True]`` (not a mule, a mule).
    """

    def __init__(self, config: ModelConfig | None = None, feature_config: FeatureConfig | None = None) -> None:
        self.config = config
        self.feature_config = feature_config

    # -- settings and context ------------------------------------------------------------------
    def _cfg(self) -> ModelConfig:
        return self.config or ModelConfig()

    def _fcfg(self) -> FeatureConfig:
        return self.feature_config or FeatureConfig()

    def set_context(self, transfers: Prepared | pl.DataFrame | pl.LazyFrame) -> "MuleModel":
        """Give the model the transfers the feature rows come from; returns ``self``.

        ``transfers``: a :class:`~mulegraph.features.prepare.Prepared` frame, or canonical
        transfers (prepared here with ``feature_config``). :meth:`fit` reads the training
        accounts' neighbourhoods from it; :meth:`predict_proba`, :meth:`predict_scores` and
        :meth:`closeness` the scored accounts'. The context is not a setting: :func:`~sklearn.base.clone`
        does not copy it. The one-off structure features computed from it are kept until another
        context is given (giving the same :class:`Prepared` object again keeps them).
        """
        if isinstance(transfers, Prepared):
            prepared = transfers
        elif isinstance(transfers, (pl.DataFrame, pl.LazyFrame)):
            prepared = prepare(transfers, self._fcfg())
        else:
            raise InputError(
                f"transfers must be a polars DataFrame of canonical transfers or a Prepared frame. Got {type(transfers).__name__} instead."
            )
        if prepared is not getattr(self, "_context", None):
            self._structure = None
            self._collection = None
            self._graph = None
        self._context = prepared
        self._closeness = None
        return self

    def _prepared(self) -> Prepared:
        context = getattr(self, "_context", None)
        if context is None:
            raise InputError("the model has no transfers to read the graph from; call set_context(prepared) with the transfers the features came from.")
        return context

    def _with_structure(self, features: pl.DataFrame, names: list[str] | tuple[str, ...]) -> pl.DataFrame:
        """``features`` with those of the one-off structure columns ``names`` it lacks, from the context.

        :func:`~mulegraph.features.structure.structure_features` runs at most once per context.
        """
        missing = [c for c in names if c not in features.columns]
        if not missing:
            return features
        if getattr(self, "_structure", None) is None:
            self._structure = structure_features(self._prepared())
        return features.join(self._structure.select("account_id", *missing), on="account_id", how="left")

    def _with_nolabel(self, features: pl.DataFrame) -> pl.DataFrame:
        """``features`` with the :data:`NOLABEL_FEATURE` column (replaced when present).

        The no-label rules (:class:`~mulegraph.scoring.nolabel.NoLabelScorer`, fixed weights) read
        each feature's percentile among the non-hub rows of ``features`` (the context's hubs and
        rows whose ``is_hub`` is true left out); every row, hubs too, gets a score. The rules read
        the no-label mode's collection features too (:mod:`mulegraph.features.collection`, computed
        from the context at most once per context when the rows lack them), as the no-label mode
        does; they are not model features and are not added to the rows returned.
        """
        frame = features.drop(NOLABEL_FEATURE, strict=False)
        rows = frame
        missing = [f.name for f in COLLECTION_FEATURES if f.name not in frame.columns]
        if missing:
            if getattr(self, "_collection", None) is None:
                self._collection = collection_features(self._prepared())
            rows = frame.join(self._collection.select("account_id", *missing), on="account_id", how="left")
        hubs = self._prepared().accounts.filter(pl.col("is_hub")).select("account_id")
        population = rows.join(hubs, on="account_id", how="anti")
        if "is_hub" in population.columns:
            population = population.filter(~pl.col("is_hub").fill_null(False))
        if population.is_empty():
            return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(NOLABEL_FEATURE))
        scorer = NoLabelScorer().fit(population)
        if not scorer.rules_used_:
            raise ModelError("none of the features the no-label rules read are present; compute all feature families "
                             "or train with model.nolabel_feature = 'off'.")
        scored = scorer.score(rows).select("account_id", pl.col("score").cast(pl.Float64).alias(NOLABEL_FEATURE))
        return frame.join(scored, on="account_id", how="left")

    def _fit_neighbours(self, features: pl.DataFrame, labels: pl.DataFrame, cfg: ModelConfig) -> pl.DataFrame:
        """``features`` with the neighbour-score columns (:mod:`mulegraph.scoring.stacking`) of the
        training accounts, out-of-fold; keeps the first-stage model of all labels as ``stage1_``."""
        stage_cfg = dataclasses.replace(cfg, neighbour_scores=False, importance_repeats=0)
        p = self._prepared()
        fitted: list[MuleModel] = []

        def score(lab: pl.DataFrame) -> pl.DataFrame:
            m = MuleModel(stage_cfg, self._fcfg()).set_context(p)
            m._structure, m._collection = getattr(self, "_structure", None), getattr(self, "_collection", None)
            m._fit(features, lab, stage_cfg)
            fitted.append(m)
            return m.predict_scores(features)

        nbr, _ = stacking.out_of_fold(p, labels, score, cfg.random_state)
        self.stage1_ = fitted[-1]  # the last one trained on every label
        return features.join(nbr, on="account_id", how="left")

    def _with_neighbours(self, features: pl.DataFrame) -> pl.DataFrame:
        """``features`` with the neighbour-score columns from the first-stage model's scores of the
        rows given (the window's accounts: score them together), with this model's context and seeds."""
        stage1 = getattr(self, "stage1_", None)
        if stage1 is None:
            raise ModelError("the model reads neighbour scores but has no first-stage model; train the model again.")
        p = self._prepared()
        stage1.set_context(p)
        stage1.set_seeds(getattr(self, "_seeds", None))
        frame = features.drop(_NEIGHBOUR, strict=False)
        return frame.join(stacking.neighbour_features(p, stage1.predict_scores(frame)), on="account_id", how="left")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "estimators_")

    def _check_fitted(self) -> None:
        require_fitted(self, "call fit() or load a trained model with load_model()")

    # -- training ------------------------------------------------------------------------------
    def fit(self, X: pl.DataFrame, y: Any) -> "MuleModel":
        """Train on the labelled accounts of ``X``; returns ``self``.

        ``X``: one row per account (``compute_features`` output) for the transfers given to
        :meth:`set_context`. ``y``: a label table (``account_id``, ``is_mule``; see
        :mod:`mulegraph.io.labels`) or one boolean per row of ``X``, None where unknown. Labelled
        accounts without a feature row or on hubs are not used (counted in ``label_counts_``).
        With ``config.structure_features`` the one-off structure features are among the columns
        (computed from the context when ``X`` lacks them); without it they are left out even when
        ``X`` has them. ``config.families``, when not empty, keeps the label-free columns of those
        families only (the closeness features always). Runs inside the thread budget of ``config.threads``.
        """
        cfg = self._cfg()
        training.check_config(cfg)
        features = _check_features(X)
        labels = labels_frame(features, y)
        with thread_budget(cfg.threads) as n_threads:
            self._fit(features, labels, cfg)
            self.threads_ = n_threads
        return self

    def _fit(self, features: pl.DataFrame, labels: pl.DataFrame, cfg: ModelConfig) -> None:
        p = self._prepared()
        t_stage = time.perf_counter()
        seconds: dict[str, float] = {}

        def lap(stage: str) -> None:
            nonlocal t_stage
            now = time.perf_counter()
            seconds[stage] = round(now - t_stage, 3)
            t_stage = now

        structure = cfg.structure_features and (not cfg.families or "structure" in cfg.families)
        if structure:
            features = self._with_structure(features, _STRUCTURE)
        lap("structure")
        features = features.drop(_NEIGHBOUR, strict=False)
        self.stage1_ = None
        if cfg.neighbour_scores:
            features = self._fit_neighbours(features, labels, cfg)
        lap("neighbours")
        use_nolabel = uses_nolabel_feature(cfg)
        features = self._with_nolabel(features) if use_nolabel else features.drop(NOLABEL_FEATURE, strict=False)
        lap("nolabel")
        columns = training.family_columns(training.feature_matrix_columns(features), cfg, self._fcfg(),
                                          keep=(NOLABEL_FEATURE, *_NEIGHBOUR))
        if not structure:
            columns = [c for c in columns if c not in _STRUCTURE]
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
        y_ = lab["is_mule"].to_numpy().astype(np.int64)
        comp = training.components(p)[idx]
        folds, scheme = training.make_folds(y_, comp, cfg.cv_folds, cfg.random_state)
        lap("folds")

        # as many closeness folds as asked for, but never more than there are mules (or non-mules)
        n_pf = min(cfg.proximity_folds, int(y_.sum()), int(len(y_) - y_.sum()))
        pfolds, _ = training.make_folds(y_, None, max(n_pf, 2), cfg.random_state + 1)
        prox = training.oof_proximity(p, idx, y_, pfolds, cfg)
        # the labelled accounts' rows of the features, read a block at a time (no copy of the frame)
        rows_of = (lab.select("account_id")
                   .join(features.select("account_id").with_row_index("_row"), on="account_id", how="left", maintain_order="left")
                   ["_row"].to_numpy())
        all_columns = columns + list(_CLOSENESS)
        Xm = training.stacked_matrix([(features, columns, rows_of), (prox, list(_CLOSENESS))])
        del rows_of, prox  # the matrix holds what the trees read
        lap("closeness")

        # the trees train on every mule and, on large label sets, a weighted sample of the rest
        sample = training.sample_negatives(y_, folds, cfg)
        rows = sample.rows
        Xs, ys, fs = (Xm, y_, folds) if not sample.applied else (Xm[rows], y_[rows], folds[rows])
        ws = sample.weight if sample.applied else None
        search = training.search_settings(Xs, ys, fs, cfg, sample_weight=ws)
        lap("cv")
        labelled = (Xs, ys, fs)  # the rows as labelled, for the importance
        fw = None  # the trees' row weights: set by positive-unlabelled training only
        self.pu_ = None
        if cfg.known_mule_share < 1.0:
            n_lab, ws_lab = len(ys), ws
            for _ in range(cfg.pu_rounds):  # each round re-reads the hidden mules from the last search's held-out scores
                oof = search.oof[:n_lab]  # the labelled rows come first, the mule copies after them
                a, b = training.platt(oof, labelled[1], sample_weight=ws_lab)
                hidden = pu.hidden_mule_probability(training.sigmoid(a * oof + b), labelled[1], cfg.known_mule_share)
                rel = pu.relabel(*labelled, hidden, cfg.known_mule_share, weight=ws_lab)
                Xs, ys, fs, ws, fw = rel.X, rel.y, rel.folds, rel.eval_weight, rel.fit_weight
                search = training.search_settings(Xs, ys, fs, cfg, sample_weight=ws, fit_weight=fw)
            self.pu_ = {**rel.summary, "rounds": cfg.pu_rounds}
            lap("pu")
        best = search.best

        from sklearn.metrics import roc_auc_score

        self.calibration_ = training.platt(search.oof, ys, sample_weight=ws)
        oof_score = training.sigmoid(self.calibration_[0] * search.oof + self.calibration_[1])

        self.estimators_ = training.make_estimators(cfg, best["max_leaf_nodes"], best["max_iter"], cfg.n_models)
        for est in self.estimators_:
            est.fit(Xs, ys, sample_weight=fw)
        lap("final")
        self.classes_ = np.array([False, True])
        self.n_features_in_ = len(all_columns)
        self.feature_names_ = all_columns
        self.best_params_ = {"max_leaf_nodes": best["max_leaf_nodes"], "max_iter": best["max_iter"]}
        self.cv_results_ = search.results
        self.cv_metrics_ = {
            "folds": cfg.cv_folds,
            "fold_scheme": scheme,
            "pr_auc": best["cv_pr_auc"],
            "pr_auc_std": best["cv_pr_auc_std"],
            "pr_auc_pooled": training.average_precision(ys, search.oof, ws),
            "roc_auc_pooled": float(roc_auc_score(ys, search.oof, sample_weight=ws)),
            "brier_calibrated": float(np.average((oof_score - ys) ** 2, weights=ws)),
            "prevalence": float(np.average(ys, weights=ws)),
        }
        self.known_ = lab.select("account_id", "is_mule")
        self.nolabel_version_ = NOLABEL_VERSION if NOLABEL_FEATURE in all_columns else None
        # the no-label weight its scores are blended with wherever it scores (None: its own score)
        self.nolabel_blend_ = few_label_weight(cfg.nolabel_blend, cfg.known_mule_share)
        self.label_counts_ = {"mule": int(y_.sum()), "not_mule": int(len(y_) - y_.sum()), "unmatched": int(n_unmatched)}
        self.training_hash_ = _hash_training(lab["account_id"], y_, Xm)
        self.importance_ = {}
        if cfg.importance_repeats > 0:
            # on a sampled (large) label set, IMPORTANCE_MAX_ROWS held-out rows in all, not per fold
            cap = training.IMPORTANCE_MAX_ROWS // cfg.cv_folds if sample.applied else None
            drops = training.permutation_drops(*labelled, cfg, self.best_params_, search.fold_models, max_rows=cap,
                                               transform=search.transform)
            self.importance_ = {name: float(d) for name, d in zip(self.feature_names_, drops)}
        lap("importance")
        self.sampling_ = sample.summary
        self.search_ = search.sizes
        #: seconds per training stage (not saved; for benchmarks)
        self.fit_seconds_ = seconds
        self._closeness = None

    # -- what the fitted model knows -----------------------------------------------------------
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
        """A short id of the trained model: ``mulegraph-`` and 12 hex digits of the hash of its model
        folder's checksum manifest once saved or loaded (so it changes with any file, the card
        included: :mod:`mulegraph.scoring.persist`), of its training-data hash before."""
        self._check_fitted()
        return getattr(self, "model_version_", None) or f"mulegraph-{self.training_hash_[:12]}"

    # -- scoring -------------------------------------------------------------------------------
    def set_seeds(self, known: pl.DataFrame | None) -> "MuleModel":
        """Give the known accounts the closeness features read at scoring time; returns ``self``.

        ``known``: ``account_id, is_mule`` (the seeds of :mod:`mulegraph.scoring.seeds`: training
        labels of the same store, investigator decisions, a ``--known`` file, consortium matches);
        None: the training labels ``known_``. Like the context, the seeds are not a setting.
        """
        if known is not None and not {"account_id", "is_mule"} <= set(known.columns):
            raise InputError("seeds must be a polars DataFrame with account_id and is_mule.")
        self._seeds = None if known is None else known.select(pl.col("account_id").cast(pl.String), pl.col("is_mule").cast(pl.Boolean))
        self._closeness = None
        return self

    @contextmanager
    def closeness_graph_held(self) -> Iterator["MuleModel"]:
        """Within this block, every closeness computation of the context (one per :meth:`set_seeds`)
        reads one :func:`~mulegraph.features.proximity.closeness_graph`, built at the first and
        released at the end: for scoring one window with several seed sets (the elsewhere blend's
        ``"auto"``), the label-free tables are built once instead of once per seed set. On leaving
        it, the seeds given before it are back, with their closeness features if they were computed."""
        seeds, closeness = getattr(self, "_seeds", None), getattr(self, "_closeness", None)
        self._hold_graph = True
        try:
            yield self
        finally:
            self._hold_graph = False
            self._graph = None
            self._seeds, self._closeness = seeds, closeness

    def closeness(self) -> pl.DataFrame:
        """Closeness-to-known-mules features of every account of the context, from all known labels.

        ``account_id`` plus one column per :data:`mulegraph.features.proximity.FEATURES`; computed
        once per :meth:`set_context` (and :meth:`set_seeds`) from the seeds, else from ``known_``.
        """
        self._check_fitted()
        if getattr(self, "_closeness", None) is None:
            p = self._prepared()
            ids = p.accounts.select("idx", "account_id")
            seeds = getattr(self, "_seeds", None)
            known = (self.known_ if seeds is None else seeds).join(ids, on="account_id", how="inner")
            graph = None
            if getattr(self, "_hold_graph", False):
                if getattr(self, "_graph", None) is None:
                    self._graph = proximity.closeness_graph(p)
                graph = self._graph
            feats = proximity.compute(
                p, known.filter(pl.col("is_mule"))["idx"], known["idx"], graph=graph, **training.proximity_kwargs(self._cfg())
            )
            self._closeness = ids.join(feats, on="idx", how="left").drop("idx")
        return self._closeness

    def _matrix_parts(self, features: pl.DataFrame) -> list[tuple[pl.DataFrame, list[str]]]:
        """The frames and columns whose side-by-side values are the model's matrix
        (:func:`~mulegraph.scoring.training.stacked_matrix`), one row per row of ``features``."""
        if NOLABEL_FEATURE in self.feature_names_:
            trained = getattr(self, "nolabel_version_", None)
            if trained != NOLABEL_VERSION:
                raise ModelError(f"the model was trained on the no-label rule score of {trained or 'an unknown rule version'}, "
                                 f"but this mulegraph has {NOLABEL_VERSION}; retrain the model with this version.")
        base_cols = [c for c in self.feature_names_ if c not in _CLOSENESS]
        derived = {*_STRUCTURE, NOLABEL_FEATURE, *_NEIGHBOUR}  # columns computed here from the context
        self._check_columns([c for c in base_cols if c not in derived], features)
        # the closeness features first: at bank scale their graph frames are the largest transient
        # of scoring, better built before the derived columns below add to what is held
        closeness = self.closeness()
        features = self._with_structure(features, [c for c in self.feature_names_ if c in _STRUCTURE])
        if NOLABEL_FEATURE in self.feature_names_:
            features = self._with_nolabel(features)
        if any(c in _NEIGHBOUR for c in self.feature_names_):
            features = self._with_neighbours(features)
        self._check_columns(base_cols, features)
        frame = features.drop([c for c in _CLOSENESS if c in features.columns])
        close_cols = [c for c in self.feature_names_ if c in _CLOSENESS]
        k = len(close_cols)
        if k and self.feature_names_[-k:] == close_cols:
            # the closeness columns come last (as every fit orders them): aligned beside the rows,
            # not joined into a copy of the whole frame
            aligned = frame.select("account_id").join(closeness, on="account_id", how="left", maintain_order="left")
            return [(frame, self.feature_names_[:-k]), (aligned, close_cols)]
        return [(frame.join(closeness, on="account_id", how="left", maintain_order="left"), list(self.feature_names_))]

    def _matrix(self, features: pl.DataFrame) -> np.ndarray:
        return training.stacked_matrix(self._matrix_parts(features))

    @staticmethod
    def _check_columns(needed: list[str], features: pl.DataFrame) -> None:
        missing = [c for c in needed if c not in features.columns]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ModelError(f"features lack {len(missing)} column(s) the model was trained on ({shown}); recompute features with the feature set of the model.")

    def _proba(self, X: np.ndarray) -> np.ndarray:
        with thread_budget(self._cfg().threads):
            raw = np.mean([training.logit(est.predict_proba(X)[:, 1]) for est in self.estimators_], axis=0)
        a, b = self.calibration_
        return training.sigmoid(a * raw + b)

    def _proba_of(self, features: pl.DataFrame) -> np.ndarray:
        """:meth:`_proba` of the rows of ``features``, :data:`SCORE_ROWS` at a time: the whole
        matrix is never held (at 2M accounts it is 1.8 GB); each row's score is the same."""
        parts = self._matrix_parts(features)
        n = parts[0][0].height
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, SCORE_ROWS):
            stop = min(start + SCORE_ROWS, n)
            out[start:stop] = self._proba(training.stacked_matrix([(f.slice(start, stop - start), cols) for f, cols in parts]))
        return out

    def predict_proba(self, X: pl.DataFrame) -> np.ndarray:
        """Calibrated probabilities ``[not a mule, a mule]``, one row per row of ``X`` (hubs too)."""
        self._check_fitted()
        features = _check_features(X)
        p1 = self._proba_of(features)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: pl.DataFrame) -> np.ndarray:
        """True where the calibrated mule probability is at least 0.5, one value per row of ``X``."""
        proba = self.predict_proba(X)
        return self.classes_[(proba[:, 1] >= 0.5).astype(int)]

    def predict_scores(self, X: pl.DataFrame) -> pl.DataFrame:
        """Calibrated mule probability per ranked account: ``account_id, score`` (hubs left out).

        Hubs are the context's hub accounts and rows whose ``is_hub`` is true.
        """
        self._check_fitted()
        features = _check_features(X)
        hubs = self._prepared().accounts.filter(pl.col("is_hub")).select("account_id")
        frame = features.join(hubs, on="account_id", how="anti")
        if "is_hub" in frame.columns:
            frame = frame.filter(~pl.col("is_hub").fill_null(False))
        return pl.DataFrame({"account_id": frame["account_id"], "score": self._proba_of(frame)})
