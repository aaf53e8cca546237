"""Rendering a run in a chosen format, and writing it atomically.

:func:`render` renders a loaded run in one of :data:`REPORT_FORMATS`; :func:`write_report` loads a
run folder (or the latest run of a runs folder), renders it and writes the file atomically, the
format following the file's suffix unless given (:func:`report_format`); :func:`write_run_reports`
writes ``report.html`` and ``report.md`` into a run folder (called by the nightly run).
"""

from __future__ import annotations

import os
from pathlib import Path

from mulegraph.core.atomic import write_text_atomic
from mulegraph.core.config import ReportConfig
from mulegraph.core.errors import InputError
from mulegraph.core.paths import refuse_protected_output
from mulegraph.io.runs import RunData, load_run, resolve_run_dir
from mulegraph.report.document import coarsen_for, pseudonymiser_for
from mulegraph.report.html import render_html
from mulegraph.report.text import render_csv, render_json, render_markdown

__all__ = ["REPORT_FORMATS", "SUFFIX_FORMATS", "report_format", "render", "write_report", "write_run_reports"]

REPORT_FORMATS: tuple[str, ...] = ("html", "md", "csv", "json")

#: the format each output file suffix stands for
SUFFIX_FORMATS: dict[str, str] = {".html": "html", ".htm": "html", ".md": "md", ".csv": "csv", ".json": "json"}


def report_format(fmt: str | None, out: str | os.PathLike | None) -> str:
    """The format of a report: ``fmt``, else the one ``out``'s suffix names, else html.

    A suffix that names no format, or another format than ``fmt``, is an
    :class:`~mulegraph.core.errors.InputError`.
    """
    if fmt is not None and fmt not in REPORT_FORMATS:
        raise InputError(f"The report format must be one of {', '.join(REPORT_FORMATS)}. Got '{fmt}' instead.")
    if out is None:
        return fmt or "html"
    name = Path(out).name
    by_suffix = SUFFIX_FORMATS.get(Path(out).suffix.lower())
    if by_suffix is None:
        raise InputError(f"--out '{name}' must end in .html, .md, .csv or .json; pass e.g. --out report.html.")
    if fmt is not None and fmt != by_suffix:
        raise InputError(f"--format {fmt} does not fit --out '{name}'; use a .{fmt} file name or leave out --format.")
    return by_suffix


def render(run: RunData, fmt: str, *, top: int | None = None, config: ReportConfig | None = None,
           pseudonymise: bool | None = None, coarsen: bool | None = None) -> str:
    """Render ``run`` in ``fmt`` (html, md, csv or json).

    ``pseudonymise`` and ``coarsen`` None take ``[report] pseudonymise`` and ``[report] coarsen``.
    """
    cfg = config or ReportConfig()
    if fmt not in REPORT_FORMATS:
        raise InputError(f"The report format must be one of {', '.join(REPORT_FORMATS)}. Got '{fmt}' instead.")
    if top is not None and top < 0:
        raise InputError(f"The number of suspects to show must be zero or more. Got {top} instead.")
    ps = pseudonymiser_for(cfg, pseudonymise)
    coarse = coarsen_for(cfg, coarsen)
    if fmt == "html":
        return render_html(run, top=top, pseudonymiser=ps, psi_warning=cfg.psi_warning,
                           flow_counterparties=cfg.flow_counterparties, coarsen=coarse)
    if fmt == "md":
        return render_markdown(run, top=top, pseudonymiser=ps, psi_warning=cfg.psi_warning, coarsen=coarse)
    if fmt == "csv":
        return render_csv(run, top=top, pseudonymiser=ps, coarsen=coarse)
    return render_json(run, top=top, pseudonymiser=ps, coarsen=coarse)


def write_report(run_dir: str | os.PathLike | None, fmt: str | None, out: str | os.PathLike, *,
                 top: int | None = None, config: ReportConfig | None = None, pseudonymise: bool | None = None,
                 coarsen: bool | None = None, runs_dir: str | os.PathLike = "runs") -> Path:
    """Render a run (a run folder, or the latest run under ``runs_dir``) and write it atomically to ``out``.

    ``fmt`` None takes the format from ``out``'s suffix (:func:`report_format`); ``top`` None takes
    ``[report] top``.
    """
    cfg = config or ReportConfig()
    fmt = fmt if fmt is not None else report_format(None, out)
    refuse_protected_output(out)  # never into a store or a run folder
    run = load_run(resolve_run_dir(run_dir, runs_dir))
    text = render(run, fmt, top=top if top is not None else cfg.top, config=cfg, pseudonymise=pseudonymise,
                  coarsen=coarsen)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, text)
    return target


def write_run_reports(run_dir: str | os.PathLike, config: ReportConfig | None = None) -> list[Path]:
    """Write ``report.html`` and ``report.md`` into a run folder (called by the nightly run), with
    the pseudonymisation and coarsening of ``config``."""
    cfg = config or ReportConfig()
    d = Path(run_dir)
    run = load_run(d)
    out = []
    for name, fmt in (("report.html", "html"), ("report.md", "md")):
        text = render(run, fmt, top=cfg.top, config=cfg)
        write_text_atomic(d / name, text)
        out.append(d / name)
    return out
