"""CLI commands: ``train`` (labels + store -> model folder), ``model export`` (a portable copy) and
``evaluate`` (scores vs labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mulegraph.cli._app import EngineKind, app, check_writable, engine_option, handle_errors, scheduler_option

__all__ = ["train_command", "export_command", "evaluate_command"]

model_app = typer.Typer(
    name="model", no_args_is_help=True, rich_markup_mode=None, help="Model folders: export a portable copy."
)
app.add_typer(model_app, name="model")


@app.command("train")
@handle_errors
def train_command(
    store: Path = typer.Option(..., "--store", help="Store folder made by 'mulegraph ingest'."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels file (CSV or Parquet): account_id, is_mule[, typology]."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (created if needed)."),
    decisions: Optional[Path] = typer.Option(
        None, "--decisions", help="Investigator decisions (CSV or Parquet): account_id, decision=confirmed|cleared, date, note."
    ),
    store_decisions: bool = typer.Option(
        True,
        "--store-decisions/--no-store-decisions",
        help="Also use the investigator decisions recorded in the store (the default).",
    ),
    window: str = typer.Option("all", "--window", help="Window length such as 30d or 72h, or 'all' (the whole store)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="End of the window (ISO 8601); default: newest transfer."),
    config: Optional[Path] = typer.Option(None, "--config", help="mulegraph TOML config ([features] and [model] sections)."),
    engine: Optional[EngineKind] = engine_option(),
    scheduler: Optional[str] = scheduler_option(),
    portable: bool = typer.Option(
        False,
        "--portable",
        help="Write a portable model: no account ids (no known labels), for use at another bank; its closeness features "
        "are learned from half of the training mules as seeds, as a bank that scores with it knows only some of its own "
        "([model] closeness_seed_share).",
    ),
) -> None:
    """Train the supervised model on labelled accounts and write it with its model card.

    Every file of the model folder is listed with its sha256 in checksums.json; when a model
    signing key is set ([model] signing_key_file, or MULEGRAPH_MODEL_KEY), the folder is signed
    too, and score and run then accept only folders signed with that key.

    Labels come from --labels, investigator decisions from --decisions and from the store
    (decisions recorded with Investigation.record_decision or Store.add_decisions); an account's
    latest decision overrides its label.

    \b
    Example:
      mulegraph train --store store --labels labels.csv --out model/
      mulegraph train --store store --labels labels.csv --portable --out model-portable/
    """
    from rich.console import Console

    from mulegraph.core.config import discover_config
    from mulegraph.core.keys import model_signing_key
    from mulegraph.engine import engine_settings
    from mulegraph.io.labels import training_labels
    from mulegraph.scoring.model import check_model_dir, save_model, train_from_store

    check_model_dir(out)
    check_writable(out)
    cfg = engine_settings(discover_config(config), engine, scheduler)
    key = model_signing_key(cfg.model)  # a missing or short key fails before training
    table = training_labels(labels, decisions, store=store if store_decisions else None)
    console = Console(stderr=True)
    with console.status("training") as status:
        model, stats = train_from_store(
            store, table, window=window, as_of=as_of, config=cfg, progress=lambda stage: status.update(stage), portable=portable
        )
        card = save_model(model, out, portable=portable, key=key)
    cv = model.cv_metrics_
    counts = model.label_counts_
    typer.echo(
        f"trained on {counts['mule']:,} mules and {counts['not_mule']:,} other accounts "
        f"({stats['transfers']:,} transfers, {stats['window']}); {counts['unmatched']:,} labels unused"
    )
    typer.echo(
        f"cross-validated ({cv['folds']} {cv['fold_scheme']} folds): PR-AUC {cv['pr_auc']:.3f} ± {cv['pr_auc_std']:.3f}, "
        f"ROC-AUC {cv['roc_auc_pooled']:.3f}; settings {model.best_params_}"
    )
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(model.feature_importance.items())[:5])
    typer.echo(f"strongest features: {top}")
    typer.echo(f"model -> {card.parent} (card: {card.name}, model_card.md)")
    typer.echo(_sealed(model.model_version, key, portable))


def _sealed(version: str, key: bytes | None, portable: bool) -> str:
    from mulegraph.core.keys import key_id

    signed = f"signed with key id {key_id(key)}" if key is not None else "not signed (no model signing key set)"
    return f"model version {version}; checksums.json written, {signed}" + ("; portable: no account ids" if portable else "")


@model_app.command("export")
@handle_errors
def export_command(
    model: Path = typer.Option(..., "--model", help="The model folder to export (from 'mulegraph train')."),
    out: Path = typer.Option(..., "--out", help="The folder to write the portable model to (a new or empty one)."),
    portable: bool = typer.Option(False, "--portable", help="Leave out every account id (required: the only export form)."),
    config: Optional[Path] = typer.Option(None, "--config", help="mulegraph TOML config (for [model] signing_key_file)."),
) -> None:
    """Write a copy of a model that carries no account ids, for another bank.

    The copy has the weights and the model card but no known labels, no training-store identity and
    no hub account names. Where it scores, its closeness features read that bank's own seeds
    (investigator decisions, --known, --shared-list). The source is verified first, and the copy is
    signed when a model signing key is set.

    \b
    Example:
      mulegraph model export --model model/ --portable --out model-portable/
      mulegraph score --store other-store --model model-portable/ --known confirmed.csv --out scores.parquet
    """
    from mulegraph.core.config import discover_config
    from mulegraph.core.errors import InputError
    from mulegraph.core.keys import model_signing_key
    from mulegraph.scoring.persist import check_model_dir, export_portable, verify_model_dir
    from mulegraph.scoring.training import seed_share

    if not portable:
        raise InputError("model export writes the portable form only; pass --portable (copy the folder for a full copy).")
    check_model_dir(out)
    check_writable(out)
    key = model_signing_key(discover_config(config).model)
    card = export_portable(model, out, key=key)
    typer.echo(f"portable model -> {card.parent}")
    typer.echo(_sealed(verify_model_dir(card.parent, key=key), key, True))
    share = (json.loads(card.read_text()).get("config", {}).get("model") or {}).get("closeness_seed_share", "auto")
    if seed_share(share) >= 1.0:
        typer.echo("note: this model learned closeness with every training mule as a seed; a bank that knows only some of "
                   "its mules scores better with a model trained by 'mulegraph train --portable' (closeness from part of the mules).")


@app.command("evaluate")
@handle_errors
def evaluate_command(
    scores: Path = typer.Option(
        ..., "--scores", help="Scores file (.parquet, .csv or .json) with account_id and score, or a run folder."
    ),
    labels: Path = typer.Option(..., "--labels", help="Labels file (CSV or Parquet): account_id, is_mule[, typology]."),
    split: Optional[Path] = typer.Option(None, "--split", help="Split file (account_id, split = train|test): evaluate the test accounts only."),
    budget: Optional[list[float]] = typer.Option(
        None, "--budget", help="Alert budget as a fraction of accounts (repeatable); default 0.005, 0.01, 0.02."
    ),
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """PR-AUC, ROC-AUC, precision and recall at alert budgets, and recall per typology.

    \b
    Examples:
      mulegraph evaluate --scores scores.parquet --labels labels.csv
      mulegraph evaluate --scores runs/latest --labels labels.csv --budget 0.01 --json
    """
    from mulegraph.scoring.evaluate import DEFAULT_BUDGETS, evaluate, format_table, read_scores, read_split, to_json
    from mulegraph.io.labels import read_labels

    result = evaluate(
        read_scores(scores), read_labels(labels), read_split(split) if split else None, tuple(budget) if budget else DEFAULT_BUDGETS
    )
    typer.echo(to_json(result) if json_ else format_table(result))
