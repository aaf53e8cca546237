"""Ingest: raw exports -> mapping -> validation -> quarantine -> dedupe -> the Parquet store.

:func:`ingest` takes CSV files (any delimiter, quoted fields, a header row, BOM, CRLF, ``.gz``) and
Parquet files, given as files, folders or glob patterns. Each file is one atomic commit to the
store (see :mod:`mulegraph.store`); a file whose content hash is already in the manifest is
skipped ("already ingested").

CSV columns are read as text first, so nothing is lost, and then parsed with Polars expressions
(no per-row Python). Each row then gets exactly one outcome:

* **accepted**: stored once in the day partition of its timestamp (UTC);
* **duplicate**: all canonical fields equal a row with the same ``txn_id`` already accepted (in
  this file or earlier); counted, not stored again;
* **quarantined** under the first rule it breaks, in this order:

  - ``missing_field``: a required field (txn_id when mapped, ts, src_account, dst_account,
    amount, currency) is missing or blank;
  - ``bad_timestamp``: the timestamp does not parse with the mapping's format, or does not exist
    in the mapping's time zone;
  - ``bad_amount``: the amount is not a positive finite number;
  - ``bad_currency``: the currency (after the mapping's aliases) is not a 3-letter code;
  - ``self_transfer``: source account equals destination account;
  - ``txn_id_conflict``: the ``txn_id`` was already accepted (earlier in the file or in the store)
    with different content; the first one seen is kept.

So ``rows_read == accepted + quarantined + duplicates`` always. When the mapping has no
``txn_id``, the id is a stable 128-bit hash of the canonical content (``h`` + 32 hex digits), so
identical rows without ids count as duplicates of each other.

Label columns named in the mapping's ``[labels]`` are never written to the store; with
``labels_out`` they are written (one row per txn_id, accepted and duplicate rows) to a Parquet or
CSV file.
"""

from __future__ import annotations

import codecs
import csv
import glob as globmod
import gzip
import hashlib
import io
import os
import re
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from mulegraph.core.errors import InputError, MappingError, NothingNewError
from mulegraph.io.mapping import Mapping, dedupe_header, load_mapping
from mulegraph.core.schema import OPTIONAL_SCHEMA, TRANSFER_SCHEMA
from mulegraph.io.store import STORE_SCHEMA, Store, fsync_file, write_parquet_atomic

__all__ = [
    "ingest",
    "IngestReport",
    "RULES",
    "resolve_inputs",
    "read_export",
    "canonicalize",
    "validate",
    "content_hash",
    "EXPORT_SUFFIXES",
    "BATCH_ROWS",
]

#: Validation rules, in the order they are checked.
RULES: tuple[str, ...] = (
    "missing_field",
    "bad_timestamp",
    "bad_amount",
    "bad_currency",
    "self_transfer",
    "txn_id_conflict",
)

#: File names a folder is searched for.
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")

_CONTENT = ("ts", "src_account", "dst_account", "amount", "currency", "channel")
_ROW = "__row"
_RULE = "__rule"
_TS_TEXT = "__ts_text"
_ORIG = "__orig__"  # prefix of the kept original CSV text columns
_ACCEPTED, _DUPLICATE, _CONFLICT = 0, 1, 2  # codes of the "__status" column (UInt8)

#: Test hook: called with the stage name ("read", "validated", "written", "staged", "moved",
#: "committed") while a file is ingested. Tests replace it to kill the process at a stage.
_stage_hook: Callable[[str], None] | None = None


def _stage(name: str) -> None:
    if _stage_hook is not None:
        _stage_hook(name)


# ---------------------------------------------------------------------------------------- report
@dataclass
class IngestReport:
    """What an :func:`ingest` call did; :meth:`to_dict` is the ``--json`` output."""

    rows_read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=lambda: {r: 0 for r in RULES})
    files: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    date_min: str | None = None
    date_max: str | None = None
    accounts: int = 0
    labels_out: str | None = None
    labels_written: int = 0
    store: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict with integer counts."""
        return {
            "rows_read": int(self.rows_read),
            "accepted": int(self.accepted),
            "quarantined": int(self.quarantined),
            "duplicates": int(self.duplicates),
            "quarantined_by_rule": {k: int(v) for k, v in self.quarantined_by_rule.items()},
            "files": list(self.files),
            "skipped_files": list(self.skipped_files),
            "date_min": self.date_min,
            "date_max": self.date_max,
            "accounts": int(self.accounts),
            "labels_out": self.labels_out,
            "labels_written": int(self.labels_written),
            "store": self.store,
        }


# ---------------------------------------------------------------------------------------- inputs
def _is_export(p: Path) -> bool:
    name = p.name.lower()
    return any(name.endswith(s) for s in EXPORT_SUFFIXES)


def resolve_inputs(paths: "list[str | os.PathLike] | str | os.PathLike") -> list[Path]:
    """Expand files, folders (searched recursively for exports) and glob patterns, in order.

    Raises :class:`InputError` for a path that does not exist, a pattern or folder that matches
    no export, or when nothing is given.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _is_export(f) and not f.name.startswith("."))
            if not found:
                raise InputError(
                    f"folder '{p}' has no exports ({', '.join(EXPORT_SUFFIXES)}); point to the export files."
                )
            out.extend(found)
        elif globmod.has_magic(str(raw)):
            found = sorted(Path(f) for f in globmod.glob(str(raw), recursive=True) if Path(f).is_file())
            if not found:
                raise InputError(f"pattern '{raw}' matches no files; check the pattern.")
            out.extend(found)
        else:
            raise InputError(f"export '{p}' does not exist; check the path.")
    if not out:
        raise InputError("no export files given; pass one or more CSV or Parquet files, folders or globs.")
    seen: set[Path] = set()
    unique = []
    for f in out:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _gunzip(path: Path, workdir: Path) -> Path:
    out = workdir / (path.name.removesuffix(".gz") or "export")
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        raise InputError(
            f"'{path}' is a truncated or corrupt gzip file; copy the export again or unzip it to check it."
        ) from None
    return out


