"""Scoring: every account active in a window gets a score, a rank and its reasons.

:func:`score` is the one call behind ``mulegraph score``: it gets the transfers and features of a
window through :func:`mulegraph.features.build.window_features` (from a store or a frame), scores
them with a supervised model when one is given (:func:`mulegraph.scoring.persist.load_model`) or
with the transparent no-label mode (:mod:`mulegraph.scoring.nolabel`) when not, ranks, and
explains (:mod:`mulegraph.scoring.explain`). :func:`score_features` does the same from features
that were computed already (the nightly run reuses its features this way).

The output follows :data:`mulegraph.core.schema.SCORE_SCHEMA`: ``account_id``, ``score`` (0..1),
``rank`` (1 = most suspicious, 1..n without gaps; ties in score are broken by account id, so the
ranking is deterministic), ``reasons`` (a list of reason structs,
:data:`~mulegraph.core.schema.REASONS_DTYPE`; JSON text in CSV and JSON files), ``model_version``,
``run_id``. Hubs (``is_hub``: external pseudo-accounts, processors, accounts with more
counterparties than ``FeatureConfig.hub_degree``) are not ranked and do not appear; percentiles in
reasons are computed among the ranked accounts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import atomic_path
from mulegraph.core.config import Config
from mulegraph.core.errors import FeatureError, InputError, ModelError
from mulegraph.core.escape import neutralise_formulas
from mulegraph.core.paths import refuse_protected_output
from mulegraph.core.schema import SCORE_SCHEMA, reasons_to_json
from mulegraph.features.build import read_window, window_features
from mulegraph.features.prepare import Prepared, prepare
from mulegraph.features.registry import REGISTRY
from mulegraph.features.structure import STRUCTURE_FEATURES, structure_features
from mulegraph.scoring.explain import explain
from mulegraph.scoring.nolabel import NOLABEL_VERSION, NoLabelScorer
from mulegraph.scoring.persist import load_model
from mulegraph.scoring.signals import Signal

__all__ = ["ScoreOptions", "score", "score_features", "rank_scores", "write_scores"]


@dataclass(frozen=True)
class ScoreOptions:
    """Settings of ranking and explaining.

    ``n_reasons``: reasons per account (at most; at least 3 when the account has that many values);
    ``evidence_top``: gather transfer ids behind the reasons for this many best-ranked accounts;
    ``max_txn_ids``: cap on transfer ids per reason; ``detector_weight``: weight of the
    IsolationForest in the no-label mode (0 = rules only).
    """

    n_reasons: int = 5
    evidence_top: int = 100
    max_txn_ids: int = 25
    detector_weight: float = 0.0


def rank_scores(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by score (highest first, ties by account id) and add ``rank`` 1..n."""
    return (
        frame.sort(["score", "account_id"], descending=[True, False], nulls_last=True)
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )


def _model_signals(model: Any, features: pl.DataFrame) -> list[Signal]:
    imp = dict(getattr(model, "feature_importance", {}) or {})
    sigs = []
    for f, w in sorted(imp.items(), key=lambda kv: -float(kv[1])):
        if f in features.columns and float(w) > 0:
            spec = REGISTRY.get(f)
            code = (spec.family if spec else "feature").upper()
            sigs.append(Signal(code=code, feature=f, weight=float(w)))
    return sigs


def _model_version(model: Any) -> str:
    for attr in ("model_version", "version"):
        v = getattr(model, attr, None)
        if isinstance(v, str) and v:
            return v
    digest = getattr(model, "training_hash_", None)
    if isinstance(digest, str) and digest:
        return f"model-{digest[:12]}"
    card = getattr(model, "card", None) or getattr(model, "card_", None)
    if isinstance(card, dict):
        for key in ("model_version", "version", "training_data_hash"):
            if card.get(key):
                return str(card[key])
    return "model"


