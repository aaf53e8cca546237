"""The nightly run: the one place that knows the order of the stages.

:func:`run` checks its inputs (:func:`~mulegraph.pipeline.inputs.check_inputs`), takes the runs
folder's lock, and runs the stages of :data:`STAGES` in order inside a hidden work folder:

1. ``ingest``: the exports into the store; the input fingerprint. A run that ingested nothing and
   whose fingerprint equals the latest run's stops here (nothing new).
2. ``features``: the window's transfers, prepared, and their features
   (:func:`~mulegraph.features.build.window_features`), on the engine of ``[engine]`` (the shards
   done / total go to the progress display).
3. ``score``: the seeds of a model's closeness features (:mod:`mulegraph.scoring.seeds`: the
   model's training labels when this is its training store, the store's investigator decisions,
   ``known``, consortium matches; counted in the manifest's ``seeds``), scores, alerts and their
   lifecycle, key figures, flows, drift; then the manifest.
4. ``report``: ``report.html`` and ``report.md``.
5. ``finalise``: the manifest's end time, everything flushed to disk; then the work folder is
   published and ``latest`` switched to it.

Each stage is one module-level function ``_stage_<name>(state)``, so that tests can make any of
them fail or stop the process at its end (``tests/conftest.py``: ``fail_at_stage``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import disk_full_names
from mulegraph.core.config import Config
from mulegraph.core.errors import InputError, MulegraphError, NothingNewError
from mulegraph.core.schema import SCORE_SCHEMA, as_reasons
from mulegraph.core.version import __version__
from mulegraph.core.window import TimeWindow
from mulegraph.features.build import WindowFeatures, window_features
from mulegraph.ingest import ingest
from mulegraph.ingest.interrupt import interrupt_report
from mulegraph.io.runs import ParquetChunks, latest_run
from mulegraph.io.store import Store
from mulegraph.pipeline.alerts import (
    cleared_reference_scores,
    compute_alerts,
    flows,
    key_figures,
    latest_decisions,
    read_previous_alerts,
    reason_summary,
    run_times,
    write_alerts,
)
from mulegraph.pipeline.fingerprint import hash_tree, input_files, libraries, run_fingerprint, store_totals
from mulegraph.pipeline.folders import clean_stale, fsync_tree, new_run_id, new_work_folder, publish, runs_lock, write_json
from mulegraph.pipeline.inputs import RunInputs, check_inputs
from mulegraph.report.writer import write_run_reports
from mulegraph.report.drift import feature_psi
from mulegraph.scoring.blend import parse_blend
from mulegraph.scoring.score import ScoreOptions, columns_read, keep_columns_read, score_features
from mulegraph.scoring.seeds import SeedInputs, Seeds, scoring_seeds
from mulegraph.scoring.signals import ranked_rows

__all__ = ["STAGES", "RunResult", "run"]

#: the stages of a run, in order
STAGES: tuple[str, ...] = ("ingest", "features", "score", "report", "finalise")


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


@dataclass
class _State:
    """What one run carries from stage to stage."""

    config: Config
    inputs: RunInputs
    as_of: str | datetime | None
    force: bool
    root: Path
    work: Path
    run_id: str
    started: datetime
    log: logging.Logger
    say: Callable[[str, str], None]
    seconds: dict[str, float] = field(default_factory=dict)
    previous: Path | None = None
    prev_manifest: dict[str, Any] | None = None
    store: Store | None = None
    input_files: list[dict[str, Any]] = field(default_factory=list)
    ingest_report: dict[str, Any] = field(default_factory=dict)
    store_manifest: list[dict[str, Any]] = field(default_factory=list)
    decisions: pl.DataFrame | None = None
    window: TimeWindow | None = None
    model_hash: str | None = None
    seed_inputs: SeedInputs = field(default_factory=SeedInputs)
    seeds: Seeds | None = None
    fingerprint: str = ""
    #: the window's transfers and features: held from the features stage to the end of scoring only
    wf: WindowFeatures | None = None
    #: what computed the features and how long each step took (for the manifest)
    feature_engine: dict[str, Any] = field(default_factory=dict)
    feature_timings: dict[str, float] = field(default_factory=dict)
    model_version: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    score_seconds: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    _t0: float = 0.0

    def begin(self, stage: str, message: str) -> None:
        self._t0 = time.perf_counter()
        self.say(stage, message)
        self.log.info("stage %s: %s", stage, message)

    def end(self, stage: str, message: str = "done") -> None:
        self.seconds[stage] = round(time.perf_counter() - self._t0, 4)
        self.log.info("stage %s %s in %.3f s", stage, message, self.seconds[stage])
        self.say(stage, message)


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
    now: datetime | None = None,
    known: str | os.PathLike | None = None,
    shared_lists: Sequence[str | os.PathLike] | None = None,
    key_file: str | os.PathLike | None = None,
    elsewhere_blend: str | float | None = None,
) -> RunResult:
    """Run the nightly pipeline once and return the finished run.

    Arguments left as None take their value from ``config`` (``[run]``, ``[store]``, ``[report]``).
    ``paths`` replaces the inbox. ``progress(stage, message)`` is called as each stage starts and
    again as it ends. ``now`` fixes the run id's time. ``known`` (a ``--known`` file),
    ``shared_lists`` and ``key_file`` (consortium lists and their key; ``[run] known``,
    ``shared_lists``, ``key_file`` when None) add seeds to a model's closeness features
    (:class:`~mulegraph.scoring.seeds.SeedInputs`); they need a model. ``elsewhere_blend``
    (``[run] elsewhere_blend`` when None): how a model scoring a store it was not trained on is
    blended with the local no-label score (:mod:`mulegraph.scoring.blend`).

    Everything that can be checked without work is checked before the run ingests anything or
    creates a folder (:func:`~mulegraph.pipeline.inputs.check_inputs`), the model included.

    Raises :class:`~mulegraph.core.errors.NothingNewError` (exit code 3) when nothing changed since
    the latest run and ``force`` is false; :class:`~mulegraph.core.errors.InputError` for a bad
    argument or when there are no exports and the store is empty;
    :class:`~mulegraph.core.errors.FeatureError` when the window holds no transfers;
    :class:`~mulegraph.pipeline.folders.RunBusyError` when another run holds the runs folder.
    """
    cfg = (config or Config()).replace(
        "run",
        inbox=None if inbox is None else str(inbox),
        runs_dir=None if runs_dir is None else str(runs_dir),
        model=None if model is None else str(model),
        window=window,
        alert_budget=alert_budget,
        alert_threshold=alert_threshold,
        known=None if known is None else str(known),
        shared_lists=tuple(str(p) for p in shared_lists) if shared_lists else None,
        key_file=None if key_file is None else str(key_file),
        elsewhere_blend=None if elsewhere_blend is None else parse_blend(elsewhere_blend, "--elsewhere-blend"),
    )
    parse_blend(cfg.run.elsewhere_blend, "[run] elsewhere_blend")  # a bad setting fails before any work
    cfg = cfg.replace("store", path=None if store is None else str(store), mapping=mapping)
    inputs = check_inputs(cfg, paths=paths, as_of=as_of, mapping_given=mapping is not None)
    # bad files or keys fail before any work
    seed_inputs = SeedInputs.load(cfg.run.known, list(cfg.run.shared_lists) or None, cfg.run.key_file)
    if seed_inputs.given and inputs.model is None:
        raise InputError("--known and --shared-list need a model (--model or [run] model): the no-label rules do not use known accounts.")

    root = Path(cfg.run.runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    with runs_lock(root):
        clean_stale(root)
        started = now or datetime.now(timezone.utc)
        run_id = new_run_id(root, started)
        work = new_work_folder(root, run_id)
        try:
            with _run_log(work, run_id) as log:
                state = _State(config=cfg, inputs=inputs, as_of=as_of, force=force, root=root, work=work,
                               run_id=run_id, started=started, log=log, say=progress or (lambda stage, message: None),
                               seed_inputs=seed_inputs)
                try:
                    # a full disk names the runs folder (the store, during ingest); Ctrl-C says
                    # which exports this run committed to the store before it
                    published = "no run was published, earlier runs are as they were"
                    with interrupt_report(cfg.store.path, after=published), disk_full_names(root):
                        return _run_stages(state)
                except BaseException as err:
                    log.error("run failed: %s", err if isinstance(err, MulegraphError) else type(err).__name__)
                    raise
        finally:
            if work.exists():  # not published: a failed run leaves nothing behind
                shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _run_log(work: Path, run_id: str) -> Iterator[logging.Logger]:
    """A logger writing ``run.log`` in the work folder (account ids are never logged)."""
    log = logging.getLogger(f"mulegraph.run.{run_id}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = logging.FileHandler(work / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    log.addHandler(handler)
    try:
        yield log
    finally:
        handler.close()
        log.removeHandler(handler)


def _run_stages(state: _State) -> RunResult:
    state.log.info("run %s, mulegraph %s", state.run_id, __version__)
    state.previous = latest_run(state.root)
    if state.previous is not None:
        state.prev_manifest = json.loads((state.previous / "manifest.json").read_text(encoding="utf-8"))
    _stage_ingest(state)
    _stop_if_nothing_new(state)
    _stage_features(state)
    _stage_score(state)
    _write_manifest(state)
    _stage_report(state)
    _stage_finalise(state)
    final = publish(state.work, state.root, state.run_id)
    state.log.info("run %s published", state.run_id)
    return RunResult(run_id=state.run_id, run_dir=final, manifest=state.manifest)


# --------------------------------------------------------------------------------------------
# the stages, in order


def _stage_ingest(state: _State) -> None:
    """The exports into the store; the store's totals, the decisions, the window, the fingerprint."""
    cfg, exports = state.config, state.inputs.exports
    state.begin("ingest", f"{len(exports)} export file(s)")
    st = state.store = Store.open(cfg.store.path, create=True)
    state.input_files = input_files(exports)
    with disk_full_names(st.path):
        state.ingest_report = _ingest(exports, st, cfg.store.mapping,
                                      lambda stage, f: state.say("ingest", f"{stage} {Path(f).name}"))
    state.store_manifest = st.manifest()
    if not state.store_manifest:
        raise InputError(
            f"no exports were found in the inbox '{cfg.run.inbox}' and the store is empty; "
            "put exports in the inbox or pass their paths."
        )
    state.decisions = st.decisions()
    state.window = st.time_window(cfg.run.window, state.as_of)
    model_path = state.inputs.model_path
    state.model_hash = hash_tree(model_path) if model_path else None
    state.fingerprint = run_fingerprint(state.store_manifest, state.decisions, cfg, state.window, state.model_hash,
                                        seeds=state.seed_inputs.fingerprint())
    state.end("ingest", f"{state.ingest_report.get('accepted', 0)} new transfer(s) accepted")