def _kind(path: Path, shown: Path) -> str:
    """'parquet', 'gzip' or 'csv' from the first bytes; errors for empty or binary files."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise InputError(f"'{shown}' is empty; export it again (a CSV needs at least a header row).")
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if shown.name.lower().endswith((".parquet", ".pq")):
        raise InputError(f"'{shown}' is named like a Parquet file but is not one; export it again.")
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        raise InputError(f"'{shown}' is an HTML page, not an export (a failed download?); fetch the export again.")
    if head.startswith(b"PK\x03\x04"):
        raise InputError(f"'{shown}' is a ZIP or Excel file, not CSV or Parquet; save it as CSV and retry.")
    if b"\x00" in head:
        raise InputError(f"'{shown}' is not a CSV or Parquet file (binary content); pass a CSV or Parquet export.")
    return "csv"


def _sniff(text: str, forced: str | None) -> tuple[str, list[str]]:
    """Delimiter and header names from the first line: the candidate giving the most fields."""
    first = text.lstrip("\r\n")
    if forced:
        delim = forced
    else:
        best, delim = 1, ","
        for cand in ",;\t|":
            n = len(next(csv.reader(io.StringIO(first), delimiter=cand), []))
            if n > best:
                best, delim = n, cand
    header = next(csv.reader(io.StringIO(first), delimiter=delim), [])
    return delim, [h.strip() for h in header]


@dataclass
class _Export:
    lf: pl.LazyFrame  # export columns (deduplicated names), in file order
    header: list[str]
    schema: dict[str, pl.DataType]
    kind: str


def read_export(path: Path, mapping: Mapping, workdir: Path) -> _Export:
    """Open one export lazily: header checked, every CSV column as text."""
    shown = path
    kind = _kind(path, shown)
    if kind == "gzip":
        path = _gunzip(path, workdir)
        kind = _kind(path, shown)
        if kind == "gzip":
            raise InputError(f"'{shown}' is compressed twice; decompress it and retry.")
    if kind == "parquet":
        try:
            lf = pl.scan_parquet(path)
            schema = dict(lf.collect_schema())
        except (pl.exceptions.PolarsError, OSError):
            raise InputError(f"'{shown}' is not a readable Parquet file (truncated or corrupt); export it again.") from None
        header = list(schema)
        return _Export(lf, header, schema, kind)
    with open(path, "rb") as fh:
        raw = fh.read(1 << 16)
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=False)
    except UnicodeDecodeError:
        raise InputError(
            f"'{shown}' is not UTF-8 text; re-save the export as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    delim, names = _sniff(text, mapping.delimiter)
    if not any(names):
        raise InputError(f"'{shown}' has no header row; add one naming the columns.")
    header = dedupe_header(names)
    lf = pl.scan_csv(
        path,
        separator=delim,
        has_header=True,
        new_columns=header,
        infer_schema=False,
        quote_char='"',
        encoding="utf8",
        raise_if_empty=False,
    )
    schema = {h: pl.String() for h in header}
    return _Export(lf, header, schema, "csv")


def _csv_error(shown: Path, err: Exception) -> InputError:
    msg = str(err).lower()
    if "more fields" in msg or "ragged" in msg:
        what = "a row has more fields than the header (check the delimiter and quoting)"
    elif "utf-8" in msg or "utf8" in msg:
        what = "it is not valid UTF-8 text (re-save it as UTF-8)"
    else:
        what = "it is malformed (for example an unterminated quote)"
    return InputError(f"'{shown}' cannot be read as CSV: {what}; fix the export and retry.")


# ---------------------------------------------------------------------------------------- parsing
def _naive_to_utc(e: pl.Expr, tz: str) -> pl.Expr:
    # a local time in a daylight-saving gap does not exist (null -> bad_timestamp); one in the
    # repeated hour when clocks go back is read as the earlier of its two instants
    return e.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")


def _parse_ts(m: Mapping, text: pl.Expr, dtype: pl.DataType | None, raw: pl.Expr | None = None) -> pl.Expr:
    """Timestamp expression: ``raw`` is the typed column when the export's column is a date/time."""
    utc = pl.Datetime("us", "UTC")
    if isinstance(dtype, pl.Datetime):
        col = raw.cast(pl.Datetime("us", dtype.time_zone))
        return (col.dt.convert_time_zone("UTC") if dtype.time_zone else _naive_to_utc(col, m.timezone)).cast(utc)
    if isinstance(dtype, pl.Date):
        return _naive_to_utc(raw.cast(pl.Datetime("us")), m.timezone).cast(utc)
    fmt = m.ts_format
    if fmt == "day_number":
        day = text.cast(pl.Float64, strict=False)
        day = pl.when(day.is_finite() & (day == day.round(0)) & (day.abs() < 1e6)).then(day).cast(pl.Int64)
        base = datetime(m.base_date.year, m.base_date.month, m.base_date.day)
        naive = pl.lit(base, dtype=pl.Datetime("us")) + pl.duration(days=day)
        return _naive_to_utc(naive, m.timezone).cast(utc)
    if fmt in ("epoch_s", "epoch_ms"):
        scale = 1_000_000 if fmt == "epoch_s" else 1_000
        num = text.cast(pl.Float64, strict=False) * scale
        num = pl.when(num.is_finite() & (num.abs() < 1e17)).then(num).cast(pl.Int64)
        return pl.from_epoch(num, time_unit="us").dt.replace_time_zone("UTC").cast(utc)
    if fmt == "auto":
        return _parse_auto(text, m.timezone)
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    if "%z" in fmt or "%:z" in fmt or "%#z" in fmt:
        return parsed.dt.convert_time_zone("UTC").cast(utc)
    return _naive_to_utc(parsed, m.timezone).cast(utc)


