"""The steps of supervised training: folds, out-of-fold closeness, settings search, calibration, importance.

:meth:`mulegraph.scoring.estimator.MuleModel.fit` runs them in this order:

1. **Folds** (:func:`make_folds`). The labelled, non-hub accounts are split into ``cv_folds``
   stratified folds. When the hub-free account graph falls apart into components that keep
   connected patterns together (no component holds more than half of the labelled accounts), the
   folds are grouped by component (:func:`components`), so that one pattern never sits on both
   sides of a fold; otherwise (one giant component, common in real exports) the folds are
   stratified only. The model card records which.
2. **Closeness to known mules, out-of-fold** (:func:`~mulegraph.scoring.oof_closeness.oof_proximity`). The labelled accounts are
   split again into ``proximity_folds`` stratified folds; accounts of fold *k* get their
   :mod:`~mulegraph.features.proximity` features from the labels of the other folds only, so no
   account's label reaches its own features (the PageRank walks of all folds run in one pass,
   restarting at the known mules outside the account's fold). More folds make the training
   features closer to scoring time, when every training label is known. A portable model
   (``closeness_seed_share``) is seeded by a random part of the mules only, as a bank that
   scores with it knows only some of its own.
3. **Sampling** (:func:`sample_negatives`). Up to ``sample_above`` labelled accounts every one
   trains the trees. Above it (mule prevalence in banks is 1-3%, so most rows are non-mules that
   teach the trees little) every mule is kept and ``negatives_per_mule`` non-mules per mule (never
   fewer than ``sample_above`` accounts in all) are drawn at random, the same share in each CV
   fold, seeded by ``random_state``. Each kept non-mule weighs the inverse of its fold's sampling
   rate, so the weights of a fold sum to its labelled accounts: held-out average precision,
   calibration and the pooled metrics are those of the whole labelled population. The closeness
   features of step 2 are computed before, from every label, so they are exact; sampling only
   picks the rows the trees see.
4. **Settings by cross-validation** (:func:`search_settings`) on the folds of step 1: the tree
   sizes are tried in the order given; each is boosted on every fold at once and scored (average
   precision on the held-out fold, weighted) every :data:`EVAL_EVERY` rounds. A size stops
   boosting when the mean over folds has not improved by more than ``early_stopping_tol`` for
   ``n_iter_no_change`` evaluations (early stopping; the rounds are added to the same ensembles,
   so the scores read are those of one longer fit), and the search stops at the first size that
   does not beat the best so far by more than ``search_tol``. The best size and round count read
   win. With ``known_mule_share`` below 1 (labels that name only some of the mules) the search
   runs a second time on the labels read as positive and unlabelled (:mod:`mulegraph.scoring.pu`;
   once more per further ``pu_rounds``), and the last search's choice, scores and trees are what
   the next steps use.
5. **Calibration** (:func:`platt`). A logistic (Platt) map from the out-of-fold raw scores to
   probabilities, weighted like the held-out scores: it is monotone, so it keeps the ranking,
   and gives scores in 0..1 that track the mule rate of the population.
6. **Final fit** on the training rows (``n_models`` boosted ensembles with derived seeds,
   :func:`make_estimators`, averaged).
7. **Importance** (:func:`permutation_drops`): the drop in average precision when a feature is
   shuffled among held-out rows, with the settings-search ensembles.

The estimator runs these steps inside a thread budget (:mod:`mulegraph.scoring.threads`).

Nothing here keeps state: every function takes arrays and settings and returns arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.core.errors import InputError, ModelError
from mulegraph.features import proximity
from mulegraph.features.prepare import Prepared
from mulegraph.features.registry import REGISTRY, families, register_windows
from mulegraph.scoring.blend import few_label_weight
from mulegraph.scoring.oof_closeness import PORTABLE_SEED_SHARE, oof_proximity, proximity_kwargs, seed_mules, seed_share

__all__ = [
    "EVAL_EVERY",
    "FIRST_ROUNDS",
    "IMPORTANCE_MAX_ROWS",
    "Sample",
    "sample_negatives",
    "SettingsSearch",
    "check_config",
    "feature_matrix_columns",
    "family_columns",
    "model_families",
    "to_matrix",
    "average_precision",
    "components",
    "make_folds",
    "proximity_kwargs",
    "oof_proximity",
    "seed_share",
    "seed_mules",
    "PORTABLE_SEED_SHARE",
    "stacked_matrix",
    "WeightedBins",
    "make_estimators",
    "search_settings",
    "platt",
    "sigmoid",
    "logit",
    "proba_at",
    "permutation_drops",
]

#: the settings search reads each candidate every this many boosting rounds
EVAL_EVERY = 10
#: the bins of a feature column for trees trained with row weights (scikit-learn's most, 255)
MAX_BINS = 255
#: boosting rounds fitted on every fold before the held-out folds are first read; each later
#: stretch at most doubles the rounds, so refitting costs a small share of the boosting
FIRST_ROUNDS = 50
#: held-out rows per fold (all mules kept, non-mules sampled) for the permutation importance
IMPORTANCE_MAX_ROWS = 5000

_EXCLUDE = {"account_id", "idx", "is_hub"}


def check_config(cfg: ModelConfig) -> None:
    """Refuse settings training cannot work with, with a :class:`~mulegraph.core.errors.ModelError`."""
    if cfg.cv_folds < 2:
        raise ModelError("model.cv_folds must be at least 2.")
    if cfg.class_weight not in ("balanced", "none"):
        raise ModelError(f"model.class_weight must be 'balanced' or 'none'. Got '{cfg.class_weight}' instead.")
    if cfg.nolabel_feature not in ("auto", "on", "off"):
        raise ModelError(f"model.nolabel_feature must be 'auto', 'on' or 'off'. Got '{cfg.nolabel_feature}' instead.")
    try:
        few_label_weight(cfg.nolabel_blend, cfg.known_mule_share)
    except InputError as err:
        raise ModelError(str(err)) from None
    seed_share(cfg.closeness_seed_share)
    if cfg.proximity_folds < 2 or cfg.max_hops < 1 or cfg.ppr_groups < 2 or not 0 < cfg.ppr_alpha < 1:
        raise ModelError("model.proximity_folds and model.ppr_groups must be at least 2, model.max_hops at least 1, and 0 < model.ppr_alpha < 1.")
    if not cfg.max_leaf_nodes or cfg.max_iter < EVAL_EVERY:
        raise ModelError(f"model.max_leaf_nodes needs at least one size and model.max_iter at least {EVAL_EVERY}.")
    if cfg.sample_above < 0 or not cfg.negatives_per_mule > 0 or cfg.n_iter_no_change < 0 or not cfg.search_tol >= 0 or not cfg.early_stopping_tol >= 0:
        raise ModelError("model.sample_above, model.n_iter_no_change, model.early_stopping_tol and model.search_tol must not be negative, "
                         "and model.negatives_per_mule must be above 0.")
    if cfg.families:
        known = model_families()
        unknown = sorted(set(cfg.families) - set(known))
        if unknown:
            raise ModelError(f"model.families names unknown families: {', '.join(unknown)}; "
                             f"choose among {', '.join(known)} (or leave it empty for all).")
    if cfg.threads is not None and cfg.threads < 1:
        raise ModelError(f"model.threads must be at least 1 (or left out for every core). Got {cfg.threads} instead.")


def feature_matrix_columns(features: pl.DataFrame) -> list[str]:
    """The label-free feature columns the model uses: numeric and boolean columns except ids and ``is_hub``."""
    closeness = {s.name for s in proximity.FEATURES}
    cols = []
    for name, dtype in features.schema.items():
        if name in _EXCLUDE or name in closeness:
            continue
        if dtype.is_numeric() or dtype == pl.Boolean:
            cols.append(name)
    return cols


def model_families() -> list[str]:
    """The feature families ``ModelConfig.families`` may name: every registered family (features
    registered by a bank included) but the no-label mode's own collection features, sorted."""
    return [f for f in families() if f != "collection"]