def _stop_if_nothing_new(state: _State) -> None:
    prev = state.prev_manifest
    if not state.force and prev is not None and prev.get("fingerprint") == state.fingerprint:
        raise NothingNewError(
            f"nothing new since run {prev.get('run_id')}: no new exports and the same settings, "
            "decisions and model; the scores would be identical. Use --force to score again."
        )


def _stage_features(state: _State) -> None:
    """The window's transfers, prepared once, and every account's features (``features.parquet``)."""
    state.begin("features", f"window {state.window.describe()}")
    # every account's features are written out as soon as they are computed, and only the columns
    # scoring reads (the rules', the model's: about a fifth) are held on, before the window is read;
    # the drift reads the others from features.parquet
    keep = keep_columns_read(columns_read(state.inputs.model))

    def write_and_keep(features: pl.DataFrame) -> pl.DataFrame:
        features.write_parquet(state.work / "features.parquet")
        return keep(features)

    # lean: by shards, the window is held with the columns scoring reads over every transfer; the
    # full rows of the few accounts behind evidence, key figures and flows are read when needed
    wf = state.wf = window_features(state.store, window=state.window, config=state.config, lean=True,
                                    progress=lambda message: state.say("features", message), then=write_and_keep)
    state.feature_engine, state.feature_timings = wf.engine, wf.timings
    state.end("features", f"{wf.features.height} account(s), {wf.n_transfers} transfer(s)")


