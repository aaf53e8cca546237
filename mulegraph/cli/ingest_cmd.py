"""CLI commands: ``ingest`` (exports into the store) and ``store-info`` (what a store holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mulegraph.core.errors import NothingNewError
from mulegraph.cli._app import app, handle_errors

__all__ = ["ingest_command", "store_info_command"]


def _print_report(d: dict, console) -> None:
    from rich.table import Table
    from rich.text import Text

    from mulegraph.core.escape import terminal_text

    table = Table(title=Text(terminal_text(f"Ingest into {d['store']}")), show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for f in d["files"]:
        if f["status"] != "ingested":
            console.print(Text(terminal_text(f"{f['path']}: already ingested (ingest {f['ingest_id']}); accepted 0")))
    table.add_row("files ingested", str(sum(f["status"] == "ingested" for f in d["files"])))
    table.add_row("files already ingested", str(len(d["skipped_files"])))
    table.add_row("rows read", f"{d['rows_read']:,}")
    table.add_row("accepted", f"{d['accepted']:,}")
    table.add_row("quarantined", f"{d['quarantined']:,}")
    for rule, n in d["quarantined_by_rule"].items():
        if n:
            table.add_row(f"  {rule}", f"{n:,}")
    table.add_row("duplicates", f"{d['duplicates']:,}")
    table.add_row("date range", f"{d['date_min'] or '-'} .. {d['date_max'] or '-'}")
    table.add_row("accounts", f"{d['accounts']:,}")
    if d.get("labels_out"):
        table.add_row("labels written", Text(terminal_text(f"{d['labels_written']:,} to {d['labels_out']}")))
    console.print(table)


@app.command("ingest")
@handle_errors
def ingest_command(
    exports: list[str] = typer.Argument(..., help="Export files (CSV, CSV.gz, Parquet), folders or glob patterns."),
    store: Optional[Path] = typer.Option(
        None, "--store", help="Store folder (created when missing). [store] path; default store/."
    ),
    mapping: Optional[str] = typer.Option(
        None, "--mapping",
        help="Built-in mapping (canonical, ibm-aml, amlgentex) or a mapping TOML file. [store] mapping; default canonical.",
    ),
    labels_out: Optional[Path] = typer.Option(
        None, "--labels-out", help="Write the mapping's label columns here (.parquet or .csv); never stored."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."
    ),
) -> None:
    """Ingest transfer exports into the store: map, validate, quarantine bad rows, deduplicate.

    Exit codes: 0 done; 2 bad input; 3 every export was ingested already.

    \b
    Examples:
      mulegraph ingest exports/2025-01-31.csv --store store --mapping my-bank.toml
      mulegraph ingest exports/ --store store --mapping ibm-aml --labels-out labels.parquet
    """
    from rich.console import Console

    from mulegraph.core.atomic import disk_full_names
    from mulegraph.core.config import discover_config
    from mulegraph.ingest import ingest
    from mulegraph.ingest.interrupt import interrupt_report

    cfg = discover_config(config)
    store = store if store is not None else Path(cfg.store.path)
    mapping = mapping if mapping is not None else cfg.store.mapping
    console = Console(stderr=as_json)
    progress = None
    status = None
    if not as_json and console.is_terminal:
        status = console.status("ingesting ...")
        status.start()

        def progress(stage: str, file: str) -> None:
            status.update(f"{stage}: {file}")

    try:
        with interrupt_report(store), disk_full_names(store):
            report = ingest(exports, store, mapping=mapping, labels_out=labels_out, progress=progress)
        code = 0
    except NothingNewError as err:
        report = err.report  # type: ignore[attr-defined]
        code = err.exit_code
    finally:
        if status is not None:
            status.stop()
    d = report.to_dict()
    if as_json:
        typer.echo(json.dumps(d))
    else:
        _print_report(d, Console())
        if code:
            typer.echo("nothing new: every export was already ingested.", err=True)
    raise typer.Exit(code)


@app.command("store-info")
@handle_errors
def store_info_command(
    store: Optional[Path] = typer.Option(None, "--store", help="Store folder. [store] path; default store/."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."
    ),
) -> None:
    """Show what a store holds: rows, accounts, date range, files, quarantined rows.

    \b
    Example:
      mulegraph store-info --store store --json
    """
    from rich.console import Console
    from rich.table import Table

    from mulegraph.core.config import discover_config
    from mulegraph.io.store import Store

    s = Store.open(store if store is not None else discover_config(config).store.path)
    d = s.summary()
    if as_json:
        typer.echo(json.dumps(d))
        return
    table = Table(title=f"Store {d['path']}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for k in ("rows", "accounts", "files", "quarantined", "duplicates", "decisions"):
        table.add_row(k, f"{d[k]:,}")
        if k == "quarantined":
            for rule, n in d["quarantined_by_rule"].items():
                if n:
                    table.add_row(f"  {rule}", f"{n:,}")
    table.add_row("date range", f"{d['date_min'] or '-'} .. {d['date_max'] or '-'}")
    Console().print(table)
