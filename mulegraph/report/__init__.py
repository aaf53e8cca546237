"""Compliance reports: read a run folder and render it as HTML, Markdown, CSV or JSON.

A report computes nothing new: every figure comes from the files :func:`mulegraph.pipeline.run`
wrote (``manifest.json``, ``alerts.parquet``, ``alert_changes.parquet``, ``scores.parquet``,
``drift.parquet``, ``flows.parquet``), read by :func:`~mulegraph.io.runs.load_run`; this package only
selects, formats and draws them.

* :mod:`mulegraph.report.document`: the report as one JSON-ready document, its JSON Schema
  (``report.schema.json``) and :func:`validate_json`;
* :mod:`mulegraph.report.html`: the self-contained HTML file (a Jinja2 template with autoescape),
  with the pictures of :mod:`mulegraph.report.charts`;
* :mod:`mulegraph.report.text`: Markdown, CSV (:data:`CSV_COLUMNS`) and JSON;
* :mod:`mulegraph.report.writer`: :func:`render` in a chosen format and :func:`write_report`
  (atomic); :func:`write_run_reports` for the nightly run;
* :mod:`mulegraph.report.drift` (feature drift between runs), :mod:`mulegraph.report.pseudonym`
  (keyed pseudonyms of account ids) and :mod:`mulegraph.report.coarsen` (rounded amounts, dates
  without times).

With pseudonymisation on, every account identifier (suspects, counterparties in flow pictures,
alert changes) is replaced by its keyed pseudonym, consistently across the whole report; the key
must be at least 32 random bytes. Transfer ids in the reasons are kept, so a case system can still
find them. With coarsening on, amounts are rounded to 2 significant figures and timestamps cut to
dates, in every format.

Nothing from an export is trusted: HTML is autoescaped, Markdown cells escaped, CSV formula cells
guarded with a leading ``'`` and control characters shown as visible escapes
(:mod:`mulegraph.core.escape`).
"""

from __future__ import annotations

from mulegraph.io.runs import RunData, load_run, resolve_run_dir
from mulegraph.report.document import REPORT_JSON_SCHEMA, check_report_config, report_document, validate_json
from mulegraph.report.html import render_html
from mulegraph.report.text import CSV_COLUMNS, CSV_SCHEMA, read_csv_report, render_csv, render_json, render_markdown
from mulegraph.report.writer import REPORT_FORMATS, render, report_format, write_report, write_run_reports

__all__ = [
    "REPORT_FORMATS",
    "CSV_COLUMNS",
    "CSV_SCHEMA",
    "REPORT_JSON_SCHEMA",
    "RunData",
    "resolve_run_dir",
    "load_run",
    "report_document",
    "check_report_config",
    "render_html",
    "render_markdown",
    "render_csv",
    "render_json",
    "render",
    "report_format",
    "write_report",
    "write_run_reports",
    "validate_json",
    "read_csv_report",
]
