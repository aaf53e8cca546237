"""The nightly run: the one place that knows the order of the stages.

:func:`run` does, in order:

1. **ingest** -- the exports in the inbox (or the paths given) go into the store; files ingested
   before are recognised by their content hash and skipped, so the same export never counts twice.
2. **features** -- every account active in the window ending at the newest transfer (or ``as_of``).
3. **score** -- with the configured model, or the no-label mode; then the alerts (the top accounts
   within the alert budget), their lifecycle against the previous run, key figures, the flows drawn
   in the report and the feature drift against the previous run.
4. **report** -- ``report.html`` and ``report.md`` rendered from the files written so far.
5. **finalise** -- ``manifest.json`` and ``config.json``, then the run folder is moved into place and
   the ``latest`` pointer is switched to it.

Everything is written into a hidden folder ``<runs>/.tmp-<run_id>/`` that is renamed to
``<runs>/<run_id>/`` only once complete, and ``<runs>/latest`` (a symbolic link, or a one-line text
file where links are not possible) is replaced atomically after that. A run that fails or is killed
at any stage leaves the previous run and ``latest`` as they were; a failed run removes its hidden
folder, and the next run removes what a killed one left. One run at a time per runs folder (a lock
file).

**Nothing new.** Each run records a fingerprint of its inputs: the ingested files, the investigator
decisions, the resolved settings, the window, the model files and the mulegraph version. When a run
ingests nothing and its fingerprint equals the latest run's, the scores would be identical, so it
stops with :class:`~mulegraph.errors.NothingNewError` (exit code 3) and writes nothing;
``force=True`` (``--force``) scores again anyway, and gives identical scores.

**Alert lifecycle.** Against the previous run, an alert is ``new`` or ``persisting``; a previous
alert that is not alerted now is ``dropped``. An account whose latest investigator decision is
``cleared`` is not alerted again (``suppressed``) unless its score rose by more than
``[run] cleared_margin`` above its score in the last run before the decision (or the previous run
when no run preceded the decision).

Run folder contents: ``scores.parquet`` (:data:`~mulegraph.schema.SCORE_SCHEMA`),
``features.parquet``, ``alerts.csv`` / ``alerts.parquet`` / ``alerts.json`` (:data:`ALERT_COLUMNS`),
``alert_changes.parquet`` (:data:`CHANGE_COLUMNS`), ``drift.parquet``, ``flows.parquet``
(:data:`FLOW_COLUMNS`), ``report.html``, ``report.md``, ``config.json``, ``manifest.json`` and
``run.log``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.version import __version__
from mulegraph.core.atomic import fsync_dir, fsync_file
from mulegraph.core.config import Config
from mulegraph.io.runs import latest_run, list_runs
from mulegraph.core.errors import EXIT_FAILURE, InputError, MulegraphError, NothingNewError
from mulegraph.core.schema import SCORE_SCHEMA

__all__ = [
    "STAGES",
    "ALERT_COLUMNS",
    "CHANGE_COLUMNS",
    "FLOW_COLUMNS",
    "EXPORT_SUFFIXES",
    "RunResult",
    "RunBusyError",
    "InjectedFailure",
    "run",
    "find_exports",
    "latest_run",
    "list_runs",
    "compute_alerts",
]

#: the stages of a run, in order (also the names accepted by ``fail_at``)
STAGES: tuple[str, ...] = ("ingest", "features", "score", "report", "finalise")

#: file name endings picked up from the inbox (those ingest reads)
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz", ".parquet", ".pq")

#: columns of ``alerts.csv`` / ``alerts.parquet`` (and the keys of each object in ``alerts.json``)
ALERT_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "alert_rank": pl.Int64(),  # 1..n within this run's alerts
    "account_id": pl.String(),
    "rank": pl.Int64(),  # rank among all scored accounts
    "score": pl.Float64(),
    "status": pl.String(),  # new | persisting
    "previous_rank": pl.Int64(),
    "previous_score": pl.Float64(),
    "decision": pl.String(),  # latest investigator decision, if any (confirmed)
    "top_reason": pl.String(),
    "reason_codes": pl.String(),  # '|'-joined, strongest first
    "reason_families": pl.String(),  # '|'-joined distinct families, strongest first
    "in_count": pl.Int64(),
    "in_value": pl.Float64(),
    "in_counterparties": pl.Int64(),
    "out_count": pl.Int64(),
    "out_value": pl.Float64(),
    "out_counterparties": pl.Int64(),
    "first_ts": pl.Datetime("us", "UTC"),
    "last_ts": pl.Datetime("us", "UTC"),
    "model_version": pl.String(),
    "reasons": pl.String(),  # the scores' JSON list of reason objects
}

#: columns of ``alert_changes.parquet``
CHANGE_COLUMNS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "status": pl.String(),  # new | persisting | dropped | suppressed
    "rank": pl.Int64(),
    "score": pl.Float64(),
    "previous_rank": pl.Int64(),
    "previous_score": pl.Float64(),
    "note": pl.String(),
}

#: columns of ``flows.parquet``: the aggregated transfers between a drawn account and each counterparty
FLOW_COLUMNS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "counterparty": pl.String(),
    "direction": pl.String(),  # in (counterparty paid the account) | out
    "value": pl.Float64(),
    "count": pl.Int64(),
}

_LATEST = "latest"
_LOCK = ".lock"
_TMP_PREFIX = ".tmp-"


class RunBusyError(MulegraphError):
    """Another run holds the runs folder."""

    exit_code = EXIT_FAILURE


class InjectedFailure(RuntimeError):
    """Raised by ``fail_at`` to test that a failed stage leaves the previous run intact."""


@dataclass
class RunResult:
    """What a finished run produced."""

    run_id: str
    run_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest.get("counts", {})

    @property
    def seconds(self) -> dict[str, float]:
        return self.manifest.get("seconds", {})


# --------------------------------------------------------------------------------------------
# runs folder


def _point_latest(runs_dir: Path, run_id: str) -> None:
    """Switch ``latest`` to ``run_id`` atomically (symlink; a text file where links fail)."""
    tmp = runs_dir / f"{_TMP_PREFIX}latest-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(run_id + "\n", encoding="utf-8")
    ptr = runs_dir / _LATEST
    if ptr.is_dir() and not ptr.is_symlink():
        raise InputError(f"'{ptr}' is a folder; remove it so that the latest-run pointer can be written.")
    os.replace(tmp, ptr)
    fsync_dir(runs_dir)


@contextlib.contextmanager
def _lock(runs_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<runs>/.lock`` for the duration of a run."""
    path = runs_dir / _LOCK
    fh = open(path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not on POSIX: no lock
            pass
        except OSError:
            raise RunBusyError(
                f"another run is using '{runs_dir}'; wait for it to finish (or use another --runs folder)."
            ) from None
        yield
    finally:
        fh.close()


def _clean_stale(runs_dir: Path) -> None:
    """Remove what killed runs left (only called while holding the lock)."""
    for p in runs_dir.iterdir():
        if p.name.startswith(_TMP_PREFIX):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def _new_run_id(runs_dir: Path, now: datetime) -> str:
    base = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (runs_dir / run_id).exists() or (runs_dir / f"{_TMP_PREFIX}{run_id}").exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


# --------------------------------------------------------------------------------------------
# inputs


def find_exports(inbox: str | os.PathLike) -> list[Path]:
    """Export files in ``inbox`` (not recursive), sorted by name; hidden and partial files skipped."""
    root = Path(inbox)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        name = p.name.lower()
        if p.is_file() and not name.startswith((".", "~")) and name.endswith(EXPORT_SUFFIXES):
            out.append(p)
    return sorted(out)


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _hash_tree(path: Path) -> str | None:
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        h.update(_sha256_file(f).encode())
    return h.hexdigest()


def _frame_hash(df: pl.DataFrame) -> str:
    return hashlib.sha256(df.write_csv().encode("utf-8")).hexdigest()


def _libraries() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "mulegraph": __version__}
    for name in ("polars", "pyarrow", "numpy", "scipy", "networkx", "scikit-learn", "matplotlib", "skops"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


# --------------------------------------------------------------------------------------------
# the stages' pieces


def _latest_decisions(decisions: pl.DataFrame) -> pl.DataFrame:
    """The latest decision per account: ``account_id, decision, decision_date``."""
    if decisions.height == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "decision": pl.String, "decision_date": pl.Datetime("us", "UTC")})
    return (
        decisions.with_row_index("_order")
        .sort(["account_id", "date", "_order"])
        .group_by("account_id", maintain_order=True)
        .agg(pl.col("decision").last(), pl.col("date").last().alias("decision_date"))
    )


