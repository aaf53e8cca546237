"""Timestamps: the mapping's formats (strftime, ``auto`` ISO 8601, epochs, day numbers) -> UTC.

Every parser here is a Polars expression over a whole column (no per-row Python). Local times
are read in the mapping's time zone: a time in a daylight-saving gap does not exist and parses to
null (the row is then quarantined as ``bad_timestamp``); one in the repeated hour when the clocks
go back is read as the earlier of its two instants.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from mulegraph.io.mapping import Mapping

__all__ = ["parse_ts", "parse_one", "parse_auto", "fast_auto_format", "AUTO_FORMATS"]


def _naive_to_utc(e: pl.Expr, tz: str) -> pl.Expr:
    # a local time in a daylight-saving gap does not exist (null -> bad_timestamp); one in the
    # repeated hour when clocks go back is read as the earlier of its two instants
    return e.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")


def parse_ts(m: Mapping, text: pl.Expr, dtype: pl.DataType | None, raw: pl.Expr | None = None) -> pl.Expr:
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
        return parse_auto(text, m.timezone)
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    if "%z" in fmt or "%:z" in fmt or "%#z" in fmt:
        return parsed.dt.convert_time_zone("UTC").cast(utc)
    return _naive_to_utc(parsed, m.timezone).cast(utc)


#: ISO 8601 forms tried by ``format = "auto"``: (strftime, how to read the result).
AUTO_FORMATS: tuple[tuple[str, str], ...] = (
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


def parse_one(text: pl.Expr, fmt: str, how: str, tz: str) -> pl.Expr:
    """Parse with one strftime ``fmt``; ``how`` says whether the result is aware, UTC or local."""
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    if how == "aware":
        return parsed.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
    if how == "utc":
        return parsed.dt.replace_time_zone("UTC")
    return _naive_to_utc(parsed, tz).cast(pl.Datetime("us", "UTC"))


def parse_auto(text: pl.Expr, tz: str) -> pl.Expr:
    """Every ISO 8601 form at once (slow: each form is tried on every value)."""
    t = text.str.replace(r"[zZ]$", "+00:00").str.replace(r"^(\d{4}-\d{2}-\d{2})[T ]", "${1} ")
    forms = [("%Y-%m-%d %H:%M:%S%.f%z", "aware"), ("%Y-%m-%d %H:%M%z", "aware"),
             ("%Y-%m-%d %H:%M:%S%.f", "naive"), ("%Y-%m-%d %H:%M", "naive"), ("%Y-%m-%d", "naive")]
    return pl.coalesce([parse_one(t, f, how, tz) for f, how in forms])


def fast_auto_format(sample: pl.Series, tz: str) -> tuple[str, str] | None:
    """The single ISO form that parses most of a sample of timestamps (None: no sample)."""
    sample = sample.drop_nulls()
    if sample.is_empty():
        return None
    frame = sample.to_frame("t")
    best, best_n = None, 0
    for f, how in AUTO_FORMATS:
        n = frame.select(parse_one(pl.col("t"), f, how, tz).is_not_null().sum()).item()
        if n > best_n:
            best, best_n = (f, how), n
    return best