def _stage_score(state: _State) -> None:
    """Scores, alerts and their lifecycle, key figures, flows and drift; the run's counts."""
    cfg, wf, work = state.config, state.wf, state.work
    state.begin("score", "no-label mode" if state.inputs.model is None else "supervised model")
    t_score = time.perf_counter()
    # only the ranked accounts' features are held from here (hubs are not ranked); the drift below
    # reads every account's from features.parquet, written by the features stage
    prepared, n_accounts, n_transfers = wf.prepared, wf.features.height, wf.n_transfers
    ranked = ranked_rows(wf.features)  # the columns scoring reads: the features stage kept only those
    state.wf = wf = None
    if state.inputs.model is not None:
        # a run --as-of a past date reads the decisions taken by then, not later ones
        decided_by = state.window.end if state.as_of is not None else None
        state.seeds = scoring_seeds(state.inputs.model, state.store, prepared.accounts["account_id"],
                                    decisions=state.decisions, inputs=state.seed_inputs, decided_by=decided_by)
    # the scores are written as their reasons are built (at bank scale the reasons of every account
    # are the largest column of the run); what follows reads the ranks, and the alerts' reasons
    with ParquetChunks(work / "scores.parquet", SCORE_SCHEMA) as sink:
        scores = score_features(ranked, prepared, state.inputs.model, run_id=state.run_id,
                                random_state=cfg.model.random_state, seeds=state.seeds, sink=sink.write,
                                options=ScoreOptions(elsewhere_blend=parse_blend(cfg.run.elsewhere_blend)))
    del ranked
    missing = [c for c in SCORE_SCHEMA if c != "reasons" and c not in scores.columns]
    if missing:
        raise RuntimeError(f"scoring returned no column(s) {', '.join(missing)}")
    if not scores["rank"].is_sorted(nulls_last=True):  # written in rank order, as score_features returns them
        raise RuntimeError("scoring returned the accounts out of rank order")
    versions = scores["model_version"].drop_nulls().head(1).to_list()
    state.model_version = versions[0] if versions else None
    t_alerts = time.perf_counter()

    decisions = latest_decisions(state.decisions)
    cleared = decisions.filter(pl.col("decision") == "cleared")
    refs = cleared_reference_scores(cleared, run_times(state.root), state.previous)
    alerts, changes = compute_alerts(
        scores,
        budget=cfg.run.alert_budget,
        threshold=cfg.run.alert_threshold,
        previous_alerts=read_previous_alerts(state.previous),
        decisions=decisions,
        reference_scores=refs,
        cleared_margin=cfg.run.cleared_margin,
    )
    alerted = (pl.scan_parquet(work / "scores.parquet")
               .filter(pl.col("account_id").is_in(alerts["account_id"].implode()))
               .select("account_id", "reasons", "model_version", "run_id").collect())
    alerts = as_reasons(alerts.join(alerted, on="account_id", how="left"))
    alerts = reason_summary(alerts)
    alerts = alerts.join(key_figures(prepared.canonical(alerts["account_id"]), alerts["account_id"]), on="account_id", how="left")
    alerts = write_alerts(alerts.sort("alert_rank"), work)
    changes.write_parquet(work / "alert_changes.parquet")
    flow_ids = alerts["account_id"].head(cfg.run.flow_accounts).to_list()
    flows(prepared.canonical(flow_ids), flow_ids).write_parquet(work / "flows.parquet")
    features = pl.scan_parquet(work / "features.parquet")
    if state.previous is not None and (state.previous / "features.parquet").is_file():
        drift = feature_psi(pl.scan_parquet(state.previous / "features.parquet"), features,
                            warn_above=cfg.report.psi_warning)
    else:
        drift = feature_psi(features, features, features=[], warn_above=cfg.report.psi_warning)
    drift.write_parquet(work / "drift.parquet")
    state.score_seconds = {"scoring": round(t_alerts - t_score, 4),
                           "alerts_flows_drift": round(time.perf_counter() - t_alerts, 4)}
    by_status = {s: int(n) for s, n in changes.group_by("status").len().iter_rows()}
    state.counts = {
        "transfers_in_window": n_transfers,
        "accounts": n_accounts,
        "scored": int(scores["rank"].is_not_null().sum()),
        "alerts": alerts.height,
        "new": by_status.get("new", 0),
        "persisting": by_status.get("persisting", 0),
        "dropped": by_status.get("dropped", 0),
        "suppressed": by_status.get("suppressed", 0),
        "drift_warnings": int(drift["warning"].sum()) if drift.height else 0,
    }
    state.end("score", f"{state.counts['scored']} account(s) ranked, {state.counts['alerts']} alert(s)")


