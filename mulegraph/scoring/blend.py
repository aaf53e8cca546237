"""A model from elsewhere, blended with the local no-label score (issue 13).

A model scores best the kind of data it was trained on. Scoring another bank's store (a portable
model, or a model whose card names another store: :attr:`mulegraph.scoring.seeds.Seeds.elsewhere`)
it brings its learned weights and the local seeds, but not the local data's kind: on the
AMLGentex sets the model of one set scores the other far below the label-free no-label mode
(benchmarks/RESULTS.md, "Few known mules"). There, the score becomes a blend of the two rankings:

    score = sigmoid(w * logit(r_nolabel) + (1 - w) * logit(r_model))

where ``r`` is an account's rank among the scored accounts as a share in (0, 1) (average rank of
ties, divided by n + 1) and ``w`` the weight of the no-label score. Logits of ranks rather than the
ranks themselves: an account at the very top of either ranking stays near the top of the blend.

The weight (``ScoreOptions.elsewhere_blend``, ``mulegraph score --elsewhere-blend``):

* a number in 0..1: that weight. :data:`DEFAULT_WEIGHT` (0.75), the best single weight on the
  validation part of the train splits of both AMLGentex sets (RESULTS.md), is the weight ``"auto"``
  falls back on;
* ``"auto"`` (the default since portable models learn closeness from part of their mules, RESULTS.md
  "A portable model learns closeness from part of its mules"): chosen locally among :data:`WEIGHTS` from the local known mules, out-of-fold: the
  seed mules of the window are split in two halves :data:`REPEATS` times; the model scores with one
  half (and every known non-mule) as its seeds, and each weight is scored by how well the other
  half ranks among the accounts not seeded (ROC AUC, mean over halves and repeats, fewer repeats
  with many seed mules: :data:`AUTO_RANKINGS`; ties go to the
  higher no-label weight). With fewer than :data:`MIN_SEED_MULES` seed mules in the window the
  default weight is used. Each repeat computes the closeness features twice more (their
  label-free tables built once for all: :meth:`~mulegraph.scoring.estimator.MuleModel.closeness_graph_held`)
  and scores the seed mules and at most :data:`AUTO_SAMPLE` other accounts (a random sample on a larger window);
* ``"off"``: the model's own score, as when scoring its own store.

Scoring the store a model was trained on blends only a few-label model (below).

**A few-label model** (``ModelConfig.nolabel_blend``): a model trained with labels that name only
some of the mules (``known_mule_share`` below 1) scores every window blended with the local
no-label score the same way, with the weight the model records (card: ``training.nolabel_blend``):
``"auto"`` (the default) is :data:`FEW_LABEL_WEIGHT` with a share below 1 and no blend with every
label known; a number in 0..1 forces that weight; ``"off"`` never blends. Chosen on the validation
part of the train splits of both AMLGentex sets (RESULTS.md, "Few known mules"). Where the elsewhere
blend applies too, it alone decides (:func:`mulegraph.scoring.score.score_features`).

A blended score is a rank share (the sigmoid of a mix of rank logits): it orders the accounts but
is not a probability of being a mule, as the calibrated model score is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.features.prepare import Prepared
from mulegraph.scoring.nolabel import NoLabelScorer, with_rule_columns

__all__ = ["WEIGHTS", "DEFAULT_WEIGHT", "FEW_LABEL_WEIGHT", "MIN_SEED_MULES", "REPEATS", "AUTO_RANKINGS", "AUTO_SAMPLE", "parse_blend", "few_label_weight",
           "rank_logit", "blend", "choose_weight", "nolabel_scores", "blend_nolabel", "blend_elsewhere"]

#: the weights of the no-label score ``"auto"`` chooses among
WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the weight of the no-label score when none is chosen locally
DEFAULT_WEIGHT = 0.75
#: the weight of the no-label score in a few-label model's score (``ModelConfig.nolabel_blend = "auto"``)
FEW_LABEL_WEIGHT = 0.5
#: ``"auto"`` needs at least this many seed mules in the window (two per half), else the default
MIN_SEED_MULES = 4
#: how many times ``"auto"`` splits the seed mules in two halves, at most: fewer when the seed
#: mules are many, as long as every weight's mean rests on at least :data:`AUTO_RANKINGS`
#: rankings of a held-out mule (each split in halves ranks every seed mule once)
REPEATS = 4
AUTO_RANKINGS = 200
#: ``"auto"`` ranks the held-out mules among at most this many other accounts of the window (a
#: random sample of them on a larger window): each split scores these accounts only
AUTO_SAMPLE = 50_000


def parse_blend(value: Any, what: str = "the elsewhere blend") -> str | float:
    """``"auto"``, ``"off"`` or a weight in 0..1 (a number or its text); InputError otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "off"):
            return text
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{what} must be 'auto', 'off' or a weight from 0 to 1. Got '{value}' instead.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{what} must be 'auto', 'off' or a weight from 0 to 1. Got {value!r} instead.")
    return float(value)


