"""The alerts of a run: choice within the budget, lifecycle, reason summaries, key figures, flows.

:func:`compute_alerts` picks this run's alerts (the top ranked accounts within the alert budget,
at least the threshold) and classifies them against the previous run's alerts:

* ``new`` or ``persisting``: alerted now, and not / already alerted in the previous run;
* ``dropped``: alerted in the previous run, not now;
* ``suppressed``: cleared by an investigator and among the top ``budget`` without that decision;
  such an account is alerted again only when its score rose by more than ``cleared_margin``
  above its score in the last run before the decision (:func:`cleared_reference_scores`; the previous
  run's score when no run preceded the decision).

For the alerted accounts, :func:`reason_summary` condenses the reasons, :func:`key_figures` adds
counts and values in and out, and :func:`flows` aggregates the transfers drawn in the report.
:func:`write_alerts` writes ``alerts.parquet`` (:data:`~mulegraph.core.schema.ALERT_COLUMNS`,
reasons as a struct list), ``alerts.csv`` (reasons as JSON text) and ``alerts.json``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.escape import neutralise_formulas
from mulegraph.core.schema import ALERT_COLUMNS, CHANGE_COLUMNS, FLOW_COLUMNS, reasons_to_json
from mulegraph.features.pairs import fixed_sum
from mulegraph.io.runs import list_runs

__all__ = [
    "compute_alerts",
    "latest_decisions",
    "run_times",
    "cleared_reference_scores",
    "read_previous_alerts",
    "reason_summary",
    "key_figures",
    "flows",
    "write_alerts",
]

_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def latest_decisions(decisions: pl.DataFrame) -> pl.DataFrame:
    """The latest decision per account: ``account_id, decision, decision_date``."""
    if decisions.height == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "decision": pl.String, "decision_date": pl.Datetime("us", "UTC")})
    return (
        decisions.with_row_index("_order")
        .sort(["account_id", "date", "_order"])
        .group_by("account_id", maintain_order=True)
        .agg(pl.col("decision").last(), pl.col("date").last().alias("decision_date"))
    )


def cleared_reference_scores(cleared: pl.DataFrame, runs: Sequence[tuple[datetime, Path]], previous: Path | None) -> pl.DataFrame:
    """For each cleared account, its score in the last run created at or before the decision.

    ``runs``: (created_at, run folder) of earlier runs. Falls back to the previous run's score.
    Returns ``account_id, reference_score``.
    """
    schema = {"account_id": pl.String, "reference_score": pl.Float64}
    if cleared.height == 0:
        return pl.DataFrame(schema=schema)
    runs = sorted(runs, key=lambda r: r[0])
    # which run each clearing decision refers to (vectorised as-of join on the run times)
    if runs:
        run_tab = pl.DataFrame(
            {"created_at": [r[0] for r in runs], "run_dir": [str(r[1]) for r in runs]},
            schema={"created_at": pl.Datetime("us", "UTC"), "run_dir": pl.String},
        ).sort("created_at")
        ref = cleared.sort("decision_date").join_asof(
            run_tab, left_on="decision_date", right_on="created_at", strategy="backward"
        )
    else:
        ref = cleared.with_columns(pl.lit(None, dtype=pl.String).alias("run_dir"))
    if previous is not None:
        ref = ref.with_columns(pl.col("run_dir").fill_null(str(previous)))
    parts = []
    for run_dir, group in ref.filter(pl.col("run_dir").is_not_null()).group_by("run_dir"):
        path = Path(run_dir[0]) / "scores.parquet"
        if not path.is_file():
            continue
        ids = group["account_id"]
        parts.append(
            pl.scan_parquet(path)
            .filter(pl.col("account_id").is_in(ids.implode()))
            .select("account_id", pl.col("score").cast(pl.Float64).alias("reference_score"))
            .collect()
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def compute_alerts(
    scores: pl.DataFrame,
    *,
    budget: int,
    threshold: float | None = None,
    previous_alerts: pl.DataFrame | None = None,
    decisions: pl.DataFrame | None = None,
    reference_scores: pl.DataFrame | None = None,
    cleared_margin: float = 0.1,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Choose this run's alerts and classify them against the previous run.

    ``scores``: ranked accounts (``account_id, score, rank``; unranked rows have a null rank).
    ``previous_alerts``: the previous run's alerts (``account_id, rank, score``).
    ``decisions``: latest decision per account (``account_id, decision, decision_date``).
    ``reference_scores``: ``account_id, reference_score`` for cleared accounts (their score when
    they were cleared); a cleared account is alerted again only when
    ``score > reference_score + cleared_margin``; without a reference it stays suppressed.

    Returns ``(alerts, changes)``: ``alerts`` has ``alert_rank, account_id, rank, score, status,
    previous_rank, previous_score, decision`` (status new | persisting) in rank order, at most
    ``budget`` rows, scores at least ``threshold``; ``changes`` has :data:`CHANGE_COLUMNS`: the
    alerts, the cleared accounts that would be among the top ``budget`` without their clearing
    decision (``suppressed``, whether or not alerted before) and the other previous alerts not
    alerted now (``dropped``); one row per account.
    """
    if budget < 0:
        raise InputError(f"The alert budget must be zero or more. Got {budget} instead.")
    ranked = scores.filter(pl.col("rank").is_not_null()).select("account_id", "score", "rank").sort("rank")
    prev = (
        previous_alerts.select("account_id", pl.col("rank").alias("previous_rank"), pl.col("score").alias("previous_score"))
        if previous_alerts is not None and previous_alerts.height
        else pl.DataFrame(schema={"account_id": pl.String, "previous_rank": pl.Int64, "previous_score": pl.Float64})
    )
    dec = decisions if decisions is not None else latest_decisions(pl.DataFrame(schema={"account_id": pl.String, "decision": pl.String, "date": pl.Datetime("us", "UTC")}))
    refs = reference_scores if reference_scores is not None else pl.DataFrame(schema={"account_id": pl.String, "reference_score": pl.Float64})
    cand = (
        ranked.join(dec.select("account_id", "decision"), on="account_id", how="left")
        .join(refs, on="account_id", how="left")
        .with_columns(
            (
                (pl.col("decision") == "cleared")
                & (pl.col("reference_score").is_null() | (pl.col("score") <= pl.col("reference_score") + cleared_margin))
            )
            .fill_null(False)
            .alias("suppressed")
        )
    )
    eligible = cand.filter(~pl.col("suppressed"))
    if threshold is not None:
        eligible = eligible.filter(pl.col("score") >= threshold)
    alerts = (
        eligible.head(budget)
        .join(prev, on="account_id", how="left")
        .sort("rank")
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("alert_rank"),
            pl.when(pl.col("previous_rank").is_null()).then(pl.lit("new")).otherwise(pl.lit("persisting")).alias("status"),
        )
        .select("alert_rank", "account_id", pl.col("rank").cast(pl.Int64), pl.col("score").cast(pl.Float64), "status",
                pl.col("previous_rank").cast(pl.Int64), pl.col("previous_score").cast(pl.Float64), "decision")
    )
    # suppressed: cleared accounts that would be among the top ``budget`` without their clearing
    would = cand.filter(pl.col("score") >= threshold) if threshold is not None else cand
    would = would.head(budget)
    suppressed = (
        would.filter(pl.col("suppressed"))
        .join(prev, on="account_id", how="left")
        .with_columns(pl.lit("suppressed").alias("status"),
                      pl.lit("cleared by an investigator; score has not risen by the margin").alias("note"))
    )
    dropped = (
        prev.join(alerts.select("account_id"), on="account_id", how="anti")
        .join(suppressed.select("account_id"), on="account_id", how="anti")
        .join(cand.select("account_id", "rank", "score", "suppressed"), on="account_id", how="left")
        .with_columns(
            pl.lit("dropped").alias("status"),
            pl.when(pl.col("rank").is_null()).then(pl.lit("not scored in this run (inactive in the window or a hub)"))
            .when(pl.col("suppressed")).then(pl.lit("cleared by an investigator"))
            .otherwise(pl.lit("outside this run's alert budget or threshold")).alias("note"),
        )
        .drop("suppressed")
    )
    cols = list(CHANGE_COLUMNS)
    changes = pl.concat(
        [
            alerts.with_columns(pl.lit(None, dtype=pl.String).alias("note")).select(cols).cast(CHANGE_COLUMNS),
            dropped.select(cols).cast(CHANGE_COLUMNS),
            suppressed.select(cols).cast(CHANGE_COLUMNS),
        ]
    )
    return alerts, changes


