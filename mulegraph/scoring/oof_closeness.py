"""Closeness to known mules for training: out-of-fold, from all or part of the training mules.

Step 2 of supervised training (:mod:`mulegraph.scoring.training`): the labelled accounts are split
into ``proximity_folds`` folds, and the accounts of fold *k* get their
:mod:`~mulegraph.features.proximity` features from the seed mules of the other folds only, so no
account's label reaches its own features. The seed mules are every training mule, or for a
portable model a seeded share of them (``ModelConfig.closeness_seed_share``), as a bank that scores
with a model from elsewhere knows only some of its own mules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.config import ModelConfig
from mulegraph.core.errors import InputError, ModelError
from mulegraph.core.window import parse_duration
from mulegraph.features import proximity
from mulegraph.features.prepare import Prepared

__all__ = ["PORTABLE_SEED_SHARE", "proximity_kwargs", "seed_share", "seed_mules", "oof_proximity"]


def proximity_kwargs(config: ModelConfig) -> dict[str, Any]:
    """The settings of :func:`mulegraph.features.proximity.compute` from the model settings."""
    try:
        sync = int(parse_duration(config.sync_window, name="model.sync_window").total_seconds())
    except InputError as err:
        raise ModelError(str(err)) from None
    return {"max_hops": config.max_hops, "ppr_alpha": config.ppr_alpha, "ppr_groups": config.ppr_groups, "sync_window": sync}


#: the share of the training mules that seed the closeness features of a portable model
#: (``closeness_seed_share = "auto"`` with ``train --portable``): a bank scoring with a model from
#: elsewhere seeds it with the few mules it has confirmed itself, so the trees should learn what
#: closeness looks like when only some of the mules are known. Chosen on the validation part of the
#: AMLGentex train splits (benchmarks/RESULTS.md, "A portable model learns closeness from part of
#: its mules"): 0.5 helps a model scoring data of its own kind and keeps the other rows
PORTABLE_SEED_SHARE = 0.5


def seed_share(setting: str | float, portable: bool = False) -> float:
    """The share of training mules that seed the training closeness features under
    ``ModelConfig.closeness_seed_share = setting``; a bad setting is a :class:`ModelError`."""
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        return PORTABLE_SEED_SHARE if portable else 1.0
    if isinstance(setting, bool) or not isinstance(setting, (int, float)) or not 0 < setting <= 1:
        raise ModelError(f"model.closeness_seed_share must be 'auto' or a share above 0 and at most 1. Got {setting!r} instead.")
    return float(setting)


def seed_mules(y: np.ndarray, share: float, random_state: int) -> np.ndarray:
    """Which labelled rows seed the training closeness features: every mule (``share`` 1), or a
    random ``share`` of them (at least one) drawn with ``random_state``."""
    seed = y == 1
    if share >= 1.0:
        return seed
    mules = np.flatnonzero(seed)
    n = max(1, int(round(share * len(mules))))
    keep = np.random.default_rng(random_state + 2).choice(len(mules), size=n, replace=False)
    out = np.zeros(len(y), dtype=bool)
    out[mules[keep]] = True
    return out


def oof_proximity(p: Prepared, idx: np.ndarray, y: np.ndarray, folds: np.ndarray, config: ModelConfig) -> pl.DataFrame:
    """Out-of-fold closeness features for the labelled accounts ``idx`` (one row each, in order).

    Accounts of fold *k* get features computed from the labels of the other folds only; with
    ``closeness_seed_share`` below 1, from the seed mules (:func:`seed_mules`) of the other folds. The
    PageRank features of every fold come from one pass (:func:`~mulegraph.features.proximity.ppr_features`
    with the folds as exclusion groups: an account's walk restarts at the known mules outside its
    own fold); the other features are computed per fold.
    """
    parts = []
    kw = proximity_kwargs(config)
    fold_ids, fold_no = np.unique(folds, return_inverse=True)
    graph = proximity.closeness_graph(p)  # the label-free parts, built once for every fold
    share = seed_share(config.closeness_seed_share)
    seed = seed_mules(y, share, config.random_state)
    for k in range(len(fold_ids)):
        other = fold_no != k
        known_m = pl.Series("idx", idx[other & seed], dtype=pl.UInt32)
        # with part of the mules seeding, only the seeds count as labelled: as at a bank whose
        # labels are the mules it has confirmed
        known_l = pl.Series("idx", idx[other & seed] if share < 1.0 else idx[other], dtype=pl.UInt32)
        feats = proximity.compute(p, known_m, known_l, with_ppr=False, graph=graph, **kw).drop(*proximity.PPR_FEATURES)
        mine = pl.DataFrame({"idx": pl.Series(idx[fold_no == k], dtype=pl.UInt32), "_pos": np.flatnonzero(fold_no == k)})
        parts.append(mine.join(feats, on="idx", how="left"))
    groups = np.zeros(p.n_accounts, dtype=np.int64)
    groups[idx] = fold_no
    ppr = proximity.ppr_features(p, pl.Series(idx[seed], dtype=pl.UInt32), groups, len(fold_ids), ppr_alpha=config.ppr_alpha, graph=graph)
    out = pl.concat(parts).join(ppr, on="idx", how="left").sort("_pos")
    return out.select(s.name for s in proximity.FEATURES)
