"""Scoring: every account active in a window gets a score, a rank and its reasons.

:func:`score` is the one call behind ``mulegraph score``: it gets the transfers and features of a
window through :func:`mulegraph.features.build.window_features` (from a store or a frame), scores
them with a supervised model when one is given (:func:`mulegraph.scoring.persist.load_model`) or
with the transparent no-label mode (:mod:`mulegraph.scoring.nolabel`) when not, ranks, and
explains (:mod:`mulegraph.scoring.explain`). :func:`score_features` does the same from features
that were computed already (the nightly run reuses its features this way). :func:`score_window` is
:func:`score` with everything it decided: the features, the window and the seeds.

A supervised model's closeness features read the accounts known at scoring time, the **seeds**
(:mod:`mulegraph.scoring.seeds`): the model's training labels only when scoring the store it was
trained on, the investigator decisions in the store, a ``--known`` file and consortium matches
(``seeds=SeedInputs.load(...)``). The model folder is verified before anything else, with the
signing key of ``config.model`` when one is set (:func:`mulegraph.scoring.persist.load_model`).

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import atomic_path
from mulegraph.core.config import Config
from mulegraph.core.errors import FeatureError, InputError, ModelError
from mulegraph.core.escape import neutralise_formulas
from mulegraph.core.keys import model_signing_key
from mulegraph.core.paths import refuse_protected_output
from mulegraph.core.schema import SCORE_SCHEMA, reasons_to_json
from mulegraph.core.window import TimeWindow
from mulegraph.features.build import read_window, window_features
from mulegraph.features.prepare import Prepared, prepare
from mulegraph.features.registry import REGISTRY
from mulegraph.features.structure import STRUCTURE_FEATURES, structure_features
from mulegraph.io.runs import ParquetChunks
from mulegraph.scoring.blend import blend_elsewhere, blend_nolabel, parse_blend
from mulegraph.scoring.explain import explain_chunks
from mulegraph.scoring.nolabel import NOLABEL_VERSION, RULES, NoLabelScorer, with_rule_columns
from mulegraph.scoring.persist import load_model
from mulegraph.scoring.seeds import SeedInputs, Seeds, scoring_seeds
from mulegraph.scoring.signals import Signal, ranked_rows, with_account_columns

__all__ = [
    "ScoreOptions", "ScoreResult", "score", "score_window", "score_features", "columns_read", "rank_scores", "write_scores",
    "keep_columns_read", "check_scores_path", "scores_parquet",
]


@dataclass(frozen=True)
class ScoreOptions:
    """Settings of ranking and explaining.

    ``n_reasons``: reasons per account (at most; at least 3 when the account has that many values);
    ``evidence_top``: gather transfer ids behind the reasons for this many best-ranked accounts;
    ``max_txn_ids``: cap on transfer ids per reason; ``detector_weight``: weight of the
    IsolationForest in the no-label mode (0 = rules only); ``elsewhere_blend``: a model scoring
    data it was not trained on (``Seeds.elsewhere``) is blended with the no-label score with this
    weight of the no-label score, ``"auto"`` (the default: chosen from the local seeds) or ``"off"``
    (:mod:`mulegraph.scoring.blend`).
    """

    n_reasons: int = 5
    evidence_top: int = 100
    max_txn_ids: int = 25
    detector_weight: float = 0.0
    elsewhere_blend: str | float = "auto"


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


def columns_read(model: Any = None, options: ScoreOptions | None = None) -> list[str] | None:
    """The columns of a feature frame that :func:`score_features` reads, or None for every one.

    ``account_id``, ``is_hub`` and the no-label rules' features (the no-label mode, and a model's
    blend with it), plus a model's own features (``feature_names_``; and those of its first-stage
    model, ``stage1_``, when it reads its neighbours' scores). None for a model that does
    not list its features and for the no-label mode with the IsolationForest (it reads every
    feature). A caller holding every account's features can keep only these columns for scoring
    (at bank scale about a fifth of them): the scores, ranks and reasons are the same.
    """
    options = options or ScoreOptions()
    rules = [f for r in RULES for f in r.features]
    if model is None:
        return None if options.detector_weight > 0 else list(dict.fromkeys(["account_id", "is_hub", *rules]))
    names: list[str] = []
    while model is not None:  # a model and the first-stage model of its neighbour scores, if any
        own = getattr(model, "feature_names_", None)
        if own is None:
            return None
        names += list(own)
        model = getattr(model, "stage1_", None)
    return list(dict.fromkeys(["account_id", "is_hub", *names, *rules]))


def keep_columns_read(read: list[str] | None) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """``features -> features`` with only the columns in ``read`` (:func:`columns_read`), in their
    order; every column when ``read`` is None. Selecting copies nothing."""
    if read is None:
        return lambda features: features
    return lambda features: features.select([c for c in features.columns if c in read])


#: the scores' columns, cast to their contract
_SCORE_COLUMNS = [pl.col(c).cast(t) for c, t in SCORE_SCHEMA.items()]


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
    seeds: Seeds | pl.DataFrame | None = None,
    sink: Callable[[pl.DataFrame], None] | None = None,
) -> pl.DataFrame:
    """Rank accounts from precomputed features (see :func:`score`).

    ``features``: ``account_id``, ``is_hub`` and feature columns. ``prepared`` (from
    :func:`mulegraph.features.prepare`, for the same transfers) is needed for the transfer ids
    behind the reasons, for the one-off structure signals of the no-label mode and of a model
    trained on them (:func:`mulegraph.features.structure.structure_features`, computed here once
    when the frame lacks them) and, or else ``transfers``, by supervised models that compute
    label-based features.

    ``model``: None selects the no-label mode (a :class:`~mulegraph.scoring.nolabel.NoLabelScorer`
    fitted on the ranked accounts, then scoring them). Otherwise a fitted
    :class:`~mulegraph.scoring.estimator.MuleModel`, or an object with the same scoring methods:
    ``set_context(prepared_or_transfers)``, ``predict_scores(features) -> account_id, score``,
    ``feature_importance`` (feature -> weight) and optionally ``closeness() -> account_id, ...``
    (label-based features shown in reasons). ``set_context`` is called with this window's transfers.

    ``seeds``: the known accounts the model's closeness features read (:class:`~mulegraph.scoring.seeds.Seeds`
    or an ``account_id, is_mule`` frame), given to the model's ``set_seeds``; None leaves the
    model's own (its training labels, unless ``set_seeds`` was called before).

    ``sink``: when given, the scores (:data:`~mulegraph.core.schema.SCORE_SCHEMA`, in rank order) are
    passed to it a chunk of accounts at a time as their reasons are built, and the frame returned
    lacks the ``reasons`` column: at bank scale the reasons of every account are the largest
    column of a run, and need not all be held at once.
    """
    options = options or ScoreOptions()
    if "account_id" not in features.columns:
        raise FeatureError("the feature frame has no account_id column; compute features first.")
    ranked = ranked_rows(features) if exclude_hubs else features
    if ranked.is_empty():
        empty = pl.DataFrame(schema=SCORE_SCHEMA)
        return empty if sink is None else empty.drop("reasons")

    if model is None:
        # the one-off structure and collection columns the rules read (the collection ones are the
        # no-label mode's own: never model features)
        ranked = with_rule_columns(ranked, prepared)
    else:
        structure = [f.name for f in STRUCTURE_FEATURES]
        missing = [c for c in getattr(model, "feature_names_", ()) if c in structure and c not in ranked.columns]
        if prepared is not None and missing:
            ranked = with_account_columns(ranked, structure_features(prepared).select("account_id", *missing))
    if model is None:
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
        if seeds is not None:
            if not callable(getattr(model, "set_seeds", None)):
                raise ModelError("the model takes no seeds (it has no set_seeds method); score it without seeds.")
            model.set_seeds(seeds.frame if isinstance(seeds, Seeds) else seeds)
        pred = model.predict_scores(ranked)
        if "account_id" not in pred.columns or "score" not in pred.columns:
            raise ModelError("the model's predictions lack account_id or score; the model is incompatible.")
        scored = ranked.select("account_id").join(pred.select("account_id", "score"), on="account_id", how="left")
        scored = scored.with_columns(pl.col("score").cast(pl.Float64).fill_nan(None).fill_null(0.0).clip(0.0, 1.0))
        setting = parse_blend(options.elsewhere_blend)
        few = getattr(model, "nolabel_blend_", None)  # a few-label model's weight (ModelConfig.nolabel_blend)
        if isinstance(seeds, Seeds) and seeds.elsewhere and setting != "off":
            # a model from elsewhere: its ranking blended with the local no-label one. A few-label model
            # from elsewhere is blended once, with the elsewhere weight (not its own on top of it: the
            # model's own score is the one blended, and "auto" chooses the weight for that score)
            scored, how = blend_elsewhere(model, ranked, scored, prepared, seeds.frame, setting,
                                          detector_weight=options.detector_weight, random_state=random_state)
            seeds.blend.update(how)
        elif few is not None:
            # a model trained with few labels: blended with the no-label score with the weight it records
            scored = blend_nolabel(ranked, scored, prepared, float(few), detector_weight=options.detector_weight,
                                   random_state=random_state)
            if isinstance(seeds, Seeds):
                seeds.blend.update({"setting": "model", "weight": float(few), "chosen": "the model's nolabel_blend"})
        closeness = getattr(model, "closeness", None)
        if callable(closeness):
            extra = closeness()
            new = [c for c in extra.columns if c != "account_id" and c not in ranked.columns]
            if new:
                ranked = ranked.join(extra.select("account_id", *new), on="account_id", how="left")
        signals = _model_signals(model, ranked)
        version = _model_version(model)

    ranked_scores = rank_scores(scored)
    # explained in rank order, so that the reasons (at bank scale the largest column) line up with
    # the ranked scores as they come, with no join or sort to copy them: each chunk of reasons
    # gathers its accounts' rows (``take``: their positions among the ranked rows) of the columns
    # the reasons read (the signals' features), and the features are never copied in rank order
    read = list(dict.fromkeys(["account_id", *(s.feature for s in signals if s.feature in ranked.columns)]))
    take = (
        ranked_scores.select("account_id")
        .join(ranked.select("account_id").with_row_index("_row"), on="account_id", how="left", maintain_order="left")
        ["_row"]
    )
    ranked = ranked.select(read)
    order = ranked_scores["account_id"].head(options.evidence_top).to_list()
    stamped = ranked_scores.with_columns(
        pl.lit(version).alias("model_version"), pl.lit(run_id).cast(pl.String).alias("run_id")
    )
    # one path: the reasons of a chunk of accounts at a time, in rank order, each chunk given to the
    # sink as it is built or else gathered
    parts = []
    offset = 0
    for reasons in explain_chunks(ranked, signals, prepared=prepared, order=order, n_reasons=options.n_reasons,
                                  evidence_top=options.evidence_top, max_txn_ids=options.max_txn_ids, take=take):
        part = stamped.slice(offset, reasons.len()).with_columns(reasons.alias("reasons")).select(_SCORE_COLUMNS)
        offset += reasons.len()
        if sink is None:
            parts.append(part)
        else:
            sink(part)
    if sink is not None:
        return stamped.select([c for c in _SCORE_COLUMNS if c.meta.output_name() != "reasons"])
    return pl.concat(parts) if parts else pl.DataFrame(schema=SCORE_SCHEMA)


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_window` produced and decided."""

    #: the ranked scores (:data:`~mulegraph.core.schema.SCORE_SCHEMA`)
    scores: pl.DataFrame
    #: the window's features (the closeness features are not among them)
    features: pl.DataFrame
    #: the scored window
    window: TimeWindow
    #: the seeds the model's closeness features read; None in the no-label mode
    seeds: Seeds | None = None
    #: the model's version, or the no-label rules'
    model_version: str | None = field(default=None)


