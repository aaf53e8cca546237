"""Model persistence: a model folder that cannot run code, whose every file is checked on load.

:func:`save_model` writes a folder with

* ``estimator.skops``: the boosted ensembles, loaded with :mod:`skops.io` and an explicit list of
  trusted types (:data:`TRUSTED_TYPES`), so a swapped file cannot run code;
* ``known.parquet``: the known labels (account ids), the seeds of the closeness features when the
  model scores the store it was trained on (:mod:`mulegraph.scoring.seeds`); left out of a
  **portable** model (``portable=True``), which carries no account id at all;
* ``model_card.json`` / ``model_card.md``: what the model is (features and their versions,
  settings, metrics, library versions, the training store's identity);
* ``checksums.json``, written last and atomically: the sha256 of every other file, the card
  included (:data:`CHECKSUMS_NAME`);
* ``signature.json`` when a signing key is set: HMAC-SHA256 of ``checksums.json`` under the key
  (:data:`SIGNATURE_NAME`; the key from ``[model] signing_key_file`` or ``MULEGRAPH_MODEL_KEY``, see
  :func:`mulegraph.core.keys.model_signing_key`).

:func:`load_model` first checks the folder against ``checksums.json`` (:func:`verify_model_dir`): a
changed, missing or extra file is refused with a :class:`~mulegraph.core.errors.ModelError` naming
the file. Without a key this catches accidents and naive edits, not a forger who edits a file and
computes ``checksums.json`` again; with a key set, an unsigned folder or a wrong signature is
refused too, and only a key holder can make a folder that loads. Then a card of another format
version, another scikit-learn minor version, a feature unknown here or of another version, and
types outside the trusted list are refused. ``model_version`` is ``mulegraph-`` and 12 hex digits
of the sha256 of ``checksums.json``: any change to any file, the card included, changes it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.atomic import write_bytes_atomic
from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.core.errors import InputError, ModelError
from mulegraph.core.keys import model_signing_key
from mulegraph.core.paths import refuse_protected_output
from mulegraph.core.version import __version__
from mulegraph.features.registry import REGISTRY, register_windows
from mulegraph.scoring import integrity
from mulegraph.scoring.estimator import MuleModel

__all__ = [
    "save_model",
    "load_model",
    "export_portable",
    "verify_model_dir",
    "check_model_dir",
    "MODEL_FORMAT",
    "TRUSTED_TYPES",
    "CARD_NAME",
    "KNOWN_NAME",
    "ESTIMATOR_NAME",
]

#: format version of the model directory; a different major number is refused on load, and a
#: folder without the checksum manifest (format 1.0) is refused as unsealed
MODEL_FORMAT = "1.1"

#: the files of a model folder besides its seal (see mulegraph.scoring.integrity)
ESTIMATOR_NAME = "estimator.skops"
KNOWN_NAME = "known.parquet"
CARD_NAME = "model_card.json"
CARD_MD_NAME = "model_card.md"

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


def _family_counts(features: list[dict[str, Any]]) -> str:
    """``family (n), ...`` of the card's feature entries, in the order the families first appear."""
    counts: dict[str, int] = {}
    for f in features:
        counts[f["family"] or "other"] = counts.get(f["family"] or "other", 0) + 1
    return ", ".join(f"{fam} ({n})" for fam, n in counts.items())


