"""CLI commands: score."""

from __future__ import annotations

from pathlib import Path

import typer

from mulegraph.cli._app import EngineKind, app, check_out_file, engine_option, handle_errors, scheduler_option


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
    run_id: str | None = typer.Option(None, "--run-id", help="Run id written into every row."),
    show: int = typer.Option(10, "--show", min=0, max=1_000_000, help="Print this many top accounts."),
    list_rules: bool = typer.Option(False, "--list-rules", help="Print the no-label rules and their weights, then exit."),
    engine: EngineKind | None = engine_option(),
    scheduler: str | None = scheduler_option(),
) -> None:
    """Score and rank every account active in the window, with reasons; write them to --out.

    \b
    Examples:
      mulegraph score --store store --window 30d --out scores.parquet            # no-label rules
      mulegraph score --store store --model model/ --out scores.csv --show 20
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from mulegraph.core.config import load_config
    from mulegraph.core.errors import InputError
    from mulegraph.core.escape import terminal_text
    from mulegraph.engine import engine_settings
    from mulegraph.scoring.score import ScoreOptions, score, write_scores

    if list_rules:
        from mulegraph.scoring.nolabel import rules_frame

        for r in rules_frame().iter_rows(named=True):
            typer.echo(f"{r['code']:<24} weight {r['weight']:<5} {r['typology']}: {r['description']} [{r['combine']} of {r['features']}]")
        return
    if store is None or out is None:
        raise InputError("score needs --store DIR and --out FILE (or --list-rules).")
    check_out_file(out, (".parquet", ".csv", ".json"))

    cfg = engine_settings(load_config(config), engine, scheduler)
    console = Console(stderr=True)
    with console.status("scoring") as status:
        scores = score(
            store,
            model_dir=model,
            window=window,
            as_of=as_of,
            config=cfg,
            run_id=run_id,
            progress=lambda stage: status.update(stage),
            options=ScoreOptions(n_reasons=top_reasons, evidence_top=evidence_top, detector_weight=detector_weight),
        )
    path = write_scores(scores, out)
    mode = "model" if model is not None else "no-label rules"
    typer.echo(f"scored {scores.height:,} accounts ({mode}) -> {path}")
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
