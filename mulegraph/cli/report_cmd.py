"""CLI commands: report (options -> :func:`mulegraph.report.render` or :func:`~mulegraph.report.write_report`).

A report printed to standard output passes through :func:`mulegraph.core.escape.visible` (tab and
line feed kept), so no control character or escape sequence from the data reaches the terminal;
``--out`` writes the file exactly as rendered.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from mulegraph.cli._app import app, check_out_path, handle_errors
from mulegraph.core.config import LIMITS
from mulegraph.core.escape import visible

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
    fmt: ReportFormat | None = typer.Option(
        None, "--format", "-f", help="html, md, csv or json. Default: from the --out suffix, else html.", show_default=False
    ),
    top: int | None = typer.Option(
        None, "--top", min=0, max=int(LIMITS["report"]["top"].hi), help="Show this many suspects. [report] top; default 50."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (atomically) instead of standard output."),
    pseudonymise: bool | None = typer.Option(
        None, "--pseudonymise/--no-pseudonymise",
        help="Replace account ids by keyed pseudonyms (key of at least 32 random bytes: MULEGRAPH_PSEUDONYM_KEY "
             "or [report] pseudonym_key).",
    ),
    coarsen: bool | None = typer.Option(
        None, "--coarsen/--no-coarsen",
        help="Round amounts to 2 significant figures and show dates without times. [report] coarsen; default off.",
    ),
    config: Path | None = typer.Option(None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."),
) -> None:
    """Render a run as an HTML, Markdown, CSV or JSON report.

    \b
    Examples:
      mulegraph report --out report.html                 # the latest run under runs/
      mulegraph report runs/20250131T020000Z --format md
      mulegraph report --top 100 --out alerts.csv        # the format follows the suffix
      mulegraph report --pseudonymise --coarsen --out shared.html
    """
    from mulegraph.core.config import discover_config
    from mulegraph.report import load_run, render, report_format, resolve_run_dir, write_report

    chosen = report_format(fmt.value if fmt is not None else None, out)
    if out is not None:
        check_out_path(out)
    cfg = discover_config(config)
    target = resolve_run_dir(run_dir, cfg.run.runs_dir)
    if out is not None:
        path = write_report(target, chosen, out, top=top, config=cfg.report, pseudonymise=pseudonymise, coarsen=coarsen)
        typer.echo(f"wrote {path}", err=True)
        return
    text = render(load_run(target), chosen, top=top if top is not None else cfg.report.top, config=cfg.report,
                  pseudonymise=pseudonymise, coarsen=coarsen)
    typer.echo(visible(text, keep_newlines=True), nl=False)