#: ISO 8601 forms tried by ``format = "auto"``: (strftime, how to read the result).
_AUTO_FORMATS: tuple[tuple[str, str], ...] = (
    # whole seconds first: Polars parses these several times faster than the %.f forms
    ("%Y-%m-%dT%H:%M:%SZ", "utc"),
    ("%Y-%m-%d %H:%M:%S", "naive"),
    ("%Y-%m-%dT%H:%M:%S", "naive"),
    ("%Y-%m-%dT%H:%M:%S%z", "aware"),
    ("%Y-%m-%d %H:%M:%S%z", "aware"),
    ("%Y-%m-%dT%H:%M:%S%.fZ", "utc"),
    ("%Y-%m-%dT%H:%M:%S%.f%z", "aware"),
    ("%Y-%m-%d %H:%M:%S%.f%z", "aware"),
    ("%Y-%m-%d %H:%M:%S%.f", "naive"),
    ("%Y-%m-%dT%H:%M:%S%.f", "naive"),
    ("%Y-%m-%d %H:%M", "naive"),
    ("%Y-%m-%dT%H:%M", "naive"),
    ("%Y-%m-%d", "naive"),
)


def _parse_one(text: pl.Expr, fmt: str, how: str, tz: str) -> pl.Expr:
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    if how == "aware":
        return parsed.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
    if how == "utc":
        return parsed.dt.replace_time_zone("UTC")
    return _naive_to_utc(parsed, tz).cast(pl.Datetime("us", "UTC"))


def _parse_auto(text: pl.Expr, tz: str) -> pl.Expr:
    """Every ISO 8601 form at once (slow: each form is tried on every value)."""
    t = text.str.replace(r"[zZ]$", "+00:00").str.replace(r"^(\d{4}-\d{2}-\d{2})[T ]", "${1} ")
    forms = [("%Y-%m-%d %H:%M:%S%.f%z", "aware"), ("%Y-%m-%d %H:%M%z", "aware"),
             ("%Y-%m-%d %H:%M:%S%.f", "naive"), ("%Y-%m-%d %H:%M", "naive"), ("%Y-%m-%d", "naive")]
    return pl.coalesce([_parse_one(t, f, how, tz) for f, how in forms])


def _fast_auto_format(sample: pl.Series, tz: str) -> tuple[str, str] | None:
    """The single ISO form that parses most of a sample of timestamps (None: no sample)."""
    sample = sample.drop_nulls()
    if sample.is_empty():
        return None
    frame = sample.to_frame("t")
    best, best_n = None, 0
    for f, how in _AUTO_FORMATS:
        n = frame.select(_parse_one(pl.col("t"), f, how, tz).is_not_null().sum()).item()
        if n > best_n:
            best, best_n = (f, how), n
    return best


def _parse_amount(m: Mapping, text: pl.Expr, raw: pl.Expr | None = None) -> pl.Expr:
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