def few_label_weight(setting: Any, known_mule_share: float) -> float | None:
    """The no-label weight a model trained with ``ModelConfig.nolabel_blend = setting`` scores with; None: no blend."""
    value = parse_blend(setting, "model.nolabel_blend")
    if value == "auto":
        return FEW_LABEL_WEIGHT if known_mule_share < 1.0 else None
    return None if value == "off" else float(value)


def rank_logit(values: np.ndarray) -> np.ndarray:
    """The logit of each value's rank share (average rank of ties / (n + 1)); higher value, higher logit."""
    from scipy.stats import rankdata

    r = rankdata(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf), method="average") / (len(values) + 1)
    return np.log(r / (1.0 - r))


def blend(model: np.ndarray, nolabel: np.ndarray, weight: float) -> np.ndarray:
    """``sigmoid(weight * logit(rank of nolabel) + (1 - weight) * logit(rank of model))``, in (0, 1)."""
    z = weight * rank_logit(nolabel) + (1.0 - weight) * rank_logit(model)
    return 1.0 / (1.0 + np.exp(-z))


def nolabel_scores(ranked: pl.DataFrame, prepared: Prepared | None, *, detector_weight: float = 0.0,
                   random_state: int = 0) -> np.ndarray:
    """The no-label mode's score of each row of ``ranked`` (the scored accounts), in its order.

    The one-off structure and collection columns the rules read are computed from ``prepared`` when
    ``ranked`` lacks them; the rules' percentiles are read among the rows of ``ranked``, as in the
    no-label mode.
    """
    frame = with_rule_columns(ranked, prepared)
    scorer = NoLabelScorer(detector_weight=detector_weight, random_state=random_state).fit(frame)
    if not scorer.rules_used_:
        raise InputError("none of the features the no-label rules read are present; compute all feature families "
                         "or score with --elsewhere-blend off (a few-label model: train it with model.nolabel_blend = 'off').")
    out = ranked.select("account_id").join(scorer.score(frame).select("account_id", "score"), on="account_id", how="left",
                                           maintain_order="left")
    return out["score"].cast(pl.Float64).fill_null(0.0).to_numpy()


def _model_scores(model: Any, ranked: pl.DataFrame) -> np.ndarray:
    pred = model.predict_scores(ranked).select("account_id", "score")
    out = ranked.select("account_id").join(pred, on="account_id", how="left", maintain_order="left")
    return out["score"].cast(pl.Float64).fill_nan(None).fill_null(0.0).to_numpy()


@contextmanager
def _reseeded(model: Any, seeds: pl.DataFrame) -> Iterator[None]:
    """Give ``model`` its ``seeds`` back on leaving the block."""
    try:
        yield
    finally:
        model.set_seeds(seeds)