def score_features(
    features: pl.DataFrame,
    prepared: Prepared | None = None,
    model: Any = None,
    *,
    transfers: pl.DataFrame | None = None,
    run_id: str | None = None,
    exclude_hubs: bool = True,
    options: ScoreOptions | None = None,
    random_state: int = 0,
) -> pl.DataFrame:
    """Rank accounts from precomputed features (see :func:`score`).

    ``features``: ``account_id``, ``is_hub`` and feature columns. ``prepared`` (from
    :func:`mulegraph.features.prepare`, for the same transfers) is needed for the transfer ids
    behind the reasons, for the no-label mode's one-off structure signals
    (:func:`mulegraph.features.structure.structure_features`, computed here when the frame lacks
    them) and, or else ``transfers``, by supervised models that compute label-based features.

    ``model``: None selects the no-label mode (a :class:`~mulegraph.scoring.nolabel.NoLabelScorer`
    fitted on the ranked accounts, then scoring them). Otherwise a fitted
    :class:`~mulegraph.scoring.estimator.MuleModel`, or an object with the same scoring methods:
    ``set_context(prepared_or_transfers)``, ``predict_scores(features) -> account_id, score``,
    ``feature_importance`` (feature -> weight) and optionally ``closeness() -> account_id, ...``
    (label-based features shown in reasons). ``set_context`` is called with this window's transfers.
    """
    options = options or ScoreOptions()
    if "account_id" not in features.columns:
        raise FeatureError("the feature frame has no account_id column; compute features first.")
    ranked = features
    if exclude_hubs and "is_hub" in features.columns:
        ranked = features.filter(~pl.col("is_hub").fill_null(False))
    if ranked.is_empty():
        return pl.DataFrame(schema=SCORE_SCHEMA)

    if model is None:
        missing = [f.name for f in STRUCTURE_FEATURES if f.name not in ranked.columns]
        if prepared is not None and missing:
            extra = structure_features(prepared).select("account_id", *missing)
            ranked = ranked.join(extra, on="account_id", how="left")
        # the population the rules' percentiles are read against is the ranked accounts themselves
        scorer = NoLabelScorer(detector_weight=options.detector_weight, random_state=random_state).fit(ranked)
        if not scorer.rules_used_:
            raise FeatureError(
                "none of the features the no-label rules use are present; compute all feature families."
            )
        scored = scorer.score(ranked).select("account_id", "score")
        signals = scorer.signals()
        version = NOLABEL_VERSION
    else:
        context = prepared if prepared is not None else transfers
        if context is None:
            raise ModelError("scoring with a model needs the transfers too (for closeness to known mules).")
        model.set_context(context)
        pred = model.predict_scores(ranked)
        if "account_id" not in pred.columns or "score" not in pred.columns:
            raise ModelError("the model's predictions lack account_id or score; the model is incompatible.")
        scored = ranked.select("account_id").join(pred.select("account_id", "score"), on="account_id", how="left")
        scored = scored.with_columns(pl.col("score").cast(pl.Float64).fill_nan(None).fill_null(0.0).clip(0.0, 1.0))
        closeness = getattr(model, "closeness", None)
        if callable(closeness):
            extra = closeness()
            new = [c for c in extra.columns if c != "account_id" and c not in ranked.columns]
            if new:
                ranked = ranked.join(extra.select("account_id", *new), on="account_id", how="left")
        signals = _model_signals(model, ranked)
        version = _model_version(model)

    ranked_scores = rank_scores(scored)
    order = ranked_scores["account_id"].to_list()
    reasons = explain(
        ranked,
        signals,
        prepared=prepared,
        order=order,
        n_reasons=options.n_reasons,
        evidence_top=options.evidence_top,
        max_txn_ids=options.max_txn_ids,
    )
    reason_frame = pl.DataFrame({"account_id": ranked["account_id"], "reasons": reasons})
    out = ranked_scores.join(reason_frame, on="account_id", how="left").with_columns(
        pl.lit(version).alias("model_version"),
        pl.lit(run_id).cast(pl.String).alias("run_id"),
    )
    return out.select([pl.col(c).cast(t) for c, t in SCORE_SCHEMA.items()]).sort("rank")


