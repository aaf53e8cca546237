"""The data contracts between stages, in one place.

Everything downstream of ingest reads only the canonical transfer schema. Account identifiers are
strings everywhere in the public contracts; modules may map them to integers internally for speed.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "TRANSFER_SCHEMA",
    "TRANSFER_COLUMNS",
    "REQUIRED_COLUMNS",
    "OPTIONAL_SCHEMA",
    "LABEL_SCHEMA",
    "DECISION_SCHEMA",
    "STORE_SCHEMA",
    "QUARANTINE_SCHEMA",
    "ID_INDEX_SCHEMA",
    "SCORE_SCHEMA",
    "REASON_STRUCT",
    "REASONS_DTYPE",
    "ACCOUNT_ID",
    "ALERT_COLUMNS",
    "CHANGE_COLUMNS",
    "FLOW_COLUMNS",
    "DRIFT_COLUMNS",
    "REPORT_CSV_SCHEMA",
    "reasons_to_json",
    "reasons_from_json",
    "as_reasons",
    "LEDGER_LINKS_SCHEMA",
    "TRAIL_LINKS_SCHEMA",
    "EXPLAIN_SCHEMA",
]

ACCOUNT_ID = "account_id"

#: Canonical transfer: what ingest produces and everything downstream reads.
TRANSFER_SCHEMA: dict[str, pl.DataType] = {
    "txn_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "src_account": pl.String(),
    "dst_account": pl.String(),
    "amount": pl.Float64(),
    "currency": pl.String(),
    "channel": pl.String(),
}
TRANSFER_COLUMNS: tuple[str, ...] = tuple(TRANSFER_SCHEMA)

#: Columns that must be present and non-blank in every accepted row (channel may be null).
REQUIRED_COLUMNS: tuple[str, ...] = ("txn_id", "ts", "src_account", "dst_account", "amount", "currency")

#: Optional columns an export may carry; features use them when present.
OPTIONAL_SCHEMA: dict[str, pl.DataType] = {
    "src_bank": pl.String(),
    "dst_bank": pl.String(),
    "src_country": pl.String(),
    "dst_country": pl.String(),
    "amount_base": pl.Float64(),
}

#: Labels: investigators' or training labels for accounts.
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "is_mule": pl.Boolean(),
    "typology": pl.String(),  # optional, '|'-joined
}

#: Investigator decisions kept in the store; training reads them as labels.
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "decision": pl.String(),  # confirmed | cleared
    "date": pl.Datetime("us", "UTC"),
    "note": pl.String(),
}

# ---- ingest/store contracts (see mulegraph.io.store) ----
#: What every transfer part of the store holds: the canonical columns, then every optional column.
STORE_SCHEMA: dict[str, pl.DataType] = {**TRANSFER_SCHEMA, **OPTIONAL_SCHEMA}

#: The store's quarantine table: one row per rejected export row.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "ingest_id": pl.String(),
    "source_file": pl.String(),
    "line": pl.Int64(),  # 1-based data row (the header is not counted), CSV and Parquet alike
    "rule": pl.String(),
    "original": pl.String(),  # JSON object: export column -> original text (null when empty)
}

#: A run of the store's id index (see :mod:`mulegraph.ingest.index`), sorted: one key per stored
#: transfer, the top 48 bits of its txn_id's hash and the 16 bits of its UTC day.
ID_INDEX_SCHEMA: dict[str, pl.DataType] = {"key": pl.UInt64()}

#: One reason code of a scored account (see :mod:`mulegraph.scoring.explain`): the rule or signal
#: ``code``, the ``feature`` it reads and its ``family``, a sentence for people, the account's
#: ``value`` and how unusual it is (``percentile``, 0-1), and the transfers behind it (filled for
#: the top accounts only). Field order is the order of the JSON wire format.
REASON_STRUCT: pl.Struct = pl.Struct(
    {
        "code": pl.String(),
        "feature": pl.String(),
        "family": pl.String(),
        "text": pl.String(),
        "value": pl.Float64(),
        "percentile": pl.Float64(),
        "txn_ids": pl.List(pl.String()),
    }
)
#: The ``reasons`` column of scores and alerts: the account's reasons, strongest first.
REASONS_DTYPE: pl.List = pl.List(REASON_STRUCT)

#: Scores: one row per ranked account.
SCORE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "score": pl.Float64(),
    "rank": pl.Int64(),
    "reasons": REASONS_DTYPE,  # JSON text in CSV and JSON files (reasons_to_json)
    "model_version": pl.String(),
    "run_id": pl.String(),
}


#: Alerts of a run (``alerts.parquet``; ``alerts.csv`` and the objects of ``alerts.json`` carry the
#: same keys, with ``reasons`` as JSON): this run's top accounts within the alert budget.
ALERT_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "alert_rank": pl.Int64(),  # 1..n within this run's alerts
    "account_id": pl.String(),
    "rank": pl.Int64(),  # rank among all scored accounts
    "score": pl.Float64(),
    "status": pl.String(),  # new | persisting
    "previous_rank": pl.Int64(),
    "previous_score": pl.Float64(),
    "decision": pl.String(),  # latest investigator decision, if any (confirmed)
    "top_reason": pl.String(),
    "reason_codes": pl.String(),  # '|'-joined, strongest first
    "reason_families": pl.String(),  # '|'-joined distinct families, strongest first
    "in_count": pl.Int64(),
    "in_value": pl.Float64(),
    "in_counterparties": pl.Int64(),
    "out_count": pl.Int64(),
    "out_value": pl.Float64(),
    "out_counterparties": pl.Int64(),
    "first_ts": pl.Datetime("us", "UTC"),
    "last_ts": pl.Datetime("us", "UTC"),
    "model_version": pl.String(),
    "reasons": REASONS_DTYPE,  # the scores' reasons, strongest first
}

#: Alert changes of a run against the previous run (``alert_changes.parquet``).
CHANGE_COLUMNS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "status": pl.String(),  # new | persisting | dropped | suppressed
    "rank": pl.Int64(),
    "score": pl.Float64(),
    "previous_rank": pl.Int64(),
    "previous_score": pl.Float64(),
    "note": pl.String(),
}

#: Flows of a run (``flows.parquet``): the aggregated transfers between a drawn account and each
#: counterparty.
FLOW_COLUMNS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "counterparty": pl.String(),
    "direction": pl.String(),  # in (counterparty paid the account) | out
    "value": pl.Float64(),
    "count": pl.Int64(),
}

#: Feature drift of a run against the previous run (``drift.parquet``): population stability index.
DRIFT_COLUMNS: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "psi": pl.Float64(),
    "n_previous": pl.Int64(),
    "n_current": pl.Int64(),
    "warning": pl.Boolean(),
}

#: The CSV report (one row per suspect, in this order): the alert columns without ``reasons``.
REPORT_CSV_SCHEMA: dict[str, pl.DataType] = {k: v for k, v in ALERT_COLUMNS.items() if k != "reasons"}


# ---- investigation contracts: ledgers, money trails, reasons with evidence (mulegraph.investigate) ----
#: One account's ledger (:func:`mulegraph.investigate.trails.ledger_links`): ``value`` of the
#: inbound transfer ``in_txn`` that left through the outbound transfer ``out_txn``, ``dwell_s``
#: seconds after it arrived.
LEDGER_LINKS_SCHEMA: dict[str, pl.DataType] = {
    "in_txn": pl.String(),
    "out_txn": pl.String(),
    "value": pl.Float64(),
    "dwell_s": pl.Float64(),
}

#: The links of a money trail (``Trail.links``): ``value`` traced from transfer ``from_txn`` of hop
#: ``hop - 1`` into transfer ``to_txn`` of hop ``hop``, and its value-weighted dwell in seconds.
TRAIL_LINKS_SCHEMA: dict[str, pl.DataType] = {
    "hop": pl.Int32(),
    "from_txn": pl.String(),
    "to_txn": pl.String(),
    "value": pl.Float64(),
    "dwell_s": pl.Float64(),
}

#: An account's reasons with their evidence (``Investigation.explain``): one row per reason,
#: strongest first (``reason`` 1), the fields of :data:`REASON_STRUCT`, the count and sum of the
#: evidence transfers found in the store, and the account's score and rank.
EXPLAIN_SCHEMA: dict[str, pl.DataType] = {
    "reason": pl.UInt32(),
    **REASON_STRUCT.to_schema(),
    "n_transfers": pl.UInt32(),
    "evidence_total": pl.Float64(),
    "score": pl.Float64(),
    "rank": pl.Int64(),
}


def reasons_to_json(column: str = "reasons") -> pl.Expr:
    """The reasons column as JSON text (a list of objects): the wire format of CSV and JSON outputs.

    An account without reasons gets ``[]``; a null list stays null.
    """
    return pl.col(column).cast(REASONS_DTYPE).list.eval(pl.element().struct.json_encode()).list.join(",").pipe(
        lambda e: pl.when(pl.col(column).is_null()).then(None).otherwise(pl.concat_str(pl.lit("["), e, pl.lit("]")))
    ).alias(column)


def reasons_from_json(column: str = "reasons") -> pl.Expr:
    """Parse JSON reasons text (as written by :func:`reasons_to_json`) back to ``REASONS_DTYPE``."""
    return pl.col(column).str.json_decode(REASONS_DTYPE).alias(column)


def as_reasons(frame: pl.DataFrame, column: str = "reasons") -> pl.DataFrame:
    """``frame`` with its reasons column as ``REASONS_DTYPE``.

    Accepts the struct column, and the JSON text column of run folders and score files written
    before reasons were a struct; a frame without the column is returned as it is.
    """
    if column not in frame.columns:
        return frame
    dtype = frame.schema[column]
    if dtype == pl.String:
        return frame.with_columns(reasons_from_json(column))
    if dtype == REASONS_DTYPE:
        return frame
    return frame.with_columns(pl.col(column).cast(REASONS_DTYPE))
