"""Consortium lists: confirmed mules shared between banks as keyed hashes, never as account ids.

The mules of one fraud ring hold accounts at several banks, and each bank sees the others'
accounts as counterparties. Member banks agree on a secret key (at least 32 random bytes, in a key
file: :func:`mulegraph.core.keys.read_key_file`) and exchange lists of **keyed hashes**: the
HMAC-SHA256 under that key of the account id, as 64 hex digits. No account id leaves a bank.

* :func:`export_list` writes a bank's confirmed mules (each account whose latest investigator
  decision in the store is ``confirmed``, plus the mules of an optional labels file; a later
  ``cleared`` decision takes an account off) as ``account_hash, key_id`` rows, sorted by hash (the
  order says nothing about when or how an account was found), one row per account.
* :func:`read_list` reads one or more such lists (CSV or Parquet) and refuses a list made with
  another key (its ``key_id`` column, :func:`mulegraph.core.keys.key_id`) rather than matching
  nothing.
* :func:`match_list` hashes every distinct account id seen (customers and counterparties at
  other banks alike) once and returns the ids whose hash is listed; they become scoring seeds
  (:mod:`mulegraph.scoring.seeds`).

An account id is hashed exactly as it stands in the store (its UTF-8 bytes): member banks must
agree on one form of an account id (for example an IBAN in upper case without spaces) for their
lists to match. The threat model (what a member with or without the key learns, key rotation) is
in the README's "Consortium lists" section.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import atomic_path, file_sha256
from mulegraph.core.errors import InputError
from mulegraph.core.keys import key_id
from mulegraph.core.paths import refuse_protected_output
from mulegraph.io.labels import combine_labels, read_decisions, read_labels

__all__ = ["LIST_COLUMNS", "SharedList", "ShareExport", "keyed_hashes", "export_list", "read_list", "match_list"]

#: the columns of a shared list
LIST_COLUMNS: tuple[str, ...] = ("account_hash", "key_id")
_SUFFIXES = (".csv", ".parquet")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _hmac_sha256_many(key: bytes, values: list[str]) -> list[bytes]:
    """HMAC-SHA256 (RFC 2104) of each value's UTF-8 bytes under one key.

    The key's inner and outer pads are hashed once and the two hash states copied for each value;
    :func:`hmac.digest` would pad the key again on every call (about three times slower). A test
    holds it to :func:`hmac.new`.
    """
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for v in values:
        i = inner.copy()
        i.update(v.encode("utf-8"))
        o = outer.copy()
        o.update(i.digest())
        out.append(o.digest())
    return out


def keyed_hashes(ids: pl.Series, key: bytes) -> pl.Series:
    """HMAC-SHA256 under ``key`` of each id (its UTF-8 bytes), as 32-byte binary values; nulls stay null.

    Each distinct id is hashed once and the digests are joined back onto the column, so a column
    with many rows per account costs one HMAC per account.
    """
    ids = ids.cast(pl.String)
    uniq = ids.drop_nulls().unique()
    digests = pl.Series("account_hash", _hmac_sha256_many(key, uniq.to_list()), dtype=pl.Binary)
    table = pl.DataFrame({"id": uniq, "account_hash": digests})
    return pl.DataFrame({"id": ids}).join(table, on="id", how="left", maintain_order="left")["account_hash"]


@dataclass(frozen=True)
class ShareExport:
    """What :func:`export_list` wrote: the file, how many accounts, the key's id."""

    path: Path
    accounts: int
    key_id: str
    from_decisions: int
    from_labels: int


def _check_out(out: str | os.PathLike) -> Path:
    path = Path(out)
    if path.suffix.lower() not in _SUFFIXES:
        raise InputError(f"the shared list '{path.name}' must end in .csv or .parquet; pass e.g. --out mules-shared.csv.")
    refuse_protected_output(path)
    if not path.parent.is_dir():
        raise InputError(f"the folder of '{path}' does not exist; create it first.")
    return path


