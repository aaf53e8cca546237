"""Duplicates and txn_id conflicts: each valid row is accepted, a duplicate, or a conflict.

A row whose ``txn_id`` was accepted before (earlier in the same batch, in an earlier batch of the
same file, or in the store) is a duplicate when its canonical content
(:data:`~mulegraph.ingest.hashing.CONTENT`) equals the first one's, and a ``txn_id_conflict``
otherwise; the first one seen is kept. 64-bit hashes of the ids only pre-select candidates;
outcomes are always decided on the id strings, so a hash collision never changes one.

Ids of earlier batches of the file are looked up in memory (:class:`_SeenHashes`); ids already
in the store through its id index (:class:`StoredIds`, :mod:`mulegraph.ingest.index`), which
costs 8 bytes per stored transfer and then reads only the days on which an id was found.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from mulegraph.core.schema import STORE_SCHEMA
from mulegraph.ingest.hashing import CONTENT, content_key
from mulegraph.ingest.index import IdIndex, key_expr
from mulegraph.ingest.validate import _ROW, _RULE
from mulegraph.io.store import Store

__all__ = ["ACCEPTED", "DUPLICATE", "CONFLICT", "HASH_NAME", "StoredIds", "classify"]

#: Codes of the ``__status`` column (UInt8) that :func:`classify` returns.
ACCEPTED, DUPLICATE, CONFLICT = 0, 1, 2


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


#: Names :func:`_id_hash` in the store's id index. Polars' hash is stable within a Polars version
#: only: runs written under another version are ignored and their ingests indexed again, once.
HASH_NAME = f"polars-{pl.__version__}:hash(7)"


def _id_hash(ids: pl.Series) -> pl.Series:
    """64-bit hash of txn_ids (see :data:`HASH_NAME`), used to find candidates before comparing strings."""
    return ids.hash(7).alias("__idh")


class StoredIds:
    """The txn_ids the store holds, looked up through its id index (caller holds the store lock).

    Opening it indexes the committed ingests that no index run covers (a store written before
    the index existed or by an older mulegraph, or runs of another :data:`HASH_NAME`) and
    commits that run on its own, so that only the first append pays for it.
    """

    #: Rows hashed at a time while indexing an ingest again.
    _BUILD_ROWS = 2_000_000

    def __init__(self, store: Store):
        self.store = store
        self.index = IdIndex(store, HASH_NAME)
        missing = self.index.uncovered()
        if missing:
            self._build(missing)

    def _build(self, ingests: list[str]) -> None:
        keys = []
        for ingest_id in ingests:
            lf = self.store.scan_subset(["txn_id", "ts"], ingests=[ingest_id])
            for batch in lf.collect_batches(chunk_size=self._BUILD_ROWS, engine="streaming"):
                batch = batch.with_columns(_id_hash(batch["txn_id"]).alias("__idh"))
                keys.append(batch.select(key_expr(pl.col("__idh"), pl.col("ts").dt.date())).to_series().to_numpy())
        staged = self.store.staging_dir("id-index")
        section = self.index.add(staged, ingests[-1], ingests, np.concatenate(keys) if keys else np.empty(0, np.uint64))
        self.store.commit(None, staged, id_index=section)
        self.index = IdIndex(self.store, HASH_NAME)

    def rows(self, ids: pl.Series, idh: pl.Series, srt: np.ndarray) -> pl.DataFrame:
        """``txn_id`` and content of the stored transfers whose txn_id is in ``ids``.

        ``idh`` are the ids' hashes (:func:`_id_hash`) and ``srt`` the same hashes sorted. Only
        the parts of the days on which the index found one of the hashes are read.
        """
        hits, days = self.index.find(srt)  # days None: read every day
        if not len(hits):
            return pl.DataFrame(schema={"txn_id": pl.String(), **{c: STORE_SCHEMA[c] for c in CONTENT}})
        candidates = ids.filter(idh.is_in(pl.Series(hits).implode())).unique()
        return (
            self.store.scan_subset(["txn_id", *CONTENT], days=days)
            .filter(pl.col("txn_id").is_in(candidates.implode()))  # pushed into the Parquet reader
            .unique("txn_id", keep="first")
            .collect()
        )


def classify(
    parsed: pl.DataFrame,
    stored: StoredIds,
    earlier: "_SeenHashes",
    read_earlier: Callable[[pl.Series], pl.DataFrame],
) -> tuple[pl.Series, np.ndarray, pl.Series]:
    """Status of every row, the sorted 64-bit hashes of the valid rows' txn_ids, and every row's hash.

    The status (``__status``, UInt8) is ``ACCEPTED``, ``DUPLICATE`` or ``CONFLICT``, null for
    rows a rule rejected; the hashes (``__idh``, :func:`_id_hash`) are what the id index keeps
    for the accepted rows.

    ``earlier`` holds, per earlier batch of the same file, the sorted 64-bit hashes
    (:func:`_id_hash`) of its valid txn_ids (every one of them was accepted in that batch or
    before); ``read_earlier(ids)`` returns ``txn_id`` and the canonical content of the rows
    accepted from earlier batches whose txn_id is in ``ids``. The hashes are only a
    pre-filter: rows whose txn_id may repeat in the batch, or may have been seen before (store
    or earlier batch), are compared exactly, on the strings; a row equal in content to the first
    one seen is a duplicate, any other a conflict. Batches without such rows cost one hash and
    two membership tests on 64-bit integers (earlier batches, the store's id index).
    """
    content = list(CONTENT)
    valid = pl.col(_RULE).is_null()
    valid_mask = parsed[_RULE].is_null()
    idh_all = _id_hash(parsed["txn_id"])
    ids = parsed["txn_id"].filter(valid_mask)
    idh = idh_all.filter(valid_mask)
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
    parts.append(stored.rows(ids, idh, srt))
    parts = [p for p in parts if p.height]
    seen = (
        pl.concat([p.select("txn_id", content_key(p)) for p in parts], how="vertical")
        if parts
        else pl.DataFrame(schema={"txn_id": pl.String(), "__h": pl.UInt64()})
    )
    accepted = pl.when(valid).then(pl.lit(ACCEPTED, dtype=pl.UInt8))
    if in_batch.is_empty() and seen.is_empty():
        return parsed.select(accepted.alias("__status")).to_series(), srt, idh_all
    touched = pl.concat([in_batch, seen["txn_id"]]).unique()
    sub = parsed.filter(valid & pl.col("txn_id").is_in(touched.implode())).select(_ROW, "txn_id", *content)
    sub = sub.select(_ROW, "txn_id", content_key(sub))
    first = (
        sub.unique("txn_id", keep="first", maintain_order=True)
        .join(seen.select("txn_id"), on="txn_id", how="anti")
        .select("txn_id", "__h", __first=pl.col(_ROW))
    )
    ref = pl.concat([seen.with_columns(__first=pl.lit(None, dtype=first["__first"].dtype)), first], how="vertical")
    sub = sub.join(ref, on="txn_id", how="left", suffix="__ref").with_columns(
        __status=pl.when(pl.col(_ROW) == pl.col("__first")).then(pl.lit(ACCEPTED))
        .when(pl.col("__h") == pl.col("__h__ref")).then(pl.lit(DUPLICATE))
        .otherwise(pl.lit(CONFLICT))
    )
    dup_rows = sub.filter(pl.col("__status") == DUPLICATE)[_ROW]
    conflict_rows = sub.filter(pl.col("__status") == CONFLICT)[_ROW]
    return parsed.select(
        pl.when(pl.col(_ROW).is_in(dup_rows.implode())).then(pl.lit(DUPLICATE, dtype=pl.UInt8))
        .when(pl.col(_ROW).is_in(conflict_rows.implode())).then(pl.lit(CONFLICT, dtype=pl.UInt8))
        .otherwise(accepted)
        .alias("__status")
    ).to_series(), srt, idh_all
