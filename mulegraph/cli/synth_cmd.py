"""CLI commands: synth."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mulegraph.cli._app import app, check_writable, handle_errors

__all__ = ["synth"]


@app.command()
@handle_errors
def synth(
    accounts: int = typer.Option(2000, "--accounts", min=100, help="Number of accounts (all roles)."),
    days: int = typer.Option(30, "--days", min=2, help="Length of the period in days."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same bytes."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Folder to write the export, mapping and labels to."),
    start: str = typer.Option("2025-01-01", "--start", help="First day of the period (ISO date, UTC)."),
    mule_share: float = typer.Option(0.02, "--mule-share", min=0.0, max=0.2, help="Share of accounts recruited as mules."),
    currency: str = typer.Option("EUR", "--currency", help="Domestic currency (ISO 4217)."),
    activity: float = typer.Option(0.17, "--activity", min=0.0, help="Mean transfers per account per day."),
    daily: bool = typer.Option(False, "--daily", help="One export file per booking day (exports/transfers_YYYYMMDD.csv)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Write a synthetic bank export with planted mule typologies, its mapping and labels.

    \b
    Example:
      mulegraph synth --accounts 2000 --days 30 --seed 0 --out demo
      mulegraph ingest demo/transfers.csv --store store --mapping demo/mapping.toml
    """
    from mulegraph.synth import check_export_folder, generate, write_export

    check_export_folder(out)
    check_writable(out)
    data = generate(accounts, days, seed, start=start, mule_share=mule_share, currency=currency, activity=activity)
    paths = write_export(data, out, daily=daily)
    summary = {**data.summary(), "files": {k: str(v) for k, v in paths.items()}}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"wrote {summary['transfers']:,} transfers for {summary['accounts']:,} accounts "
        f"({summary['mules']:,} mules, {summary['laundering_transfers']:,} laundering transfers) to {out}"
    )
    for name, path in summary["files"].items():
        typer.echo(f"  {name}: {path}")