def export_list(
    out: str | os.PathLike,
    key: bytes,
    *,
    store: Any = None,
    labels: str | os.PathLike | pl.DataFrame | None = None,
) -> ShareExport:
    """Write the confirmed mules of ``store`` (its investigator decisions) and of ``labels`` as a shared list.

    ``store``: a store folder or :class:`~mulegraph.io.store.Store`; ``labels``: a labels file or
    frame (``account_id, is_mule``). An account's latest decision overrides its label. ``key``:
    the consortium key (at least 32 bytes; :func:`mulegraph.core.keys.read_key_file`). Raises
    :class:`~mulegraph.core.errors.InputError` when there is nothing to read.
    """
    from mulegraph.io.store import Store

    path = _check_out(out)
    lab = read_labels(labels) if labels is not None else None
    decisions = None
    if store is not None:
        recorded = (store if isinstance(store, Store) else Store.open(store)).decisions()
        decisions = read_decisions(recorded) if recorded.height else None
    if lab is None and decisions is None:
        raise InputError("nothing to share: the store holds no investigator decisions and no --labels file was given.")
    table = combine_labels(lab, decisions).filter(pl.col("is_mule"))
    frame = pl.DataFrame({"account_hash": keyed_hashes(table["account_id"], key).bin.encode("hex")})
    frame = frame.unique().sort("account_hash").with_columns(pl.lit(key_id(key)).alias("key_id"))
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.write_parquet(tmp)
        else:
            frame.write_csv(tmp)
    by = table.group_by("source").len()
    counts = dict(zip(by["source"].to_list(), by["len"].to_list()))
    return ShareExport(path=path, accounts=frame.height, key_id=key_id(key),
                       from_decisions=int(counts.get("decision", 0)), from_labels=int(counts.get("label", 0)))


@dataclass(frozen=True)
class SharedList:
    """Listed hashes of one or more shared lists (see :func:`read_list`)."""

    #: the distinct listed hashes, 32-byte binary values
    hashes: pl.Series
    #: the id of the key the lists were made with
    key_id: str
    #: ``path`` and ``sha256`` of each list file
    files: list[dict[str, str]] = field(default_factory=list)

    @property
    def listed(self) -> int:
        """How many distinct accounts the lists name."""
        return self.hashes.len()


def _read_one(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(f"the shared list '{path}' does not exist; pass a list written by 'mulegraph share export'.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pl.read_parquet(path)
        else:
            df = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise InputError(f"the shared list '{path.name}' cannot be read ({type(err).__name__}); pass a CSV or Parquet list.") from None
    if "account_hash" not in df.columns:
        raise InputError(f"the shared list '{path.name}' has no account_hash column; pass a list written by 'mulegraph share export'.")
    return df


def read_list(paths: list[str | os.PathLike] | str | os.PathLike, key: bytes) -> SharedList:
    """Read shared lists (CSV or Parquet, ``account_hash[, key_id]``) made with ``key``.

    Every ``account_hash`` must be 64 hex digits, and a list's ``key_id`` (when it has one) must be
    the id of ``key``; otherwise an :class:`~mulegraph.core.errors.InputError` (exit code 2) says
    which list, without showing its values.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    own = key_id(key)
    parts, files = [], []
    for raw in paths:
        path = Path(raw)
        df = _read_one(path)
        hashes = df["account_hash"].cast(pl.String).str.strip_chars().str.to_lowercase()
        bad = int((hashes.is_null() | ~hashes.str.contains(f"^{_HEX64.pattern}$")).sum())
        if bad:
            raise InputError(f"the shared list '{path.name}' has {bad} account_hash value(s) that are not 64 hex digits; ask for the list again.")
        if "key_id" in df.columns:
            ids = set(df["key_id"].cast(pl.String).drop_nulls().unique().to_list())
            if ids and ids != {own}:
                theirs = ", ".join(sorted(ids)[:3])
                raise InputError(
                    f"the shared list '{path.name}' was made with another key (key id {theirs}; yours is {own}): "
                    "the consortium key was rotated or the wrong key file was given; use the current key, "
                    "and ask the member for a list exported with it."
                )
        parts.append(hashes)
        files.append({"path": str(path), "sha256": file_sha256(path)})
    listed = pl.concat(parts).unique().sort() if parts else pl.Series(dtype=pl.String)
    return SharedList(hashes=listed.str.decode("hex").rename("account_hash"), key_id=own, files=files)


def match_list(shared: SharedList, account_ids: pl.Series, key: bytes) -> pl.Series:
    """The distinct ids of ``account_ids`` whose keyed hash under ``key`` is on ``shared``, sorted."""
    if key_id(key) != shared.key_id:
        raise InputError("the shared list was read with another key than the one given for matching.")
    ids = account_ids.cast(pl.String).drop_nulls().unique()
    if ids.is_empty() or shared.hashes.is_empty():
        return pl.Series("account_id", [], dtype=pl.String)
    hashed = pl.Series(_hmac_sha256_many(key, ids.to_list()), dtype=pl.Binary)  # ids are distinct: one HMAC each
    return ids.filter(hashed.is_in(shared.hashes.implode())).sort().rename("account_id")
