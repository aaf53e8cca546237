"""CLI commands: score; the seed options that ``score`` and ``run`` share."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

from mulegraph.cli._app import EngineKind, app, check_out_file, engine_option, handle_errors, scheduler_option


def known_option():
    """``--known FILE``: accounts known at scoring time (one definition for score and run)."""
    return typer.Option(
        None, "--known", metavar="FILE",
        help="Known accounts (CSV or Parquet: account_id[, is_mule]; without is_mule every row is a confirmed mule): "
        "seeds of the model's closeness features, no retraining needed.",
    )


def shared_list_option():
    """``--shared-list FILE`` (repeatable): consortium lists of keyed hashes."""
    return typer.Option(
        None, "--shared-list", metavar="FILE",
        help="A consortium list from 'mulegraph share export' (repeatable): accounts of the window whose keyed hash "
        "is listed become seeds. Needs --key-file.",
    )


def key_file_option():
    """``--key-file FILE``: the consortium key the shared lists were made with."""
    return typer.Option(
        None, "--key-file", metavar="FILE", help="The consortium key file (at least 32 random bytes) of --shared-list."
    )


@app.command("score")
@handle_errors
def score_cmd(
    store: Path | None = typer.Option(None, "--store", help="The store directory (made by 'mulegraph ingest')."),
    out: Path | None = typer.Option(None, "--out", help="Output file: .parquet, .csv or .json."),
    model: Path | None = typer.Option(
        None, "--model", help="A model folder from 'mulegraph train'; without it the no-label rules rank accounts."
    ),
    window: str = typer.Option("all", "--window", help="Window to score, e.g. 30d or 72h; 'all' = the whole store."),
    as_of: str | None = typer.Option(None, "--as-of", help="End of the window (ISO 8601); default: the newest transfer."),
    config: Path | None = typer.Option(None, "--config", help="A mulegraph.toml with settings."),
    top_reasons: int = typer.Option(5, "--top-reasons", min=3, max=5, help="Reasons per account (3-5)."),
    evidence_top: int = typer.Option(
        100, "--evidence-top", min=0, max=1_000_000, help="Gather the transfer ids behind the reasons for this many top accounts."
    ),
    detector_weight: float = typer.Option(
        0.0, "--detector-weight", min=0.0, max=1.0, help="No-label mode: weight of the IsolationForest (0 = rules only)."
    ),
    elsewhere_blend: str = typer.Option(
        "auto", "--elsewhere-blend", metavar="W|auto|off",
        help="A model scoring a store it was not trained on (a portable model, another store): weight 0-1 of the "
        "local no-label score blended with it, 'auto' (chosen from the seeds' mules, out-of-fold; 0.75 with fewer "
        "than 4 of them) or 'off'.",
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Run id written into every row."),
    show: int = typer.Option(10, "--show", min=0, max=1_000_000, help="Print this many top accounts."),
    list_rules: bool = typer.Option(False, "--list-rules", help="Print the no-label rules and their weights, then exit."),
    engine: EngineKind | None = engine_option(),
    scheduler: str | None = scheduler_option(),
    known: Path | None = known_option(),
    shared_list: list[Path] | None = shared_list_option(),
    key_file: Path | None = key_file_option(),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary (counts, model version, seeds) instead of the table."),
) -> None:
    """Score and rank every account active in the window, with reasons; write them to --out.

    With a model, the closeness features read every account known now (the seeds): the model's
    training labels when this is the store it was trained on, the investigator decisions in the
    store, --known, and matches of --shared-list. A model scoring a store it was not trained on is
    blended with the local no-label score (--elsewhere-blend).

    \b
    Examples:
      mulegraph score --store store --window 30d --out scores.parquet            # no-label rules
      mulegraph score --store store --model model/ --out scores.csv --show 20
      mulegraph score --store store --model portable/ --known confirmed.csv --out scores.parquet
      mulegraph score --store store --model portable/ --known confirmed.csv --elsewhere-blend 0.75 --out s.parquet
      mulegraph score --store store --model model/ --shared-list peers.csv --key-file consortium.key --out s.parquet
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    import polars as pl

    from mulegraph.core.config import discover_config
    from mulegraph.core.errors import InputError
    from mulegraph.core.escape import terminal_text
    from mulegraph.engine import engine_settings
    from mulegraph.scoring.blend import parse_blend
    from mulegraph.scoring.score import ScoreOptions, score_window, scores_parquet, write_scores
    from mulegraph.scoring.seeds import SeedInputs, describe_seeds

    if list_rules:
        from mulegraph.scoring.nolabel import rules_frame

        for r in rules_frame().iter_rows(named=True):
            typer.echo(f"{r['code']:<24} weight {r['weight']:<5} {r['typology']}: {r['description']} [{r['combine']} of {r['features']}]")
        return
    if store is None or out is None:
        raise InputError("score needs --store DIR and --out FILE (or --list-rules).")
    check_out_file(out, (".parquet", ".csv", ".json"))

    blend = parse_blend(elsewhere_blend)
    cfg = engine_settings(discover_config(config), engine, scheduler)
    seeds = SeedInputs.load(known, shared_list, key_file)  # a bad file or key fails before any work
    console = Console(stderr=True)
    # only what scoring needs is held (lean); a .parquet file is written as the reasons are built
    chunked = out.suffix.lower() == ".parquet"
    with console.status("scoring") as status, (scores_parquet(out) if chunked else contextlib.nullcontext()) as sink:
        result = score_window(
            store,
            model_dir=model,
            window=window,
            as_of=as_of,
            config=cfg,
            run_id=run_id,
            progress=lambda stage: status.update(stage),
            options=ScoreOptions(n_reasons=top_reasons, evidence_top=evidence_top, detector_weight=detector_weight,
                                 elsewhere_blend=blend),
            seeds=seeds,
            lean=True,
            sink=None if sink is None else sink.write,
        )
    scores = result.scores
    if chunked:
        path = out
        scores = pl.read_parquet(path, n_rows=show) if show else scores.head(0)  # the top rows, reasons included
    else:
        path = write_scores(scores, out)
    summary = result.seeds.summary() if result.seeds is not None else None
    if as_json:
        typer.echo(json.dumps({"scored": result.scores.height, "out": str(path), "model_version": result.model_version,
                               "window": result.window.describe(), "seeds": summary}, indent=2))
        return
    mode = "model" if model is not None else "no-label rules"
    typer.echo(f"scored {result.scores.height:,} accounts ({mode}) -> {path}")
    if summary is not None:
        typer.echo(describe_seeds(summary))
    if show and scores.height:
        table = Table(title=f"top {min(show, scores.height)}")
        for col in ("rank", "account", "score", "strongest reason"):
            table.add_column(col)
        for row in scores.head(show).iter_rows(named=True):
            reasons = row["reasons"] or []
            first = reasons[0]["text"] if reasons else ""
            # values from the data as plain text: no Rich markup, control characters made visible
            table.add_row(str(row["rank"]), Text(terminal_text(row["account_id"])), f"{row['score']:.3f}",
                          Text(terminal_text(first)))
        Console().print(table)