def canonicalize(exp: _Export, m: Mapping) -> pl.LazyFrame:
    """Parse a resolved export into canonical columns, ``__missing``, ``__rule`` and label columns.

    Two steps: every export column the mapping reads is stripped once (as text), then the
    canonical columns are parsed from those. Label columns are kept as ``__label_<name>`` (text).
    :func:`validate` finishes the job after collecting.
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
        fast = _fast_auto_format(sample.filter(sample != ""), m.timezone)
        ts = _parse_one(text("ts"), *fast, m.timezone) if fast else pl.lit(None, dtype=pl.Datetime("us", "UTC"))
        exprs["ts"] = ts
        exprs[_TS_TEXT] = pl.when(ts.is_null()).then(text("ts"))  # second chance in validate()
    else:
        raw = pl.col("__ts_raw") if ts_dtype is not None else None
        exprs["ts"] = _parse_ts(m, text("ts"), ts_dtype, raw)
    exprs["src_account"] = acct("src_account")
    exprs["dst_account"] = acct("dst_account")
    exprs["amount"] = _parse_amount(m, text("amount"), pl.col("__amount_raw") if numeric["amount"] else None)
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
            exprs[opt] = pl.when(~blank(opt)).then(_parse_amount(m, text(opt), raw))
        else:
            exprs[opt] = nullable(opt)
    for label, col in m.labels.items():
        v = pl.col(x[col])
        exprs[f"__label_{label}"] = pl.when(v != "").then(v)
    missing = pl.any_horizontal([blank(c) for c in required])
    lf = lf.select(pl.col(f"^{_ORIG}.*$"), __missing=missing, **exprs)
    # the rule is computed here, in the streaming engine; validate() redoes it only for rows
    # whose timestamp the slow ISO fallback rescued
    return lf.with_columns(_rule_expr().alias(_RULE))


def validate(parsed: pl.DataFrame, m: Mapping, offset: int = 0) -> pl.DataFrame:
    """Collected :func:`canonicalize` output -> add ``__row`` (1-based), settle timestamps and rules.

    ``offset`` is the number of data rows before this batch.
    """
    parsed = parsed.with_row_index(_ROW, offset=offset + 1)
    if _TS_TEXT in parsed.columns:
        if parsed[_TS_TEXT].null_count() < parsed.height:
            retry = parsed.select(_ROW, _TS_TEXT).filter(pl.col(_TS_TEXT).is_not_null())
            fixed = retry.select(pl.col(_ROW) - offset - 1, _parse_auto(pl.col(_TS_TEXT), m.timezone).alias("ts"))
            fixed = fixed.filter(pl.col("ts").is_not_null())
            if fixed.height:
                ts = parsed["ts"].clone().scatter(fixed[_ROW], fixed["ts"])
                parsed = parsed.with_columns(ts).with_columns(_rule_expr().alias(_RULE))
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


def _rule_expr() -> pl.Expr:
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


# ---------------------------------------------------------------------------------------- hashing
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _hash_text(s: pl.Series, seed: int, chunk_rows: int = 250_000) -> np.ndarray:
    """A stable 64-bit hash of each string (nulls hash differently from every text)."""
    arr = s.cast(pl.String).to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks else pa.array([], pa.large_string())
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    valid = ~s.is_null().to_numpy()
    sd = np.uint64(seed)
    with np.errstate(over="ignore"):
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            b0, b1 = int(offsets[lo]), int(offsets[hi])
            starts = offsets[lo:hi] - b0
            ends = offsets[lo + 1 : hi + 1] - b0
            lens = ends - starts
            pos = np.arange(b1 - b0, dtype=np.int64) - np.repeat(starts, lens)
            terms = _mix(data[b0:b1].astype(np.uint64) + ((pos.astype(np.uint64) + np.uint64(1)) << np.uint64(8)) + sd)
            cs = np.zeros(b1 - b0 + 1, dtype=np.uint64)
            np.cumsum(terms, out=cs[1:])
            h = cs[ends] - cs[starts]
            h = _mix(h ^ _mix(lens.astype(np.uint64) + sd * _GOLD))
            out[lo:hi] = np.where(valid[lo:hi], h, _mix(sd ^ _M2))
    return out


def _content_u64(frame: pl.DataFrame, seed: int) -> np.ndarray:
    """64 bits of a stable hash of each row's canonical content (see :func:`content_hash`)."""
    n = frame.height
    ts = frame["ts"].cast(pl.Int64).fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
    amt = frame["amount"].cast(pl.Float64).fill_null(0.0).to_numpy().astype(np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(n, np.uint64(seed), dtype=np.uint64)
        texts = [_hash_text(frame[c], seed + i) for i, c in enumerate(("src_account", "dst_account", "currency", "channel"))]
        for v in [ts, amt] + texts:
            h = _mix((h * _GOLD) ^ v)
    return h


def _content_key(frame: pl.DataFrame) -> pl.Series:
    """A 64-bit content fingerprint per row, to tell a duplicate from a txn_id conflict.

    Only compared within one ingest call (one process), so Polars' fast native hash is used;
    two rows with the same txn_id are a duplicate only when their fingerprints are equal.
    """
    return frame.select(pl.struct(list(_CONTENT)).hash(0x5EED3).alias("__h")).to_series()


def content_hash(frame: pl.DataFrame) -> pl.Series:
    """Stable txn ids from canonical content: ``'h'`` + 32 hex digits (128 bits).

    The hash covers ts, src_account, dst_account, amount, currency and channel, and does not
    depend on the Polars version (it is computed with numpy from the values' bytes).
    """
    n = frame.height
    halves = [_content_u64(frame, seed) for seed in (0x5EED1, 0x5EED2)]
    buf = np.stack(halves, axis=1).astype(">u8").tobytes()
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(buf)])
    return ("h" + pl.from_arrow(fixed).bin.encode("hex")).alias("txn_id") if n else pl.Series("txn_id", [], pl.String)


# ---------------------------------------------------------------------------------------- dedupe
def _repeated_hashes(srt: np.ndarray) -> np.ndarray:
    """Values occurring more than once in the sorted array ``srt`` (unique, sorted)."""
    return np.unique(srt[1:][srt[1:] == srt[:-1]])


def _hashes_in(srt: np.ndarray, earlier: list[np.ndarray]) -> np.ndarray:
    """Values of the sorted array ``srt`` present in any of the sorted arrays ``earlier``.

    Sorted queries into sorted arrays: a binary search with good locality, several times faster
    than a hash-set membership test that rebuilds the set of earlier values every batch.
    """
    hits = []
    for e in earlier:
        if not len(e) or not len(srt):
            continue
        pos = np.searchsorted(e, srt)
        pos[pos == len(e)] = len(e) - 1
        hits.append(srt[e[pos] == srt])
    return np.unique(np.concatenate(hits)) if hits else np.empty(0, np.uint64)