def _card_markdown(card: dict[str, Any]) -> str:
    cv = card["cv_metrics"]
    lines = [
        "# mulegraph model card",
        "",
        f"- created: {card['created']}",
        f"- model format: {card['format']}; mulegraph {card['versions']['mulegraph']}, scikit-learn {card['versions']['scikit-learn']}",
        f"- estimator: {card['estimator']['kind']}, {card['estimator']['n_models']} averaged, settings {json.dumps(card['estimator']['best_params'])}",
        f"- features by family: {_family_counts(card['features'])}"
        + (f" (only {', '.join(fams)} and the closeness: [model] families)"
           if (fams := card.get("config", {}).get("model", {}).get("families")) else ""),
        f"- labels: {card['labels']['mule']} mules, {card['labels']['not_mule']} not mules ({card['labels']['unmatched']} labels without transfers or on hubs, unused)",
        f"- training data sha256: `{card['training_data_sha256']}`",
        *(
            [f"- training data: {td['transfers']:,} transfers, {td['accounts']:,} accounts, window {td['window']}"]
            if (td := card.get("training_data")) else []
        ),
        *(
            [f"- trees trained on every mule and {sm['kept_not_mules']:,} of {sm['not_mules']:,} other labelled accounts "
             f"({sm['share_not_mules']:.1%}, sampled per fold; each weighs {sm['weight_not_mule_min']:.2f}-{sm['weight_not_mule_max']:.2f} "
             "in held-out scores and calibration)" if sm["applied"] else f"- trees trained on all {sm['labelled']:,} labelled accounts (no sampling)"]
            if (sm := (card.get("training") or {}).get("sampling")) else []
        ),
        *([f"- thread budget: {th}"] if (th := (card.get("training") or {}).get("threads")) else []),
        *(
            [f"- positive-unlabelled training: the labels name about {pu['known_mule_share']:.0%} of the mules; "
             f"{pu['labelled_mules']:,} labelled mules, about {pu['hidden_mules_estimated']:,.0f} more estimated among the "
             f"labelled non-mules ({pu['mule_copies']:,} of them counted partly as mules)"
             + (f"; {pu['rounds']} rounds" if pu.get("rounds", 1) > 1 else "")]
            if (pu := (card.get("training") or {}).get("pu")) else []
        ),
        *([f"- trained on the no-label mode's rule score too ({nv})"] if (nv := (card.get("training") or {}).get("nolabel_version")) else []),
        *([f"- scores blended with the no-label mode's score, weight {nb:g} of the no-label score "
           "(a rank share among the scored accounts, not a probability)"]
          if (nb := (card.get("training") or {}).get("nolabel_blend")) is not None else []),
        *([f"- reads its neighbours' scores: a first-stage model of {len(st['features'])} features scores the window, "
           "and the highest, summed and top-share scores of each account's counterparties are features (out-of-fold in training)"]
          if (st := (card.get("training") or {}).get("neighbour_stage")) else []),
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
    if card.get("portable"):
        lines += ["", "Portable model: no account ids (no known labels); scoring seeds come from the scoring bank "
                  "(its investigator decisions, --known, --shared-list)."]
    lines += ["", f"{len(card['features'])} features in all; see model_card.json for the full list and the config, "
              "checksums.json for the sha256 of every file.", ""]
    return "\n".join(lines)


#: every file a model folder may hold besides its seal
_MODEL_FILES = (ESTIMATOR_NAME, KNOWN_NAME, CARD_NAME, CARD_MD_NAME)


def check_model_dir(directory: str | os.PathLike) -> Path:
    """Refuse a place a model cannot be saved to, before any training; returns it as a path.

    A new or empty folder, or an earlier model's folder (it is replaced), is fine. A file, or a
    folder holding other files (a store, a run folder), is an :class:`~mulegraph.core.errors.InputError`.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise InputError(f"--out '{d}' is a file; give a folder for the model (a new one, or an earlier model's).")
    if d.is_dir() and not (d / CARD_NAME).exists() and any(d.iterdir()):
        raise InputError(f"--out '{d}' is a folder that holds other files, not a model; give a new or empty folder for the model.")
    return refuse_protected_output(d)  # nor a folder inside a store or a run folder


def _prepare_folder(d: Path) -> None:
    """Make ``d`` ready for a model's files: created, no seal, nothing but an earlier model's files."""
    if d.exists() and not d.is_dir():
        raise ModelError(f"model path '{d}' is a file; give a directory for the model.")
    d.mkdir(parents=True, exist_ok=True)
    seal_files = (integrity.CHECKSUMS_NAME, integrity.SIGNATURE_NAME)
    for p in d.iterdir():
        if p.name in _MODEL_FILES or p.name in seal_files:
            continue
        if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp") and p.name[1:].startswith(_MODEL_FILES + seal_files):
            p.unlink()  # left by an interrupted save
            continue
        raise ModelError(f"the model folder '{d}' holds '{p.name}', which is not part of a model; give a new or empty folder.")
    integrity.break_seal(d)


def _card_config(model: MuleModel, portable: bool) -> dict[str, Any]:
    model_cfg = dataclasses.asdict(model._cfg())
    model_cfg.pop("signing_key_file", None)  # where this machine keeps its key: not part of the model
    feature_cfg = dataclasses.asdict(model._fcfg())
    if portable:
        feature_cfg["hub_accounts"] = []  # account ids of the training bank; the scoring bank names its own
    return {"model": model_cfg, "features": feature_cfg}


def _stage_card(stage1: MuleModel) -> dict[str, Any]:
    """What the card records of a first-stage model besides its trees (in the estimator file)."""
    return {"features": stage1.feature_names_, "calibration": list(stage1.calibration_), "best_params": stage1.best_params_,
            "nolabel_version": getattr(stage1, "nolabel_version_", None)}


def _stage_model(stage: dict[str, Any], estimators: list, base: MuleModel) -> MuleModel:
    """The first-stage model of a loaded model that reads neighbour scores."""
    cfg = dataclasses.replace(base._cfg(), neighbour_scores=False, importance_repeats=0)
    stage1 = MuleModel(cfg, base._fcfg())
    stage1.estimators_ = list(estimators)
    stage1.classes_ = np.array([False, True])
    stage1.calibration_ = (float(stage["calibration"][0]), float(stage["calibration"][1]))
    stage1.feature_names_ = list(stage["features"])
    stage1.n_features_in_ = len(stage1.feature_names_)
    stage1.best_params_ = stage["best_params"]
    stage1.nolabel_version_ = stage.get("nolabel_version")
    stage1.known_ = base.known_
    stage1.importance_ = {}
    if any(getattr(e, "n_features_in_", None) != stage1.n_features_in_ for e in stage1.estimators_):
        raise ModelError("the model's first-stage estimator and its card list different numbers of features; train the model again.")
    return stage1


def save_model(model: MuleModel, directory: str | os.PathLike, *, portable: bool = False, key: bytes | None = None) -> Path:
    """Write a trained model to ``directory`` (created if needed); returns the card path.

    ``portable``: leave out every account id (no known labels, no training store identity, no hub
    account names in the card), for use at another bank; its scoring seeds then come from the
    scoring side only (:mod:`mulegraph.scoring.seeds`). ``key``: sign the folder with it (at least
    32 bytes); None signs with the key the model's config names (``signing_key_file``, else
    ``MULEGRAPH_MODEL_KEY``), and leaves the folder unsigned when there is none. The checksum
    manifest is written last; afterwards ``model.model_version`` is the saved folder's version.
    """
    import skops.io as sio

    model._check_fitted()
    key = model_signing_key(model._cfg()) if key is None else key
    d = refuse_protected_output(directory)  # never into a store or a run folder
    _prepare_folder(d)
    stage1 = getattr(model, "stage1_", None)  # the first-stage model of neighbour scores (mulegraph.scoring.stacking)
    payload = sio.dumps({"estimators": model.estimators_, **({"stage1_estimators": stage1.estimators_} if stage1 is not None else {})})
    untrusted = set(sio.get_untrusted_types(data=payload))
    if not untrusted <= set(TRUSTED_TYPES):
        raise ModelError("the model holds object types outside mulegraph's trusted list and cannot be saved safely.")
    write_bytes_atomic(d / ESTIMATOR_NAME, payload)
    names = [ESTIMATOR_NAME, CARD_NAME, CARD_MD_NAME]
    if portable:
        (d / KNOWN_NAME).unlink(missing_ok=True)
    else:
        buf = io.BytesIO()
        model.known_.write_parquet(buf)
        write_bytes_atomic(d / KNOWN_NAME, buf.getvalue())
        names.append(KNOWN_NAME)
    card = {
        "format": MODEL_FORMAT,
        "kind": "mulegraph.MuleModel",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "portable": bool(portable),
        "versions": _versions(),
        "features": _feature_entries(model.feature_names_),
        "estimator": {"kind": "HistGradientBoostingClassifier", "n_models": len(model.estimators_), "best_params": model.best_params_},
        "calibration": {"kind": "platt", "slope": model.calibration_[0], "intercept": model.calibration_[1]},
        "labels": model.label_counts_,
        "training_data_sha256": model.training_hash_,
        "training_data": getattr(model, "training_data_", None),
        "training_store": None if portable else getattr(model, "training_store_", None),
        "cv_metrics": model.cv_metrics_,
        "cv_results": model.cv_results_,
        # which rows trained the trees (sampling of non-mules), the early-stopped search, the thread budget
        "training": {"sampling": getattr(model, "sampling_", None), "search": getattr(model, "search_", None),
                     "threads": getattr(model, "threads_", None), "seconds": getattr(model, "fit_seconds_", None),
                     "pu": getattr(model, "pu_", None), "nolabel_version": getattr(model, "nolabel_version_", None),
                     "nolabel_blend": getattr(model, "nolabel_blend_", None),
                     "neighbour_stage": None if stage1 is None else _stage_card(stage1)},
        "feature_importance": model.feature_importance,
        "feature_importance_raw": model.importance_,
        "config": _card_config(model, portable),
    }
    write_bytes_atomic(d / CARD_MD_NAME, _card_markdown(card).encode("utf-8"))
    write_bytes_atomic(d / CARD_NAME, json.dumps(card, indent=2, sort_keys=False).encode("utf-8"))
    checksums = integrity.seal(d, names, key)  # last: the folder is complete from here on
    model.model_version_ = integrity.version_of(checksums)
    return d / CARD_NAME


def export_portable(source: str | os.PathLike, directory: str | os.PathLike, *, key: bytes | None = None) -> Path:
    """Write the portable form of the model in ``source`` to ``directory``; returns the card path.

    The source is loaded (and verified with ``key``, else the ``MULEGRAPH_MODEL_KEY`` key, when
    set) and saved with ``portable=True``, signed with ``key`` when given.
    """
    if Path(source).resolve() == Path(directory).resolve():
        raise InputError("the portable model must go to another folder than the model it is made from.")
    model = load_model(source, key=key)
    return save_model(model, directory, portable=True, key=key)


def _tuple_fields(cls, data: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ModelError(f"the model card has unknown {cls.__name__} setting(s) {', '.join(sorted(unknown))}; retrain the model with this mulegraph version.")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kw)


def _read_card(d: Path) -> dict[str, Any]:
    card_path = d / CARD_NAME
    if not card_path.is_file():
        raise ModelError(f"'{d}' is not a mulegraph model directory (no {CARD_NAME}); train one with 'mulegraph train'.")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelError("the model card is not valid JSON; the model directory is damaged, train the model again.") from None
    if not isinstance(card, dict) or card.get("kind") != "mulegraph.MuleModel":
        raise ModelError("the model card does not describe a mulegraph model; train the model again.")
    fmt = str(card.get("format", ""))
    if fmt.split(".")[0] != MODEL_FORMAT.split(".")[0]:
        raise ModelError(f"the model has format {fmt or 'unknown'} but this mulegraph reads format {MODEL_FORMAT}; retrain it with this version.")
    return card


def verify_model_dir(directory: str | os.PathLike, *, key: bytes | None = None) -> str:
    """Check a model folder's files against its checksum manifest (and signature); returns its ``model_version``.

    ``key``: the signing key to require (None: the ``MULEGRAPH_MODEL_KEY`` key when set, else
    no signature is required). Raises :class:`~mulegraph.core.errors.ModelError` naming the first
    changed, missing or extra file, or the signature's fault.
    """
    d = Path(directory)
    card = _read_card(d)
    key = model_signing_key(ModelConfig()) if key is None else key
    required = (ESTIMATOR_NAME, CARD_NAME) + (() if card.get("portable") else (KNOWN_NAME,))
    return integrity.version_of(integrity.verify(d, key, required))


def load_model(directory: str | os.PathLike, *, key: bytes | None = None) -> MuleModel:
    """Load a model written by :func:`save_model`, checking its seal, card and feature set.

    ``key``: the model signing key (see :func:`verify_model_dir`); None uses the
    ``MULEGRAPH_MODEL_KEY`` key when set. Raises :class:`ModelError` when the directory is not a
    model, a file was changed, added or removed since it was saved, the signature is missing or
    wrong while a key is set, the format or a feature version differs from this mulegraph, or the
    estimator holds types outside the trusted list. Nothing in the files can run code.
    """
    import skops.io as sio
    import sklearn

    d = Path(directory)
    card = _read_card(d)
    portable = bool(card.get("portable"))
    key = model_signing_key(ModelConfig()) if key is None else key
    required = (ESTIMATOR_NAME, CARD_NAME) + (() if portable else (KNOWN_NAME,))
    version = integrity.version_of(integrity.verify(d, key, required))
    made_with = str((card.get("versions") or {}).get("scikit-learn", ""))
    if made_with.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"the model was made with scikit-learn {made_with or 'unknown'} but this installation has {sklearn.__version__}; "
            "retrain it here or install the same scikit-learn version."
        )
    # feature set: every feature must exist here with the version it was trained with (the windowed
    # features of the model's own fan and pass-through windows included)
    try:
        fcfg = _tuple_fields(FeatureConfig, card["config"]["features"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"the model card is incomplete ({type(err).__name__}); train the model again.") from None
    register_windows(fcfg)
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
        obj = sio.loads((d / ESTIMATOR_NAME).read_bytes(), trusted=list(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - skops raises several types for untrusted or broken payloads
        raise ModelError(f"the model file {ESTIMATOR_NAME} cannot be loaded safely ({type(err).__name__}); train the model again.") from None
    try:
        if portable:
            known = pl.DataFrame(schema={"account_id": pl.String, "is_mule": pl.Boolean})
        else:
            known = pl.read_parquet(d / KNOWN_NAME)
        cfg = _tuple_fields(ModelConfig, card["config"]["model"])
        model = MuleModel(cfg, fcfg)
        model.estimators_ = list(obj["estimators"])
        model.classes_ = np.array([False, True])
        model.calibration_ = (float(card["calibration"]["slope"]), float(card["calibration"]["intercept"]))
        model.feature_names_ = [f["name"] for f in feats]
        model.n_features_in_ = len(model.feature_names_)
        model.best_params_ = card["estimator"]["best_params"]
        model.cv_results_ = card.get("cv_results", [])
        model.cv_metrics_ = card["cv_metrics"]
        model.known_ = known.select("account_id", "is_mule")
        model.label_counts_ = card["labels"]
        model.training_hash_ = card["training_data_sha256"]
        if card.get("training_data"):
            model.training_data_ = card["training_data"]
        for name, value in (card.get("training") or {}).items():
            if value is not None and name in ("sampling", "search", "threads", "pu", "nolabel_version", "nolabel_blend"):
                setattr(model, f"{name}_", value)
        model.importance_ = card.get("feature_importance_raw", {})
        model.training_store_ = card.get("training_store")
        model.portable_ = portable
        model.model_version_ = version
        stage = (card.get("training") or {}).get("neighbour_stage")
        model.stage1_ = None if not stage else _stage_model(stage, obj["stage1_estimators"], model)
    except (KeyError, TypeError, ValueError, pl.exceptions.PolarsError) as err:
        raise ModelError(f"the model card is incomplete ({type(err).__name__}); train the model again.") from None
    n_in = [getattr(e, "n_features_in_", None) for e in model.estimators_]
    if any(n != len(model.feature_names_) for n in n_in):
        raise ModelError("the model's estimator and its card list different numbers of features; train the model again.")
    return model
