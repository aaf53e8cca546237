"""The store's id index: which txn_ids the store holds, so that an append costs the new day.

Finding the duplicates and txn_id conflicts of a new file needs to know which of its ids the
store already holds. Reading every stored ``txn_id`` for that costs the whole store on every
append; the index answers it from 8 bytes per stored transfer instead, and says on which days
the few ids it finds are stored, so that only those days' parts are read to compare the rows
exactly.

Each stored transfer has one 64-bit *key* in the index (:func:`key_expr`): the top 48 bits of its
id hash, then the UTC day it is stored under (16 bits: days since 1970-01-01, or
:data:`UNKNOWN_DAY` for a day outside 1970-2149, which makes a lookup that finds it read every
day). Sorting the keys sorts by hash, so a run is one ``np.sort`` and a lookup one binary search.
Keys are kept in *runs* (Parquet files under ``STORE/index/``, column
:data:`~mulegraph.core.schema.ID_INDEX_SCHEMA`, sorted), which the manifest lists under
``id_index``::

    "id_index": {"hash": "<which hash function>",
                 "runs": [{"file": "index/<name>.parquet", "ingests": ["i000001-...", ...], "rows": N}]}

Each ingest writes the run of its accepted rows into its staging folder, and
:meth:`~mulegraph.io.store.Store.commit` moves it into place with the parts and lists it in the
same manifest write, so the index is always exactly as committed as the transfers (a killed
ingest leaves an orphan run that the next ingest deletes). Runs are merged as they come
(:func:`merge_plan`, a binary counter): the new run absorbs the runs before it while they are not
more than twice its size, so a store holds O(log n) runs and each key is rewritten O(log n) times.

The index decides nothing: a hit is only a candidate, compared on the id strings and contents by
:mod:`mulegraph.ingest.dedupe`, so a collision of 48-bit prefixes costs a read, never an outcome
(about ``new x stored / 2**48`` of them per append: 0.02 for a 333k-row day into 20M transfers).
Ingests that no run covers (a store written before the index existed or by an older mulegraph,
or runs of another hash function, e.g. after a Polars upgrade) are indexed again from their parts
before the next file is classified.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from mulegraph.core.schema import ID_INDEX_SCHEMA
from mulegraph.io.store import Store

__all__ = ["IdIndex", "IndexRun", "merge_plan", "key_expr", "INDEX_DIR", "ROW_GROUP_ROWS", "UNKNOWN_DAY"]

#: Folder of the index runs inside the store.
INDEX_DIR = "index"

#: Keys per row group of a run. A lookup reads only the row groups whose key range holds one of
#: the new ids, so a small append reads a few of them and a day-sized one all (8 bytes per
#: stored transfer).
ROW_GROUP_ROWS = 1 << 18

#: The day bits of a key for a transfer whose UTC day is not in 1970-01-01 .. 2149-06-05.
UNKNOWN_DAY = (1 << 16) - 1

_DAY_MASK = np.uint64(UNKNOWN_DAY)
_EPOCH = date(1970, 1, 1)
_SCHEMA = pl.DataFrame(schema=ID_INDEX_SCHEMA).to_arrow().schema


def key_expr(idh: pl.Expr, day: pl.Expr) -> pl.Expr:
    """Index keys from 64-bit id hashes and UTC days (a Date, or days since 1970-01-01).

    Computed by Polars in the query that selects the accepted rows: no extra pass, no copies.
    """
    d = day.to_physical().cast(pl.Int64)
    d = pl.when((d >= 0) & (d < UNKNOWN_DAY)).then(d).otherwise(UNKNOWN_DAY).cast(pl.UInt64)
    return (idh.cast(pl.UInt64) & pl.lit(~_DAY_MASK, dtype=pl.UInt64)) | d


def merge_plan(sizes: list[int], new: int) -> int:
    """How many of the newest existing runs (``sizes``, oldest first) a new run of ``new`` rows absorbs.

    A binary counter: while the run before is at most twice the merged size so far, merge it in.
    """
    k, acc = 0, new
    while k < len(sizes) and sizes[-1 - k] <= 2 * acc:
        acc += sizes[-1 - k]
        k += 1
    return k


@dataclass(frozen=True)
class IndexRun:
    """One committed run: its file (relative to the store), the ingests it covers, its key count."""

    file: str
    ingests: tuple[str, ...]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "ingests": list(self.ingests), "rows": int(self.rows)}


class IdIndex:
    """A store's id index, as its manifest lists it: lookups and new runs.

    Parameters
    ----------
    store : the store (its manifest is read, never changed here).
    hash_name : names the id hash the caller uses; runs written with another hash are ignored
        (their ingests count as not indexed).
    """

    def __init__(self, store: Store, hash_name: str):
        self.store = store
        self.hash_name = hash_name
        section = store.id_index() or {}
        runs = section.get("runs", []) if section.get("hash") == hash_name else []
        self.runs: list[IndexRun] = [IndexRun(r["file"], tuple(r["ingests"]), int(r["rows"])) for r in runs]

    def uncovered(self) -> list[str]:
        """Ids of the committed ingests that no run covers, in commit order."""
        covered = {i for r in self.runs for i in r.ingests}
        return [e["ingest_id"] for e in self.store.manifest() if e["ingest_id"] not in covered]

    def find(self, srt: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
        """The values of the sorted id hashes ``srt`` the index may hold, and the days to read.

        Returns the hits (sorted, unique; equal to a stored key in their top 48 bits) and the ISO
        dates (``YYYY-MM-DD``, sorted) of the stored transfers behind them, or None for the days
        when one of them is stored under :data:`UNKNOWN_DAY` (then every day must be read).
        """
        if not len(srt) or not self.runs:
            return np.empty(0, np.uint64), []
        shift = np.uint64(16)
        top = srt >> shift  # sorted, as srt is
        hits: list[np.ndarray] = []
        days: set[int] = set()
        for run in self.runs:
            pf = pq.ParquetFile(self.store.path / run.file)
            meta = pf.metadata
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(0).statistics
                lo, hi = 0, len(top)
                if stats is not None and stats.has_min_max:
                    lo = np.searchsorted(top, np.uint64(stats.min) >> shift, side="left")
                    hi = np.searchsorted(top, np.uint64(stats.max) >> shift, side="right")
                if hi <= lo:
                    continue  # no new id falls in this row group's range
                keys = pf.read_row_group(g).column(0).to_numpy()
                keys_top, q = keys >> shift, top[lo:hi]
                left = np.searchsorted(keys_top, q, side="left")
                right = np.searchsorted(keys_top, q, side="right")
                found = right > left
                if not found.any():
                    continue
                hits.append(srt[lo:hi][found])
                starts, spans = left[found], (right - left)[found]
                pos = np.repeat(starts - np.cumsum(spans) + spans, spans) + np.arange(int(spans.sum()))
                days.update(np.unique(keys[pos] & _DAY_MASK).tolist())
        if not hits:
            return np.empty(0, np.uint64), []
        if UNKNOWN_DAY in days:
            return np.unique(np.concatenate(hits)), None
        return np.unique(np.concatenate(hits)), [(_EPOCH + timedelta(days=int(d))).isoformat() for d in sorted(days)]

    def add(self, staged: Path, name: str, ingests: list[str], keys: np.ndarray) -> dict[str, Any]:
        """Write a run of ``keys`` (:func:`key_expr`, any order) into ``staged``; return the new ``id_index``.

        The run absorbs the newest existing runs as :func:`merge_plan` says; the returned manifest
        section (for :meth:`~mulegraph.io.store.Store.commit`) lists the runs kept and the new one,
        whose file is ``index/<name>-<random>.parquet`` inside ``staged`` (fsynced by the commit).
        Ingests without rows write no file: the newest run lists them as covered.
        """
        if not len(keys) and self.runs:
            last = self.runs[-1]
            runs = self.runs[:-1] + [IndexRun(last.file, last.ingests + tuple(ingests), last.rows)]
            return {"hash": self.hash_name, "runs": [r.to_dict() for r in runs]}
        k = merge_plan([r.rows for r in self.runs], len(keys))
        keep, absorbed = self.runs[: len(self.runs) - k], self.runs[len(self.runs) - k :]
        if absorbed:
            old = [pq.read_table(self.store.path / r.file).column(0).to_numpy() for r in absorbed]
            keys = np.concatenate(old + [keys])
            ingests = [i for r in absorbed for i in r.ingests] + list(ingests)
        keys = np.sort(np.asarray(keys, dtype=np.uint64))
        rel = f"{INDEX_DIR}/{name}-{secrets.token_hex(4)}.parquet"
        (staged / INDEX_DIR).mkdir(parents=True, exist_ok=True)
        # keys do not compress and are near-unique: plain encoding, no compression
        pq.write_table(pa.Table.from_arrays([pa.array(keys)], schema=_SCHEMA), staged / rel, compression="none",
                       use_dictionary=False, row_group_size=ROW_GROUP_ROWS)
        runs = [r.to_dict() for r in keep] + [IndexRun(rel, tuple(ingests), len(keys)).to_dict()]
        return {"hash": self.hash_name, "runs": runs}
