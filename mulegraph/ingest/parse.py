"""Parsing an export into canonical columns through the mapping.

:func:`canonicalize` turns an opened export (:class:`~mulegraph.ingest.sources.Export`) into a
lazy frame of the canonical transfer columns (:data:`~mulegraph.core.schema.TRANSFER_SCHEMA`),
the optional ones the mapping names, the label columns and the first rule each row breaks: ids
and accounts joined and aliased, timestamps to UTC (:mod:`mulegraph.ingest.timestamps`), amounts
with the mapping's separators and minor units, currencies aliased and defaulted.
"""

from __future__ import annotations

import polars as pl

from mulegraph.core.schema import OPTIONAL_SCHEMA
from mulegraph.ingest.sources import Export
from mulegraph.ingest.timestamps import fast_auto_format, parse_one, parse_ts
from mulegraph.ingest.validate import _RULE, _TS_TEXT, rule_expr
from mulegraph.io.mapping import Mapping

__all__ = ["canonicalize", "parse_amount"]

#: Prefix of the columns that keep a CSV row's original text (for the quarantine).
_ORIG = "__orig__"


def parse_amount(m: Mapping, text: pl.Expr, raw: pl.Expr | None = None) -> pl.Expr:
    """Amount expression from text, or from ``raw`` when the export's column is numeric."""
    if raw is not None:
        num = raw.cast(pl.Float64)
    else:
        t = text
        if m.thousands_separator:
            t = t.str.replace_all(m.thousands_separator, "", literal=True)
        if m.decimal_separator != ".":
            t = t.str.replace_all(m.decimal_separator, ".", literal=True)
        num = t.cast(pl.Float64, strict=False)
    if m.minor_units:
        # round to the decimals after dividing: 9671 / 100 is 96.71000000000001 in floats, and the
        # nearest float to the decimal 96.71 is what a decimal export of the same amount gives
        num = (num / float(10**m.decimals)).round(m.decimals)
    return num


def canonicalize(exp: Export, m: Mapping) -> pl.LazyFrame:
    """Parse a resolved export into canonical columns, ``__missing``, ``__rule`` and label columns.

    Two steps: every export column the mapping reads is stripped once (as text), then the
    canonical columns are parsed from those. Label columns are kept as ``__label_<name>`` (text).
    :func:`~mulegraph.ingest.validate.validate` finishes the job after collecting.
    """
    s = exp.schema
    cols = m.columns
    used = list(dict.fromkeys([c for spec in cols.values() for c in spec] + list(m.labels.values())))
    x = {c: f"__x{i}" for i, c in enumerate(used)}
    stage1: dict[str, pl.Expr] = {x[c]: pl.col(c).cast(pl.String).str.strip_chars() for c in used}

    def typed(canon: str, check) -> pl.DataType | None:
        spec = cols.get(canon, ())
        return s[spec[0]] if len(spec) == 1 and check(s[spec[0]]) else None

    ts_dtype = typed("ts", lambda d: isinstance(d, (pl.Datetime, pl.Date)))
    if ts_dtype is not None:
        stage1["__ts_raw"] = pl.col(cols["ts"][0])
    numeric = {c: typed(c, lambda d: d.is_numeric()) for c in ("amount", "amount_base")}
    for c, d in numeric.items():
        if d is not None:
            stage1[f"__{c}_raw"] = pl.col(cols[c][0])
    if exp.kind == "csv":  # keep the original text for quarantined rows (Parquet is re-read instead)
        stage1.update({f"{_ORIG}{c}": pl.col(c) for c in exp.header if c not in m.drop})
    lf = exp.lf.select(**stage1)

    def blank(canon: str) -> pl.Expr:
        return pl.any_horizontal([pl.col(x[c]).is_null() | (pl.col(x[c]) == "") for c in cols[canon]])

    def text(canon: str) -> pl.Expr:
        parts = [pl.col(x[c]) for c in cols[canon]]
        return parts[0] if len(parts) == 1 else pl.concat_str(parts, separator=m.account_join)

    def nullable(canon: str) -> pl.Expr:
        return pl.when(~blank(canon)).then(text(canon))

    def acct(canon: str) -> pl.Expr:
        return text(canon).replace(m.account_aliases) if m.account_aliases else text(canon)

    required = ["ts", "src_account", "dst_account", "amount"] + (["txn_id"] if "txn_id" in cols else [])
    exprs: dict[str, pl.Expr] = {}
    if "txn_id" in cols:
        exprs["txn_id"] = text("txn_id")
    if m.ts_format == "auto" and ts_dtype is None:
        sample = lf.select(t=text("ts")).head(2000).collect()["t"]
        fast = fast_auto_format(sample.filter(sample != ""), m.timezone)
        ts = parse_one(text("ts"), *fast, m.timezone) if fast else pl.lit(None, dtype=pl.Datetime("us", "UTC"))
        exprs["ts"] = ts
        exprs[_TS_TEXT] = pl.when(ts.is_null()).then(text("ts"))  # second chance in validate()
    else:
        raw = pl.col("__ts_raw") if ts_dtype is not None else None
        exprs["ts"] = parse_ts(m, text("ts"), ts_dtype, raw)
    exprs["src_account"] = acct("src_account")
    exprs["dst_account"] = acct("dst_account")
    exprs["amount"] = parse_amount(m, text("amount"), pl.col("__amount_raw") if numeric["amount"] else None)
    if "currency" in cols:
        cur = text("currency")
        if m.currency_aliases:
            cur = cur.replace(m.currency_aliases)
        # upper-cased and checked in validate(), once per distinct value
        if m.default_currency:
            cur = pl.when(blank("currency")).then(pl.lit(m.default_currency)).otherwise(cur)
        else:
            required.append("currency")
    else:
        cur = pl.lit(m.default_currency, dtype=pl.String)
    exprs["currency"] = cur
    exprs["channel"] = nullable("channel") if "channel" in cols else pl.lit(None, dtype=pl.String)
    for opt, dtype in OPTIONAL_SCHEMA.items():
        if opt not in cols:
            continue
        if dtype == pl.Float64:
            raw = pl.col(f"__{opt}_raw") if numeric.get(opt) else None
            exprs[opt] = pl.when(~blank(opt)).then(parse_amount(m, text(opt), raw))
        else:
            exprs[opt] = nullable(opt)
    for label, col in m.labels.items():
        v = pl.col(x[col])
        exprs[f"__label_{label}"] = pl.when(v != "").then(v)
    missing = pl.any_horizontal([blank(c) for c in required])
    lf = lf.select(pl.col(f"^{_ORIG}.*$"), __missing=missing, **exprs)
    # the rule is computed here, in the streaming engine; validate() redoes it only for rows
    # whose timestamp the slow ISO fallback rescued
    return lf.with_columns(rule_expr().alias(_RULE))