def _write_manifest(state: _State) -> None:
    """``manifest.json`` (what the run did, with what) and ``config.json`` (the resolved settings)."""
    cfg, win, prev = state.config, state.window, state.prev_manifest
    model_path = state.inputs.model_path
    state.manifest = {
        "run_id": state.run_id,
        "created_at": state.started.astimezone(timezone.utc).isoformat(),
        "finished_at": None,
        "status": "ok",
        "mulegraph_version": __version__,
        "fingerprint": state.fingerprint,
        "forced": bool(state.force),
        "previous_run": prev.get("run_id") if prev else None,
        "window": {"spec": cfg.run.window, "start": win.start.isoformat() if win.start else None,
                   "end": win.end.isoformat()},
        "inputs": state.input_files,
        "ingest": state.ingest_report,
        "store": store_totals(state.store_manifest),
        "counts": state.counts,
        "model": {"path": str(model_path) if model_path else None, "sha256": state.model_hash,
                  "version": state.model_version,
                  "mode": "supervised" if model_path else "no-label"},
        "seeds": state.seeds.summary() if state.seeds is not None else None,
        "libraries": libraries(),
        "engine": state.feature_engine,
        "seconds": state.seconds,
        "feature_seconds": {k: round(v, 4) for k, v in state.feature_timings.items()},
        "score_seconds": state.score_seconds,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
    }
    write_json(state.manifest, state.work / "manifest.json")
    resolved = {"as_of": str(state.as_of) if state.as_of else None, "window": state.manifest["window"],
                "exports": [str(p) for p in state.inputs.exports], "force": bool(state.force)}
    write_json({**cfg.to_dict(), "resolved": resolved}, state.work / "config.json")


