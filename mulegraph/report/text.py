"""The text formats of a report: Markdown for people, CSV and JSON for case-management systems.

* **Markdown** (:func:`render_markdown`): the HTML report's sections without pictures, for
  terminals and e-mail.
* **CSV** (:func:`render_csv`): one row per suspect with the columns :data:`CSV_COLUMNS`, in that
  order (timestamps ISO 8601 UTC, empty cells for missing values); :func:`read_csv_report` reads it
  back with its documented types.
* **JSON** (:func:`render_json`): the report document (:data:`~mulegraph.report.document.REPORT_JSON_SCHEMA`).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import polars as pl

from mulegraph.core.schema import REPORT_CSV_SCHEMA
from mulegraph.io.runs import RunData
from mulegraph.report.document import fmt_num, report_document
from mulegraph.report.pseudonym import Pseudonymiser

__all__ = ["CSV_SCHEMA", "CSV_COLUMNS", "render_markdown", "render_csv", "render_json", "read_csv_report"]

#: columns of the CSV report, in order (a stable contract for case-management imports): the run's
#: alert columns (:data:`mulegraph.core.schema.ALERT_COLUMNS`) without ``reasons``
CSV_SCHEMA: dict[str, pl.DataType] = REPORT_CSV_SCHEMA
CSV_COLUMNS: tuple[str, ...] = tuple(CSV_SCHEMA)


def render_json(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None) -> str:
    """The JSON report (:data:`REPORT_JSON_SCHEMA`)."""
    return json.dumps(report_document(run, top=top, pseudonymiser=pseudonymiser), indent=2, allow_nan=False) + "\n"


def render_csv(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None) -> str:
    """The CSV report: one row per suspect, :data:`CSV_COLUMNS` in order."""
    ps = pseudonymiser or Pseudonymiser(None)
    df = run.alerts.sort("alert_rank")
    if top is not None:
        df = df.head(top)
    for c, t in CSV_SCHEMA.items():
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=t).alias(c))
    df = df.select(list(CSV_COLUMNS)).cast(CSV_SCHEMA)
    if ps.active:
        df = df.with_columns(ps.series(df["account_id"]).alias("account_id"))
    df = df.with_columns(pl.col("first_ts", "last_ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    return df.write_csv()


def read_csv_report(text_or_path: str | os.PathLike) -> pl.DataFrame:
    """Read a CSV report back with its documented types (:data:`CSV_SCHEMA`)."""
    src = io.StringIO(text_or_path) if isinstance(text_or_path, str) and "\n" in text_or_path else text_or_path
    df = pl.read_csv(src, schema_overrides={c: (pl.String if c in ("first_ts", "last_ts") else t) for c, t in CSV_SCHEMA.items()})
    return df.with_columns(
        pl.col("first_ts", "last_ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.6fZ", time_unit="us", time_zone="UTC")
    ).select(list(CSV_COLUMNS))


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
                    psi_warning: float = 0.25) -> str:
    """The Markdown report (no pictures) for terminals and e-mail."""
    doc = report_document(run, top=top, pseudonymiser=pseudonymiser)
    r, c = doc["run"], doc["counts"]
    lines = [f"# mulegraph run {r['run_id']}", ""]
    lines += [
        f"- Window: {r['window_start'] or 'beginning'} to {r['window_end']}",
        f"- Mode: {r['mode']}" + (f" (model {r['model_version']})" if r["model_version"] else ""),
        f"- Accounts scored: {fmt_num(c.get('scored'))} of {fmt_num(c.get('accounts'))}; "
        f"transfers in window: {fmt_num(c.get('transfers_in_window'))}",
        f"- Alerts: {fmt_num(c.get('alerts'))} (new {c.get('new', 0)}, persisting {c.get('persisting', 0)}, "
        f"dropped {c.get('dropped', 0)}, suppressed after clearing {c.get('suppressed', 0)})",
        f"- Previous run: {r['previous_run'] or 'none'}",
    ]
    if doc["pseudonymised"]:
        lines.append("- Account identifiers are pseudonymised.")
    lines += ["", "## Data quality", "", "| | this run | store total |", "|---|---:|---:|"]
    tr, stt = doc["data_quality"]["this_run"], doc["data_quality"]["store"]
    for k in ("rows_read", "accepted", "quarantined", "duplicates"):
        lines.append(f"| {k.replace('_', ' ')} | {fmt_num(tr[k])} | {fmt_num(stt[k])} |")
    rules = sorted(k for k in set(tr["quarantined_by_rule"]) | set(stt["quarantined_by_rule"])
                   if tr["quarantined_by_rule"].get(k) or stt["quarantined_by_rule"].get(k))
    for rule in rules:
        lines.append(f"| quarantined: {rule} | {fmt_num(tr['quarantined_by_rule'].get(rule, 0))} | "
                     f"{fmt_num(stt['quarantined_by_rule'].get(rule, 0))} |")
    lines += ["", "## Top suspects", ""]
    if doc["suspects"]:
        lines += ["| # | account | score | status | in / out value | counterparties in / out | top reason |",
                  "|---:|---|---:|---|---:|---:|---|"]
        for s in doc["suspects"]:
            k = s["key_figures"]
            top_reason = s["reasons"][0]["text"] if s["reasons"] else "-"
            lines.append(
                f"| {s['alert_rank']} | {_md_cell(s['account_id'])} | {s['score']:.3f} | {s['status']} | "
                f"{fmt_num(k['in_value'], 2)} / {fmt_num(k['out_value'], 2)} | "
                f"{k['in_counterparties']} / {k['out_counterparties']} | {_md_cell(top_reason)} |"
            )
    else:
        lines.append("No alerts in this run.")
    lines += ["", "## Typology signals among the alerts", ""]
    if doc["signals"]:
        lines += ["| signal (reason family) | alerts | as first reason |", "|---|---:|---:|"]
        lines += [f"| {s['family']} | {s['alerts']} | {s['first_reason']} |" for s in doc["signals"]]
    else:
        lines.append("No reasons recorded.")
    lines += ["", "## Alert changes since the previous run", ""]
    changed = [ch for ch in doc["alert_changes"] if ch["status"] != "persisting"]
    if changed:
        lines += ["| account | change | rank | previous rank | note |", "|---|---|---:|---:|---|"]
        for ch in changed:
            lines.append(f"| {_md_cell(ch['account_id'])} | {ch['status']} | {fmt_num(ch['rank'])} | "
                         f"{fmt_num(ch['previous_rank'])} | {_md_cell(ch['note'] or '')} |")
    else:
        lines.append("No changes.")
    lines += ["", "## Feature drift against the previous run", ""]
    if doc["drift"]:
        warned = [d for d in doc["drift"] if d["warning"]]
        if warned:
            lines.append(f"**Warning:** {len(warned)} feature(s) shifted strongly (PSI > {psi_warning}): "
                         + ", ".join(d["feature"] for d in warned) + ".")
            lines.append("")
        lines += ["| feature | PSI |", "|---|---:|"]
        lines += [f"| {d['feature']} | {fmt_num(d['psi'], 3)} |" for d in doc["drift"][:15]]
    else:
        lines.append("No previous run to compare with.")
    lines.append("")
    return "\n".join(lines)
