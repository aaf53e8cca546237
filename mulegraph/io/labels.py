"""Read account labels and investigator decisions into one label table.

Two inputs, CSV or Parquet:

* **labels**: ``account_id, is_mule[, typology]``. ``is_mule`` may be a boolean, 0/1, or one of the
  words true/false, yes/no, t/f, y/n (any case). ``typology`` is optional and '|'-joined when an
  account belongs to several.
* **decisions** (investigators): ``account_id, decision, date[, note]`` with ``decision`` one of
  ``confirmed`` or ``cleared``. The latest decision per account counts; ``confirmed`` means a mule,
  ``cleared`` means not a mule. A decision overrides a label for the same account.

:func:`load_labels` returns one row per account: ``account_id`` (String), ``is_mule`` (Boolean),
``typology`` (String, nullable) and ``source`` (``label`` or ``decision``).
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.escape import strip_formula_guard
from mulegraph.core.schema import DECISION_SCHEMA

__all__ = ["read_labels", "read_known", "read_decisions", "describe_header", "combine_labels", "load_labels", "training_labels", "LABEL_TABLE_SCHEMA"]

#: the combined label table
LABEL_TABLE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "is_mule": pl.Boolean(),
    "typology": pl.String(),
    "source": pl.String(),
}

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def _read_table(path: str | os.PathLike, what: str) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file '{p}' does not exist; pass an existing CSV or Parquet file.")
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(p)
        if suffix in (".csv", ".csv.gz", ".txt", ".tsv"):
            # a text cell starting with "'" loses it: the guard mulegraph puts before formula-like cells
            return strip_formula_guard(pl.read_csv(p, infer_schema=False, separator="\t" if suffix == ".tsv" else ","))
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise InputError(f"{what} file '{p.name}' cannot be read ({type(err).__name__}); check that it is valid {suffix[1:]}.") from None
    raise InputError(f"{what} file '{p.name}' has an unknown type '{suffix}'; use .csv or .parquet.")


def describe_header(columns: list[str]) -> str:
    """The columns a file has, for an error message; never the values of a headerless file's first row.

    A file without a header row has its first data row (account ids, amounts) as column names,
    and error messages must not carry account data: names with a digit or an unprintable
    character are not shown.
    """
    if not columns:
        return "found: no columns"
    if any(any(ch.isdigit() or not ch.isprintable() for ch in c) for c in columns):
        return "its first row does not look like a header row; add one"
    return "found: " + ", ".join(columns)


def _require(df: pl.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"{what} lack column(s) {', '.join(missing)}; expected {', '.join(cols)} ({describe_header(df.columns)})."
        )


def _bool_column(s: pl.Series, what: str) -> pl.Series:
    if s.dtype == pl.Boolean:
        out = s
    elif s.dtype.is_numeric():
        bad = s.is_not_null() & ~s.is_in([0, 1])
        if bad.any():
            raise InputError(f"{what}: is_mule must be 0/1 or true/false; {int(bad.sum())} row(s) have other numbers.")
        out = s.cast(pl.Boolean)
    else:
        low = s.cast(pl.String).str.strip_chars().str.to_lowercase()
        bad = low.is_not_null() & ~low.is_in(sorted(_TRUE | _FALSE))
        if bad.any():
            raise InputError(f"{what}: is_mule must be true/false, yes/no or 0/1; {int(bad.sum())} row(s) have other values.")
        out = low.is_in(sorted(_TRUE)).alias(s.name)
        out = pl.select(pl.when(low.is_null()).then(None).otherwise(out).alias(s.name)).to_series()
    if out.null_count():
        raise InputError(f"{what}: is_mule is empty in {out.null_count()} row(s); give every account true or false.")
    return out.alias("is_mule")


def _ids(df: pl.DataFrame, what: str) -> pl.Series:
    ids = df["account_id"].cast(pl.String).str.strip_chars()
    blank = ids.is_null() | (ids == "")
    if blank.any():
        raise InputError(f"{what}: account_id is empty in {int(blank.sum())} row(s); every row needs an account.")
    return ids


def read_labels(source: str | os.PathLike | pl.DataFrame) -> pl.DataFrame:
    """Read a labels file (or frame) into ``account_id, is_mule, typology``.

    Raises :class:`~mulegraph.errors.InputError` for a missing file, missing columns, values that
    are not booleans, or an account labelled both ways.
    """
    what = "labels"
    df = source if isinstance(source, pl.DataFrame) else _read_table(source, what)
    _require(df, ("account_id", "is_mule"), what)
    typ = df["typology"].cast(pl.String) if "typology" in df.columns else pl.Series("typology", [None] * df.height, pl.String)
    out = pl.DataFrame({"account_id": _ids(df, what), "is_mule": _bool_column(df["is_mule"], what), "typology": typ})
    out = out.with_columns(pl.when(pl.col("typology").str.strip_chars() == "").then(None).otherwise(pl.col("typology")).alias("typology"))
    conflicts = out.group_by("account_id").agg(pl.col("is_mule").n_unique().alias("n")).filter(pl.col("n") > 1)
    if conflicts.height:
        raise InputError(f"{what}: {conflicts.height} account(s) are labelled both mule and not mule; keep one label per account.")
    out = out.group_by("account_id", maintain_order=True).agg(
        pl.col("is_mule").first(), pl.col("typology").drop_nulls().first()
    )
    return out.sort("account_id")


def read_known(source: str | os.PathLike | pl.DataFrame) -> pl.DataFrame:
    """Read a list of known accounts (``--known``) into ``account_id, is_mule``, one row per account.

    ``account_id`` is required; ``is_mule`` is optional, and without it every listed account is a
    confirmed mule. An account listed both ways is an :class:`~mulegraph.errors.InputError`.
    """
    what = "known accounts"
    df = source if isinstance(source, pl.DataFrame) else _read_table(source, what)
    _require(df, ("account_id",), what)
    if "is_mule" in df.columns:
        mule = _bool_column(df["is_mule"], what)
    else:
        mule = pl.Series("is_mule", [True] * df.height, dtype=pl.Boolean)
    out = pl.DataFrame({"account_id": _ids(df, what), "is_mule": mule})
    if out.group_by("account_id").agg(pl.col("is_mule").n_unique().alias("n")).filter(pl.col("n") > 1).height:
        raise InputError(f"{what}: some accounts are listed both as mules and as not mules; keep one row per account.")
    return out.unique("account_id").sort("account_id")


def read_decisions(source: str | os.PathLike | pl.DataFrame) -> pl.DataFrame:
    """Read investigator decisions into ``account_id, decision, date, note`` (schema.DECISION_SCHEMA).

    ``decision`` must be ``confirmed`` or ``cleared`` (any case); ``date`` an ISO date or timestamp.
    """
    what = "decisions"
    df = source if isinstance(source, pl.DataFrame) else _read_table(source, what)
    _require(df, ("account_id", "decision", "date"), what)
    dec = df["decision"].cast(pl.String).str.strip_chars().str.to_lowercase()
    bad = dec.is_null() | ~dec.is_in(["confirmed", "cleared"])
    if bad.any():
        raise InputError(f"{what}: decision must be 'confirmed' or 'cleared'; {int(bad.sum())} row(s) have other values.")
    date = df["date"]
    if date.dtype == pl.Date:
        date = date.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif isinstance(date.dtype, pl.Datetime):
        date = date.dt.cast_time_unit("us")
        date = date.dt.replace_time_zone("UTC") if date.dtype.time_zone is None else date.dt.convert_time_zone("UTC")
    else:
        txt = date.cast(pl.String).str.strip_chars()
        parsed = txt.str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
        day = txt.str.to_date(strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        date = pl.select(pl.coalesce(parsed, day)).to_series()
        if (date.is_null() & txt.is_not_null()).any():
            raise InputError(f"{what}: date is not an ISO date or timestamp in {int((date.is_null() & txt.is_not_null()).sum())} row(s); use YYYY-MM-DD.")
    if date.null_count():
        raise InputError(f"{what}: date is empty in {date.null_count()} row(s); every decision needs a date.")
    note = df["note"].cast(pl.String) if "note" in df.columns else pl.Series("note", [None] * df.height, pl.String)
    out = pl.DataFrame({"account_id": _ids(df, what), "decision": dec, "date": date, "note": note})
    return out.cast(DECISION_SCHEMA).sort("account_id", "date")  # type: ignore[arg-type]


def combine_labels(labels: pl.DataFrame | None, decisions: pl.DataFrame | None = None) -> pl.DataFrame:
    """One label per account: labels, overridden by each account's latest decision."""
    parts = []
    if labels is not None:
        parts.append(labels.select("account_id", "is_mule", "typology").with_columns(pl.lit("label").alias("source")))
    if decisions is not None and decisions.height:
        latest = decisions.sort("date").group_by("account_id").agg(pl.col("decision").last())
        dec = latest.select(
            "account_id",
            (pl.col("decision") == "confirmed").alias("is_mule"),
            pl.lit(None, dtype=pl.String).alias("typology"),
            pl.lit("decision").alias("source"),
        )
        if parts:
            keep_typ = parts[0].select("account_id", pl.col("typology").alias("_typ"))
            dec = dec.join(keep_typ, on="account_id", how="left").with_columns(
                pl.when(pl.col("is_mule")).then(pl.col("_typ")).otherwise(None).alias("typology")
            ).drop("_typ")
            parts[0] = parts[0].join(dec.select("account_id"), on="account_id", how="anti")
        parts.append(dec)
    if not parts:
        raise InputError("no labels given; pass a labels file, a decisions file, or both.")
    out = pl.concat(parts, how="vertical").cast(LABEL_TABLE_SCHEMA)  # type: ignore[arg-type]
    return out.sort("account_id")


