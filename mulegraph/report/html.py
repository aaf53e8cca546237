"""The HTML report: one self-contained file rendered from ``templates/report.html.j2``.

Styles are inline (``templates/report.css``) and the pictures embedded as base64 SVG
(:mod:`mulegraph.report.charts`): no external link, font, script or image, so the file reads the
same on screen, on paper and offline. It holds the run summary, data quality, the top suspects with
score, reasons and key figures, the count of alerts per typology signal (reason family), the score
distribution, a flow picture for each of the first suspects, the alert changes since the previous
run, and the feature drift against the previous run (flagged above ``[report] psi_warning``).

The template is rendered by Jinja2 with autoescape on, so every value from the run folder (account
ids, reason texts, feature names) is HTML-escaped, and with :func:`mulegraph.core.escape.visible` as
the finaliser of every expression, so control and bidirectional characters show as visible escapes.
The pictures draw their labels as plain text (no mathtext), escaped in the SVG by matplotlib.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from mulegraph.core.escape import visible
from mulegraph.io.runs import RunData
from mulegraph.report.charts import flow_chart, score_chart
from mulegraph.report.coarsen import fmt_amount
from mulegraph.report.document import fmt_num, report_document, seeds_text
from mulegraph.report.pseudonym import Pseudonymiser

__all__ = ["render_html"]


def _finalize(value: Any) -> Any:
    """Every ``{{ expression }}`` of the template: text with control characters made visible
    (trusted markup and non-text values as they are); autoescape then escapes it for HTML."""
    return visible(value) if isinstance(value, str) and not isinstance(value, Markup) else value


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mulegraph.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=_finalize,
    )
    env.filters["num"] = fmt_num
    env.filters["amount"] = lambda v, coarse=False, digits=2: fmt_amount(v) if coarse else fmt_num(v, digits)
    return env


def _summary(doc: dict[str, Any]) -> list[list[str]]:
    r, c = doc["run"], doc["counts"]
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items()) or "-"
    return [
        ["Run", r["run_id"]],
        ["Created", r["created_at"]],
        ["Window", f"{r['window_start'] or 'beginning'} to {r['window_end']}"],
        ["Mode", r["mode"] + (f" (model {r['model_version']})" if r["model_version"] else "")],
        ["Transfers in window", fmt_num(c.get("transfers_in_window"))],
        ["Accounts / ranked", f"{fmt_num(c.get('accounts'))} / {fmt_num(c.get('scored'))}"],
        ["Alerts", f"{fmt_num(c.get('alerts'))} (new {c.get('new', 0)}, persisting {c.get('persisting', 0)}, "
                   f"dropped {c.get('dropped', 0)}, suppressed {c.get('suppressed', 0)})"],
        *([["Seeds", seeds]] if (seeds := seeds_text(r.get("seeds"))) is not None else []),
        ["Previous run", r["previous_run"] or "none"],
        ["Seconds per stage", secs],
        ["mulegraph", r["mulegraph_version"]],
    ]


def _quality(doc: dict[str, Any]) -> list[list[str]]:
    tr, st = doc["data_quality"]["this_run"], doc["data_quality"]["store"]
    rows = [[k.replace("_", " "), fmt_num(tr[k]), fmt_num(st[k])] for k in ("rows_read", "accepted", "quarantined", "duplicates")]
    tr_rules, st_rules = tr["quarantined_by_rule"], st["quarantined_by_rule"]
    for rule in sorted(k for k in set(tr_rules) | set(st_rules) if tr_rules.get(k) or st_rules.get(k)):
        rows.append([f"quarantined: {rule}", fmt_num(tr_rules.get(rule, 0)), fmt_num(st_rules.get(rule, 0))])
    return rows


def _flows(run: RunData, doc: dict[str, Any], ps: Pseudonymiser, pictures: int, counterparties: int,
           coarsen: bool = False) -> list[dict[str, str]]:
    """Flow pictures of the first ``pictures`` suspects that have flows recorded."""
    out: list[dict[str, str]] = []
    accounts = run.alerts.sort("alert_rank")["account_id"].to_list()
    for s, account in zip(doc["suspects"], accounts):
        if len(out) >= pictures:
            break
        pic = flow_chart(account, run.flows.filter(pl.col("account_id") == account), ps, counterparties, coarsen=coarsen)
        if pic:
            out.append({"label": f"#{s['alert_rank']} {s['account_id']}", "alt": f"flows of suspect {s['alert_rank']}",
                        "src": pic})
    return out


def render_html(run: RunData, *, top: int | None = None, pseudonymiser: Pseudonymiser | None = None,
                psi_warning: float = 0.25, flow_pictures: int = 10, flow_counterparties: int = 8,
                coarsen: bool = False) -> str:
    """The HTML report: one self-contained file (no external references of any kind)."""
    ps = pseudonymiser or Pseudonymiser(None)
    doc = report_document(run, top=top, pseudonymiser=ps, coarsen=coarsen)
    cutoff = float(run.alerts["score"].min()) if run.alerts.height else None
    return _environment().get_template("report.html.j2").render(
        doc=doc,
        summary=_summary(doc),
        quality=_quality(doc),
        score_chart=score_chart(run.scores, cutoff),
        flows=_flows(run, doc, ps, flow_pictures, flow_counterparties, coarsen),
        psi_warning=psi_warning,
    )
