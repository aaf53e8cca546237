"""Model persistence: a model folder that cannot run code, with its model card and file hashes.

:func:`save_model` writes a directory with ``estimator.skops`` (the boosted ensembles, loaded with
:mod:`skops.io` and an explicit list of trusted types, :data:`TRUSTED_TYPES`, so a swapped file
cannot run code), ``known.parquet`` (the known labels), and ``model_card.json`` /
``model_card.md``. The card holds the sha256 of every file, checked before anything is loaded by
:func:`load_model`; a mismatch, a missing feature, a feature of another version, another
scikit-learn minor version or a card of another format version is refused with a
:class:`~mulegraph.core.errors.ModelError`.
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

from mulegraph.core.atomic import file_sha256, write_bytes_atomic
from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.core.errors import InputError, ModelError
from mulegraph.core.paths import refuse_protected_output
from mulegraph.core.version import __version__
from mulegraph.features.registry import REGISTRY, register_windows
from mulegraph.scoring.estimator import MuleModel

__all__ = ["save_model", "load_model", "check_model_dir", "MODEL_FORMAT", "TRUSTED_TYPES"]

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


def check_model_dir(directory: str | os.PathLike) -> Path:
    """Refuse a place a model cannot be saved to, before any training; returns it as a path.

    A new or empty folder, or an earlier model's folder (it is replaced), is fine. A file, or a
    folder holding other files (a store, a run folder), is an :class:`~mulegraph.core.errors.InputError`.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise InputError(f"--out '{d}' is a file; give a folder for the model (a new one, or an earlier model's).")
    if d.is_dir() and not (d / "model_card.json").exists() and any(d.iterdir()):
        raise InputError(f"--out '{d}' is a folder that holds other files, not a model; give a new or empty folder for the model.")
    return refuse_protected_output(d)  # nor a folder inside a store or a run folder


def save_model(model: MuleModel, directory: str | os.PathLike) -> Path:
    """Write a trained model to ``directory`` (created if needed); returns the card path."""
    import skops.io as sio

    model._check_fitted()
    d = refuse_protected_output(directory)  # never into a store or a run folder
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
        "files": {"estimator.skops": file_sha256(d / "estimator.skops"), "known.parquet": file_sha256(d / "known.parquet")},
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
        if files.get(name) != file_sha256(path):
            raise ModelError(f"the model file {name} does not match the sha256 in its model card; it was changed after training, so it is refused.")
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
        obj = sio.loads((d / "estimator.skops").read_bytes(), trusted=list(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - skops raises several types for untrusted or broken payloads
        raise ModelError(f"the model file estimator.skops cannot be loaded safely ({type(err).__name__}); train the model again.") from None
    try:
        known = pl.read_parquet(d / "known.parquet")
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
        model.importance_ = card.get("feature_importance_raw", {})
    except (KeyError, TypeError, ValueError, pl.exceptions.PolarsError) as err:
        raise ModelError(f"the model card is incomplete ({type(err).__name__}); train the model again.") from None
    n_in = [getattr(e, "n_features_in_", None) for e in model.estimators_]
    if any(n != len(model.feature_names_) for n in n_in):
        raise ModelError("the model's estimator and its card list different numbers of features; train the model again.")
    return model
