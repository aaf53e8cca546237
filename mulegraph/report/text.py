"""The text formats of a report: Markdown for people, CSV and JSON for case-management systems.

* **Markdown** (:func:`render_markdown`): the HTML report's sections without pictures, for
  terminals and e-mail.
* **CSV** (:func:`render_csv`): one row per suspect with the columns :data:`CSV_COLUMNS`, in that
  order (timestamps ISO 8601 UTC, or dates ``YYYY-MM-DD`` when coarsened; empty cells for missing
  values). A text cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return) is written with a leading ``'``, and so is a text cell that
  starts with ``'`` (:func:`mulegraph.core.escape.neutralise_formulas`); :func:`read_csv_report`
  reads the file back with its documented types and removes that one ``'`` again.
* **JSON** (:func:`render_json`): the report document (:data:`~mulegraph.report.document.REPORT_JSON_SCHEMA`);
  JSON's own escapes carry every value exactly.

In Markdown every value from the data (account ids, reason texts, notes, rule and feature names) is
written with :func:`mulegraph.core.escape.markdown_text`: control characters as visible escapes,
``<``, ``>``, ``&`` as HTML entities and Markdown's control characters escaped, so no value can
carry HTML or change the document's structure.
"""

from __future__ import annotations

import io
import json
import os

import polars as pl

from mulegraph.core.escape import markdown_text, neutralise_formulas, strip_formula_guard
from mulegraph.core.schema import REPORT_CSV_SCHEMA
from mulegraph.io.runs import RunData
from mulegraph.report.coarsen import amount_expr, coarsen_text, date_expr, fmt_amount
from mulegraph.report.document import fmt_num, report_document, seeds_text
from mulegraph.report.pseudonym import Pseudonymiser

__all__ = ["CSV_SCHEMA", "CSV_COLUMNS", "render_markdown", "render_csv", "render_json", "read_csv_report"]

#: columns of the CSV report, in order (a stable contract for case-management imports): the run's
#: alert columns (:data:`mulegraph.core.schema.ALERT_COLUMNS`) without ``reasons``
CSV_SCHEMA: dict[str, pl.DataType] = REPORT_CSV_SCHEMA
CSV_COLUMNS: tuple[str, ...] = tuple(CSV_SCHEMA)

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


def render_json(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
                coarsen: bool = False) -> str:
    """The JSON report (:data:`REPORT_JSON_SCHEMA`); non-ASCII and control characters as JSON escapes."""
    doc = report_document(run, top=top, pseudonymiser=pseudonymiser, coarsen=coarsen)
    return json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=True) + "\n"


def render_csv(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
               coarsen: bool = False) -> str:
    """The CSV report: one row per suspect, :data:`CSV_COLUMNS` in order, formula cells guarded."""
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
    if coarsen:  # the suspects shown: a few hundred texts at most
        reasons = pl.Series("top_reason", [coarsen_text(t) for t in df["top_reason"].to_list()], dtype=pl.String)
        df = df.with_columns(amount_expr("in_value"), amount_expr("out_value"), date_expr("first_ts"),
                             date_expr("last_ts"), reasons)
    else:
        df = df.with_columns(pl.col("first_ts", "last_ts").dt.strftime(_TS_FORMAT))
    return neutralise_formulas(df).write_csv()


def read_csv_report(text_or_path: str | os.PathLike) -> pl.DataFrame:
    """Read a CSV report back with its documented types (:data:`CSV_SCHEMA`).

    The ``'`` that guards a formula-like text cell is removed (the values are those of the run);
    the timestamps of a coarsened report (dates) are read as midnight UTC of their day.
    """
    src = io.StringIO(text_or_path) if isinstance(text_or_path, str) and "\n" in text_or_path else text_or_path
    text_columns = [c for c, t in CSV_SCHEMA.items() if t == pl.String]
    df = pl.read_csv(src, schema_overrides={c: (pl.String if c in ("first_ts", "last_ts") else t) for c, t in CSV_SCHEMA.items()})
    df = strip_formula_guard(df, text_columns)

    def ts(c: str) -> pl.Expr:  # a date alone (coarsened) is midnight of that day
        full = pl.when(pl.col(c).str.len_chars() == 10).then(pl.col(c) + "T00:00:00.000000Z").otherwise(pl.col(c))
        return full.str.to_datetime(_TS_FORMAT, time_unit="us", time_zone="UTC").alias(c)

    return df.with_columns(ts("first_ts"), ts("last_ts")).select(list(CSV_COLUMNS))


_md = markdown_text