def score_window(
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
    seeds: SeedInputs | None = None,
    model_labels: bool | None = None,
    lean: bool = False,
    sink: Callable[[pl.DataFrame], None] | None = None,
) -> ScoreResult:
    """Score every account active in the window; see the module docstring, and :func:`score` for the arguments.

    ``lean``: hold no more than scoring needs (what ``mulegraph score`` does): by shards, the
    window's transfers lean (:func:`~mulegraph.features.build.window_features`), and of the features
    only the columns scoring reads (:func:`columns_read`), so ``features`` in the result holds
    those columns only. The scores are the same. ``sink``: the scores are passed to it a chunk of
    accounts at a time, in rank order, as their reasons are built, and ``scores`` in the result
    lacks the reasons (see :func:`score_features`).

    ``seeds``: the ``--known`` file and consortium lists (:meth:`SeedInputs.load`), read before
    this call so that a bad file fails before any work. ``model_labels``: None uses the model's
    training labels as seeds only when ``transfers_or_store`` is the store it was trained on
    (:func:`mulegraph.scoring.seeds.same_store`); True or False forces the choice (e.g. True for
    the frame the model was trained on).

    Raises :class:`~mulegraph.core.errors.InputError` when the window holds no transfers or seeds
    are given without a model, and :class:`~mulegraph.core.errors.ModelError` when the model is
    refused (before any feature work).
    """
    config = config or Config()
    if model_dir is None and seeds is not None and seeds.given:
        raise InputError("--known and --shared-list need --model: the no-label rules do not use known accounts.")
    model = None  # loaded first: a refused model must not cost a feature computation
    if model_dir is not None:
        if progress:
            progress("loading model")
        model = load_model(model_dir, key=model_signing_key(config.model))
    if features is None:
        if progress:
            progress("reading transfers and computing features")
        wf = window_features(transfers_or_store, window=window, as_of=as_of, config=config, progress=progress,
                             lean=lean, then=keep_columns_read(columns_read(model, options)) if lean else None)
        prepared, features, win = wf.prepared, wf.features, wf.window
    else:
        if progress:
            progress("reading transfers")
        transfers, win = read_window(transfers_or_store, window=window, as_of=as_of, require_rows=True)
        if progress:
            progress("preparing")
        prepared = prepare(transfers, config.features)
        del transfers
    if run_id is None:
        if "ts" in prepared.tx.columns:
            newest = prepared.tx["ts"].max()
        else:  # a lean window holds the time in seconds
            t = prepared.tx["t"].max()
            newest = None if t is None else datetime.fromtimestamp(int(t), tz=timezone.utc)
        run_id = f"score-{newest:%Y%m%dT%H%M%SZ}" if newest is not None else "score"
    used = None
    if model is not None:
        if progress:
            progress("gathering known accounts")
        used = scoring_seeds(model, transfers_or_store, prepared.accounts["account_id"], inputs=seeds,
                             model_labels=model_labels, decided_by=win.end if as_of is not None else None)
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
        seeds=used,
        sink=sink,
    )
    version = out["model_version"][0] if out.height else None
    return ScoreResult(scores=out, features=features, window=win, seeds=used, model_version=version)


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
    seeds: SeedInputs | None = None,
    model_labels: bool | None = None,
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Score every account active in the window; see the module docstring for the output.

    ``transfers_or_store``: a store directory, a :class:`~mulegraph.io.store.Store` or canonical
    transfers. ``model_dir``: a model saved by ``mulegraph train``; None for the no-label mode.
    ``features``: features computed already for the same transfers (skips the feature stage). With
    ``return_features`` the features are returned too, as ``(scores, features)``. ``seeds`` and
    ``model_labels``: see :func:`score_window` (which also returns the seeds used).

    Raises :class:`~mulegraph.core.errors.InputError` when the window holds no transfers, and
    :class:`~mulegraph.core.errors.ModelError` when the model is refused (before any feature work).
    """
    result = score_window(
        transfers_or_store, model_dir=model_dir, window=window, as_of=as_of, config=config, run_id=run_id,
        exclude_hubs=exclude_hubs, progress=progress, features=features, options=options, seeds=seeds,
        model_labels=model_labels,
    )
    return (result.scores, result.features) if return_features else result.scores


def check_scores_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` if scores may be written there: it ends in .parquet,
    .csv or .json, is not inside a store or a run folder, and its folder exists; InputError otherwise."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".csv", ".json"):
        raise InputError(f"the output file must end in .parquet, .csv or .json. Got '{path.name}' instead.")
    refuse_protected_output(path)  # never into a store or a run folder
    if not path.parent.exists():
        raise InputError(f"the folder '{path.parent}' does not exist; create it first.")
    return path


@contextmanager
def scores_parquet(path: str | os.PathLike) -> Iterator[ParquetChunks]:
    """A Parquet scores file written a chunk at a time (a ``sink`` for :func:`score_window`), in
    place of :func:`write_scores` when the reasons of every account need not be held at once.

    The file appears whole when the block ends without an error, and not at all otherwise.
    """
    path = check_scores_path(path)
    if path.suffix.lower() != ".parquet":
        raise InputError(f"scores are written a chunk at a time to a .parquet file only. Got '{path.name}' instead.")
    with atomic_path(path) as tmp, ParquetChunks(tmp, SCORE_SCHEMA) as chunks:
        yield chunks


def write_scores(scores: pl.DataFrame, path: str | os.PathLike) -> Path:
    """Write scores atomically; the format follows the extension (.parquet, .csv, .json).

    Parquet keeps ``reasons`` as a list of structs; CSV holds it as JSON text
    (:func:`~mulegraph.core.schema.reasons_to_json`), and JSON is a list of objects with ``reasons``
    as a list of objects. Legacy scores with JSON text reasons are written as they are. In CSV a
    text cell starting with ``=``, ``+``, ``-``, ``@``, tab, carriage return or ``'`` gets a leading
    ``'`` (:func:`~mulegraph.core.escape.neutralise_formulas`; undone by
    :func:`~mulegraph.core.escape.strip_formula_guard`).
    """
    path = check_scores_path(path)
    ext = path.suffix.lower()
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
