"""Compliance reports: read a run folder and render it as HTML, Markdown, CSV or JSON.

A report computes nothing new: every figure comes from the files :func:`mulegraph.pipeline.run`
wrote (``manifest.json``, ``alerts.parquet``, ``alert_changes.parquet``, ``scores.parquet``,
``drift.parquet``, ``flows.parquet``); this module only selects, formats and draws them.

* **HTML** (:func:`render_html`): one self-contained file -- styles inline, charts embedded as
  base64 SVG (vector, text kept as text), no external link, font, script or image -- that reads
  well on screen and on paper. It
  holds the run summary, data quality, the top suspects with score, reasons and key figures, the
  count of alerts per typology signal (reason family), the score distribution, a flow picture for
  each of the first ten suspects, the alert changes since the previous run, and the feature drift
  against the previous run (population stability index, flagged above ``[report] psi_warning``).
* **Markdown** (:func:`render_markdown`): the same without pictures, for terminals and e-mail.
* **CSV** (:func:`render_csv`): one row per suspect with the columns :data:`CSV_COLUMNS`, in that
  order (timestamps ISO 8601 UTC, empty cells for missing values).
* **JSON** (:func:`render_json`): one object that follows :data:`REPORT_JSON_SCHEMA`;
  :func:`validate_json` checks a document against it.

With pseudonymisation on, every account identifier (suspects, counterparties in flow pictures,
alert changes) is replaced by its keyed pseudonym (:mod:`mulegraph.pseudonym`), consistently across
the whole report. Transfer ids in the reasons are kept, so a case system can still find them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import write_text_atomic
from mulegraph.core.config import ReportConfig
from mulegraph.core.errors import ConfigError, InputError
from mulegraph.pipeline import ALERT_COLUMNS, CHANGE_COLUMNS, FLOW_COLUMNS
from mulegraph.io.runs import latest_run, resolve_run_dir
from mulegraph.report.pseudonym import Pseudonymiser

__all__ = [
    "REPORT_FORMATS",
    "CSV_COLUMNS",
    "CSV_SCHEMA",
    "REPORT_JSON_SCHEMA",
    "RunData",
    "resolve_run_dir",
    "load_run",
    "report_document",
    "render_html",
    "render_markdown",
    "render_csv",
    "render_json",
    "render",
    "write_report",
    "write_run_reports",
    "validate_json",
]

REPORT_FORMATS: tuple[str, ...] = ("html", "md", "csv", "json")

#: columns of the CSV report, in order (a stable contract for case-management imports): the run's
#: alert columns (:data:`mulegraph.pipeline.ALERT_COLUMNS`) without the JSON ``reasons``
CSV_SCHEMA: dict[str, pl.DataType] = {k: v for k, v in ALERT_COLUMNS.items() if k != "reasons"}
CSV_COLUMNS: tuple[str, ...] = tuple(CSV_SCHEMA)

_NUM = ["number"]
_NUM_OR_NULL = ["number", "null"]
_INT_OR_NULL = ["integer", "null"]
_STR_OR_NULL = ["string", "null"]

_REASON_SCHEMA = {
    "type": "object",
    "required": ["code", "feature", "family", "text"],
    "properties": {
        "code": {"type": "string"},
        "feature": {"type": _STR_OR_NULL},
        "family": {"type": _STR_OR_NULL},
        "text": {"type": "string"},
        "value": {"type": ["number", "string", "boolean", "null"]},
        "percentile": {"type": _NUM_OR_NULL},
        "txn_ids": {"type": "array", "items": {"type": "string"}},
    },
}

_COUNTS = {
    "type": "object",
    "required": ["rows_read", "accepted", "quarantined", "duplicates", "quarantined_by_rule"],
    "properties": {
        "rows_read": {"type": "integer", "minimum": 0},
        "accepted": {"type": "integer", "minimum": 0},
        "quarantined": {"type": "integer", "minimum": 0},
        "duplicates": {"type": "integer", "minimum": 0},
        "quarantined_by_rule": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    },
}

#: JSON Schema (draft 2020-12 subset) of the JSON report
REPORT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mulegraph run report",
    "type": "object",
    "required": ["schema_version", "run", "pseudonymised", "data_quality", "counts", "suspects", "signals",
                 "alert_changes", "drift"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "integer", "enum": [1]},
        "pseudonymised": {"type": "boolean"},
        "run": {
            "type": "object",
            "required": ["run_id", "created_at", "window_start", "window_end", "mode", "model_version",
                         "mulegraph_version", "previous_run"],
            "properties": {
                "run_id": {"type": "string"},
                "created_at": {"type": "string"},
                "finished_at": {"type": _STR_OR_NULL},
                "window_start": {"type": _STR_OR_NULL},
                "window_end": {"type": "string"},
                "mode": {"type": "string", "enum": ["supervised", "no-label"]},
                "model_version": {"type": _STR_OR_NULL},
                "mulegraph_version": {"type": "string"},
                "previous_run": {"type": _STR_OR_NULL},
                "seconds": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        },
        "data_quality": {
            "type": "object",
            "required": ["this_run", "store"],
            "properties": {"this_run": _COUNTS, "store": _COUNTS},
        },
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "suspects": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["alert_rank", "account_id", "rank", "score", "status", "reasons", "key_figures"],
                "additionalProperties": False,
                "properties": {
                    "alert_rank": {"type": "integer", "minimum": 1},
                    "account_id": {"type": "string"},
                    "rank": {"type": "integer", "minimum": 1},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "status": {"type": "string", "enum": ["new", "persisting"]},
                    "previous_rank": {"type": _INT_OR_NULL},
                    "previous_score": {"type": _NUM_OR_NULL},
                    "decision": {"type": _STR_OR_NULL},
                    "reasons": {"type": "array", "items": _REASON_SCHEMA},
                    "key_figures": {
                        "type": "object",
                        "required": ["in_count", "in_value", "in_counterparties", "out_count", "out_value",
                                     "out_counterparties", "first_ts", "last_ts"],
                        "properties": {
                            "in_count": {"type": "integer", "minimum": 0},
                            "in_value": {"type": _NUM},
                            "in_counterparties": {"type": "integer", "minimum": 0},
                            "out_count": {"type": "integer", "minimum": 0},
                            "out_value": {"type": _NUM},
                            "out_counterparties": {"type": "integer", "minimum": 0},
                            "first_ts": {"type": _STR_OR_NULL},
                            "last_ts": {"type": _STR_OR_NULL},
                        },
                    },
                },
            },
        },
        "signals": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["family", "alerts", "first_reason"],
                "properties": {
                    "family": {"type": "string"},
                    "alerts": {"type": "integer", "minimum": 0},
                    "first_reason": {"type": "integer", "minimum": 0},
                },
            },
        },
        "alert_changes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["account_id", "status"],
                "properties": {
                    "account_id": {"type": "string"},
                    "status": {"type": "string", "enum": ["new", "persisting", "dropped", "suppressed"]},
                    "rank": {"type": _INT_OR_NULL},
                    "score": {"type": _NUM_OR_NULL},
                    "previous_rank": {"type": _INT_OR_NULL},
                    "previous_score": {"type": _NUM_OR_NULL},
                    "note": {"type": _STR_OR_NULL},
                },
            },
        },
        "drift": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["feature", "psi", "warning"],
                "properties": {
                    "feature": {"type": "string"},
                    "psi": {"type": _NUM_OR_NULL},
                    "warning": {"type": "boolean"},
                },
            },
        },
    },
}


# --------------------------------------------------------------------------------------------
# loading


@dataclass
class RunData:
    """The files of one run folder, read into memory."""

    run_dir: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    scores: pl.DataFrame
    alerts: pl.DataFrame
    changes: pl.DataFrame
    drift: pl.DataFrame
    flows: pl.DataFrame


def _read_parquet(path: Path, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    if path.is_file():
        try:
            return pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError):
            raise InputError(
                f"the run file '{path.name}' cannot be read; the run folder is damaged, rerun 'mulegraph run'."
            ) from None
    return pl.DataFrame(schema=schema or {})


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read a run folder (see :mod:`mulegraph.pipeline` for its files)."""
    d = resolve_run_dir(run_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        config = json.loads((d / "config.json").read_text(encoding="utf-8")) if (d / "config.json").is_file() else {}
    except (OSError, ValueError):
        raise InputError(f"the run folder '{d}' has an unreadable manifest.json or config.json; rerun 'mulegraph run'.") from None
    missing = [n for n in ("scores.parquet", "alerts.parquet") if not (d / n).is_file()]
    if missing:  # an empty report would read as "no suspects"
        raise InputError(f"the run folder '{d}' lacks {', '.join(missing)}; it is damaged, rerun 'mulegraph run'.")
    return RunData(
        run_dir=d,
        manifest=manifest,
        config=config,
        scores=_read_parquet(d / "scores.parquet", {"account_id": pl.String, "score": pl.Float64, "rank": pl.Int64}),
        alerts=_read_parquet(d / "alerts.parquet", ALERT_COLUMNS),
        changes=_read_parquet(d / "alert_changes.parquet", CHANGE_COLUMNS),
        drift=_read_parquet(d / "drift.parquet", {"feature": pl.String, "psi": pl.Float64, "warning": pl.Boolean}),
        flows=_read_parquet(d / "flows.parquet", FLOW_COLUMNS),
    )


def _pseudonymiser(config: ReportConfig, pseudonymise: bool | None) -> Pseudonymiser:
    on = config.pseudonymise if pseudonymise is None else pseudonymise
    if not on:
        return Pseudonymiser(None)
    key = config.resolved_key()
    if not key:
        raise ConfigError(
            "pseudonymised reports need a key: set MULEGRAPH_PSEUDONYM_KEY or [report] pseudonym_key."
        )
    return Pseudonymiser(key)


# --------------------------------------------------------------------------------------------
# the document every format is rendered from


def _reasons(text: str | None) -> list[dict[str, Any]]:
    try:
        items = json.loads(text) if text else []
    except ValueError:
        return []
    out = []
    for r in items if isinstance(items, list) else []:
        if not isinstance(r, dict):
            continue
        value = r.get("value")
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        pct = r.get("percentile")
        out.append(
            {
                "code": str(r.get("code", "")),
                "feature": None if r.get("feature") is None else str(r.get("feature")),
                "family": None if r.get("family") is None else str(r.get("family")),
                "text": str(r.get("text", "")),
                "value": value,
                "percentile": pct if isinstance(pct, (int, float)) and math.isfinite(pct) else None,
                "txn_ids": [str(t) for t in (r.get("txn_ids") or [])],
            }
        )
    return out


def _iso(v) -> str | None:
    if v is None:
        return None
    return v.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(v, "strftime") else str(v)


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _counts(d: dict[str, Any] | None) -> dict[str, Any]:
    d = d or {}
    return {
        "rows_read": int(d.get("rows_read") or 0),
        "accepted": int(d.get("accepted") or 0),
        "quarantined": int(d.get("quarantined") or 0),
        "duplicates": int(d.get("duplicates") or 0),
        "quarantined_by_rule": {str(k): int(v) for k, v in (d.get("quarantined_by_rule") or {}).items()},
    }


def _signals(alerts: pl.DataFrame) -> list[dict[str, Any]]:
    """Alerts per reason family (any reason, and the first reason)."""
    counts: dict[str, list[int]] = {}
    for fams in alerts["reason_families"].to_list() if "reason_families" in alerts.columns else []:
        names = [f for f in (fams or "").split("|") if f]
        for i, f in enumerate(names):
            c = counts.setdefault(f, [0, 0])
            c[0] += 1
            c[1] += i == 0
    return [
        {"family": f, "alerts": a, "first_reason": b}
        for f, (a, b) in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]


def report_document(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None) -> dict[str, Any]:
    """The report as one JSON-ready dict following :data:`REPORT_JSON_SCHEMA`."""
    ps = pseudonymiser or Pseudonymiser(None)
    m = run.manifest
    alerts = run.alerts.sort("alert_rank")
    shown = alerts if top is None else alerts.head(top)
    suspects = []
    for row in shown.to_dicts():
        suspects.append(
            {
                "alert_rank": int(row["alert_rank"]),
                "account_id": ps(row["account_id"]),
                "rank": int(row["rank"]),
                "score": float(row["score"]),
                "status": row["status"],
                "previous_rank": row.get("previous_rank"),
                "previous_score": _finite(row.get("previous_score")),
                "decision": row.get("decision"),
                "reasons": _reasons(row.get("reasons")),
                "key_figures": {
                    "in_count": int(row.get("in_count") or 0),
                    "in_value": float(row.get("in_value") or 0.0),
                    "in_counterparties": int(row.get("in_counterparties") or 0),
                    "out_count": int(row.get("out_count") or 0),
                    "out_value": float(row.get("out_value") or 0.0),
                    "out_counterparties": int(row.get("out_counterparties") or 0),
                    "first_ts": _iso(row.get("first_ts")),
                    "last_ts": _iso(row.get("last_ts")),
                },
            }
        )
    changes = [
        {**r, "account_id": ps(r["account_id"]), "score": _finite(r["score"]), "previous_score": _finite(r["previous_score"])}
        for r in run.changes.sort(["status", "rank", "previous_rank"], nulls_last=True).to_dicts()
    ]
    window = m.get("window") or {}
    model = m.get("model") or {}
    return {
        "schema_version": 1,
        "pseudonymised": ps.active,
        "run": {
            "run_id": str(m.get("run_id", run.run_dir.name)),
            "created_at": str(m.get("created_at", "")),
            "finished_at": m.get("finished_at"),
            "window_start": window.get("start"),
            "window_end": str(window.get("end", "")),
            "mode": model.get("mode") or "no-label",
            "model_version": model.get("version"),
            "mulegraph_version": str(m.get("mulegraph_version", "")),
            "previous_run": m.get("previous_run"),
            "seconds": {k: float(v) for k, v in (m.get("seconds") or {}).items()},
        },
        "data_quality": {"this_run": _counts(m.get("ingest")), "store": _counts(m.get("store"))},
        "counts": {k: int(v) for k, v in (m.get("counts") or {}).items()},
        "suspects": suspects,
        "signals": _signals(alerts),
        "alert_changes": changes,
        "drift": [
            {"feature": r["feature"], "psi": _finite(r["psi"]), "warning": bool(r["warning"])}
            for r in run.drift.to_dicts()
        ],
    }


# --------------------------------------------------------------------------------------------
# a small JSON Schema validator (the subset REPORT_JSON_SCHEMA uses)

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate_json(doc: Any, schema: dict[str, Any] = REPORT_JSON_SCHEMA, path: str = "$") -> list[str]:
    """Check ``doc`` against a JSON Schema using ``type``, ``enum``, ``required``, ``properties``,
    ``additionalProperties``, ``items``, ``minimum`` and ``maximum``; returns the problems found
    (empty when valid)."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](doc) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(doc).__name__}"]
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} is not one of {schema['enum']}")
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        if "minimum" in schema and doc < schema["minimum"]:
            errors.append(f"{path}: {doc} is below {schema['minimum']}")
        if "maximum" in schema and doc > schema["maximum"]:
            errors.append(f"{path}: {doc} is above {schema['maximum']}")
    if isinstance(doc, dict):
        for key in schema.get("required", []):
            if key not in doc:
                errors.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in doc.items():
            if key in props:
                errors += validate_json(value, props[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected {key!r}")
            elif isinstance(extra, dict):
                errors += validate_json(value, extra, f"{path}.{key}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            errors += validate_json(item, schema["items"], f"{path}[{i}]")
    return errors


# --------------------------------------------------------------------------------------------
# formats


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


__all__.append("read_csv_report")


def _fmt_num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


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
        f"- Accounts scored: {_fmt_num(c.get('scored'))} of {_fmt_num(c.get('accounts'))}; "
        f"transfers in window: {_fmt_num(c.get('transfers_in_window'))}",
        f"- Alerts: {_fmt_num(c.get('alerts'))} (new {c.get('new', 0)}, persisting {c.get('persisting', 0)}, "
        f"dropped {c.get('dropped', 0)}, suppressed after clearing {c.get('suppressed', 0)})",
        f"- Previous run: {r['previous_run'] or 'none'}",
    ]
    if doc["pseudonymised"]:
        lines.append("- Account identifiers are pseudonymised.")
    lines += ["", "## Data quality", "", "| | this run | store total |", "|---|---:|---:|"]
    tr, stt = doc["data_quality"]["this_run"], doc["data_quality"]["store"]
    for k in ("rows_read", "accepted", "quarantined", "duplicates"):
        lines.append(f"| {k.replace('_', ' ')} | {_fmt_num(tr[k])} | {_fmt_num(stt[k])} |")
    rules = sorted(k for k in set(tr["quarantined_by_rule"]) | set(stt["quarantined_by_rule"])
                   if tr["quarantined_by_rule"].get(k) or stt["quarantined_by_rule"].get(k))
    for rule in rules:
        lines.append(f"| quarantined: {rule} | {_fmt_num(tr['quarantined_by_rule'].get(rule, 0))} | "
                     f"{_fmt_num(stt['quarantined_by_rule'].get(rule, 0))} |")
    lines += ["", "## Top suspects", ""]
    if doc["suspects"]:
        lines += ["| # | account | score | status | in / out value | counterparties in / out | top reason |",
                  "|---:|---|---:|---|---:|---:|---|"]
        for s in doc["suspects"]:
            k = s["key_figures"]
            top_reason = s["reasons"][0]["text"] if s["reasons"] else "-"
            lines.append(
                f"| {s['alert_rank']} | {_md_cell(s['account_id'])} | {s['score']:.3f} | {s['status']} | "
                f"{_fmt_num(k['in_value'], 2)} / {_fmt_num(k['out_value'], 2)} | "
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
            lines.append(f"| {_md_cell(ch['account_id'])} | {ch['status']} | {_fmt_num(ch['rank'])} | "
                         f"{_fmt_num(ch['previous_rank'])} | {_md_cell(ch['note'] or '')} |")
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
        lines += [f"| {d['feature']} | {_fmt_num(d['psi'], 3)} |" for d in doc["drift"][:15]]
    else:
        lines.append("No previous run to compare with.")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# HTML


_SVG_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


def _svg(fig, tight: bool = True) -> str:
    """The figure as a base64 SVG data URI: vector (sharp on paper), text kept as text, no metadata
    block and no DOCTYPE, so the only URLs inside are the SVG namespace declarations."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mulegraph"}):
        fig.savefig(buf, format="svg", bbox_inches="tight" if tight else None, metadata=_SVG_METADATA)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", buf.getvalue().decode("utf-8"))
    return "data:image/svg+xml;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def _score_chart(scores: pl.DataFrame, cutoff: float | None) -> str | None:
    from matplotlib.figure import Figure

    values = scores.filter(pl.col("rank").is_not_null())["score"].drop_nulls().to_numpy()
    if values.size == 0:
        return None
    fig = Figure(figsize=(6.4, 2.6))
    ax = fig.add_subplot()
    ax.hist(values, bins=40, range=(0.0, 1.0), color="#4a6fa5")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("accounts (log scale)")
    if cutoff is not None:
        ax.axvline(cutoff, color="#c0392b", linestyle="--", linewidth=1)
        ax.text(cutoff, ax.get_ylim()[1], " lowest alert", color="#c0392b", va="top", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _short(label: str, n: int = 20) -> str:
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def _flow_chart(account: str, flows: pl.DataFrame, ps: Pseudonymiser, max_side: int) -> str | None:
    """The account in the middle, payers on the left, payees on the right; width by value."""
    from matplotlib.figure import Figure

    if flows.height == 0:
        return None
    sides = {}
    for direction in ("in", "out"):
        part = flows.filter(pl.col("direction") == direction).sort(["value", "counterparty"], descending=[True, False])
        items = [(ps(cp), v, n) for cp, v, n in zip(part["counterparty"], part["value"], part["count"])][:max_side]
        rest = part.slice(max_side)
        if rest.height:
            items.append((f"+{rest.height} others", float(rest["value"].sum()), int(rest["count"].sum())))
        sides[direction] = items
    vmax = max([v for items in sides.values() for _, v, _ in items] + [1e-12])
    rows = max(len(sides["in"]), len(sides["out"]), 1)
    fig = Figure(figsize=(6.4, 0.28 * rows + 0.5))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-3.0, 3.0)
    ax.set_ylim(-0.9, rows + 0.1)
    ax.axis("off")
    cy = (rows - 1) / 2
    for direction, x in (("in", -1.1), ("out", 1.1)):
        items = sides[direction]
        offset = (rows - len(items)) / 2
        color = "#2e86c1" if direction == "in" else "#c0392b"
        for i, (label, value, n) in enumerate(items):
            y = rows - 1 - (i + offset)
            # plain lines (no arrow patches): cheap to draw; the side says the direction
            ax.plot([x, 0.0], [y, cy], color=color, alpha=0.55, linewidth=0.6 + 6.0 * value / vmax,
                    solid_capstyle="butt")
            ax.text(x - 0.08 if direction == "in" else x + 0.08, y, f"{_short(label)}  {value:,.0f} ({n})",
                    ha="right" if direction == "in" else "left", va="center", fontsize=7)
    ax.text(0, cy, _short(ps(account), 22), ha="center", va="center", fontsize=8, weight="bold",
            bbox={"boxstyle": "round,pad=0.3", "fc": "#fdebd0", "ec": "#7f6000"})
    ax.text(-1.1, rows - 0.35, "paid in by", ha="right", fontsize=7, color="#555555")
    ax.text(1.1, rows - 0.35, "paid out to", ha="left", fontsize=7, color="#555555")
    return _svg(fig, tight=False)


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#1b1b1b;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #333}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #aaa}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}
th{background:#eef2f7;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff3cd;border:1px solid #e0b000;padding:.5em .8em;margin:.6em 0}
.new{color:#b03a2e;font-weight:bold}.dropped{color:#555}.suppressed{color:#7d3c98}
ul.reasons{margin:0;padding-left:1.1em}.small{font-size:.85em;color:#444}
.flow{display:inline-block;width:48%;min-width:420px;vertical-align:top;margin:.3em 0}
.flow img{max-width:100%}img{max-width:100%}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{page-break-after:avoid}
table,.flow,figure{page-break-inside:avoid}tr{page-break-inside:avoid}.noprint{display:none}
th{background:#ddd !important;-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else ""
            out.append(f"<td{cls}>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_html(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
                psi_warning: float = 0.25, flow_pictures: int = 10, flow_counterparties: int = 8) -> str:
    """The HTML report: one self-contained file (no external references of any kind)."""
    ps = pseudonymiser or Pseudonymiser(None)
    doc = report_document(run, top=top, pseudonymiser=ps)
    e = html.escape
    r, c = doc["run"], doc["counts"]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>mulegraph run {e(r['run_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1 id=\"top\">mulegraph report: run {e(r['run_id'])}</h1>",
    ]
    if doc["pseudonymised"]:
        parts.append("<p class=\"small\">Account identifiers in this report are keyed pseudonyms.</p>")
    # summary
    parts.append("<h2 id=\"summary\">Run summary</h2>")
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items()) or "-"
    parts.append(_table(["", ""], [
        ["Run", e(r["run_id"])],
        ["Created", e(r["created_at"])],
        ["Window", f"{e(r['window_start'] or 'beginning')} to {e(r['window_end'])}"],
        ["Mode", e(r["mode"] + (f" (model {r['model_version']})" if r["model_version"] else ""))],
        ["Transfers in window", _fmt_num(c.get("transfers_in_window"))],
        ["Accounts / ranked", f"{_fmt_num(c.get('accounts'))} / {_fmt_num(c.get('scored'))}"],
        ["Alerts", f"{_fmt_num(c.get('alerts'))} (new {c.get('new', 0)}, persisting {c.get('persisting', 0)}, "
                   f"dropped {c.get('dropped', 0)}, suppressed {c.get('suppressed', 0)})"],
        ["Previous run", e(r["previous_run"] or "none")],
        ["Seconds per stage", e(secs)],
        ["mulegraph", e(r["mulegraph_version"])],
    ]))
    # data quality
    parts.append("<h2 id=\"quality\">Data quality</h2>")
    tr, stt = doc["data_quality"]["this_run"], doc["data_quality"]["store"]
    dq = [[k.replace("_", " "), _fmt_num(tr[k]), _fmt_num(stt[k])] for k in ("rows_read", "accepted", "quarantined", "duplicates")]
    for rule in sorted(k for k in set(tr["quarantined_by_rule"]) | set(stt["quarantined_by_rule"])
                       if tr["quarantined_by_rule"].get(k) or stt["quarantined_by_rule"].get(k)):
        dq.append([f"quarantined: {e(rule)}", _fmt_num(tr["quarantined_by_rule"].get(rule, 0)),
                   _fmt_num(stt["quarantined_by_rule"].get(rule, 0))])
    parts.append(_table(["", "this run", "store total"], dq, {1, 2}))
    # suspects
    parts.append("<h2 id=\"suspects\">Top suspects</h2>")
    if doc["suspects"]:
        rows = []
        for s in doc["suspects"]:
            k = s["key_figures"]
            reasons = "".join(f"<li>{e(x['text'])} <span class=\"small\">[{e(x['code'])}]</span></li>" for x in s["reasons"])
            status = s["status"] + (f", was #{s['previous_rank']}" if s["previous_rank"] else "")
            rows.append([
                str(s["alert_rank"]), e(s["account_id"]), f"{s['score']:.3f}", f"<span class=\"{e(s['status'])}\">{e(status)}</span>",
                f"<ul class=\"reasons\">{reasons}</ul>" if reasons else "-",
                f"in: {_fmt_num(k['in_value'], 2)} ({k['in_count']} transfers from {k['in_counterparties']} payers)<br>"
                f"out: {_fmt_num(k['out_value'], 2)} ({k['out_count']} transfers to {k['out_counterparties']} payees)<br>"
                f"<span class=\"small\">active {e(k['first_ts'] or '-')} to {e(k['last_ts'] or '-')}</span>",
            ])
        parts.append(_table(["#", "account", "score", "status", "reasons", "key figures"], rows, {0, 2}))
    else:
        parts.append("<p>No alerts in this run.</p>")
    # signals
    parts.append("<h2 id=\"signals\">Typology signals among the alerts</h2>")
    if doc["signals"]:
        parts.append(_table(["signal (reason family)", "alerts", "as first reason"],
                            [[e(s["family"]), str(s["alerts"]), str(s["first_reason"])] for s in doc["signals"]], {1, 2}))
    else:
        parts.append("<p>No reasons recorded.</p>")
    # score distribution
    parts.append("<h2 id=\"distribution\">Score distribution</h2>")
    cutoff = float(run.alerts["score"].min()) if run.alerts.height else None
    chart = _score_chart(run.scores, cutoff)
    parts.append(f"<figure><img alt=\"histogram of scores\" src=\"{chart}\"></figure>" if chart else "<p>No scores.</p>")
    # flows
    parts.append("<h2 id=\"flows\">Flows of the top suspects</h2>")
    parts.append("<p class=\"small\">Each picture shows the account with the counterparties that paid it (left) "
                 "and that it paid (right) in the window; line width is proportional to the value, "
                 "with the value and the number of transfers next to each counterparty.</p>")
    drawn = 0
    for s, acc in zip(doc["suspects"], run.alerts.sort("alert_rank")["account_id"].to_list()):
        if drawn >= flow_pictures:
            break
        pic = _flow_chart(acc, run.flows.filter(pl.col("account_id") == acc), ps, flow_counterparties)
        if pic:
            parts.append(f"<div class=\"flow\"><div class=\"small\">#{s['alert_rank']} {e(s['account_id'])}</div>"
                         f"<img alt=\"flows of suspect {s['alert_rank']}\" src=\"{pic}\"></div>")
            drawn += 1
    if not drawn:
        parts.append("<p>No flows recorded.</p>")
    # changes
    parts.append("<h2 id=\"changes\">Alert changes since the previous run</h2>")
    if r["previous_run"] is None:
        parts.append("<p>This is the first run: every alert is new.</p>")
    changed = [ch for ch in doc["alert_changes"] if ch["status"] != "persisting"]
    if changed:
        parts.append(_table(["account", "change", "rank", "previous rank", "score", "note"], [
            [e(ch["account_id"]), f"<span class=\"{e(ch['status'])}\">{e(ch['status'])}</span>", _fmt_num(ch["rank"]),
             _fmt_num(ch["previous_rank"]), _fmt_num(ch["score"], 3), e(ch["note"] or "")] for ch in changed
        ], {2, 3, 4}))
    else:
        parts.append("<p>No changes.</p>")
    # drift
    parts.append("<h2 id=\"drift\">Feature drift against the previous run</h2>")
    if doc["drift"]:
        warned = [d for d in doc["drift"] if d["warning"]]
        if warned:
            parts.append(f"<div class=\"warn\"><strong>Warning:</strong> {len(warned)} feature(s) shifted strongly "
                         f"(population stability index above {psi_warning}): "
                         + e(", ".join(d["feature"] for d in warned))
                         + ". Check the exports of this period before relying on the scores.</div>")
        parts.append(_table(["feature", "PSI", ""], [
            [e(d["feature"]), _fmt_num(d["psi"], 3), "large shift" if d["warning"] else ""] for d in doc["drift"]
        ], {1}))
    else:
        parts.append("<p>No previous run to compare with.</p>")
    parts.append("<p class=\"small noprint\"><a href=\"#top\">back to top</a></p></body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# writing


def render(run: RunData, fmt: str, *, top: int | None = None, config: ReportConfig | None = None,
           pseudonymise: bool | None = None) -> str:
    """Render ``run`` in ``fmt`` (html, md, csv or json)."""
    cfg = config or ReportConfig()
    if fmt not in REPORT_FORMATS:
        raise InputError(f"The report format must be one of {', '.join(REPORT_FORMATS)}. Got '{fmt}' instead.")
    if top is not None and top < 0:
        raise InputError(f"The number of suspects to show must be zero or more. Got {top} instead.")
    ps = _pseudonymiser(cfg, pseudonymise)
    if fmt == "html":
        return render_html(run, top=top, pseudonymiser=ps, psi_warning=cfg.psi_warning,
                           flow_counterparties=cfg.flow_counterparties)
    if fmt == "md":
        return render_markdown(run, top=top, pseudonymiser=ps, psi_warning=cfg.psi_warning)
    if fmt == "csv":
        return render_csv(run, top=top, pseudonymiser=ps)
    return render_json(run, top=top, pseudonymiser=ps)


def write_report(run_dir: str | os.PathLike | None, fmt: str, out: str | os.PathLike, *,
                 top: int | None = None, config: ReportConfig | None = None, pseudonymise: bool | None = None,
                 runs_dir: str | os.PathLike = "runs") -> Path:
    """Render a run (a run folder, or the latest run under ``runs_dir``) and write it atomically to ``out``."""
    cfg = config or ReportConfig()
    run = load_run(resolve_run_dir(run_dir, runs_dir))
    text = render(run, fmt, top=top if top is not None else cfg.top, config=cfg, pseudonymise=pseudonymise)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, text)
    return target


def write_run_reports(run_dir: str | os.PathLike, config: ReportConfig | None = None) -> list[Path]:
    """Write ``report.html`` and ``report.md`` into a run folder (called by the nightly run)."""
    cfg = config or ReportConfig()
    d = Path(run_dir)
    run = load_run(d)
    ps = _pseudonymiser(cfg, None)
    out = []
    for name, text in (
        ("report.html", render_html(run, top=cfg.top, pseudonymiser=ps, psi_warning=cfg.psi_warning,
                                    flow_counterparties=cfg.flow_counterparties)),
        ("report.md", render_markdown(run, top=cfg.top, pseudonymiser=ps, psi_warning=cfg.psi_warning)),
    ):
        write_text_atomic(d / name, text)
        out.append(d / name)
    return out