def family_columns(columns: list[str], cfg: ModelConfig, fcfg: FeatureConfig, keep: Iterable[str] = ()) -> list[str]:
    """``columns`` less those outside ``cfg.families`` (all of them when it is empty).

    A column's family is its registered spec's (:mod:`mulegraph.features.registry`, the windowed
    features of ``fcfg``'s windows included); with families named, a column no family lists (a
    feature registered by nobody) is left out too, except those of ``keep`` (columns that settings
    of their own decide on, such as the no-label score).
    """
    if not cfg.families:
        return columns
    register_windows(fcfg)
    named, kept = set(cfg.families), set(keep)
    return [c for c in columns if c in kept or (c in REGISTRY and REGISTRY[c].family in named)]


def to_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The columns as a float64 matrix (nulls become NaN, which the trees handle); ``(rows, 0)``
    for no columns (a model of the closeness features alone has no label-free part)."""
    if not columns:
        return np.empty((frame.height, 0), dtype=np.float64)
    return frame.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy().astype(np.float64, copy=False)


#: rows of a training matrix converted at a time (:func:`stacked_matrix`)
MATRIX_ROWS = 65_536


def stacked_matrix(parts: list[tuple]) -> np.ndarray:
    """The columns of each ``(frame, columns)`` side by side as one C-ordered float64 matrix, as
    ``np.hstack([to_matrix(frame, columns), ...])`` gives it, filled :data:`MATRIX_ROWS` rows at a
    time: no whole-frame copy on the way (at 2M labelled accounts one is 1.6 GB).

    A part ``(frame, columns, rows)`` reads the rows of ``frame`` at the positions ``rows`` (in that
    order), as ``frame[rows]`` would, without building that frame."""
    def height(part: tuple) -> int:
        return len(part[2]) if len(part) > 2 else part[0].height

    n = height(parts[0]) if parts else 0
    out = np.empty((n, sum(len(part[1]) for part in parts)), dtype=np.float64)
    for start in range(0, n, MATRIX_ROWS):
        stop = min(start + MATRIX_ROWS, n)
        j = 0
        for part in parts:
            frame, cols = part[0], part[1]
            block = frame[np.asarray(part[2][start:stop])] if len(part) > 2 else frame.slice(start, stop - start)
            out[start:stop, j:j + len(cols)] = to_matrix(block, cols)
            j += len(cols)
    return out


def average_precision(y: np.ndarray, s: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Average precision of scores ``s`` for labels ``y`` (rows weighted by ``sample_weight``); NaN when ``y`` holds one class only."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s, sample_weight=sample_weight)) if y.any() and not y.all() else float("nan")


def components(p: Prepared) -> np.ndarray:
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


@dataclass(frozen=True)
class Sample:
    """The labelled accounts that train the trees (:func:`sample_negatives`).

    ``rows``: their positions among the labelled accounts, ascending; ``weight``: one per row, 1
    for a mule and for every row when nothing was sampled, else a kept non-mule's inverse sampling
    rate in its fold; ``summary``: what the model card records (counts before and after, the share
    of non-mules kept, the weights).
    """

    rows: np.ndarray
    weight: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        """True when non-mules were left out."""
        return bool(self.summary.get("applied"))


def sample_negatives(y: np.ndarray, strata: np.ndarray, cfg: ModelConfig) -> Sample:
    """Every mule and a sample of the non-mules, the same share in each stratum (CV fold).

    Nothing is sampled up to ``cfg.sample_above`` labelled accounts. Above it
    ``max(negatives_per_mule x mules, sample_above - mules)`` non-mules are kept (all of them when
    that is not fewer), spread over the strata in proportion to their non-mules, drawn with
    ``cfg.random_state``. A kept non-mule of stratum *s* weighs ``non-mules of s / kept of s``, so
    the weights of each stratum sum to its labelled accounts.
    """
    y = np.asarray(y)
    n, n_pos = len(y), int((y == 1).sum())
    n_neg = n - n_pos
    target = n_neg
    if n > cfg.sample_above:
        target = min(n_neg, max(int(np.ceil(cfg.negatives_per_mule * n_pos)), cfg.sample_above - n_pos))
    summary: dict[str, Any] = {
        "applied": target < n_neg, "sample_above": cfg.sample_above, "negatives_per_mule": cfg.negatives_per_mule,
        "labelled": n, "mules": n_pos, "not_mules": n_neg,
    }
    if target >= n_neg:
        rows = np.arange(n)
        weight = np.ones(n)
    else:
        rng = np.random.default_rng([cfg.random_state, 11])  # a stream of its own: other draws stay as they were
        keep = [np.flatnonzero(y == 1)]
        weight_of = np.ones(n)
        for s in np.unique(strata):
            neg_s = np.flatnonzero((strata == s) & (y != 1))
            if not len(neg_s):
                continue
            k = min(len(neg_s), max(1, int(round(target * len(neg_s) / n_neg))))
            chosen = rng.choice(neg_s, size=k, replace=False)
            weight_of[chosen] = len(neg_s) / k
            keep.append(chosen)
        rows = np.sort(np.concatenate(keep))
        weight = weight_of[rows]
    neg_w = weight[y[rows] != 1]
    summary.update({
        "rows": int(len(rows)), "kept_not_mules": int(len(neg_w)),
        "share_not_mules": float(len(neg_w) / n_neg) if n_neg else 1.0,
        "weight_not_mule_min": float(neg_w.min()) if len(neg_w) else 1.0,
        "weight_not_mule_max": float(neg_w.max()) if len(neg_w) else 1.0,
        "weight_sum": float(weight.sum()),
    })
    return Sample(rows, weight, summary)


def make_estimators(cfg: ModelConfig, max_leaf_nodes: int, n_iter: int, n_models: int) -> list:
    """``n_models`` unfitted boosted ensembles with seeds derived from ``cfg.random_state``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    seeds = np.random.default_rng(cfg.random_state).integers(0, 2**31 - 1, size=n_models)
    return [
        HistGradientBoostingClassifier(
            learning_rate=cfg.learning_rate,
            max_iter=n_iter,
            max_leaf_nodes=max_leaf_nodes,
            min_samples_leaf=cfg.min_samples_leaf,
            l2_regularization=cfg.l2_regularization,
            max_features=cfg.max_features,
            class_weight=None if cfg.class_weight == "none" else cfg.class_weight,
            early_stopping=False,
            random_state=int(s),
        )
        for s in seeds
    ]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def proba_at(est: Any, X: np.ndarray, n_iter: int) -> np.ndarray:
    """Mule probability from the first ``n_iter`` boosting rounds of ``est``."""
    if n_iter >= est.n_iter_:
        return est.predict_proba(X)[:, 1]
    return next(islice(est.staged_predict_proba(X), n_iter - 1, None))[:, 1]


