"""CLI commands: ``share export`` (the bank's confirmed mules as keyed hashes, for a consortium)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mulegraph.cli._app import app, check_out_file, handle_errors

__all__ = ["export_command"]

share_app = typer.Typer(
    name="share", no_args_is_help=True, rich_markup_mode=None,
    help="Consortium lists: confirmed mules shared with member banks as keyed hashes, never as account ids.",
)
app.add_typer(share_app, name="share")


@share_app.command("export")
@handle_errors
def export_command(
    key_file: Path = typer.Option(..., "--key-file", help="The consortium key file (at least 32 random bytes)."),
    out: Path = typer.Option(..., "--out", help="The list to write: .csv or .parquet."),
    store: Optional[Path] = typer.Option(
        None, "--store", help="The store whose investigator decisions to share. [store] path; default store/ when it exists."
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="Also share the mules of this labels file (CSV or Parquet: account_id, is_mule)."
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="Settings file (TOML). Default: ./mulegraph.toml when it exists."),
) -> None:
    """Write the bank's confirmed mules as HMAC-SHA256 hashes under the consortium key.

    An account is shared when its latest investigator decision in the store is 'confirmed', or it is
    a mule in --labels (a later 'cleared' decision takes it off). The list holds one hash per
    account (account_hash, key_id), sorted by hash; no account id leaves the bank. Members match it
    with 'score' or 'run' --shared-list LIST --key-file KEY.

    \b
    Example:
      mulegraph share export --key-file consortium.key --out mules-2025-06.csv --store store
    """
    from mulegraph.core.config import discover_config
    from mulegraph.core.keys import read_key_file
    from mulegraph.io.share import export_list

    check_out_file(out, (".csv", ".parquet"))
    key = read_key_file(key_file, "consortium key file (--key-file)")
    if store is None:
        default = Path(discover_config(config).store.path)
        store = default if default.is_dir() else None
    result = export_list(out, key, store=store, labels=labels)
    typer.echo(
        f"shared {result.accounts:,} confirmed mule(s) as keyed hashes ({result.from_decisions:,} from decisions, "
        f"{result.from_labels:,} from labels; key id {result.key_id}) -> {result.path}"
    )