def _side_figures(tx: pl.LazyFrame, ids: pl.LazyFrame, own: str, other: str, prefix: str) -> pl.LazyFrame:
    """Per account in ``ids`` as the ``own`` end of transfers: ``<prefix>_count/_value/_counterparties/_first/_last``."""
    return (
        tx.join(ids, left_on=own, right_on="account_id", how="semi")
        .group_by(own)
        .agg(
            pl.len().cast(pl.Int64).alias(f"{prefix}_count"),
            fixed_sum("amount").alias(f"{prefix}_value"),
            pl.col(other).n_unique().cast(pl.Int64).alias(f"{prefix}_counterparties"),
            pl.col("ts").min().alias(f"{prefix}_first"),
            pl.col("ts").max().alias(f"{prefix}_last"),
        )
        .rename({own: "account_id"})
    )


def key_figures(transfers: pl.DataFrame, accounts: pl.Series) -> pl.DataFrame:
    """Per account in ``accounts``: counts, values and distinct counterparties in and out, first and last transfer."""
    ids = pl.DataFrame({"account_id": accounts.unique()})
    tx = transfers.lazy()
    inbound = _side_figures(tx, ids.lazy(), "dst_account", "src_account", "in")
    outbound = _side_figures(tx, ids.lazy(), "src_account", "dst_account", "out")
    out = (
        ids.lazy()
        .join(inbound, on="account_id", how="left")
        .join(outbound, on="account_id", how="left")
        .with_columns(
            pl.col("in_count", "out_count", "in_counterparties", "out_counterparties").fill_null(0),
            pl.col("in_value", "out_value").fill_null(0.0),
            pl.min_horizontal("in_first", "out_first").alias("first_ts"),
            pl.max_horizontal("in_last", "out_last").alias("last_ts"),
        )
        .drop("in_first", "out_first", "in_last", "out_last")
        .collect()
    )
    return out


