"""The quarantine rules, their order, and the step that settles them after parsing.

A row breaks at most one rule: the first, in :data:`RULES` order. The rules up to
``self_transfer`` are decided from the row alone (:func:`rule_expr`, evaluated while the export
is streamed, then finished by :func:`validate` on each collected batch: the currency and control
character checks); ``txn_id_conflict`` needs the rows seen before and is decided by
:mod:`mulegraph.ingest.dedupe`.

``control_chars`` keeps control characters out of the store: a row is quarantined when one of
the text fields a stored transfer keeps (:data:`TEXT_FIELDS`) holds a C0 control character
(U+0000-U+001F, tab and line breaks included), DEL (U+007F) or a C1 control character
(U+0080-U+009F). Account and transfer ids become graph node ids, file names of no one's choosing,
terminal output and XML (GraphML, GEXF), and XML 1.0 cannot carry most control characters even
escaped; a bank's own ids never hold them. Leading and trailing white space (tab and line breaks
included) is stripped from every field before, so only characters inside a value count. The
quarantine keeps the row's original text (JSON escapes what it must).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from mulegraph.ingest.timestamps import parse_auto
from mulegraph.io.mapping import Mapping

__all__ = ["RULES", "TEXT_FIELDS", "CONTROL_CHARS", "validate", "rule_expr", "control_rows"]

#: Validation rules, in the order they are checked.
RULES: tuple[str, ...] = (
    "missing_field",
    "control_chars",
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

#: The text fields of a stored transfer that ``control_chars`` checks (those the mapping fills).
TEXT_FIELDS: tuple[str, ...] = (
    "txn_id", "src_account", "dst_account", "currency", "channel",
    "src_bank", "dst_bank", "src_country", "dst_country",
)

#: Regular expression of one control character: C0, DEL and C1.
CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f]"


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
    control = control_rows(parsed, skip=("currency",))
    bad_text = distinct.filter(distinct.str.contains(CONTROL_CHARS))  # before upper-casing (C1 would change)
    if bad_text.len():
        in_currency = cur.is_in(bad_text.implode()).fill_null(False)
        control = in_currency if control is None else control | in_currency
    upper = distinct.str.to_uppercase()
    codes = upper.filter(upper.str.contains(r"^[A-Z]{3}$"))
    if not (upper == distinct).all():  # usually they are upper case already
        cur = cur.replace_strict(distinct, upper, default=None, return_dtype=pl.String)
    if codes.len() == distinct.len():  # usually every distinct value is a code: only nulls are bad
        bad_currency = cur.is_null()
    else:
        bad_currency = ~cur.is_in(codes.implode()).fill_null(False)
    rule = pl.col(_RULE)
    settled = pl.when((rule.is_null() | (rule == "self_transfer")) & bad_currency).then(pl.lit("bad_currency")).otherwise(rule)
    if control is not None:  # control_chars comes right after missing_field
        settled = pl.when(pl.lit(control) & (rule.is_null() | (rule != "missing_field"))).then(pl.lit("control_chars")).otherwise(settled)
    return parsed.drop("__missing").with_columns(currency=cur, **{_RULE: settled})


def control_rows(frame: pl.DataFrame, skip: tuple[str, ...] = ()) -> pl.Series | None:
    """Per row: one of the :data:`TEXT_FIELDS` of ``frame`` (but ``skip``) holds a control character.

    None when no row does (the usual case, found without a per-value search: a column whose bytes
    are all printable ASCII holds none).
    """
    found = None
    for name in TEXT_FIELDS:
        if name in skip or name not in frame.columns or frame[name].dtype != pl.String or _printable_ascii(frame[name]):
            continue
        hit = frame[name].str.contains(CONTROL_CHARS).fill_null(False)
        found = hit if found is None else found | hit
    return None if found is None or not found.any() else found


def _printable_ascii(values: pl.Series) -> bool:
    """True when every byte of the column's text is printable ASCII (0x20-0x7e), checked on the
    Arrow data buffer in two vectorised passes; False means "maybe not": search value by value.
    """
    arr = values.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type not in (pa.large_string(), pa.string()):
        return False
    _, offsets, data = arr.buffers()
    if data is None or len(arr) == 0:  # no text at all (every value null)
        return True
    offsets = np.frombuffer(offsets, dtype=np.int64 if arr.type == pa.large_string() else np.int32)
    text = np.frombuffer(data, dtype=np.uint8)[offsets[arr.offset]:offsets[arr.offset + len(arr)]]
    return text.size == 0 or (int(text.min()) >= 0x20 and int(text.max()) < 0x7F)


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
