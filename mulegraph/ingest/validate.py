"""The quarantine rules, their order, and the step that settles them after parsing.

A row breaks at most one rule: the first, in :data:`RULES` order. The rules up to
``self_transfer`` are decided from the row alone (:func:`rule_expr`, evaluated while the export
is streamed, then finished by :func:`validate` on each collected batch); ``txn_id_conflict``
needs the rows seen before and is decided by :mod:`mulegraph.ingest.dedupe`.
"""

from __future__ import annotations

import polars as pl

from mulegraph.ingest.timestamps import parse_auto
from mulegraph.io.mapping import Mapping

__all__ = ["RULES", "validate", "rule_expr"]

#: Validation rules, in the order they are checked.
RULES: tuple[str, ...] = (
    "missing_field",
    "bad_timestamp",
    "bad_amount",
    "bad_currency",
    "self_transfer",
    "txn_id_conflict",
)

# Work columns of a parsed batch
_ROW = "__row"  # 1-based data row of the export
_RULE = "__rule"  # the rule a row breaks, null when it breaks none (yet)
_TS_TEXT = "__ts_text"  # timestamp text the fast ISO form could not parse (second chance)


def validate(parsed: pl.DataFrame, m: Mapping, offset: int = 0) -> pl.DataFrame:
    """Collected :func:`~mulegraph.ingest.parse.canonicalize` output -> add ``__row`` (1-based), settle timestamps and rules.

    ``offset`` is the number of data rows before this batch.
    """
    parsed = parsed.with_row_index(_ROW, offset=offset + 1)
    if _TS_TEXT in parsed.columns:
        if parsed[_TS_TEXT].null_count() < parsed.height:
            retry = parsed.select(_ROW, _TS_TEXT).filter(pl.col(_TS_TEXT).is_not_null())
            fixed = retry.select(pl.col(_ROW) - offset - 1, parse_auto(pl.col(_TS_TEXT), m.timezone).alias("ts"))
            fixed = fixed.filter(pl.col("ts").is_not_null())
            if fixed.height:
                ts = parsed["ts"].clone().scatter(fixed[_ROW], fixed["ts"])
                parsed = parsed.with_columns(ts).with_columns(rule_expr().alias(_RULE))
        parsed = parsed.drop(_TS_TEXT)
    # currencies: few distinct values, so upper-case and check each distinct value once
    cur = parsed["currency"]
    distinct = cur.unique().drop_nulls()
    upper = distinct.str.to_uppercase()
    codes = upper.filter(upper.str.contains(r"^[A-Z]{3}$"))
    if not (upper == distinct).all():  # usually they are upper case already
        cur = cur.replace_strict(distinct, upper, default=None, return_dtype=pl.String)
    if codes.len() == distinct.len():  # usually every distinct value is a code: only nulls are bad
        bad_currency = cur.is_null()
    else:
        bad_currency = ~cur.is_in(codes.implode()).fill_null(False)
    rule = pl.col(_RULE)
    return parsed.drop("__missing").with_columns(
        currency=cur,
        **{_RULE: pl.when((rule.is_null() | (rule == "self_transfer")) & bad_currency)
           .then(pl.lit("bad_currency")).otherwise(rule)},
    )


def rule_expr() -> pl.Expr:
    """The first rule a row breaks among those decided row by row (``bad_currency`` aside)."""
    return pl.when(pl.col("__missing")).then(pl.lit("missing_field")).otherwise(_rule_after_missing())


def _rule_after_missing() -> pl.Expr:
    amount = pl.col("amount")
    return (
        pl.when(pl.col("ts").is_null()).then(pl.lit("bad_timestamp"))
        .when(amount.is_null() | ~amount.is_finite() | (amount <= 0)).then(pl.lit("bad_amount"))
        # bad_currency (between bad_amount and self_transfer) is settled in validate()
        .when(pl.col("src_account") == pl.col("dst_account")).then(pl.lit("self_transfer"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
