"""CLI command: ``features`` (store -> one row of features per account, or the feature list)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mulegraph.core.errors import InputError
from mulegraph.cli._app import EngineKind, app, check_out_file, engine_option, handle_errors, scheduler_option

__all__ = ["features_command"]


@app.command("features")
@handle_errors
def features_command(
    store: Optional[Path] = typer.Option(None, "--store", help="Store folder made by 'mulegraph ingest'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output Parquet file (written atomically)."),
    window: str = typer.Option("all", "--window", help="Window length such as 30d or 72h, or 'all'."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="End of the window (ISO 8601); default: newest transfer."),
    config: Optional[Path] = typer.Option(None, "--config", help="mulegraph TOML config ([features] section)."),
    family: Optional[list[str]] = typer.Option(None, "--family", help="Compute only this family (repeatable)."),
    list_: bool = typer.Option(False, "--list", help="List every feature (name, family, unit, description) and exit."),
    markdown: bool = typer.Option(False, "--markdown", help="With --list: print a Markdown table."),
    engine: Optional[EngineKind] = engine_option(),
    scheduler: Optional[str] = scheduler_option(),
) -> None:
    """Compute per-account features over a window of the store, or list the features.

    \b
    Examples:
      mulegraph features --store store --window 30d --out features.parquet
      mulegraph features --list
    """
    from rich.console import Console

    from mulegraph.core.config import discover_config
    from mulegraph.engine import engine_settings
    from mulegraph.features.build import build_features, feature_table, feature_table_markdown, write_features

    console = Console()
    if list_:
        if markdown:
            typer.echo(feature_table_markdown())
            return
        from rich.table import Table

        table = Table(title="mulegraph features")
        for col in ("name", "family", "unit", "direction", "description"):
            table.add_column(col)
        for r in feature_table().iter_rows():
            table.add_row(*(str(v) for v in r))
        console.print(table)
        return
    if store is None or out is None:
        raise InputError("features needs --store DIR and --out FILE.parquet (or --list to list the features).")
    check_out_file(out, (".parquet",))
    cfg = engine_settings(discover_config(config), engine, scheduler)
    stats: dict = {}
    feats = build_features(store, window=window, as_of=as_of, config=cfg, progress=True, families=family, stats=stats)
    path = write_features(feats, out)
    console.print(
        f"features: {stats['accounts']:,} accounts from {stats['transfers']:,} transfers in "
        f"{stats['window']}, {feats.width - 2} features, {stats['seconds']:.1f} s -> {path}"
    )
    slow = ", ".join(f"{k} {v:.1f}s" for k, v in stats["timings"].items())
    console.print(f"  per step: {slow}")
    eng = stats["engine"]
    if eng["shards"]:
        console.print(f"  {eng['shards']} shards on the {eng['kind']} engine" + (
            f" at {eng['scheduler']}, {eng['workers']} worker(s)" if eng["scheduler"] else ""))