def load_labels(labels: str | os.PathLike | None, decisions: str | os.PathLike | None = None) -> pl.DataFrame:
    """Read a labels file and/or a decisions file into one label table (see module docs)."""
    lab = read_labels(labels) if labels is not None else None
    dec = read_decisions(decisions) if decisions is not None else None
    return combine_labels(lab, dec)


def training_labels(
    labels: str | os.PathLike | pl.DataFrame | None = None,
    decisions: str | os.PathLike | pl.DataFrame | None = None,
    *,
    store: str | os.PathLike | None = None,
) -> pl.DataFrame:
    """The label table training uses: labels, then decisions from a file and from the store.

    Decisions recorded in the store (by investigators, through
    :meth:`mulegraph.investigate.Investigation.record_decision` or
    :meth:`mulegraph.store.Store.add_decisions`) are read when ``store`` is given, so the next
    training picks them up. Each account's latest decision, from either source, overrides its label.
    """
    frames = [read_decisions(decisions)] if decisions is not None else []
    if store is not None:
        from mulegraph.io.store import Store

        recorded = Store.open(store).decisions()
        if recorded.height:
            frames.append(read_decisions(recorded))
    if labels is None and not frames:
        raise InputError("no labels: pass a labels file, a decisions file, or record decisions in the store.")
    lab = read_labels(labels) if labels is not None else None
    return combine_labels(lab, pl.concat(frames) if frames else None)