def _reference_scores(cleared: pl.DataFrame, runs: Sequence[tuple[datetime, Path]], previous: Path | None) -> pl.DataFrame:
    """For each cleared account, its score in the last run created at or before the decision.

    ``runs``: (created_at, run folder) of earlier runs. Falls back to the previous run's score.
    Returns ``account_id, reference_score``.
    """
    schema = {"account_id": pl.String, "reference_score": pl.Float64}
    if cleared.height == 0:
        return pl.DataFrame(schema=schema)
    runs = sorted(runs, key=lambda r: r[0])
    # which run each clearing decision refers to (vectorised as-of join on the run times)
    if runs:
        run_tab = pl.DataFrame(
            {"created_at": [r[0] for r in runs], "run_dir": [str(r[1]) for r in runs]},
            schema={"created_at": pl.Datetime("us", "UTC"), "run_dir": pl.String},
        ).sort("created_at")
        ref = cleared.sort("decision_date").join_asof(
            run_tab, left_on="decision_date", right_on="created_at", strategy="backward"
        )
    else:
        ref = cleared.with_columns(pl.lit(None, dtype=pl.String).alias("run_dir"))
    if previous is not None:
        ref = ref.with_columns(pl.col("run_dir").fill_null(str(previous)))
    parts = []
    for run_dir, group in ref.filter(pl.col("run_dir").is_not_null()).group_by("run_dir"):
        path = Path(run_dir[0]) / "scores.parquet"
        if not path.is_file():
            continue
        ids = group["account_id"]
        parts.append(
            pl.scan_parquet(path)
            .filter(pl.col("account_id").is_in(ids.implode()))
            .select("account_id", pl.col("score").cast(pl.Float64).alias("reference_score"))
            .collect()
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def compute_alerts(
    scores: pl.DataFrame,
    *,
    budget: int,
    threshold: float | None = None,
    previous_alerts: pl.DataFrame | None = None,
    decisions: pl.DataFrame | None = None,
    reference_scores: pl.DataFrame | None = None,
    cleared_margin: float = 0.1,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Choose this run's alerts and classify them against the previous run.

    ``scores``: ranked accounts (``account_id, score, rank``; unranked rows have a null rank).
    ``previous_alerts``: the previous run's alerts (``account_id, rank, score``).
    ``decisions``: latest decision per account (``account_id, decision, decision_date``).
    ``reference_scores``: ``account_id, reference_score`` for cleared accounts (their score when
    they were cleared); a cleared account is alerted again only when
    ``score > reference_score + cleared_margin``; without a reference it stays suppressed.

    Returns ``(alerts, changes)``: ``alerts`` has ``alert_rank, account_id, rank, score, status,
    previous_rank, previous_score, decision`` (status new | persisting) in rank order, at most
    ``budget`` rows, scores at least ``threshold``; ``changes`` has :data:`CHANGE_COLUMNS`: the
    alerts, the cleared accounts that would be among the top ``budget`` without their clearing
    decision (``suppressed``, whether or not alerted before) and the other previous alerts not
    alerted now (``dropped``); one row per account.
    """
    if budget < 0:
        raise InputError(f"The alert budget must be zero or more. Got {budget} instead.")
    ranked = scores.filter(pl.col("rank").is_not_null()).select("account_id", "score", "rank").sort("rank")
    prev = (
        previous_alerts.select("account_id", pl.col("rank").alias("previous_rank"), pl.col("score").alias("previous_score"))
        if previous_alerts is not None and previous_alerts.height
        else pl.DataFrame(schema={"account_id": pl.String, "previous_rank": pl.Int64, "previous_score": pl.Float64})
    )
    dec = decisions if decisions is not None else _latest_decisions(pl.DataFrame(schema={"account_id": pl.String, "decision": pl.String, "date": pl.Datetime("us", "UTC")}))
    refs = reference_scores if reference_scores is not None else pl.DataFrame(schema={"account_id": pl.String, "reference_score": pl.Float64})
    cand = (
        ranked.join(dec.select("account_id", "decision"), on="account_id", how="left")
        .join(refs, on="account_id", how="left")
        .with_columns(
            (
                (pl.col("decision") == "cleared")
                & (pl.col("reference_score").is_null() | (pl.col("score") <= pl.col("reference_score") + cleared_margin))
            )
            .fill_null(False)
            .alias("suppressed")
        )
    )
    eligible = cand.filter(~pl.col("suppressed"))
    if threshold is not None:
        eligible = eligible.filter(pl.col("score") >= threshold)
    alerts = (
        eligible.head(budget)
        .join(prev, on="account_id", how="left")
        .sort("rank")
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("alert_rank"),
            pl.when(pl.col("previous_rank").is_null()).then(pl.lit("new")).otherwise(pl.lit("persisting")).alias("status"),
        )
        .select("alert_rank", "account_id", pl.col("rank").cast(pl.Int64), pl.col("score").cast(pl.Float64), "status",
                pl.col("previous_rank").cast(pl.Int64), pl.col("previous_score").cast(pl.Float64), "decision")
    )
    # suppressed: cleared accounts that would be among the top ``budget`` without their clearing
    would = cand.filter(pl.col("score") >= threshold) if threshold is not None else cand
    would = would.head(budget)
    suppressed = (
        would.filter(pl.col("suppressed"))
        .join(prev, on="account_id", how="left")
        .with_columns(pl.lit("suppressed").alias("status"),
                      pl.lit("cleared by an investigator; score has not risen by the margin").alias("note"))
    )
    dropped = (
        prev.join(alerts.select("account_id"), on="account_id", how="anti")
        .join(suppressed.select("account_id"), on="account_id", how="anti")
        .join(cand.select("account_id", "rank", "score", "suppressed"), on="account_id", how="left")
        .with_columns(
            pl.lit("dropped").alias("status"),
            pl.when(pl.col("rank").is_null()).then(pl.lit("not scored in this run (inactive in the window or a hub)"))
            .when(pl.col("suppressed")).then(pl.lit("cleared by an investigator"))
            .otherwise(pl.lit("outside this run's alert budget or threshold")).alias("note"),
        )
        .drop("suppressed")
    )
    cols = list(CHANGE_COLUMNS)
    changes = pl.concat(
        [
            alerts.with_columns(pl.lit(None, dtype=pl.String).alias("note")).select(cols).cast(CHANGE_COLUMNS),
            dropped.select(cols).cast(CHANGE_COLUMNS),
            suppressed.select(cols).cast(CHANGE_COLUMNS),
        ]
    )
    return alerts, changes


def _reason_summary(alerts: pl.DataFrame) -> pl.DataFrame:
    """top_reason, reason_codes and reason_families from the reasons JSON of the alerted rows."""
    tops, codes, fams = [], [], []
    for text in alerts["reasons"].to_list():  # one per alert (bounded by the budget)
        try:
            items = json.loads(text) if text else []
        except (TypeError, ValueError):
            items = []
        items = [r for r in items if isinstance(r, dict)]
        tops.append(items[0].get("text") if items else None)
        codes.append("|".join(str(r.get("code", "")) for r in items) or None)
        seen: list[str] = []
        for r in items:
            f = r.get("family")
            if f and f not in seen:
                seen.append(str(f))
        fams.append("|".join(seen) or None)
    return alerts.with_columns(
        pl.Series("top_reason", tops, dtype=pl.String),
        pl.Series("reason_codes", codes, dtype=pl.String),
        pl.Series("reason_families", fams, dtype=pl.String),
    )


def _side_figures(tx: pl.LazyFrame, ids: pl.LazyFrame, own: str, other: str, prefix: str) -> pl.LazyFrame:
    """Per account in ``ids`` as the ``own`` end of transfers: ``<prefix>_count/_value/_counterparties/_first/_last``."""
    return (
        tx.join(ids, left_on=own, right_on="account_id", how="semi")
        .group_by(own)
        .agg(
            pl.len().cast(pl.Int64).alias(f"{prefix}_count"),
            pl.col("amount").sum().alias(f"{prefix}_value"),
            pl.col(other).n_unique().cast(pl.Int64).alias(f"{prefix}_counterparties"),
            pl.col("ts").min().alias(f"{prefix}_first"),
            pl.col("ts").max().alias(f"{prefix}_last"),
        )
        .rename({own: "account_id"})
    )


def _key_figures(transfers: pl.DataFrame, accounts: pl.Series) -> pl.DataFrame:
    """Per account in ``accounts``: counts, values and distinct counterparties in and out, first and last transfer."""
    ids = pl.DataFrame({"account_id": accounts.unique()})
    tx = transfers.lazy()
    inbound = _side_figures(tx, ids.lazy(), "dst_account", "src_account", "in")
    outbound = _side_figures(tx, ids.lazy(), "src_account", "dst_account", "out")
    out = (
        ids.lazy()
        .join(inbound, on="account_id", how="left")
        .join(outbound, on="account_id", how="left")
        .with_columns(
            pl.col("in_count", "out_count", "in_counterparties", "out_counterparties").fill_null(0),
            pl.col("in_value", "out_value").fill_null(0.0),
            pl.min_horizontal("in_first", "out_first").alias("first_ts"),
            pl.max_horizontal("in_last", "out_last").alias("last_ts"),
        )
        .drop("in_first", "out_first", "in_last", "out_last")
        .collect()
    )
    return out


def _flows(transfers: pl.DataFrame, accounts: list[str]) -> pl.DataFrame:
    """Aggregated transfers between each of ``accounts`` and its counterparties (:data:`FLOW_COLUMNS`)."""
    ids = pl.DataFrame({"account_id": accounts}, schema={"account_id": pl.String}).lazy()
    tx = transfers.lazy()

    def side(own: str, other: str, direction: str) -> pl.LazyFrame:
        return (
            tx.join(ids, left_on=own, right_on="account_id", how="inner")
            .group_by(own, other)
            .agg(pl.col("amount").sum().alias("value"), pl.len().cast(pl.Int64).alias("count"))
            .select(pl.col(own).alias("account_id"), pl.col(other).alias("counterparty"),
                    pl.lit(direction).alias("direction"), "value", "count")
        )

    return (
        pl.concat([side("dst_account", "src_account", "in"), side("src_account", "dst_account", "out")])
        .collect()
        .cast(FLOW_COLUMNS)
        .sort(["account_id", "direction", "value", "counterparty"], descending=[False, False, True, False])
    )


# --------------------------------------------------------------------------------------------
# writing


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    df.write_parquet(path)


def _write_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def _write_alerts(alerts: pl.DataFrame, run_dir: Path) -> None:
    alerts = alerts.select(list(ALERT_COLUMNS)).cast(ALERT_COLUMNS)
    _write_parquet(alerts, run_dir / "alerts.parquet")
    alerts.with_columns(pl.col("first_ts", "last_ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(run_dir / "alerts.csv")
    records = []
    for row in alerts.with_columns(pl.col("first_ts", "last_ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_dicts():
        try:
            row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
        except ValueError:
            row["reasons"] = []
        records.append(row)
    _write_json(records, run_dir / "alerts.json")


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with contextlib.suppress(OSError):
                fsync_file(p)
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(path)


# --------------------------------------------------------------------------------------------
# the stages that call the other modules


def _ingest(paths: list[Path], store, mapping: str | None, progress) -> dict[str, Any]:
    from mulegraph.ingest import ingest

    if not paths:
        return {"rows_read": 0, "accepted": 0, "quarantined": 0, "quarantined_by_rule": {}, "duplicates": 0,
                "files": [], "skipped_files": []}
    try:
        report = ingest(paths, store, mapping=mapping, progress=progress)
    except NothingNewError as err:  # every export was ingested before: not an error for a run
        report = getattr(err, "report", None)
        if report is not None:
            return report.to_dict()
        return {"rows_read": 0, "accepted": 0, "quarantined": 0, "quarantined_by_rule": {}, "duplicates": 0,
                "files": [], "skipped_files": [str(p) for p in paths]}
    return report.to_dict()


def _score(features: pl.DataFrame, prepared, model, run_id: str, config: Config) -> pl.DataFrame:
    from mulegraph.scoring import score as scoring

    scores = scoring.score_features(features, prepared, model, run_id=run_id, random_state=config.model.random_state)
    missing = [c for c in SCORE_SCHEMA if c not in scores.columns]
    if missing:
        raise RuntimeError(f"scoring returned no column(s) {', '.join(missing)}")
    return scores.select(list(SCORE_SCHEMA)).cast(SCORE_SCHEMA).sort("rank", nulls_last=True)


def _store_totals(manifest: list[dict]) -> dict[str, Any]:
    totals: dict[str, Any] = {"files": len(manifest), "rows_read": 0, "accepted": 0, "quarantined": 0, "duplicates": 0}
    by_rule: dict[str, int] = {}
    for entry in manifest:
        for k in ("rows_read", "accepted", "quarantined", "duplicates"):
            totals[k] += int(entry.get(k) or 0)
        for rule, n in (entry.get("quarantined_by_rule") or {}).items():
            by_rule[rule] = by_rule.get(rule, 0) + int(n)
    totals["quarantined_by_rule"] = dict(sorted(by_rule.items()))
    return totals


# --------------------------------------------------------------------------------------------


def run(
    config: Config | None = None,
    *,
    paths: Sequence[str | os.PathLike] | None = None,
    inbox: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    window: str | None = None,
    as_of: str | datetime | None = None,
    alert_budget: int | None = None,
    alert_threshold: float | None = None,
    mapping: str | None = None,
    force: bool = False,
    progress: Callable[[str, str], None] | None = None,
    fail_at: str | None = None,
    hooks: Mapping[str, Callable[[str], None]] | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Run the nightly pipeline once and return the finished run.

    Arguments left as None take their value from ``config`` (``[run]``, ``[store]``, ``[report]``).
    ``paths`` replaces the inbox. ``progress(stage, message)`` is called as stages start and end.
    ``fail_at`` (a stage name) raises :class:`InjectedFailure` at the end of that stage's work, and
    ``hooks[stage](run_dir)`` is called at the same point; both exist to test that a run that dies
    there leaves the previous run intact. ``now`` fixes the run id's time (tests).

    Raises :class:`~mulegraph.errors.NothingNewError` (exit code 3) when nothing changed since the
    latest run and ``force`` is false; :class:`~mulegraph.errors.InputError` when there are no
    exports and the store is empty or the window holds no transfers.
    """
    cfg = config or Config()
    cfg = cfg.replace(
        "run",
        inbox=None if inbox is None else str(inbox),
        runs_dir=None if runs_dir is None else str(runs_dir),
        model=None if model is None else str(model),
        window=window,
        alert_budget=alert_budget,
        alert_threshold=alert_threshold,
    )
    cfg = cfg.replace("store", path=None if store is None else str(store), mapping=mapping)
    if fail_at is not None and fail_at not in STAGES:
        raise InputError(f"The stage to fail at must be one of {', '.join(STAGES)}. Got '{fail_at}' instead.")
    if cfg.run.alert_budget < 0:
        raise InputError(f"The alert budget must be zero or more. Got {cfg.run.alert_budget} instead.")
    model_path = Path(cfg.run.model) if cfg.run.model else None
    if model_path is not None and not model_path.exists():
        raise InputError(f"the model folder '{model_path}' does not exist; train one with 'mulegraph train' or leave out --model.")
    if paths is not None:
        from mulegraph.ingest import resolve_inputs

        exports = resolve_inputs(list(paths))  # files, folders and globs; InputError when missing
    else:
        exports = find_exports(cfg.run.inbox)

    root = Path(cfg.run.runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda stage, message: None)
    with _lock(root):
        _clean_stale(root)
        started = now or datetime.now(timezone.utc)
        run_id = _new_run_id(root, started)
        tmp = root / f"{_TMP_PREFIX}{run_id}"
        tmp.mkdir()
        log = logging.getLogger(f"mulegraph.run.{run_id}")
        log.propagate = False
        log.setLevel(logging.INFO)
        handler = logging.FileHandler(tmp / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
        log.addHandler(handler)
        try:
            result = _run_stages(cfg, exports, model_path, as_of, force, tmp, root, run_id, started, log, say, fail_at, hooks or {})
        except BaseException as err:
            log.error("run failed: %s", type(err).__name__ if not isinstance(err, MulegraphError) else err)
            handler.close()
            log.removeHandler(handler)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        handler.close()
        log.removeHandler(handler)
        return result


def _run_stages(cfg, exports, model_path, as_of, force, tmp, root, run_id, started, log, say, fail_at, hooks) -> RunResult:
    from mulegraph.features import compute_features, prepare
    from mulegraph.io.store import Store

    seconds: dict[str, float] = {}
    stage_t0 = [time.perf_counter()]

    def begin(stage: str, message: str) -> None:
        stage_t0[0] = time.perf_counter()
        say(stage, message)
        log.info("stage %s: %s", stage, message)

    def end(stage: str, message: str = "done") -> None:
        seconds[stage] = round(time.perf_counter() - stage_t0[0], 4)
        log.info("stage %s %s in %.3f s", stage, message, seconds[stage])
        if stage in hooks:
            hooks[stage](str(tmp))
        if fail_at == stage:
            raise InjectedFailure(f"failure injected at stage {stage}")
        say(stage, message)

    log.info("run %s, mulegraph %s", run_id, __version__)
    previous = latest_run(root)
    prev_manifest = json.loads((previous / "manifest.json").read_text(encoding="utf-8")) if previous else None

    # 1. ingest --------------------------------------------------------------------------
    begin("ingest", f"{len(exports)} export file(s)")
    st = Store.open(cfg.store.path, create=True)
    inputs = [{"path": str(p), "sha256": _sha256_file(p), "bytes": p.stat().st_size} for p in exports]
    ingest_report = _ingest(exports, st, cfg.store.mapping, (lambda stage, f: say("ingest", f"{stage} {Path(f).name}")))
    store_manifest = st.manifest()
    if not store_manifest:
        raise InputError(
            f"no exports were found in the inbox '{cfg.run.inbox}' and the store is empty; "
            "put exports in the inbox or pass their paths."
        )
    decisions = st.decisions()
    win = st.time_window(cfg.run.window, as_of)
    model_hash = _hash_tree(model_path) if model_path else None
    settings = cfg.to_dict()
    for section, key in (("run", "inbox"), ("run", "runs_dir"), ("store", "path"), ("report", "pseudonym_key")):
        settings[section].pop(key, None)
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "store": sorted(str(e.get("sha256")) for e in store_manifest),
                "decisions": _frame_hash(decisions.sort(decisions.columns)) if decisions.height else None,
                "settings": settings,
                "window": [win.start.isoformat() if win.start else None, win.end.isoformat()],
                "model": model_hash,
                "version": __version__,
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    end("ingest", f"{ingest_report.get('accepted', 0)} new transfer(s) accepted")
    if not force and prev_manifest is not None and prev_manifest.get("fingerprint") == fingerprint:
        raise NothingNewError(
            f"nothing new since run {prev_manifest.get('run_id')}: no new exports and the same settings, "
            "decisions and model; the scores would be identical. Use --force to score again."
        )

    # 2. features ------------------------------------------------------------------------
    begin("features", f"window {win.describe()}")
    transfers = st.transfers(win)
    if transfers.height == 0:
        raise InputError(f"the window {win.describe()} holds no transfers; choose a longer --window or another --as-of.")
    prepared = prepare(transfers, cfg.features)
    feature_seconds: dict[str, float] = {}
    features = compute_features(prepared, cfg.features, timings=feature_seconds)
    features.write_parquet(tmp / "features.parquet")
    end("features", f"{features.height} account(s), {transfers.height} transfer(s)")

    # 3. score, alerts, lifecycle, flows, drift ------------------------------------------
    begin("score", "no-label mode" if model_path is None else "supervised model")
    mdl = None
    if model_path is not None:
        from mulegraph.scoring.model import load_model

        mdl = load_model(model_path)
    t_score = time.perf_counter()
    scores = _score(features, prepared, mdl, run_id, cfg)
    scores.write_parquet(tmp / "scores.parquet")
    t_alerts = time.perf_counter()

    latest_dec = _latest_decisions(decisions)
    cleared = latest_dec.filter(pl.col("decision") == "cleared")
    earlier = []
    for d in list_runs(root):
        with contextlib.suppress(OSError, ValueError, KeyError):
            m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
            earlier.append((datetime.fromisoformat(m["created_at"]), d))
    refs = _reference_scores(cleared, earlier, previous)
    prev_alerts = pl.read_parquet(previous / "alerts.parquet") if previous and (previous / "alerts.parquet").is_file() else None
    alerts, changes = compute_alerts(
        scores,
        budget=cfg.run.alert_budget,
        threshold=cfg.run.alert_threshold,
        previous_alerts=prev_alerts,
        decisions=latest_dec,
        reference_scores=refs,
        cleared_margin=cfg.run.cleared_margin,
    )
    alerts = alerts.join(scores.select("account_id", "reasons", "model_version", "run_id"), on="account_id", how="left")
    alerts = _reason_summary(alerts)
    alerts = alerts.join(_key_figures(transfers, alerts["account_id"]), on="account_id", how="left").sort("alert_rank")
    _write_alerts(alerts, tmp)
    changes.write_parquet(tmp / "alert_changes.parquet")
    flow_ids = alerts["account_id"].head(cfg.run.flow_accounts).to_list()
    _flows(transfers, flow_ids).write_parquet(tmp / "flows.parquet")
    from mulegraph.report.drift import feature_psi

    if previous is not None and (previous / "features.parquet").is_file():
        drift = feature_psi(pl.read_parquet(previous / "features.parquet"), features, warn_above=cfg.report.psi_warning)
    else:
        drift = feature_psi(features.head(0), features.head(0), features=[], warn_above=cfg.report.psi_warning)
    drift.write_parquet(tmp / "drift.parquet")
    score_seconds = {"scoring": round(t_alerts - t_score, 4), "alerts_flows_drift": round(time.perf_counter() - t_alerts, 4)}
    status_counts = {s: int(n) for s, n in changes.group_by("status").len().iter_rows()}
    counts = {
        "transfers_in_window": transfers.height,
        "accounts": features.height,
        "scored": int(scores["rank"].is_not_null().sum()),
        "alerts": alerts.height,
        "new": status_counts.get("new", 0),
        "persisting": status_counts.get("persisting", 0),
        "dropped": status_counts.get("dropped", 0),
        "suppressed": status_counts.get("suppressed", 0),
        "drift_warnings": int(drift["warning"].sum()) if drift.height else 0,
    }
    end("score", f"{counts['scored']} account(s) ranked, {counts['alerts']} alert(s)")

    model_version = scores["model_version"].drop_nulls().head(1).to_list()
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "created_at": started.astimezone(timezone.utc).isoformat(),
        "finished_at": None,
        "status": "ok",
        "mulegraph_version": __version__,
        "fingerprint": fingerprint,
        "forced": bool(force),
        "previous_run": prev_manifest.get("run_id") if prev_manifest else None,
        "window": {"spec": cfg.run.window, "start": win.start.isoformat() if win.start else None, "end": win.end.isoformat()},
        "inputs": inputs,
        "ingest": ingest_report,
        "store": _store_totals(store_manifest),
        "counts": counts,
        "model": {"path": str(model_path) if model_path else None, "sha256": model_hash,
                  "version": model_version[0] if model_version else None, "mode": "supervised" if model_path else "no-label"},
        "libraries": _libraries(),
        "seconds": seconds,
        "feature_seconds": {k: round(v, 4) for k, v in feature_seconds.items()},
        "score_seconds": score_seconds,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
    }
    _write_json(manifest, tmp / "manifest.json")
    _write_json({**cfg.to_dict(), "resolved": {"as_of": str(as_of) if as_of else None, "window": manifest["window"],
                                               "exports": [str(p) for p in exports], "force": bool(force)}},
                tmp / "config.json")

    # 4. report --------------------------------------------------------------------------
    begin("report", "rendering HTML and Markdown")
    from mulegraph.report import write_run_reports

    write_run_reports(tmp, cfg.report)
    end("report", "report.html, report.md")

    # 5. finalise ------------------------------------------------------------------------
    begin("finalise", "moving the run into place")
    manifest["finished_at"] = datetime.now(timezone.utc).isoformat()
    manifest["seconds"] = seconds
    _write_json(manifest, tmp / "manifest.json")
    _fsync_tree(tmp)
    end("finalise", "written")  # failure injection point: everything written, nothing published
    final = root / run_id
    os.replace(tmp, final)
    fsync_dir(root)
    _point_latest(root, run_id)
    log.info("run %s published", run_id)
    return RunResult(run_id=run_id, run_dir=final, manifest=manifest)
