"""CLI commands: ``trace`` (a money trail to a picture or graph file) and ``show`` (one account).

Values from the data (account ids, transfer ids, channels, currencies, reason texts) are printed as
Rich ``Text`` built from :func:`mulegraph.core.escape.terminal_text`: never read as markup, and with
control characters and escape sequences shown as visible escapes.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mulegraph.core.errors import InputError
from mulegraph.core.escape import terminal_text
from mulegraph.cli._app import app, check_out_path, handle_errors

__all__ = ["trace_command", "show_command"]


def _console():
    from rich.console import Console

    # wide enough for the tables when the output goes to a file or a pipe
    return Console(width=None if sys.stdout.isatty() else 140)


def _text(value, style: str = ""):
    """A value for the terminal: plain Rich text (no markup), control characters made visible."""
    from rich.text import Text

    return Text(terminal_text(value), style=style)


class Alloc(str, Enum):
    fifo = "fifo"
    proportional = "proportional"


@app.command("trace")
@handle_errors
def trace_command(
    account: str = typer.Argument(..., help="Account id as it appears in the store."),
    store: Path = typer.Option(..., "--store", help="Store folder."),
    out: Path = typer.Option(..., "--out", help="Output file: .png, .svg, .pdf, .html (pictures), .graphml, .gexf or .json (graph files)."),
    backward: bool = typer.Option(False, "--backward", help="Follow the money back to where it came from."),
    hops: int = typer.Option(4, "--hops", min=1, max=12, help="Transfers to follow from the account."),
    within: str = typer.Option("72h", "--within", help="Follow only transfers within this time of the money's arrival."),
    alloc: Alloc = typer.Option(Alloc.fifo, "--alloc", help="How outbound transfers draw on inbound money."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder or scores file, to colour accounts by score."),
    window: str = typer.Option("all", "--window", help="Only transfers in this window (e.g. 30d), or 'all'."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="End of the window (default: newest transfer)."),
    expand_hubs: bool = typer.Option(False, "--expand-hubs", help="Follow money through hub accounts too."),
    config: Optional[Path] = typer.Option(None, "--config", help="mulegraph TOML config ([features] hub settings); default ./mulegraph.toml when present."),
    base_amounts: bool = typer.Option(
        False, "--base-amounts", help="Trace amount_base (amounts in one reporting currency) where the store has it."
    ),
    txn: Optional[list[str]] = typer.Option(
        None, "--txn", help="Start from these transfers of the account only (repeatable): outbound ones, or inbound with --backward."
    ),
) -> None:
    """Follow an account's money forwards (or --backward) in time and write it as a picture or graph.

    \b
    Examples:
      mulegraph trace ACCOUNT --store store --hops 4 --within 72h --out trail.png
      mulegraph trace ACCOUNT --store store --backward --alloc proportional --out trail.html
    """
    from mulegraph.core.config import discover_config
    from mulegraph.investigate import trace_to_file

    check_out_path(out)
    direction = "backward" if backward else "forward"
    trail = trace_to_file(
        store, account, out, run=run, config=discover_config(config), direction=direction, hops=hops, within=within,
        alloc=alloc.value, window=window, as_of=as_of, expand_hubs=expand_hubs, txn_ids=txn or None,
        value="amount_base" if base_amounts else "amount",
    )
    console = _console()
    console.print(_summary_table(trail, f"{direction.capitalize()} trail ({alloc.value}, within {within})"))
    console.print(_text(f"wrote {out} ({trail.accounts.height} accounts, {trail.transfers['txn_id'].n_unique()} transfers)"))


def _summary_table(trail, title: str):
    from rich.table import Table

    table = Table(title=_text(title))
    for col, just in (("hop", "right"), ("transfers", "right"), ("accounts", "right"), ("traced", "right"),
                      ("median dwell (h)", "right"), ("max dwell (h)", "right")):
        table.add_column(col, justify=just)
    for r in trail.summary().to_dicts():
        table.add_row(
            str(r["hop"]), str(r["transfers"]), str(r["accounts"]), f"{r['traced']:,.2f}",
            "-" if r["dwell_median_h"] is None else f"{r['dwell_median_h']:.1f}",
            "-" if r["dwell_max_h"] is None else f"{r['dwell_max_h']:.1f}",
        )
    return table


@app.command("show")
@handle_errors
def show_command(
    account: str = typer.Argument(..., help="Account id as it appears in the store."),
    store: Path = typer.Option(..., "--store", help="Store folder."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder or scores file, for the score and reasons."),
    last: int = typer.Option(15, "--last", min=1, max=1_000_000, help="How many of the newest transfers to list."),
    window: str = typer.Option("all", "--window", help="Only transfers in this window (e.g. 30d), or 'all'."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="End of the window (default: newest transfer)."),
    config: Optional[Path] = typer.Option(None, "--config", help="mulegraph TOML config ([features] hub settings); default ./mulegraph.toml when present."),
) -> None:
    """Print an account's summary, the run's reasons for it and its recent timeline.

    \b
    Example:
      mulegraph show ACCOUNT --store store --run runs/latest --last 20
    """
    from rich.table import Table

    from mulegraph.core.config import discover_config
    from mulegraph.investigate import open_investigation

    inv = open_investigation(store, run, config=discover_config(config))
    s = inv.account_summary(account, window=window, as_of=as_of)
    console = _console()
    summary = Table(title=_text(f"Account {account}"), show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    if s.score is not None:
        summary.add_row("score", f"{s.score:.3f}" + (f" (rank {s.rank})" if s.rank is not None else ""))
    summary.add_row("active", f"{s.first_seen:%Y-%m-%d %H:%M} .. {s.last_seen:%Y-%m-%d %H:%M}")
    summary.add_row("inbound", f"{s.n_in:,} transfers, {s.total_in:,.2f} from {s.senders:,} senders")
    summary.add_row("outbound", f"{s.n_out:,} transfers, {s.total_out:,.2f} to {s.recipients:,} recipients")
    summary.add_row("currencies", _text(", ".join(s.currencies) or "-"))
    summary.add_row("channels", _text(", ".join(s.channels) or "-"))
    summary.add_row("hub", "yes (not expanded in subgraphs and trails)" if s.is_hub else "no")
    if s.decision:
        summary.add_row("decision", f"{s.decision} on {s.decision_date:%Y-%m-%d}")
    console.print(summary)
    if run is not None:
        try:
            reasons = inv.explain(account)
        except InputError as err:
            console.print(_text(f"reasons: {err}"))
        else:
            rt = Table(title="Why it was flagged")
            for col in ("code", "reason", "evidence"):
                rt.add_column(col)
            for r in reasons.to_dicts():
                rt.add_row(_text(r["code"]), _text(r["text"]), f"{r['n_transfers']} transfers, {r['evidence_total']:,.2f}")
            console.print(rt)
    tl = inv.timeline(account, window=window, as_of=as_of, last=last)
    tt = Table(title=f"Last {tl.height} transfers")
    for col, just in (("time (UTC)", "left"), ("txn", "left"), ("dir", "left"), ("counterparty", "left"),
                      ("amount", "right"), ("balance", "right"), ("channel", "left")):
        tt.add_column(col, justify=just)
    for r in tl.to_dicts():
        tt.add_row(f"{r['ts']:%Y-%m-%d %H:%M}", _text(r["txn_id"]), _text(r["direction"]), _text(r["counterparty"]),
                   f"{r['flow']:+,.2f}", f"{r['balance']:,.2f}", _text(r["channel"]))
    console.print(tt)
