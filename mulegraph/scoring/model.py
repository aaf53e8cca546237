"""The supervised model, in one import: train, save, load, predict.

This module is the entry point for Python callers and ``mulegraph train``; the work is done in

* :mod:`mulegraph.scoring.estimator` -- :class:`MuleModel`, the scikit-learn classifier;
* :mod:`mulegraph.scoring.training` -- folds, out-of-fold closeness, sampling of non-mules,
  the early-stopped settings search, calibration, permutation importance;
* :mod:`mulegraph.scoring.threads` -- the thread budget training and scoring run in;
* :mod:`mulegraph.scoring.persist` -- :func:`save_model` / :func:`load_model`, the model card.

Training scales with the labels: above ``[model] sample_above`` labelled accounts the trees see
every mule and ``negatives_per_mule`` non-mules per mule (weighted back to the population in the
held-out scores and the calibration), each tree size stops boosting when the held-out average
precision stops improving, and the search stops at the first tree size that is no better. The
model card records what was sampled, how far each size boosted and the thread budget.

:func:`train` fits a model on features that were computed already; :func:`train_from_store` reads
a window of a store and computes its features first (through
:func:`mulegraph.features.build.window_features`, like every command)::

    from mulegraph.model import save_model, train_from_store
    model, stats = train_from_store("store", labels, window="90d", config=config)
    save_model(model, "model")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl

from mulegraph.core.config import Config, FeatureConfig, ModelConfig
from mulegraph.features.build import window_features
from mulegraph.features.prepare import Prepared
from mulegraph.scoring.estimator import MuleModel
from mulegraph.scoring.persist import MODEL_FORMAT, TRUSTED_TYPES, check_model_dir, load_model, save_model
from mulegraph.scoring.seeds import store_fingerprint
from mulegraph.scoring.training import IMPORTANCE_MAX_ROWS, feature_matrix_columns, make_folds, oof_proximity, seed_share

__all__ = [
    "MuleModel",
    "train",
    "train_from_store",
    "save_model",
    "load_model",
    "check_model_dir",
    "make_folds",
    "oof_proximity",
    "feature_matrix_columns",
    "MODEL_FORMAT",
    "TRUSTED_TYPES",
    "IMPORTANCE_MAX_ROWS",
]


def train(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    transfers: Prepared | pl.DataFrame,
    config: ModelConfig | None = None,
    feature_config: FeatureConfig | None = None,
) -> MuleModel:
    """Train a :class:`MuleModel` on ``features`` of the accounts of ``transfers`` (see :mod:`mulegraph.scoring.training`).

    ``labels``: ``account_id``, ``is_mule`` (see :mod:`mulegraph.io.labels`). ``transfers``: the
    canonical transfers the features came from, or their :class:`Prepared` form (the graph context).
    """
    return MuleModel(config, feature_config).set_context(transfers).fit(features, labels)


def train_from_store(
    store: Any,
    labels: pl.DataFrame,
    *,
    window: str = "all",
    as_of: str | datetime | None = None,
    config: Config | None = None,
    progress: Callable[[str], None] | None = None,
    portable: bool = False,
) -> tuple[MuleModel, dict[str, Any]]:
    """Read a window of a store (or canonical transfers), compute its features, train.

    ``store``: a store directory, a :class:`~mulegraph.io.store.Store` or canonical transfers.
    ``labels``: a label table (:func:`mulegraph.io.labels.load_labels`). ``config``: a
    :class:`~mulegraph.core.config.Config` (``features`` and ``model`` sections). Returns the model
    and a dict with ``transfers``, ``accounts`` and ``window``. An empty window is an
    :class:`~mulegraph.core.errors.InputError`. The store's identity is kept with the model
    (``training_store_``, :func:`mulegraph.scoring.seeds.store_fingerprint`): its labels seed
    scoring in that store only. ``portable``: the model is meant for other banks' data (written
    with ``save_model(..., portable=True)``): ``closeness_seed_share = "auto"`` then seeds its
    training closeness features with :data:`~mulegraph.scoring.training.PORTABLE_SEED_SHARE` of
    the mules; the share used is kept in the model card either way.
    """
    config = config or Config()
    share = seed_share(config.model.closeness_seed_share, portable)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, closeness_seed_share=share))
    if progress:
        progress("reading transfers and computing features")
    wf = window_features(store, window=window, as_of=as_of, config=config, progress=progress)
    if progress:
        progress("training")
    model = MuleModel(config.model, config.features).set_context(wf.prepared).fit(wf.features, labels)
    desc = wf.window.describe()
    model.training_data_ = {"window": desc, "transfers": wf.n_transfers, "accounts": wf.features.height}
    # which store the labels' account ids belong to: they seed scoring in that store only
    model.training_store_ = store_fingerprint(store)
    return model, {"transfers": wf.n_transfers, "accounts": wf.features.height, "window": desc}