class _SeenHashes:
    """The 64-bit id hashes of earlier batches, for fast membership tests of a sorted batch.

    A bitmap indexed by the top ``bits`` bits of a hash answers "certainly not seen" for almost
    every new id with one memory read; only the few that pass (real repeats and about
    ``n / 2**bits`` false positives) are searched exactly in the batches' sorted arrays. The
    work per batch does not grow with the number of earlier batches, as searching every
    earlier array would. The bitmap is kept small (2**25 bits, 4 MB): first touches of memory
    pages are slow on small virtual machines, and a pass rate of n / 2**25 is cheap to search.
    """

    def __init__(self, bits: int = 25):
        self.bits = np.uint64(bits)
        self.words = np.zeros(1 << max(bits - 6, 0), dtype=np.uint64)  # pages touched on use
        self.arrays: list[np.ndarray] = []

    #: Rows per step: small temporaries, reused by the allocator, instead of fresh arrays of
    #: the batch's size (whose first-touch page faults cost more than the arithmetic here).
    _STEP = 1 << 15

    def _slots(self, srt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = srt >> (np.uint64(64) - self.bits) if self.bits else np.zeros_like(srt)
        return (top >> np.uint64(6)).astype(np.intp), np.uint64(1) << (top & np.uint64(63))

    def add(self, srt: np.ndarray) -> None:
        """Add the hashes of a batch (``srt`` sorted ascending)."""
        if not len(srt):
            return
        for lo in range(0, len(srt), self._STEP):
            word, bit = self._slots(srt[lo : lo + self._STEP])  # sorted -> word indices sorted
            starts = np.flatnonzero(np.concatenate(([True], word[1:] != word[:-1])))
            self.words[word[starts]] |= np.bitwise_or.reduceat(bit, starts)
        self.arrays.append(srt)

    def members(self, srt: np.ndarray) -> np.ndarray:
        """The values of the sorted array ``srt`` that were added before (unique, sorted)."""
        if not self.arrays or not len(srt):
            return np.empty(0, np.uint64)
        passed = []
        for lo in range(0, len(srt), self._STEP):
            part = srt[lo : lo + self._STEP]
            word, bit = self._slots(part)
            passed.append(part[(self.words[word] & bit) != 0])
        return _hashes_in(np.concatenate(passed), self.arrays)


def _id_hash(ids: pl.Series) -> pl.Series:
    """In-process 64-bit hash of txn_ids, used to find candidates before comparing strings."""
    return ids.hash(7).alias("__idh")


def _classify(
    parsed: pl.DataFrame,
    store: Store,
    earlier: "_SeenHashes",
    read_earlier: Callable[[pl.Series], pl.DataFrame],
) -> tuple[pl.Series, np.ndarray]:
    """Status of every row, and the sorted 64-bit hashes of the valid rows' txn_ids.

    The status (``__status``, UInt8) is ``_ACCEPTED``, ``_DUPLICATE`` or ``_CONFLICT``, null for
    rows a rule rejected.

    ``earlier`` holds, per earlier batch of the same file, the sorted 64-bit hashes
    (:func:`_id_hash`) of its valid txn_ids (every one of them was accepted in that batch or
    before); ``read_earlier(ids)`` returns ``txn_id`` and the canonical content of the rows
    accepted from earlier batches whose txn_id is in ``ids``. The hashes are only a
    pre-filter: rows whose txn_id may repeat in the batch, or may have been seen before (store
    or earlier batch), are compared exactly, on the strings; a row equal in content to the first
    one seen is a duplicate, any other a conflict. Batches without such rows cost one hash and
    one membership test on 64-bit integers.
    """
    content = list(_CONTENT)
    valid = pl.col(_RULE).is_null()
    ids = parsed.select(pl.col("txn_id").filter(valid)).to_series()
    idh = _id_hash(ids)
    srt = np.sort(idh.to_numpy())
    in_batch = pl.Series("txn_id", [], pl.String)
    rep = _repeated_hashes(srt)
    if len(rep):  # candidates by hash, then the exact check on the strings
        maybe = ids.filter(idh.is_in(pl.Series(rep).implode()))
        in_batch = maybe.filter(maybe.is_duplicated()).unique()
    hit = earlier.members(srt)
    maybe_earlier = ids.filter(idh.is_in(pl.Series(hit).implode())) if len(hit) else ids.clear()
    parts = []
    if maybe_earlier.len():
        parts.append(read_earlier(maybe_earlier.unique()))
    if store.manifest():
        parts.append(
            store.scan(["txn_id"] + content)
            .filter(pl.col("txn_id").is_in(ids.implode()))  # pushed into the Parquet reader
            .unique("txn_id", keep="first")
            .collect()
        )
    parts = [p for p in parts if p.height]
    seen = (
        pl.concat([p.select("txn_id", _content_key(p)) for p in parts], how="vertical")
        if parts
        else pl.DataFrame(schema={"txn_id": pl.String(), "__h": pl.UInt64()})
    )
    accepted = pl.when(valid).then(pl.lit(_ACCEPTED, dtype=pl.UInt8))
    if in_batch.is_empty() and seen.is_empty():
        return parsed.select(accepted.alias("__status")).to_series(), srt
    touched = pl.concat([in_batch, seen["txn_id"]]).unique()
    sub = parsed.filter(valid & pl.col("txn_id").is_in(touched.implode())).select(_ROW, "txn_id", *content)
    sub = sub.select(_ROW, "txn_id", _content_key(sub))
    first = (
        sub.unique("txn_id", keep="first", maintain_order=True)
        .join(seen.select("txn_id"), on="txn_id", how="anti")
        .select("txn_id", "__h", __first=pl.col(_ROW))
    )
    ref = pl.concat([seen.with_columns(__first=pl.lit(None, dtype=first["__first"].dtype)), first], how="vertical")
    sub = sub.join(ref, on="txn_id", how="left", suffix="__ref").with_columns(
        __status=pl.when(pl.col(_ROW) == pl.col("__first")).then(pl.lit(_ACCEPTED))
        .when(pl.col("__h") == pl.col("__h__ref")).then(pl.lit(_DUPLICATE))
        .otherwise(pl.lit(_CONFLICT))
    )
    dup_rows = sub.filter(pl.col("__status") == _DUPLICATE)[_ROW]
    conflict_rows = sub.filter(pl.col("__status") == _CONFLICT)[_ROW]
    return parsed.select(
        pl.when(pl.col(_ROW).is_in(dup_rows.implode())).then(pl.lit(_DUPLICATE, dtype=pl.UInt8))
        .when(pl.col(_ROW).is_in(conflict_rows.implode())).then(pl.lit(_CONFLICT, dtype=pl.UInt8))
        .otherwise(accepted)
        .alias("__status")
    ).to_series(), srt


# ---------------------------------------------------------------------------------------- ingest
def _originals(exp: _Export, m: Mapping, parsed: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """``__row`` and ``original`` (JSON text of the export's values) of the given rows.

    CSV values were kept from the first read (``__orig__*`` columns); Parquet is read again
    (cheap: columnar, and only when some rows were rejected).
    """
    keep = [c for c in exp.header if c not in m.drop]
    if keep and f"{_ORIG}{keep[0]}" in parsed.columns:
        lf = parsed.lazy().filter(pl.col(_ROW).is_in(rows.implode())).select(
            _ROW, *[pl.col(f"{_ORIG}{c}").alias(c) for c in keep]
        )
    else:
        lf = exp.lf.with_row_index(_ROW, offset=1).filter(pl.col(_ROW).is_in(rows.implode()))
    return lf.select(
        pl.col(_ROW), original=pl.struct([pl.col(c).cast(pl.String) for c in keep]).struct.json_encode()
    ).collect()


def _labels_frame(frame: pl.DataFrame, m: Mapping) -> pl.DataFrame:
    lab = frame.unique("txn_id", keep="first", maintain_order=True)
    exprs = []
    for label in m.labels:
        c = pl.col(f"__label_{label}")
        if label == "is_laundering":
            low = c.str.to_lowercase()
            c = (
                pl.when(low.is_in(["1", "true", "yes", "y", "t"])).then(True)
                .when(low.is_in(["0", "false", "no", "n", "f"])).then(False)
                .otherwise(None)
            )
        exprs.append(c.alias(label))
    return lab.select("txn_id", "ts", "src_account", "dst_account", *exprs)


def _day_slices(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """Split rows by UTC day of ``ts``; zero-copy slices when the rows are already in day order."""
    frame = frame.with_columns(pl.col("ts").dt.date().alias("__day"))
    if not frame["__day"].is_sorted():
        frame = frame.sort("__day", maintain_order=True)
    runs = frame["__day"].rle()
    frame = frame.drop("__day")
    out, start = [], 0
    for day, n in zip(runs.struct.field("value").to_list(), runs.struct.field("len").to_list()):
        out.append((day.isoformat(), frame.slice(start, n)))
        start += n
    return out


#: Rows per batch: a file is read, validated and written in batches of this many rows (all
#: committed together); beyond one batch, memory grows only by the ids and fingerprints of the
#: accepted rows.
BATCH_ROWS = 2_000_000


def _batches(exp: _Export, m: Mapping, path: Path):
    """Collected batches of :func:`canonicalize`, with read errors turned into InputError."""
    try:
        lf = canonicalize(exp, m)  # may read a sample of timestamps
        yield from lf.collect_batches(chunk_size=BATCH_ROWS, engine="streaming")
    except pl.exceptions.PolarsError as err:
        if exp.kind == "csv":
            raise _csv_error(path, err) from None
        raise InputError(f"'{path}' could not be read (corrupt Parquet?); export it again.") from None


#: Part columns written with dictionary encoding (few distinct values) and with statistics (the
#: ones a reader filters on by range); the ids and accounts get neither, which would cost time
#: (a third of the write) for no gain: their values are near-unique and their min/max prune nothing.
_DICT_COLUMNS = ("currency", "channel", "src_bank", "dst_bank", "src_country", "dst_country")
_STATS_COLUMNS = ("ts", "amount", "amount_base")


def _write_part(frame: pl.DataFrame, path: Path) -> None:
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    pq.write_table(
        table,
        path,
        compression="lz4",
        use_dictionary=[c for c in _DICT_COLUMNS if c in frame.columns],
        write_statistics=[c for c in _STATS_COLUMNS if c in frame.columns],
    )
    fsync_file(path)


def _ingest_file(path: Path, sha: str, store: Store, mapping: Mapping, progress) -> tuple[dict, pl.Series, pl.DataFrame | None]:
    # ``sha`` may still be computed by another thread (see ingest()): files are staged under a
    # provisional id and renamed once the hash, and so the final ingest id, is known
    stage_id = store.next_ingest_id(sha if isinstance(sha, str) else "pending")
    staged = store.staging_dir(stage_id)
    exp = read_export(path, mapping, staged)
    try:
        m = mapping.resolve(exp.header, str(path))
    except MappingError:
        if exp.kind == "csv" and _looks_like_data(exp.header):
            raise MappingError(
                f"'{path}' seems to have no header row (its first line looks like data); add a header "
                "naming the columns and retry."
            ) from None
        raise
    _report_progress(progress, "read", path)
    status = pl.col("__status")
    # the canonical columns and the optional ones this export carries (see mulegraph.store)
    store_cols = [c for c in STORE_SCHEMA if c in m.columns or c in TRANSFER_SCHEMA]
    earlier = _SeenHashes()  # id hashes of the valid rows of earlier batches
    pending_hashes: np.ndarray | None = None
    rows_read = duplicates = accepted_n = 0
    ts_min = ts_max = None
    bad_parts: list[pl.DataFrame] = []
    label_parts: list[pl.DataFrame] = []
    account_parts: list[pl.Series] = []
    parts: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        syncs = []

        def read_earlier(ids: pl.Series) -> pl.DataFrame:
            # rows of earlier batches whose txn_id may repeat (rare): read back from the staged parts
            for f in syncs:
                f.result()
            return (
                pl.scan_parquet([str(staged / rel) for rel in parts], hive_partitioning=False)
                .select("txn_id", *_CONTENT)
                .filter(pl.col("txn_id").is_in(ids.implode()))
                .collect()
            )

        for n_batch, batch in enumerate(_batches(exp, m, path)):
            parsed = validate(batch, m, offset=rows_read)
            del batch
            if n_batch == 0:
                _stage("read")
            rows_read += parsed.height
            if "txn_id" not in m.columns:
                parsed = parsed.with_columns(
                    txn_id=pl.when(pl.col(_RULE).is_null()).then(content_hash(parsed.select(list(_CONTENT))))
                )
            if pending_hashes is not None:  # added only when a next batch comes: none for the last
                earlier.add(pending_hashes)
            status_col, pending_hashes = _classify(parsed, store, earlier, read_earlier)
            # pending_hashes: hashes of every valid txn_id of the batch, the accepted ones and ids
            # accepted before (a superset is harmless: the hashes only pre-select candidates)
            parsed = parsed.with_columns(status_col)
            bad = parsed.lazy().select(_ROW, _RULE, status).filter(
                pl.col(_RULE).is_not_null() | (status == _CONFLICT)
            ).select(_ROW, pl.coalesce(_RULE, pl.when(status == _CONFLICT).then(pl.lit("txn_id_conflict"))).alias(_RULE)).collect()
            if bad.height:
                if exp.kind == "csv":  # originals kept from this read
                    bad = bad.join(_originals(exp, m, parsed, bad[_ROW]), on=_ROW, how="left")
                bad_parts.append(bad)
            duplicates += parsed.select((status == _DUPLICATE).sum()).item()
            parsed = parsed.select(pl.exclude(f"^{_ORIG}.*$"))
            if m.labels:
                label_parts.append(_labels_frame(parsed.filter(status.is_in([_ACCEPTED, _DUPLICATE])), m))
            accepted = parsed.lazy().filter(status == _ACCEPTED).select(store_cols).collect()
            del parsed
            if accepted.height:
                lo, hi = accepted["ts"].min(), accepted["ts"].max()
                ts_min = lo if ts_min is None else min(ts_min, lo)
                ts_max = hi if ts_max is None else max(ts_max, hi)
                # distinct accounts, counted on 64-bit hashes (a collision is vanishingly unlikely
                # at millions of accounts; hashing is several times faster than comparing strings)
                account_parts.append(pl.concat([accepted["src_account"].hash(11), accepted["dst_account"].hash(11)]).unique())
            accepted_n += accepted.height
            # parts are written and fsynced by two background threads
            for day, frame in _day_slices(accepted):
                rel = f"transfers/day={day}/{stage_id}-{n_batch}.parquet"
                out = staged / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                parts.append(rel)
                syncs.append(pool.submit(_write_part, frame, out))
            del accepted
            _report_progress(progress, "validated", path)
        _stage("validated")
        if not isinstance(sha, str):
            sha = sha.result()
        ingest_id = store.next_ingest_id(sha)
        quarantine_rel = None
        if bad_parts:
            bad = pl.concat(bad_parts, how="vertical")
            if exp.kind != "csv":  # Parquet: read the rejected rows again (columnar, cheap)
                bad = bad.join(_originals(exp, m, bad, bad[_ROW]), on=_ROW, how="left")
            quarantine = bad.sort(_ROW).select(
                ingest_id=pl.lit(ingest_id),
                source_file=pl.lit(str(path)),
                line=pl.col(_ROW).cast(pl.Int64),
                rule=pl.col(_RULE),
                original=pl.col("original"),
            )
            quarantine_rel = f"quarantine/{ingest_id}.parquet"
            (staged / "quarantine").mkdir(exist_ok=True)
            quarantine.write_parquet(staged / quarantine_rel)
            syncs.append(pool.submit(fsync_file, staged / quarantine_rel))
        else:
            quarantine = None
        _stage("written")
        for f in syncs:
            f.result()
    if ingest_id != stage_id:
        final = [rel.replace(f"/{stage_id}-", f"/{ingest_id}-") for rel in parts]
        for old, new in zip(parts, final):
            os.rename(staged / old, staged / new)
        parts = final
    quarantined = 0 if quarantine is None else quarantine.height
    by_rule = {r: 0 for r in RULES}
    if quarantine is not None:
        counts = quarantine.group_by("rule").len()
        by_rule.update({r: int(n) for r, n in zip(counts["rule"].to_list(), counts["len"].to_list())})
    accounts = pl.concat(account_parts).unique() if account_parts else pl.Series("a", [], pl.UInt64)
    entry = {
        "ingest_id": ingest_id,
        "path": str(path.resolve()),
        "sha256": sha,
        "size": path.stat().st_size,
        "rows_read": rows_read,
        "accepted": accepted_n,
        "quarantined": quarantined,
        "quarantined_by_rule": by_rule,
        "duplicates": int(duplicates),
        "ingested_at": datetime.now(timezone.utc).isoformat(),
        "mapping": m.to_dict(),
        "optional_columns": [c for c in OPTIONAL_SCHEMA if c in m.columns],
        "ts_min": ts_min.isoformat() if ts_min else None,
        "ts_max": ts_max.isoformat() if ts_max else None,
        "accounts": accounts.len(),
        "parts": parts,
        "quarantine": quarantine_rel,
    }
    if rows_read != accepted_n + quarantined + entry["duplicates"]:
        raise RuntimeError("ingest counts do not add up")  # a bug, never a user error
    labels = pl.concat(label_parts, how="vertical").unique("txn_id", keep="first", maintain_order=True) if label_parts else None
    store.commit(entry, staged, hook=_stage, synced=True)
    return entry, accounts, labels


def _looks_like_data(header: list[str]) -> bool:
    """True when a 'header' holds dates or numbers, i.e. the file probably starts with data."""
    return any(re.fullmatch(r"\d{4}-\d{2}-\d{2}.*|[-+]?\d+([.,]\d+)?", h) for h in header)


def _report_progress(progress, stage: str, path: Path) -> None:
    if progress is not None:
        progress(stage, str(path))


def ingest(
    paths,
    store: "Store | str | os.PathLike",
    *,
    mapping: "Mapping | str | os.PathLike | None" = None,
    labels_out: "str | os.PathLike | None" = None,
    progress: Callable[[str, str], None] | None = None,
) -> IngestReport:
    """Ingest exports into a store; each file is committed atomically.

    Parameters
    ----------
    paths : files, folders or glob patterns (CSV, CSV.gz or Parquet).
    store : a :class:`~mulegraph.store.Store` or a folder (created when missing).
    mapping : a :class:`~mulegraph.mapping.Mapping`, a built-in name or a TOML path
        (default ``canonical``).
    labels_out : write the mapping's label columns here (``.parquet`` or ``.csv``).
    progress : called as ``progress(stage, file)`` with stages ``start``, ``read``, ``validated``,
        ``done`` and ``skipped``.

    Raises :class:`~mulegraph.errors.NothingNewError` when every file was already ingested
    (the report is attached as ``err.report``), and :class:`~mulegraph.errors.InputError` /
    :class:`~mulegraph.errors.MappingError` for unusable inputs.
    """
    m = load_mapping(mapping)
    if labels_out is not None and not m.labels:
        raise InputError(f"mapping '{m.name}' has no [labels]; leave out --labels-out or use a mapping with labels.")
    if labels_out is not None and not Path(labels_out).parent.is_dir():
        raise InputError(f"folder '{Path(labels_out).parent}' for --labels-out does not exist; create it first.")
    files = resolve_inputs(paths)
    st = store if isinstance(store, Store) else Store.open(store, create=True)
    report = IngestReport(store=str(st.path))
    account_sets = []
    label_frames = []
    with st.lock(), ThreadPoolExecutor(max_workers=1) as hasher:
        known = st.known_hashes()
        sizes = {e.get("size") for e in st.manifest()}
        for f in files:
            _report_progress(progress, "start", f)
            size = f.stat().st_size
            # a file of a size never ingested cannot be a file already ingested: its hash is
            # computed while it is read; otherwise first, so that a repeat is skipped at once
            sha = _sha256(f) if size in sizes else hasher.submit(_sha256, f)
            if isinstance(sha, str) and sha in known:
                report.skipped_files.append(str(f))
                report.files.append({"path": str(f), "status": "already ingested", "ingest_id": known[sha]})
                _report_progress(progress, "skipped", f)
                continue
            try:
                entry, accts, labels = _ingest_file(f, sha, st, m, progress)
            except BaseException:
                st._cleanup()
                raise
            known[entry["sha256"]] = entry["ingest_id"]
            sizes.add(entry["size"])
            account_sets.append(accts)
            if labels is not None:
                label_frames.append(labels)
            report.files.append({"path": str(f), "status": "ingested", **{k: entry[k] for k in (
                "ingest_id", "rows_read", "accepted", "quarantined", "quarantined_by_rule", "duplicates",
                "ts_min", "ts_max")}})
            report.rows_read += entry["rows_read"]
            report.accepted += entry["accepted"]
            report.quarantined += entry["quarantined"]
            report.duplicates += entry["duplicates"]
            for r, n in entry["quarantined_by_rule"].items():
                report.quarantined_by_rule[r] = report.quarantined_by_rule.get(r, 0) + n
            for key, pick in (("ts_min", min), ("ts_max", max)):
                if entry[key]:
                    attr = "date_min" if key == "ts_min" else "date_max"
                    cur = getattr(report, attr)
                    setattr(report, attr, entry[key] if cur is None else pick(cur, entry[key]))
            _report_progress(progress, "done", f)
    if account_sets:
        report.accounts = pl.concat(account_sets).n_unique()
    if labels_out is not None:
        frame = (
            pl.concat(label_frames, how="diagonal_relaxed").unique("txn_id", keep="first", maintain_order=True)
            if label_frames
            else pl.DataFrame(schema={"txn_id": pl.String()})
        )
        _write_labels(frame, Path(labels_out))
        report.labels_out = str(labels_out)
        report.labels_written = frame.height
    if files and len(report.skipped_files) == len(files):
        err = NothingNewError(
            f"all {len(files)} export(s) were already ingested into '{st.path}'; nothing new to add."
        )
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


def _write_labels(frame: pl.DataFrame, path: Path) -> None:
    if not path.parent.is_dir():
        raise InputError(f"folder '{path.parent}' for --labels-out does not exist; create it first.")
    if path.suffix.lower() == ".csv":
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        frame.write_csv(tmp)
        os.replace(tmp, path)
    else:
        write_parquet_atomic(frame, path)