def choose_weight(model: Any, ranked: pl.DataFrame, seeds: pl.DataFrame, nolabel: np.ndarray, *,
                  random_state: int = 0) -> tuple[float, dict[str, Any]]:
    """The weight of :data:`WEIGHTS` under which held-out seed mules rank best (see the module docstring).

    ``seeds``: ``account_id, is_mule`` (the scoring's seeds); ``nolabel``: the no-label score of
    each row of ``ranked``. Leaves the model's seeds as ``seeds``. Returns the weight and what
    decided it (the mean AUC per weight, the seed mules used, or why the default was used).
    """
    ids = ranked["account_id"]
    mules = np.asarray(sorted(seeds.filter(pl.col("is_mule") & pl.col("account_id").is_in(ids.implode()))["account_id"].to_list()))
    if len(mules) < MIN_SEED_MULES:
        return DEFAULT_WEIGHT, {"chosen": "default", "seed_mules": int(len(mules)),
                                "why": f"fewer than {MIN_SEED_MULES} seed mules in the window"}
    from sklearn.metrics import roc_auc_score

    # on a large window, the held-out mules are ranked among a random sample of the other accounts:
    # the AUC of that sample estimates the window's, for a fraction of the scoring
    n_other = ranked.height - len(mules)
    if n_other > AUTO_SAMPLE:
        is_mule = ids.is_in(mules.tolist()).to_numpy()
        pick = np.random.default_rng(random_state + 1).choice(np.flatnonzero(~is_mule), size=AUTO_SAMPLE, replace=False)
        rows = np.sort(np.concatenate([np.flatnonzero(is_mule), pick]))
        ranked, nolabel = ranked[rows], nolabel[rows]
        ids = ranked["account_id"]
    rng = np.random.default_rng(random_state)
    auc = {w: [] for w in WEIGHTS}
    repeats = min(REPEATS, max(1, math.ceil(AUTO_RANKINGS / len(mules))))
    # a MuleModel builds the label-free closeness tables once for every half, and gives back its
    # seeds and their closeness (computed for the scores) after; any other model is re-seeded
    hold = getattr(model, "closeness_graph_held", None)
    with hold() if callable(hold) else _reseeded(model, seeds):
        for _ in range(repeats):
            perm = rng.permutation(len(mules))
            halves = (mules[perm[: len(mules) // 2]], mules[perm[len(mules) // 2:]])
            for seeded, held in (halves, halves[::-1]):
                model.set_seeds(seeds.filter(~pl.col("account_id").is_in(held.tolist())))
                m = _model_scores(model, ranked)
                keep = ~ids.is_in(seeded.tolist()).to_numpy()
                y = ids.is_in(held.tolist()).to_numpy()[keep]
                for w in WEIGHTS:
                    auc[w].append(float(roc_auc_score(y, blend(m, nolabel, w)[keep])))
    mean = {w: float(np.mean(v)) for w, v in auc.items()}
    best = max(WEIGHTS, key=lambda w: (round(mean[w], 9), w))
    return best, {"chosen": "local", "seed_mules": int(len(mules)), "auc": {str(w): round(v, 4) for w, v in mean.items()},
                  "accounts_read": int(ranked.height), "splits": 2 * repeats}


def _blend_frame(ranked: pl.DataFrame, model_scores: pl.DataFrame, nolabel: np.ndarray, weight: float) -> pl.DataFrame:
    m = ranked.select("account_id").join(model_scores.select("account_id", "score"), on="account_id", how="left",
                                         maintain_order="left")["score"].cast(pl.Float64).fill_null(0.0).to_numpy()
    return pl.DataFrame({"account_id": ranked["account_id"], "score": blend(m, nolabel, weight)})


def blend_nolabel(ranked: pl.DataFrame, model_scores: pl.DataFrame, prepared: Prepared | None, weight: float, *,
                  detector_weight: float = 0.0, random_state: int = 0) -> pl.DataFrame:
    """The ``account_id, score`` of the rows of ``ranked``: the model's ``model_scores`` blended with the
    no-label score with ``weight`` (a few-label model, ``ModelConfig.nolabel_blend``)."""
    nolabel = nolabel_scores(ranked, prepared, detector_weight=detector_weight, random_state=random_state)
    return _blend_frame(ranked, model_scores, nolabel, weight)


def blend_elsewhere(model: Any, ranked: pl.DataFrame, model_scores: pl.DataFrame, prepared: Prepared | None,
                    seeds: pl.DataFrame, setting: str | float, *, detector_weight: float = 0.0,
                    random_state: int = 0) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The blended ``account_id, score`` of the rows of ``ranked`` and what decided the weight.

    ``model_scores``: the model's ``account_id, score`` of the same rows (scored with ``seeds``);
    ``setting``: :func:`parse_blend`'s value, not ``"off"``.
    """
    nolabel = nolabel_scores(ranked, prepared, detector_weight=detector_weight, random_state=random_state)
    if setting == "auto":
        weight, info = choose_weight(model, ranked, seeds, nolabel, random_state=random_state)
    else:
        weight, info = float(setting), {"chosen": "setting"}
    return _blend_frame(ranked, model_scores, nolabel, weight), {"setting": setting, "weight": weight, **info}
