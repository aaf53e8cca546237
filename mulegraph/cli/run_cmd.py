"""CLI commands: run (the nightly batch): options -> :func:`mulegraph.pipeline.run` -> a summary."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mulegraph.cli._app import EngineKind, app, engine_option, handle_errors, scheduler_option
from mulegraph.cli.score_cmd import key_file_option, known_option, shared_list_option
from mulegraph.core.config import LIMITS
from mulegraph.core.errors import EXIT_NOTHING_NEW, NothingNewError

__all__ = ["run_command"]


@app.command("run")
@handle_errors
def run_command(
    paths: list[Path] | None = typer.Argument(
        None, help="Export files, folders or glob patterns to ingest instead of the inbox.", show_default=False
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."
    ),
    inbox: Path | None = typer.Option(None, "--inbox", help="Folder where new exports land. [run] inbox; default inbox/."),
    store: Path | None = typer.Option(None, "--store", help="The store folder. [store] path; default store/."),
    runs: Path | None = typer.Option(None, "--runs", help="Where run folders go. [run] runs_dir; default runs/."),
    model: Path | None = typer.Option(
        None, "--model", help="A model folder from 'mulegraph train'. [run] model; without one: the no-label mode."
    ),
    window: str | None = typer.Option(None, "--window", help="Window ending at the newest transfer, e.g. 30d. [run] window."),
    as_of: str | None = typer.Option(None, "--as-of", help="End of the window (ISO 8601) instead of the newest transfer."),
    alert_budget: int | None = typer.Option(
        None, "--alert-budget", min=0, max=int(LIMITS["run"]["alert_budget"].hi), help="At most this many alerts. [run] alert_budget."
    ),
    alert_threshold: float | None = typer.Option(
        None, "--alert-threshold", min=0.0, max=1.0, help="Only alert scores at least this. [run] alert_threshold."
    ),
    mapping: str | None = typer.Option(None, "--mapping", help="Column mapping of the exports: a built-in name or a TOML file."),
    force: bool = typer.Option(False, "--force", help="Score again even when nothing is new."),
    engine: EngineKind | None = engine_option(),
    scheduler: str | None = scheduler_option(),
    known: Path | None = known_option(),
    shared_list: list[Path] | None = shared_list_option(),
    key_file: Path | None = key_file_option(),
    elsewhere_blend: str | None = typer.Option(
        None, "--elsewhere-blend", metavar="W|auto|off",
        help="A model scoring a store it was not trained on (a portable model): weight 0-1 of the local no-label "
        "score blended with it, 'auto' or 'off'. [run] elsewhere_blend; default auto.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's manifest as JSON instead of a summary."),
) -> None:
    """Ingest new exports, compute features, score, alert and report: one run folder under runs/.

    Exit codes: 0 done; 1 failure; 2 bad input; 3 nothing new since the latest run (use --force).
    Relative paths in the config are read from the working directory.

    \b
    Examples:
      mulegraph run --config mulegraph.toml
      mulegraph run exports/2025-01-31.csv --store store --runs runs --window 30d --alert-budget 50
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from mulegraph.core.config import discover_config
    from mulegraph.engine import engine_settings
    from mulegraph.pipeline import STAGES, run

    cfg = engine_settings(discover_config(config), engine, scheduler)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[stage]:<9}"),
        BarColumn(bar_width=20),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=quiet or as_json,
    )
    task = progress.add_task("starting", total=len(STAGES), stage="run")

    def on_progress(stage: str, message: str) -> None:  # the stages before this one are done
        progress.update(task, description=message, stage=stage, completed=STAGES.index(stage))

    try:
        with progress:
            result = run(
                cfg,
                paths=paths or None,
                inbox=inbox,
                store=store,
                runs_dir=runs,
                model=model,
                window=window,
                as_of=as_of,
                alert_budget=alert_budget,
                alert_threshold=alert_threshold,
                mapping=mapping,
                force=force,
                progress=on_progress,
                known=known,
                shared_lists=shared_list,
                key_file=key_file,
                elsewhere_blend=elsewhere_blend,
            )
            progress.update(task, completed=len(STAGES))
    except NothingNewError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(EXIT_NOTHING_NEW) from None
    if as_json:
        typer.echo(json.dumps(result.manifest, indent=2, default=str))
        return
    _print_summary(result)


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    m, c = result.manifest, result.counts
    ing = m.get("ingest", {})
    table = Table(title=f"run {result.run_id}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("window", f"{m['window']['start'] or 'beginning'} to {m['window']['end']}")
    table.add_row("mode", m["model"]["mode"] + (f" ({m['model']['version']})" if m["model"].get("version") else ""))
    if m.get("seeds"):
        s = m["seeds"]
        by = ", ".join(f"{k} {v['mules']:,}/{v['not_mules']:,}" for k, v in s["by_source"].items())
        table.add_row("seeds", f"{s['mules']:,} mules, {s['not_mules']:,} non-mules (mules/non-mules by source: {by})")
    table.add_row(
        "ingested",
        f"{ing.get('accepted', 0):,} accepted, {ing.get('quarantined', 0):,} quarantined, "
        f"{ing.get('duplicates', 0):,} duplicates; {len(ing.get('skipped_files') or [])} file(s) seen before",
    )
    table.add_row("scored", f"{c.get('scored', 0):,} of {c.get('accounts', 0):,} accounts, {c.get('transfers_in_window', 0):,} transfers")
    table.add_row(
        "alerts",
        f"{c.get('alerts', 0)} (new {c.get('new', 0)}, persisting {c.get('persisting', 0)}, "
        f"dropped {c.get('dropped', 0)}, suppressed {c.get('suppressed', 0)})",
    )
    if c.get("drift_warnings"):
        table.add_row("drift", f"[yellow]{c['drift_warnings']} feature(s) with PSI above the warning level[/yellow]")
    eng = m.get("engine") or {}
    if eng.get("kind") == "dask":
        table.add_row("engine", f"dask at {eng.get('scheduler')}, {eng.get('workers')} worker(s), {eng.get('shards')} shards")
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in m.get("seconds", {}).items()))
    Console().print(table)
    # on a line of its own, never wrapped by the table: the batch log's reader copies it
    typer.echo(f"report: {(result.run_dir / 'report.html').resolve()}")
    typer.echo(f"  (or: mulegraph report {result.run_dir} --format md)")
