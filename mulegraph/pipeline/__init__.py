"""The nightly run: ingest, features, score, report, publish; one run folder per run.

:func:`run` does, in order (:mod:`mulegraph.pipeline.nightly`):

1. **ingest** -- the exports in the inbox (or the paths given) go into the store; files ingested
   before are recognised by their content hash and skipped, so the same export never counts twice.
2. **features** -- every account active in the window ending at the newest transfer (or ``as_of``).
3. **score** -- with the configured model, or the no-label mode; then the alerts (the top accounts
   within the alert budget), their lifecycle against the previous run, key figures, the flows drawn
   in the report and the feature drift against the previous run (:mod:`mulegraph.pipeline.alerts`).
4. **report** -- ``report.html`` and ``report.md`` rendered from the files written so far.
5. **finalise** -- ``manifest.json`` and ``config.json``, then the run folder is moved into place and
   the ``latest`` pointer is switched to it.

Before any of it, the checks that cost nothing (window, as-of, mapping file, model, an empty start,
output folders: :mod:`mulegraph.pipeline.inputs`) refuse a run that would fail later.

Everything is written into a hidden folder ``<runs>/.tmp-<run_id>/`` that is renamed to
``<runs>/<run_id>/`` only once complete, and ``<runs>/latest`` (a symbolic link, or a one-line text
file where links are not possible) is replaced atomically after that. A run that fails or is killed
at any stage leaves the previous run and ``latest`` as they were; a failed run removes its hidden
folder, and the next run removes what a killed one left. One run at a time per runs folder (a lock
file; :mod:`mulegraph.pipeline.folders`).

**Nothing new.** Each run records a fingerprint of its inputs (:mod:`mulegraph.pipeline.fingerprint`):
the ingested files, the investigator decisions, the resolved settings, the window, the model files
and the mulegraph version. When a run ingests nothing and its fingerprint equals the latest run's,
the scores would be identical, so it stops with :class:`~mulegraph.core.errors.NothingNewError`
(exit code 3) and writes nothing; ``force=True`` (``--force``) scores again anyway, and gives
identical scores.

**Alert lifecycle.** Against the previous run, an alert is ``new`` or ``persisting``; a previous
alert that is not alerted now is ``dropped``. An account whose latest investigator decision is
``cleared`` is not alerted again (``suppressed``) unless its score rose by more than
``[run] cleared_margin`` above its score in the last run before the decision (or the previous run
when no run preceded the decision).

Run folder contents: ``scores.parquet`` (:data:`~mulegraph.core.schema.SCORE_SCHEMA`),
``features.parquet``, ``alerts.csv`` / ``alerts.parquet`` / ``alerts.json``
(:data:`~mulegraph.core.schema.ALERT_COLUMNS`), ``alert_changes.parquet``
(:data:`~mulegraph.core.schema.CHANGE_COLUMNS`), ``drift.parquet``, ``flows.parquet``
(:data:`~mulegraph.core.schema.FLOW_COLUMNS`), ``report.html``, ``report.md``, ``config.json``,
``manifest.json`` and ``run.log``. :func:`mulegraph.io.runs.load_run` reads one back.
"""

from __future__ import annotations

from mulegraph.core.schema import ALERT_COLUMNS, CHANGE_COLUMNS, FLOW_COLUMNS
from mulegraph.io.runs import latest_run, list_runs
from mulegraph.pipeline.alerts import compute_alerts
from mulegraph.pipeline.folders import RunBusyError
from mulegraph.pipeline.inputs import EXPORT_SUFFIXES, find_exports
from mulegraph.pipeline.nightly import STAGES, RunResult, run

__all__ = [
    "STAGES",
    "ALERT_COLUMNS",
    "CHANGE_COLUMNS",
    "FLOW_COLUMNS",
    "EXPORT_SUFFIXES",
    "RunResult",
    "RunBusyError",
    "run",
    "find_exports",
    "latest_run",
    "list_runs",
    "compute_alerts",
]
