"""The report document: one JSON-ready dict that every format is rendered from, and its schema.

:func:`report_document` selects and formats what a run folder holds (it computes nothing new);
the result follows :data:`REPORT_JSON_SCHEMA`, the JSON Schema in ``report.schema.json`` next to
this module, and :func:`validate_json` checks a document against it with ``jsonschema``.

With pseudonymisation on, every account identifier (suspects, alert changes) is replaced by its
keyed pseudonym (:mod:`mulegraph.report.pseudonym`); transfer ids in the reasons are kept, so a case
system can still find them. With coarsening on, amounts are rounded and timestamps cut to dates
(:mod:`mulegraph.report.coarsen`); the document says so in ``coarsened``.

The document holds the values as they are; each format escapes them for its readers
(:mod:`mulegraph.core.escape`).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import polars as pl
from jsonschema import Draft202012Validator

from mulegraph.core.config import ReportConfig
from mulegraph.core.errors import ConfigError
from mulegraph.core.schema import as_reasons
from mulegraph.io.runs import RunData
from mulegraph.report.coarsen import coarse_date, coarsen_text, round_amount
from mulegraph.report.pseudonym import Pseudonymiser

__all__ = ["REPORT_JSON_SCHEMA", "report_document", "validate_json", "pseudonymiser_for", "coarsen_for", "check_report_config",
           "fmt_num", "seeds_text"]

#: JSON Schema (draft 2020-12) of the JSON report, loaded from ``report.schema.json``
REPORT_JSON_SCHEMA: dict[str, Any] = json.loads(
    resources.files("mulegraph.report").joinpath("report.schema.json").read_text(encoding="utf-8")
)
Draft202012Validator.check_schema(REPORT_JSON_SCHEMA)
_VALIDATOR = Draft202012Validator(REPORT_JSON_SCHEMA)


def validate_json(doc: Any, schema: dict[str, Any] = REPORT_JSON_SCHEMA, path: str = "$") -> list[str]:
    """The problems of ``doc`` against ``schema`` (empty when valid), one line each.

    Each line is the JSON path of the problem (starting at ``path``) and ``jsonschema``'s message,
    e.g. ``$.suspects[0].score: 1.5 is greater than the maximum of 1``.
    """
    validator = _VALIDATOR if schema is REPORT_JSON_SCHEMA else Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: (e.json_path, e.message))
    return [f"{path}{e.json_path[1:]}: {e.message}" for e in errors]


def pseudonymiser_for(config: ReportConfig, pseudonymise: bool | None) -> Pseudonymiser:
    """The pseudonymiser a report uses: ``pseudonymise`` when given, else ``[report] pseudonymise``."""
    on = config.pseudonymise if pseudonymise is None else pseudonymise
    if not on:
        return Pseudonymiser(None)
    key = config.resolved_key()
    if not key:
        raise ConfigError("pseudonymised reports need a key: set MULEGRAPH_PSEUDONYM_KEY or [report] pseudonym_key.")
    return Pseudonymiser(key)


def coarsen_for(config: ReportConfig, coarsen: bool | None) -> bool:
    """Whether a report is coarsened: ``coarsen`` when given, else ``[report] coarsen``."""
    return bool(config.coarsen if coarsen is None else coarsen)


def check_report_config(config: ReportConfig) -> None:
    """Refuse report settings that would fail only when the report is written (a missing or short
    pseudonym key): a :class:`~mulegraph.core.errors.ConfigError`. Call it before long work."""
    pseudonymiser_for(config, None)


def fmt_num(v: Any, digits: int = 0) -> str:
    """A number for people: thousands separated, ``digits`` decimals for floats, ``-`` when missing."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _iso(v) -> str | None:
    if v is None:
        return None
    return v.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(v, "strftime") else str(v)


def _reason_items(items: list[dict[str, Any]] | None, coarse: bool = False) -> list[dict[str, Any]]:
    """The reasons of one alert (rows of the struct column) as schema objects; non-finite numbers become null.

    ``coarse`` rounds the values and the numbers in the texts (:mod:`mulegraph.report.coarsen`).
    """
    out = []
    for r in items or []:
        if r is None:
            continue
        pct = r.get("percentile")
        out.append(
            {
                "code": "" if r.get("code") is None else str(r["code"]),
                "feature": None if r.get("feature") is None else str(r["feature"]),
                "family": None if r.get("family") is None else str(r["family"]),
                "text": "" if r.get("text") is None else (coarsen_text if coarse else str)(str(r["text"])),
                "value": round_amount(_finite(r.get("value"))) if coarse else _finite(r.get("value")),
                "percentile": pct if isinstance(pct, (int, float)) and math.isfinite(pct) else None,
                "txn_ids": [str(t) for t in (r.get("txn_ids") or [])],
            }
        )
    return out


def _counts(d: dict[str, Any] | None) -> dict[str, Any]:
    d = d or {}
    return {
        "rows_read": int(d.get("rows_read") or 0),
        "accepted": int(d.get("accepted") or 0),
        "quarantined": int(d.get("quarantined") or 0),
        "duplicates": int(d.get("duplicates") or 0),
        "quarantined_by_rule": {str(k): int(v) for k, v in (d.get("quarantined_by_rule") or {}).items()},
    }


#: how the report names each seed source (mulegraph.scoring.seeds.SOURCES)
SEED_SOURCES: dict[str, str] = {"model": "model's training labels", "decisions": "investigator decisions",
                                "known_file": "--known file", "shared_list": "consortium lists"}


