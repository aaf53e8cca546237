"""Positive-unlabelled training: labels that name only some of the mules.

A bank's labels name the mules it has found; the others sit among the accounts labelled (or taken
as) non-mules. Trained as they are, the trees learn that accounts like the known mules are not
mules when they are the hidden members of the same rings: close to the known mules, alike in their
flows, labelled non-mule. With ``[model] known_mule_share`` below 1 (the share of the mules among
the labelled accounts that the labels are believed to name) the labels are read as positive and
unlabelled (Elkan and Noto, *Learning classifiers from only positive and unlabeled data*, KDD 2008):

1. the settings search of the ordinary fit gives every labelled account an out-of-fold score, and
   its Platt map ``g(x)``, the probability that an account like ``x`` is a *labelled* mule;
2. with ``c = known_mule_share`` (the label frequency: the chance that a mule is labelled), an
   account labelled non-mule is a hidden mule with probability
   ``w = (1 - c) / c * g / (1 - g)``, clipped to 0..1 (:func:`hidden_mule_probability`);
3. the settings search and the final fit run again on the labelled accounts with each labelled
   non-mule counted twice (:func:`relabel`): as a non-mule with weight ``1 - w`` and as a mule with
   weight ``w``. Held-out scores, the calibration and the reported metrics read the labels as
   given (the copies weigh 0 there), so the model's scores stay calibrated to the labels;
4. with ``[model] pu_rounds`` above 1, steps 1-3 repeat with the held-out scores of the last
   search (its labelled rows): the hidden mules re-estimated by a model that no longer learnt
   them as non-mules; each round costs one more settings search.

With ``known_mule_share = 1`` (the default) nothing of this runs: every mule among the labelled
accounts is labelled, as in a clean label set. Nothing here keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MIN_COPY_WEIGHT", "Relabelled", "hidden_mule_probability", "relabel"]

#: a labelled non-mule gets a mule copy only when it is a hidden mule with at least this
#: probability: copies of almost no weight would only add rows (and count towards the trees'
#: smallest leaf size)
MIN_COPY_WEIGHT = 0.01


def hidden_mule_probability(g: np.ndarray, y: np.ndarray, share: float) -> np.ndarray:
    """Per labelled account, the probability that it is a mule the labels do not name.

    ``g``: the probability that an account like this one is a labelled mule (out-of-fold,
    calibrated); ``y``: the labels (1 = mule); ``share``: the label frequency ``c``. Labelled
    mules get 0; a labelled non-mule ``(1 - c) / c * g / (1 - g)`` clipped to 0..1.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1]; got {share}")
    g = np.clip(np.asarray(g, dtype=np.float64), 0.0, 1.0 - 1e-12)
    odds = g / (1.0 - g)
    w = np.clip((1.0 - share) / share * odds, 0.0, 1.0)
    return np.where(np.asarray(y) == 1, 0.0, w)


@dataclass(frozen=True)
class Relabelled:
    """The training rows of :func:`relabel`.

    ``X``, ``y``, ``folds``: the labelled rows first, in their order, then a mule copy of the
    labelled non-mules that may be hidden mules (same features and fold); ``fit_weight``: what the trees train with (1 for
    a labelled mule, ``1 - w`` for a labelled non-mule, ``w`` for its copy, times the row's
    ``weight``); ``eval_weight``: what held-out scores and calibration read (the given weights,
    0 for the copies); ``n_labelled``: the rows before the copies; ``summary``: what the model card
    records.
    """

    X: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    fit_weight: np.ndarray
    eval_weight: np.ndarray
    n_labelled: int
    summary: dict[str, Any] = field(default_factory=dict)


def relabel(X: np.ndarray, y: np.ndarray, folds: np.ndarray, hidden: np.ndarray, share: float,
            weight: np.ndarray | None = None) -> Relabelled:
    """Each labelled non-mule as a non-mule weighing ``1 - hidden`` and a mule weighing ``hidden``.

    ``weight``: the rows' weights (the inverse sampling rates of sampled non-mules), None for 1.
    Only non-mules with ``hidden >= MIN_COPY_WEIGHT`` get a mule copy.
    """
    n = len(y)
    base = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    neg = np.flatnonzero((np.asarray(y) != 1) & (hidden >= MIN_COPY_WEIGHT))
    fit_w = np.concatenate([np.where(y == 1, 1.0, 1.0 - hidden) * base, hidden[neg] * base[neg]])
    eval_w = np.concatenate([base, np.zeros(len(neg))])
    summary = {
        "known_mule_share": float(share),
        "labelled_mules": int((y == 1).sum()),
        "hidden_mules_estimated": float((hidden * base).sum()),
        "mule_copies": int(len(neg)),
    }
    return Relabelled(
        X=np.vstack([X, X[neg]]),
        y=np.concatenate([y, np.ones(len(neg), dtype=y.dtype)]),
        folds=np.concatenate([folds, folds[neg]]),
        fit_weight=fit_w,
        eval_weight=eval_w,
        n_labelled=n,
        summary=summary,
    )
