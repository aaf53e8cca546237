"""Detection quality of a ranking against labels: PR-AUC, ROC-AUC, precision and recall at budgets.

The evaluated population is the labelled accounts (only those of ``split == "test"`` when a split is
given). A labelled account without a score ranks below every scored one (and is counted in
``unscored``). An alert budget ``b`` is the top ``ceil(b * n)`` accounts of the population; ties in
score are broken by account id so the result is deterministic. With a ``typology`` column in the
labels ('|'-joined names), recall at each budget and PR-AUC are also given per typology (that
typology's mules against all non-mules).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.escape import strip_formula_guard
from mulegraph.io.labels import describe_header
from mulegraph.io.runs import resolve_run_dir

__all__ = ["evaluate", "format_table", "to_json", "read_scores", "read_split", "scores_file", "DEFAULT_BUDGETS"]

DEFAULT_BUDGETS: tuple[float, ...] = (0.005, 0.01, 0.02)


def _average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    if not y.any() or y.all():
        return None
    return float(average_precision_score(y, s))


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if not y.any() or y.all():
        return None
    return float(roc_auc_score(y, s))


def _read(path: str | os.PathLike, what: str) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file '{p}' does not exist; pass an existing file.")
    ext = p.suffix.lower()
    try:
        if ext in (".parquet", ".pq"):
            return pl.read_parquet(p)
        if ext == ".csv":
            return pl.read_csv(p, schema_overrides={"account_id": pl.String})
        if ext == ".json":
            return pl.read_json(p)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise InputError(f"{what} file '{p.name}' cannot be read ({type(err).__name__}); check its format.") from None
    raise InputError(f"{what} file '{p.name}' must end in .parquet, .csv or .json. Got '{ext}' instead.")


def scores_file(path: str | os.PathLike) -> Path:
    """The scores file ``path`` stands for: a file as it is, or the ``scores.parquet`` of a run folder.

    A runs folder (with a ``latest`` run) stands for its latest run. A run folder without scores
    is an :class:`~mulegraph.core.errors.InputError`.
    """
    p = Path(path)
    if not p.is_dir():
        return p
    found = resolve_run_dir(p) / "scores.parquet"
    if not found.is_file():
        raise InputError(f"the run folder '{p}' has no scores.parquet; pass a scores file or another run.")
    return found


def read_scores(path: str | os.PathLike) -> pl.DataFrame:
    """Read a scores file (.parquet, .csv, .json), or a run folder's, into ``account_id, score``.

    ``path`` may be a run folder or a runs folder (see :func:`scores_file`). The ``'`` that guards
    a formula-like account id in a CSV written by mulegraph is removed.
    """
    src = scores_file(path)
    df = _check(_read(src, "scores"), ("account_id", "score"), "scores")
    try:
        df = df.select(pl.col("account_id").cast(pl.String), pl.col("score").cast(pl.Float64))
        return strip_formula_guard(df, ["account_id"]) if src.suffix.lower() == ".csv" else df
    except pl.exceptions.PolarsError:
        raise InputError("scores: the score column must be numeric.") from None


def read_split(path: str | os.PathLike) -> pl.DataFrame:
    """Read a split file (.parquet, .csv) into ``account_id, split``."""
    df = _check(_read(path, "split"), ("account_id", "split"), "split")
    return df.select(pl.col("account_id").cast(pl.String), pl.col("split").cast(pl.String))


def _check(frame: Any, cols: tuple[str, ...], what: str) -> pl.DataFrame:
    if not isinstance(frame, pl.DataFrame):
        raise InputError(f"{what} must be a polars DataFrame. Got {type(frame).__name__} instead.")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} lack column(s) {', '.join(missing)}; expected {', '.join(cols)} ({describe_header(frame.columns)})."
        )
    return frame


def evaluate(
    scores: pl.DataFrame,
    labels: pl.DataFrame,
    split: pl.DataFrame | None = None,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
) -> dict[str, Any]:
    """Metrics of ``scores`` (``account_id, score``) against ``labels`` (``account_id, is_mule[, typology]``).

    ``split`` (``account_id, split``) restricts the population to the ``test`` accounts. Returns a
    JSON-ready dict: ``n``, ``mules``, ``prevalence``, ``unscored``, ``pr_auc``, ``roc_auc``,
    ``budgets`` (list of ``budget, k, tp, precision, recall``) and ``typologies`` (name ->
    ``mules``, ``pr_auc``, ``recall`` per budget).
    """
    scores = _check(scores, ("account_id", "score"), "scores")
    labels = _check(labels, ("account_id", "is_mule"), "labels")
    for b in budgets:
        if not 0 < float(b) <= 1:
            raise InputError(f"alert budgets must be fractions in (0, 1]. Got {b} instead.")
    if scores["account_id"].is_duplicated().any():
        raise InputError("scores have duplicate account_id rows; pass one score per account.")
    if labels["is_mule"].dtype != pl.Boolean:
        raise InputError("labels.is_mule must be boolean; read label files with mulegraph.labels.read_labels().")
    pop = labels.select("account_id", "is_mule", *(["typology"] if "typology" in labels.columns else []))
    pop = pop.unique("account_id", keep="first")
    if split is not None:
        split = _check(split, ("account_id", "split"), "split")
        test = split.filter(pl.col("split").cast(pl.String).str.to_lowercase() == "test").select("account_id")
        if test.height == 0:
            raise InputError("the split has no 'test' accounts; give a split file with split = train | test.")
        pop = pop.join(test.unique(), on="account_id", how="semi")
    if pop.height == 0:
        raise InputError("no labelled account to evaluate; check that labels (and split) use the same account ids as the scores.")
    pop = pop.join(scores.select("account_id", pl.col("score").cast(pl.Float64)), on="account_id", how="left")
    unscored = int(pop["score"].is_null().sum() + pop["score"].is_nan().sum())
    if unscored == pop.height:
        raise InputError(
            f"none of the {pop.height:,} labelled accounts has a score; check that the labels use the same "
            "account ids as the scores."
        )
    pop = pop.with_columns(pl.col("score").fill_nan(None).fill_null(-np.inf)).sort(
        ["score", "account_id"], descending=[True, False]
    )
    y = pop["is_mule"].to_numpy().astype(bool)
    s = pop["score"].to_numpy()
    finite = np.where(np.isfinite(s), s, np.nanmin(np.where(np.isfinite(s), s, np.inf)) - 1 if np.isfinite(s).any() else 0.0)
    n, n_pos = len(y), int(y.sum())
    result: dict[str, Any] = {
        "n": n,
        "mules": n_pos,
        "prevalence": n_pos / n,
        "unscored": unscored,
        "pr_auc": _average_precision(y, finite),
        "roc_auc": _roc_auc(y, finite),
        "budgets": [],
        "typologies": {},
    }
    cum_tp = np.cumsum(y)
    ks = {}
    for b in budgets:
        k = max(1, math.ceil(float(b) * n))
        ks[b] = k
        tp = int(cum_tp[k - 1])
        result["budgets"].append(
            {"budget": float(b), "k": k, "tp": tp, "precision": tp / k, "recall": (tp / n_pos) if n_pos else None}
        )
    if "typology" in pop.columns:
        typ = pop["typology"].cast(pl.String).fill_null("").str.split("|").to_list()
        names = sorted({t for ts in typ for t in ts if t})
        for name in names:
            has = np.array([name in ts for ts in typ]) & y
            mask = has | ~y
            entry = {"mules": int(has.sum()), "pr_auc": _average_precision(has[mask], finite[mask]), "recall": {}}
            cum = np.cumsum(has)
            for b, k in ks.items():
                entry["recall"][str(b)] = int(cum[k - 1]) / int(has.sum()) if has.any() else None
            result["typologies"][name] = entry
    return result


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of an :func:`evaluate` result."""
    lines = [
        f"accounts {result['n']:,}   mules {result['mules']:,}   prevalence {_fmt(result['prevalence'], 4)}   unscored {result['unscored']:,}",
        f"PR-AUC {_fmt(result['pr_auc'])}   ROC-AUC {_fmt(result['roc_auc'])}",
        "",
        f"{'budget':>8} {'top k':>7} {'hits':>6} {'precision':>10} {'recall':>8}",
    ]
    for b in result["budgets"]:
        lines.append(f"{b['budget']:>8.1%} {b['k']:>7,} {b['tp']:>6,} {_fmt(b['precision']):>10} {_fmt(b['recall']):>8}")
    if result["typologies"]:
        heads = " ".join(f"{'R@' + format(b['budget'], '.1%'):>8}" for b in result["budgets"])
        lines += ["", f"{'typology':<18} {'mules':>6} {'PR-AUC':>7} {heads}"]
        for name, e in result["typologies"].items():
            rec = " ".join(f"{_fmt(e['recall'][str(b['budget'])]):>8}" for b in result["budgets"])
            lines.append(f"{name:<18} {e['mules']:>6} {_fmt(e['pr_auc']):>7} {rec}")
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    """The result as JSON text."""
    return json.dumps(result, indent=2)
