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
    "SCORE_SCHEMA",
    "ACCOUNT_ID",
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

#: Scores: one row per ranked account.
SCORE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "score": pl.Float64(),
    "rank": pl.Int64(),
    "reasons": pl.String(),  # JSON list of reason objects, see mulegraph.explain
    "model_version": pl.String(),
    "run_id": pl.String(),
}