def score(
    transfers_or_store: Any,
    *,
    model_dir: str | os.PathLike | None = None,
    window: str = "all",
    as_of: str | datetime | None = None,
    config: Config | None = None,
    run_id: str | None = None,
    exclude_hubs: bool = True,
    progress: Callable[[str], None] | None = None,
    features: pl.DataFrame | None = None,
    options: ScoreOptions | None = None,
    return_features: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Score every account active in the window; see the module docstring for the output.

    ``transfers_or_store``: a store directory, a :class:`~mulegraph.io.store.Store` or canonical
    transfers. ``model_dir``: a model saved by ``mulegraph train``; None for the no-label mode.
    ``features``: features computed already for the same transfers (skips the feature stage). With
    ``return_features`` the features are returned too, as ``(scores, features)``.

    Raises :class:`~mulegraph.core.errors.InputError` when the window holds no transfers, and
    :class:`~mulegraph.core.errors.ModelError` when the model is refused (before any feature work).
    """
    config = config or Config()
    model = None  # loaded first: a refused model must not cost a feature computation
    if model_dir is not None:
        if progress:
            progress("loading model")
        model = load_model(model_dir)
    if features is None:
        if progress:
            progress("reading transfers and computing features")
        wf = window_features(transfers_or_store, window=window, as_of=as_of, config=config, progress=progress)
        prepared, features = wf.prepared, wf.features
    else:
        if progress:
            progress("reading transfers")
        transfers, _window = read_window(transfers_or_store, window=window, as_of=as_of, require_rows=True)
        if progress:
            progress("preparing")
        prepared = prepare(transfers, config.features)
        del transfers
    if run_id is None:
        newest = prepared.tx["ts"].max()
        run_id = f"score-{newest:%Y%m%dT%H%M%SZ}" if newest is not None else "score"
    if progress:
        progress("scoring and explaining")
    out = score_features(
        features,
        prepared,
        model,
        run_id=run_id,
        exclude_hubs=exclude_hubs,
        options=options,
        random_state=config.model.random_state,
    )
    return (out, features) if return_features else out


def write_scores(scores: pl.DataFrame, path: str | os.PathLike) -> Path:
    """Write scores atomically; the format follows the extension (.parquet, .csv, .json).

    Parquet keeps ``reasons`` as a list of structs; CSV holds it as JSON text
    (:func:`~mulegraph.core.schema.reasons_to_json`), and JSON is a list of objects with ``reasons``
    as a list of objects. Legacy scores with JSON text reasons are written as they are. In CSV a
    text cell starting with ``=``, ``+``, ``-``, ``@``, tab, carriage return or ``'`` gets a leading
    ``'`` (:func:`~mulegraph.core.escape.neutralise_formulas`; undone by
    :func:`~mulegraph.core.escape.strip_formula_guard`).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".parquet", ".csv", ".json"):
        raise InputError(f"the output file must end in .parquet, .csv or .json. Got '{path.name}' instead.")
    refuse_protected_output(path)  # never into a store or a run folder
    if not path.parent.exists():
        raise InputError(f"the folder '{path.parent}' does not exist; create it first.")
    if ext != ".parquet" and "reasons" in scores.columns and scores.schema["reasons"] != pl.String:
        scores = scores.with_columns(reasons_to_json())
    with atomic_path(path) as tmp:
        if ext == ".parquet":
            scores.write_parquet(tmp)
        elif ext == ".csv":
            neutralise_formulas(scores).write_csv(tmp)  # formula-like text cells get a leading "'"
        else:
            rows = scores.to_dicts()
            for r in rows:
                r["reasons"] = json.loads(r["reasons"]) if r.get("reasons") else []
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(rows, fh, ensure_ascii=False, indent=1)
    return path