class SettingsSearch:
    """What :func:`search_settings` found.

    ``results``: one dict per (tree size, round count) read, with the mean and spread of the fold
    PR-AUC; ``best``: the winning entry; ``oof``: the out-of-fold raw scores (log-odds) of the
    winner, one per training row; ``fold_models``: the winner's tree size's ensemble of each fold
    (boosted to at least the winning round count); ``sizes``: per tree size tried, the rounds
    boosted and its best entry; ``transform``: what the fold models read instead of the raw
    matrix (a search with row weights bins the columns first, :class:`WeightedBins`), or None.
    """

    def __init__(self, results: list[dict[str, Any]], best: dict[str, Any], oof: np.ndarray, fold_models: list,
                 sizes: list[dict[str, Any]] | None = None, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.results = results
        self.best = best
        self.oof = oof
        self.fold_models = fold_models
        #: what the fold models read instead of the raw feature matrix (:class:`WeightedBins`), or None
        self.transform = transform
        self.sizes = sizes or []


def _last_gain(mean: np.ndarray, tol: float) -> int:
    """The last evaluation that beat every earlier one by more than ``tol`` (the first counts)."""
    last, top = 0, mean[0]
    for c in range(1, len(mean)):
        if mean[c] > top + tol:
            last = c
        top = max(top, mean[c])
    return last


def _next_rounds(done: int, gain_round: int, cfg: ModelConfig) -> int:
    """How far to boost next: far enough to see ``n_iter_no_change`` evaluations past the last
    gain, at most twice as far as now (so the refits stay a small share), at most ``max_iter``."""
    patience = cfg.n_iter_no_change * EVAL_EVERY
    wanted = 2 * done if not patience else min(2 * done, gain_round + patience)
    return min(cfg.max_iter, max(done + EVAL_EVERY, wanted))


def _boost_size(X: np.ndarray, y: np.ndarray, folds: np.ndarray, cfg: ModelConfig, leaves: int,
                weight: np.ndarray | None, fit_weight: np.ndarray | None = None) -> tuple[list[dict[str, Any]], int, np.ndarray, list]:
    """Boost one tree size on every fold, reading the held-out folds every :data:`EVAL_EVERY` rounds.

    The ensembles grow in stretches (``warm_start``: the rounds are added to the same trees, so
    what is read equals one longer fit) until the mean held-out average precision has not improved
    by more than ``cfg.early_stopping_tol`` for ``cfg.n_iter_no_change`` evaluations, or
    ``cfg.max_iter``. Returns the entries read, the index of the best (the highest mean read),
    the held-out raw scores at the best and the fold ensembles. ``weight`` weighs the held-out
    rows, ``fit_weight`` the training rows (None: alike).
    """
    ests = [make_estimators(cfg, leaves, EVAL_EVERY, 1)[0].set_params(warm_start=True) for _ in range(cfg.cv_folds)]
    ap_cols: list[np.ndarray] = []  # per evaluation: average precision of each fold
    raw_cols: list[np.ndarray] = []  # per evaluation: held-out raw score of every row
    done, target = 0, min(cfg.max_iter, FIRST_ROUNDS)
    while True:
        reads = list(range((done // EVAL_EVERY + 1) * EVAL_EVERY, target + 1, EVAL_EVERY))
        ap = np.full((len(reads), cfg.cv_folds), np.nan)
        raw = np.zeros((len(reads), len(y)))
        for k, est in enumerate(ests):
            tr, te = folds != k, folds == k
            est.set_params(max_iter=target).fit(X[tr], y[tr], sample_weight=None if fit_weight is None else fit_weight[tr])
            w_te = None if weight is None else weight[te]
            c = 0
            for j, proba in enumerate(islice(est.staged_predict_proba(X[te]), reads[-1] if reads else 0)):
                if c < len(reads) and j + 1 == reads[c]:
                    raw[c, te] = logit(proba[:, 1])
                    ap[c, k] = average_precision(y[te], raw[c, te], w_te)
                    c += 1
        ap_cols.extend(ap)
        raw_cols.extend(raw)
        done = target
        mean = np.array([np.nanmean(a) if np.isfinite(a).any() else -np.inf for a in ap_cols])
        best_c = int(np.argmax(mean))
        gain = _last_gain(mean, cfg.early_stopping_tol)
        stalled = cfg.n_iter_no_change and len(ap_cols) - 1 - gain >= cfg.n_iter_no_change
        if done >= cfg.max_iter or stalled:
            break
        target = _next_rounds(done, (gain + 1) * EVAL_EVERY, cfg)
    results = [
        {"max_leaf_nodes": leaves, "max_iter": (c + 1) * EVAL_EVERY, "cv_pr_auc": float(np.nanmean(a)) if np.isfinite(a).any() else float("nan"),
         "cv_pr_auc_std": float(np.nanstd(a)) if np.isfinite(a).any() else float("nan")}
        for c, a in enumerate(ap_cols)
    ]
    return results, best_c, raw_cols[best_c], ests


class WeightedBins:
    """Each column of a matrix mapped to its bin number among at most :data:`MAX_BINS` bins.

    The thresholds are those :class:`~sklearn.ensemble.HistGradientBoostingClassifier` picks for
    weighted rows: the midpoints of the distinct values where a column has at most ``MAX_BINS``
    of them, else its weighted quantiles (inverted cumulative weight), computed once per column
    with one sort. Missing values stay missing. A matrix mapped this way has at most ``MAX_BINS``
    distinct values per column, which the trees bin by their midpoints without weights: the same
    partition, without scikit-learn's weighted binning on every fit.
    """

    def __init__(self, X: np.ndarray, weight: np.ndarray) -> None:
        weight = np.asarray(weight, dtype=np.float64)
        self.thresholds: list[np.ndarray] = []
        for j in range(X.shape[1]):
            col = np.asarray(X[:, j], dtype=np.float64)
            keep = ~np.isnan(col) & (weight > 0)
            col, w = col[keep], weight[keep]
            order = np.argsort(col, kind="stable")
            col, w = col[order], w[order]
            distinct = np.unique(col)
            if len(distinct) <= 1:
                thr = np.empty(0)
            elif len(distinct) <= MAX_BINS:
                thr = (distinct[:-1] + distinct[1:]) / 2.0
            else:
                cum = np.cumsum(w)
                targets = cum[-1] * np.linspace(0.0, 1.0, MAX_BINS + 1)[1:-1]
                thr = np.unique(col[np.minimum(np.searchsorted(cum, targets, side="left"), len(col) - 1)])
            self.thresholds.append(thr)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(X.shape, dtype=np.float64)
        for j, thr in enumerate(self.thresholds):
            col = np.asarray(X[:, j], dtype=np.float64)
            out[:, j] = np.where(np.isnan(col), np.nan, np.searchsorted(thr, col, side="left"))
        return out


def search_settings(X: np.ndarray, y: np.ndarray, folds: np.ndarray, cfg: ModelConfig,
                    sample_weight: np.ndarray | None = None, fit_weight: np.ndarray | None = None) -> SettingsSearch:
    """Tree size x boosting rounds by cross-validation: average precision per held-out fold, best mean wins.

    Tree sizes are tried in the order of ``cfg.max_leaf_nodes``, each boosted until its mean
    held-out average precision stops improving (:func:`_boost_size`); the search stops at the
    first size whose best does not beat the best so far by more than ``cfg.search_tol``. Rows are
    weighted by ``sample_weight`` in the held-out scores, and by ``fit_weight`` when the trees
    train (None: every row alike; positive-unlabelled training, :mod:`mulegraph.scoring.pu`). Ties
    go to the earlier size and the fewer rounds.
    """
    results: list[dict[str, Any]] = []
    sizes: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    oof: np.ndarray | None = None
    fold_models: list = []
    binned = None
    if fit_weight is not None:
        # scikit-learn bins weighted rows with one weighted percentile (a sort) per bin and column, on
        # every fit of every stretch; binned once here, the trees see at most MAX_BINS values per column
        binned = WeightedBins(X, fit_weight)
        X = binned(X)
    for leaves in (int(m) for m in cfg.max_leaf_nodes):
        found, best_c, raw, ests = _boost_size(X, y, folds, cfg, leaves, sample_weight, fit_weight)
        results.extend(found)
        mine = found[best_c]
        sizes.append({"max_leaf_nodes": leaves, "rounds_boosted": int(ests[0].n_iter_), **{k: mine[k] for k in ("max_iter", "cv_pr_auc")}})
        score = mine["cv_pr_auc"] if np.isfinite(mine["cv_pr_auc"]) else -np.inf
        top = -np.inf if best is None or not np.isfinite(best["cv_pr_auc"]) else best["cv_pr_auc"]
        improved = score > top + cfg.search_tol
        if best is None or score > top:
            best, oof, fold_models = mine, raw, ests
        if len(sizes) > 1 and not improved:
            break
    assert best is not None and oof is not None
    return SettingsSearch(results, best, oof, fold_models, sizes, transform=binned)


def platt(raw: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple[float, float]:
    """Slope and intercept of a logistic (Platt) map from raw scores to probabilities (rows weighted by ``sample_weight``)."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), y, sample_weight=sample_weight)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def permutation_drops(
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    cfg: ModelConfig,
    best_params: dict[str, int],
    fold_models: list | None = None,
    max_rows: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Permutation importance on held-out folds: mean drop in average precision per column of ``X``.

    For each CV fold, the ensemble of the settings search with the chosen tree size, read at the
    chosen number of rounds (the first rounds of a longer fit are exactly the shorter fit), scores
    the held-out rows with each feature shuffled in turn among them, ``cfg.importance_repeats``
    times (:func:`sklearn.inspection.permutation_importance`, scored by average precision).
    ``fold_models``: those estimators, one per fold (refitted when not given). On a held-out fold
    of more than ``max_rows`` rows (default :data:`IMPORTANCE_MAX_ROWS`), every mule and a random
    sample of the non-mules are used, so the cost stays bounded on large banks (scikit-learn's own
    ``max_samples`` would sample the mules too). Folds without a mule are skipped. ``transform``:
    the search's (:attr:`SettingsSearch.transform`), applied to the rows the fold models read (a
    column-wise map, so shuffling before it shuffles the same way after it).
    """
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(cfg.random_state)
    n_iter = best_params["max_iter"]
    max_rows = IMPORTANCE_MAX_ROWS if max_rows is None else max_rows

    def scorer(est: Any, Xs: np.ndarray, ys: np.ndarray) -> float:
        return average_precision(ys, proba_at(est, Xs if transform is None else transform(Xs), n_iter))

    drops = np.zeros(X.shape[1])
    n_used = 0
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        if not y[te].any():
            continue
        if fold_models is not None:
            est = fold_models[int(k)]
        else:
            est = make_estimators(cfg, best_params["max_leaf_nodes"], n_iter, 1)[0].fit(X[tr], y[tr])
        rows = np.flatnonzero(te)
        if max_rows and len(rows) > max_rows:
            pos, neg = rows[y[rows] == 1], rows[y[rows] == 0]
            keep = max(max_rows - len(pos), 1)
            rows = np.sort(np.concatenate([pos, rng.choice(neg, size=min(keep, len(neg)), replace=False)]))
        found = permutation_importance(
            est, X[rows], y[rows], scoring=scorer, n_repeats=cfg.importance_repeats,
            random_state=int(rng.integers(2**31 - 1)), n_jobs=1,
        )
        drops += found.importances_mean
        n_used += 1
    return drops / max(n_used, 1)
