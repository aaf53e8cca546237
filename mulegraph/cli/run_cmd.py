"""CLI commands: run (the nightly batch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mulegraph.core.errors import EXIT_NOTHING_NEW, NothingNewError
from mulegraph.cli._app import app, handle_errors

__all__ = ["run_command", "resolve_config"]

DEFAULT_CONFIG = "mulegraph.toml"


def resolve_config(path: Path | None):
    """``--config`` when given, else ``./mulegraph.toml`` when present, else the defaults."""
    from mulegraph.core.config import Config, load_config

    if path is not None:
        return load_config(path)
    if Path(DEFAULT_CONFIG).is_file():
        return load_config(DEFAULT_CONFIG)
    return Config()


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
    alert_budget: int | None = typer.Option(None, "--alert-budget", min=0, help="At most this many alerts. [run] alert_budget."),
    alert_threshold: float | None = typer.Option(
        None, "--alert-threshold", min=0.0, max=1.0, help="Only alert scores at least this. [run] alert_threshold."
    ),
    mapping: str | None = typer.Option(None, "--mapping", help="Column mapping of the exports: a built-in name or a TOML file."),
    force: bool = typer.Option(False, "--force", help="Score again even when nothing is new."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's manifest as JSON instead of a summary."),
    fail_at: str | None = typer.Option(None, "--fail-at", hidden=True, help="Testing: fail at the end of this stage."),
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

    from mulegraph.pipeline import STAGES, run

    cfg = resolve_config(config)
    if mapping is None:
        _check_config_mapping(cfg.store.mapping, config)
    _check_before_work(cfg, paths, inbox, store, window, as_of)
    model_dir = model if model is not None else (Path(cfg.run.model) if cfg.run.model else None)
    if model_dir is not None and model_dir.exists():
        from mulegraph.scoring.model import load_model

        load_model(model_dir)  # a refused model fails the run now, not after ingest and features
    err_console = Console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[stage]:<9}"),
        BarColumn(bar_width=20),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
        disable=quiet or as_json,
    )
    task = progress.add_task("starting", total=len(STAGES), stage="run")
    done: set[str] = set()

    def on_progress(stage: str, message: str) -> None:
        progress.update(task, description=message, stage=stage)

    def on_stage_end(stage: str) -> None:
        done.add(stage)
        progress.update(task, completed=len(done))

    hooks = {s: (lambda _dir, s=s: on_stage_end(s)) for s in STAGES}
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
                fail_at=fail_at,
                hooks=hooks,
            )
    except NothingNewError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(EXIT_NOTHING_NEW) from None
    if as_json:
        typer.echo(json.dumps(result.manifest, indent=2, default=str))
        return
    _print_summary(result)


def _check_before_work(cfg, paths, inbox: Path | None, store: Path | None, window: str | None, as_of: str | None) -> None:
    """Refuse a bad window or an empty start before the run ingests or creates any folder."""
    from mulegraph.core.errors import InputError
    from mulegraph.pipeline import find_exports
    from mulegraph.core.window import parse_duration, parse_instant

    win = window if window is not None else cfg.run.window
    if win is not None and str(win).strip().lower() != "all":
        parse_duration(win)
    if as_of is not None:
        parse_instant(as_of)
    box = inbox if inbox is not None else Path(cfg.run.inbox)
    if not paths and not Path(store if store is not None else cfg.store.path).exists() and not find_exports(box):
        raise InputError(
            f"no exports were found in the inbox '{box}' and there is no store '{store or cfg.store.path}' yet; "
            "put exports in the inbox, pass their paths, or run from the folder that holds the store."
        )


def _check_config_mapping(value: str, config: Path | None) -> None:
    """A mapping file named in the config must exist; say where relative paths are read from."""
    if config is None or not value.lower().endswith(".toml") or Path(value).is_file():
        return
    from mulegraph.core.errors import ConfigError

    raise ConfigError(
        f"[store] mapping file '{value}' does not exist; paths in '{config.name}' are read from the working "
        f"directory ({Path.cwd()}), not from the config's folder: run from the folder they refer to, make "
        "them absolute, or pass --mapping."
    )


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
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in m.get("seconds", {}).items()))
    Console().print(table)
    # on a line of its own, never wrapped by the table: the batch log's reader copies it
    typer.echo(f"report: {(result.run_dir / 'report.html').resolve()}")
    typer.echo(f"  (or: mulegraph report {result.run_dir} --format md)")