def _seeds(s: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifest's ``seeds`` (a run with a model): the known accounts its closeness features read,
    by source, and how a model from elsewhere was blended with the local no-label score."""
    if not s:
        return None
    by = s.get("by_source") or {}
    blend = s.get("blend") or None
    return {
        "mules": int(s.get("mules", 0)),
        "not_mules": int(s.get("not_mules", 0)),
        "by_source": {k: {"mules": int(v.get("mules", 0)), "not_mules": int(v.get("not_mules", 0))} for k, v in by.items()},
        "elsewhere": bool(s.get("elsewhere", False)),
        "blend": None if blend is None else {
            "weight": _finite(blend.get("weight")),
            "setting": None if blend.get("setting") is None else str(blend.get("setting")),
            "chosen": None if blend.get("chosen") is None else str(blend.get("chosen")),
            "seed_mules": blend.get("seed_mules"),
        },
    }


def seeds_text(seeds: dict[str, Any] | None) -> str | None:
    """One line on the seeds and the blend of a run with a model (None without a model)."""
    if seeds is None:
        return None
    parts = [f"{fmt_num(v['mules'])} from {SEED_SOURCES.get(k, k)}" for k, v in seeds["by_source"].items() if v["mules"]]
    text = f"{fmt_num(seeds['mules'])} known mules" + (f" ({', '.join(parts)})" if parts else "")
    if seeds["not_mules"]:
        text += f", {fmt_num(seeds['not_mules'])} known non-mules"
    b = seeds["blend"]
    if seeds["elsewhere"]:
        text += "; a model from elsewhere"
    if b is not None and b["weight"] is not None:
        how = {"local": f"chosen from {fmt_num(b['seed_mules'])} local seed mules", "setting": "as set",
               "default": "the default: too few local seed mules"}.get(b["chosen"] or "", b["chosen"] or "")
        text += f"; scores blended with the local no-label score, weight {b['weight']:.2f}" + (f" ({how})" if how else "")
    return text


def _signals(alerts: pl.DataFrame) -> list[dict[str, Any]]:
    """Alerts per reason family (any reason, and the first reason), most alerts first."""
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


def _suspect(row: dict[str, Any], ps: Pseudonymiser, coarse: bool) -> dict[str, Any]:
    amount = round_amount if coarse else float
    when = (lambda v: coarse_date(_iso(v))) if coarse else _iso
    return {
        "alert_rank": int(row["alert_rank"]),
        "account_id": ps(row["account_id"]),
        "rank": int(row["rank"]),
        "score": float(row["score"]),
        "status": row["status"],
        "previous_rank": row.get("previous_rank"),
        "previous_score": _finite(row.get("previous_score")),
        "decision": row.get("decision"),
        "reasons": _reason_items(row.get("reasons"), coarse),
        "key_figures": {
            "in_count": int(row.get("in_count") or 0),
            "in_value": amount(float(row.get("in_value") or 0.0)),
            "in_counterparties": int(row.get("in_counterparties") or 0),
            "out_count": int(row.get("out_count") or 0),
            "out_value": amount(float(row.get("out_value") or 0.0)),
            "out_counterparties": int(row.get("out_counterparties") or 0),
            "first_ts": when(row.get("first_ts")),
            "last_ts": when(row.get("last_ts")),
        },
    }


def report_document(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
                    coarsen: bool = False) -> dict[str, Any]:
    """The report as one JSON-ready dict following :data:`REPORT_JSON_SCHEMA`.

    ``top`` limits the suspects shown (all alerts when None); the signals count every alert.
    ``coarsen`` rounds amounts and cuts timestamps to dates (:mod:`mulegraph.report.coarsen`).
    """
    ps = pseudonymiser or Pseudonymiser(None)
    m = run.manifest
    alerts = as_reasons(run.alerts).sort("alert_rank")
    shown = alerts if top is None else alerts.head(top)
    changes = [
        {**r, "account_id": ps(r["account_id"]), "score": _finite(r["score"]), "previous_score": _finite(r["previous_score"])}
        for r in run.changes.sort(["status", "rank", "previous_rank"], nulls_last=True).to_dicts()
    ]
    window = m.get("window") or {}
    day = coarse_date if coarsen else (lambda v: v)
    model = m.get("model") or {}
    return {
        "schema_version": 1,
        "pseudonymised": ps.active,
        "coarsened": bool(coarsen),
        "run": {
            "run_id": str(m.get("run_id", run.run_dir.name)),
            "created_at": str(m.get("created_at", "")),
            "finished_at": m.get("finished_at"),
            "window_start": day(window.get("start")),
            "window_end": day(str(window.get("end", ""))),
            "mode": model.get("mode") or "no-label",
            "model_version": model.get("version"),
            "mulegraph_version": str(m.get("mulegraph_version", "")),
            "previous_run": m.get("previous_run"),
            "seconds": {k: float(v) for k, v in (m.get("seconds") or {}).items()},
            "seeds": _seeds(m.get("seeds")),
        },
        "data_quality": {"this_run": _counts(m.get("ingest")), "store": _counts(m.get("store"))},
        "counts": {k: int(v) for k, v in (m.get("counts") or {}).items()},
        "suspects": [_suspect(row, ps, coarsen) for row in shown.to_dicts()],
        "signals": _signals(alerts),
        "alert_changes": changes,
        "drift": [
            {"feature": r["feature"], "psi": _finite(r["psi"]), "warning": bool(r["warning"])}
            for r in run.drift.to_dicts()
        ],
    }
