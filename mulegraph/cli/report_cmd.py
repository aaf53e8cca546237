"""CLI commands: report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from mulegraph.core.errors import InputError
from mulegraph.cli._app import app, check_writable, handle_errors

__all__ = ["report_command", "ReportFormat"]


class ReportFormat(str, Enum):
    html = "html"
    md = "md"
    csv = "csv"
    json = "json"


_SUFFIX_FORMATS = {".html": ReportFormat.html, ".htm": ReportFormat.html, ".md": ReportFormat.md,
                   ".csv": ReportFormat.csv, ".json": ReportFormat.json}


def _choose_format(fmt: ReportFormat | None, out: Path | None) -> ReportFormat:
    """The format: --format, else the one --out's suffix names; a suffix that does not fit is an error."""
    if out is None:
        return fmt or ReportFormat.html
    by_suffix = _SUFFIX_FORMATS.get(out.suffix.lower())
    if by_suffix is None:
        raise InputError(f"--out '{out.name}' must end in .html, .md, .csv or .json; pass e.g. --out report.html.")
    if fmt is not None and fmt is not by_suffix:
        raise InputError(
            f"--format {fmt.value} does not fit --out '{out.name}'; use a .{fmt.value} file name or leave out --format."
        )
    return by_suffix


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
    top: int | None = typer.Option(None, "--top", min=0, help="Show this many suspects. [report] top; default 50."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (atomically) instead of standard output."),
    pseudonymise: bool | None = typer.Option(
        None, "--pseudonymise/--no-pseudonymise",
        help="Replace account ids by keyed pseudonyms (key: MULEGRAPH_PSEUDONYM_KEY or [report] pseudonym_key).",
    ),
    config: Path | None = typer.Option(None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."),
) -> None:
    """Render a run as an HTML, Markdown, CSV or JSON report.

    \b
    Examples:
      mulegraph report --out report.html                 # the latest run under runs/
      mulegraph report runs/20250131T020000Z --format md
      mulegraph report --top 100 --out alerts.csv        # the format follows the suffix
    """
    from mulegraph.report import load_run, render, resolve_run_dir, write_report
    from mulegraph.cli.run_cmd import resolve_config

    fmt = _choose_format(fmt, out)
    if out is not None:
        check_writable(out.parent)
    cfg = resolve_config(config)
    target = resolve_run_dir(run_dir, cfg.run.runs_dir)
    if out is not None:
        path = write_report(target, fmt.value, out, top=top, config=cfg.report, pseudonymise=pseudonymise)
        typer.echo(f"wrote {path}", err=True)
        return
    text = render(load_run(target), fmt.value, top=top if top is not None else cfg.report.top, config=cfg.report,
                  pseudonymise=pseudonymise)
    typer.echo(text, nl=False)