def flows(transfers: pl.DataFrame, accounts: list[str]) -> pl.DataFrame:
    """Aggregated transfers between each of ``accounts`` and its counterparties (:data:`FLOW_COLUMNS`)."""
    ids = pl.DataFrame({"account_id": accounts}, schema={"account_id": pl.String}).lazy()
    tx = transfers.lazy()

    def side(own: str, other: str, direction: str) -> pl.LazyFrame:
        return (
            tx.join(ids, left_on=own, right_on="account_id", how="inner")
            .group_by(own, other)
            .agg(fixed_sum("amount").alias("value"), pl.len().cast(pl.Int64).alias("count"))
            .select(pl.col(own).alias("account_id"), pl.col(other).alias("counterparty"),
                    pl.lit(direction).alias("direction"), "value", "count")
        )

    return (
        pl.concat([side("dst_account", "src_account", "in"), side("src_account", "dst_account", "out")])
        .collect()
        .cast(FLOW_COLUMNS)
        .sort(["account_id", "direction", "value", "counterparty"], descending=[False, False, True, False])
    )


def run_times(runs_dir: Path) -> list[tuple[datetime, Path]]:
    """``(created_at, run folder)`` of the finished runs under ``runs_dir`` whose manifest is readable."""
    out = []
    for d in list_runs(runs_dir):
        with contextlib.suppress(OSError, ValueError, KeyError):
            m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
            out.append((datetime.fromisoformat(m["created_at"]), d))
    return out


def read_previous_alerts(run_dir: Path | None) -> pl.DataFrame | None:
    """``account_id, rank, score`` of a run's alerts (None without a run or its alerts file)."""
    if run_dir is None or not (run_dir / "alerts.parquet").is_file():
        return None
    return pl.read_parquet(run_dir / "alerts.parquet", columns=["account_id", "rank", "score"])


def reason_summary(alerts: pl.DataFrame) -> pl.DataFrame:
    """``top_reason``, ``reason_codes`` and ``reason_families`` from the ``reasons`` struct list.

    ``reason_codes`` joins the codes with ``|``, strongest first; ``reason_families`` the distinct
    non-empty families in order of their first reason; both are null for an account without reasons.
    """
    items = pl.col("reasons")

    def joined(expr: pl.Expr) -> pl.Expr:
        text = expr.list.join("|")
        return pl.when(text == "").then(None).otherwise(text)

    codes = items.list.eval(pl.element().struct.field("code").fill_null(""))
    families = items.list.eval(pl.element().struct.field("family")).list.eval(
        pl.element().filter(pl.element().is_not_null() & (pl.element() != ""))
    ).list.unique(maintain_order=True)
    return alerts.with_columns(
        items.list.first().struct.field("text").cast(pl.String).alias("top_reason"),
        joined(codes).cast(pl.String).alias("reason_codes"),
        joined(families).cast(pl.String).alias("reason_families"),
    )


def write_alerts(alerts: pl.DataFrame, run_dir: Path) -> pl.DataFrame:
    """Write ``alerts.parquet``, ``alerts.csv`` and ``alerts.json`` into ``run_dir``; returns the alerts as written.

    The CSV file carries the reasons as JSON text, the JSON file as a list of objects. In the CSV
    file a text cell starting with ``=``, ``+``, ``-``, ``@``, tab, carriage return or ``'`` gets a
    leading ``'`` (:func:`mulegraph.core.escape.neutralise_formulas`).
    """
    alerts = alerts.select(list(ALERT_COLUMNS)).cast(ALERT_COLUMNS)
    alerts.write_parquet(run_dir / "alerts.parquet")
    stamped = alerts.with_columns(pl.col("first_ts", "last_ts").dt.strftime(_TS_FORMAT))
    # a text cell a spreadsheet would run as a formula gets a leading "'" (ids come from exports)
    neutralise_formulas(stamped.with_columns(reasons_to_json())).write_csv(run_dir / "alerts.csv")
    records = stamped.with_columns(pl.col("reasons").fill_null([])).to_dicts()
    (run_dir / "alerts.json").write_text(json.dumps(records, indent=2, default=str) + "\n", encoding="utf-8")
    return alerts
