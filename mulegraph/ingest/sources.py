"""Finding and opening exports: files, folders and globs; gzip; CSV sniffing; Parquet.

:func:`resolve_inputs` expands what the user passed into export files; :func:`read_export` opens
one of them lazily (every CSV column as text, so nothing is lost before parsing) after checking
that it is what it claims to be. Errors about a file itself (empty, binary, an HTML page, a
corrupt gzip or Parquet file, no header) are :class:`~mulegraph.core.errors.InputError` with a
message that says what to do.
"""

from __future__ import annotations

import codecs
import csv
import glob as globmod
import gzip
import io
import os
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mulegraph.core.atomic import disk_full_names
from mulegraph.core.errors import InputError, MulegraphError
from mulegraph.io.mapping import Mapping, dedupe_header

__all__ = ["EXPORT_SUFFIXES", "Export", "resolve_inputs", "read_export", "csv_error", "looks_like_data"]

#: File names a folder is searched for.
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")


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


def _gunzip(path: Path, workdir: Path) -> Path:
    out = workdir / (path.name.removesuffix(".gz") or "export")
    try:
        with disk_full_names(workdir), gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
        if isinstance(err, MulegraphError):  # a full disk while writing the decompressed copy
            raise
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
    if _binary(head):
        raise InputError(f"'{shown}' is not a CSV or Parquet file (binary content); pass a CSV or Parquet export.")
    return "csv"


def _binary(head: bytes) -> bool:
    """Binary content: NUL bytes in the header line, in text that is not UTF-8, or in more than
    one byte in 100 (UTF-16 text, for one, is every other byte NUL).

    A few NULs inside the data rows of UTF-8 text are an export with hostile or damaged values:
    those rows are quarantined (``control_chars``) wherever they are in the file, rather than the
    whole export refused because one of them came early.
    """
    nul = head.count(b"\x00")
    if not nul:
        return False
    if b"\x00" in head.split(b"\n", 1)[0] or nul * 100 > len(head):
        return True
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


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
class Export:
    """One opened export: a lazy frame of its columns, its header and what kind of file it is."""

    lf: pl.LazyFrame  # export columns (deduplicated names), in file order
    header: list[str]
    schema: dict[str, pl.DataType]
    kind: str  # "csv" or "parquet" (a gzip file is decompressed first)


def read_export(path: Path, mapping: Mapping, workdir: Path) -> Export:
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
            lf = pl.scan_parquet(path, glob=False)  # a file name with [ ] * ? is a name, not a pattern
            schema = dict(lf.collect_schema())
        except (pl.exceptions.PolarsError, OSError):
            raise InputError(f"'{shown}' is not a readable Parquet file (truncated or corrupt); export it again.") from None
        header = list(schema)
        return Export(lf, header, schema, kind)
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
        glob=False,  # a file name with [ ] * ? is a name, not a pattern
    )
    schema = {h: pl.String() for h in header}
    return Export(lf, header, schema, "csv")


def csv_error(shown: Path, err: Exception) -> InputError:
    """The user-facing error for a Polars error raised while reading the CSV ``shown``."""
    msg = str(err).lower()
    if "more fields" in msg or "ragged" in msg:
        what = "a row has more fields than the header (check the delimiter and quoting)"
    elif "utf-8" in msg or "utf8" in msg:
        what = "it is not valid UTF-8 text (re-save it as UTF-8)"
    else:
        what = "it is malformed (for example an unterminated quote)"
    return InputError(f"'{shown}' cannot be read as CSV: {what}; fix the export and retry.")




def looks_like_data(header: list[str]) -> bool:
    """True when a 'header' holds dates or numbers, i.e. the file probably starts with data."""
    return any(re.fullmatch(r"\d{4}-\d{2}-\d{2}.*|[-+]?\d+([.,]\d+)?", h) for h in header)