def _stage_report(state: _State) -> None:
    """``report.html`` and ``report.md`` rendered from the files written so far."""
    state.begin("report", "rendering HTML and Markdown")
    write_run_reports(state.work, state.config.report)
    state.end("report", "report.html, report.md")


def _stage_finalise(state: _State) -> None:
    """The manifest's end time and seconds; everything flushed to disk, nothing published yet."""
    state.begin("finalise", "moving the run into place")
    state.manifest["finished_at"] = datetime.now(timezone.utc).isoformat()
    state.manifest["seconds"] = state.seconds
    write_json(state.manifest, state.work / "manifest.json")
    fsync_tree(state.work)
    state.end("finalise", "written")


def _ingest(paths: list[Path], store: Store, mapping: str | None, progress) -> dict[str, Any]:
    """Ingest ``paths``; exports ingested before are skipped, not an error for a run."""
    if not paths:
        return _nothing_ingested([])
    try:
        report = ingest(paths, store, mapping=mapping, progress=progress)
    except NothingNewError as err:  # every export was ingested before
        report = getattr(err, "report", None)
        if report is None:
            return _nothing_ingested([str(p) for p in paths])
    return report.to_dict()


def _nothing_ingested(skipped: list[str]) -> dict[str, Any]:
    return {"rows_read": 0, "accepted": 0, "quarantined": 0, "quarantined_by_rule": {}, "duplicates": 0,
            "files": [], "skipped_files": skipped}