def render_markdown(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
                    psi_warning: float = 0.25, coarsen: bool = False) -> str:
    """The Markdown report (no pictures) for terminals and e-mail; every value from the run escaped."""
    doc = report_document(run, top=top, pseudonymiser=pseudonymiser, coarsen=coarsen)
    r, c = doc["run"], doc["counts"]
    amount = fmt_amount if coarsen else (lambda v: fmt_num(v, 2))
    lines = [f"# mulegraph run {_md(r['run_id'])}", ""]
    lines += [
        f"- Window: {_md(r['window_start'] or 'beginning')} to {_md(r['window_end'])}",
        f"- Mode: {_md(r['mode'])}" + (f" (model {_md(r['model_version'])})" if r["model_version"] else ""),
        f"- Accounts scored: {fmt_num(c.get('scored'))} of {fmt_num(c.get('accounts'))}; "
        f"transfers in window: {fmt_num(c.get('transfers_in_window'))}",
        f"- Alerts: {fmt_num(c.get('alerts'))} (new {c.get('new', 0)}, persisting {c.get('persisting', 0)}, "
        f"dropped {c.get('dropped', 0)}, suppressed after clearing {c.get('suppressed', 0)})",
        f"- Previous run: {_md(r['previous_run'] or 'none')}",
    ]
    if (seeds := seeds_text(r.get("seeds"))) is not None:
        lines.insert(lines.index(f"- Previous run: {_md(r['previous_run'] or 'none')}"), f"- Seeds: {_md(seeds)}")
    if doc["pseudonymised"]:
        lines.append("- Account identifiers are pseudonymised.")
    if doc["coarsened"]:
        lines.append("- Amounts are rounded to 2 significant figures and times cut to dates.")
    lines += ["", "## Data quality", "", "| | this run | store total |", "|---|---:|---:|"]
    tr, stt = doc["data_quality"]["this_run"], doc["data_quality"]["store"]
    for k in ("rows_read", "accepted", "quarantined", "duplicates"):
        lines.append(f"| {k.replace('_', ' ')} | {fmt_num(tr[k])} | {fmt_num(stt[k])} |")
    rules = sorted(k for k in set(tr["quarantined_by_rule"]) | set(stt["quarantined_by_rule"])
                   if tr["quarantined_by_rule"].get(k) or stt["quarantined_by_rule"].get(k))
    for rule in rules:
        lines.append(f"| quarantined: {_md(rule)} | {fmt_num(tr['quarantined_by_rule'].get(rule, 0))} | "
                     f"{fmt_num(stt['quarantined_by_rule'].get(rule, 0))} |")
    lines += ["", "## Top suspects", ""]
    if doc["suspects"]:
        lines += ["| # | account | score | status | in / out value | counterparties in / out | top reason |",
                  "|---:|---|---:|---|---:|---:|---|"]
        for s in doc["suspects"]:
            k = s["key_figures"]
            top_reason = s["reasons"][0]["text"] if s["reasons"] else "-"
            lines.append(
                f"| {s['alert_rank']} | {_md(s['account_id'])} | {s['score']:.3f} | {_md(s['status'])} | "
                f"{amount(k['in_value'])} / {amount(k['out_value'])} | "
                f"{k['in_counterparties']} / {k['out_counterparties']} | {_md(top_reason)} |"
            )
    else:
        lines.append("No alerts in this run.")
    lines += ["", "## Typology signals among the alerts", ""]
    if doc["signals"]:
        lines += ["| signal (reason family) | alerts | as first reason |", "|---|---:|---:|"]
        lines += [f"| {_md(s['family'])} | {s['alerts']} | {s['first_reason']} |" for s in doc["signals"]]
    else:
        lines.append("No reasons recorded.")
    lines += ["", "## Alert changes since the previous run", ""]
    changed = [ch for ch in doc["alert_changes"] if ch["status"] != "persisting"]
    if changed:
        lines += ["| account | change | rank | previous rank | note |", "|---|---|---:|---:|---|"]
        for ch in changed:
            lines.append(f"| {_md(ch['account_id'])} | {_md(ch['status'])} | {fmt_num(ch['rank'])} | "
                         f"{fmt_num(ch['previous_rank'])} | {_md(ch['note'] or '')} |")
    else:
        lines.append("No changes.")
    lines += ["", "## Feature drift against the previous run", ""]
    if doc["drift"]:
        warned = [d for d in doc["drift"] if d["warning"]]
        if warned:
            lines.append(f"**Warning:** {len(warned)} feature(s) shifted strongly (PSI > {psi_warning}): "
                         + ", ".join(_md(d["feature"]) for d in warned) + ".")
            lines.append("")
        lines += ["| feature | PSI |", "|---|---:|"]
        lines += [f"| {_md(d['feature'])} | {fmt_num(d['psi'], 3)} |" for d in doc["drift"][:15]]
    else:
        lines.append("No previous run to compare with.")
    lines.append("")
    return "\n".join(lines)
