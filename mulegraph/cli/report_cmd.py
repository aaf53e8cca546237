"""CLI commands: report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from ._app import app, handle_errors

__all__ = ["report_command", "ReportFormat"]


class ReportFormat(str, Enum):
    html = "html"
    md = "md"
    csv = "csv"
    json = "json"


@app.command("report")
@handle_errors
def report_command(
    run_dir: Path | None = typer.Argument(
        None, help="A run folder, or a runs folder (its latest run). Default: the latest run under [run] runs_dir.",
        show_default=False,
    ),
    fmt: ReportFormat = typer.Option(ReportFormat.html, "--format", "-f", help="html, md, csv or json."),
    top: int | None = typer.Option(None, "--top", min=0, help="Show this many suspects. [report] top; default 50."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (atomically) instead of standard output."),
    pseudonymise: bool | None = typer.Option(
        None, "--pseudonymise/--no-pseudonymise",
        help="Replace account ids by keyed pseudonyms (key: MULEGRAPH_PSEUDONYM_KEY or [report] pseudonym_key).",
    ),
    config: Path | None = typer.Option(None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."),
) -> None:
    """Render a run as an HTML, Markdown, CSV or JSON report."""
    from ..report import load_run, render, resolve_run_dir, write_report
    from .run_cmd import resolve_config

    cfg = resolve_config(config)
    target = resolve_run_dir(run_dir, cfg.run.runs_dir)
    if out is not None:
        path = write_report(target, fmt.value, out, top=top, config=cfg.report, pseudonymise=pseudonymise)
        typer.echo(f"wrote {path}", err=True)
        return
    text = render(load_run(target), fmt.value, top=top if top is not None else cfg.report.top, config=cfg.report,
                  pseudonymise=pseudonymise)
    typer.echo(text, nl=False)
