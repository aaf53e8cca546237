"""One export file into the store, as one atomic commit.

:func:`ingest_file` reads an export in batches of :data:`BATCH_ROWS` rows, validates and
classifies each batch, writes the accepted rows as day-partitioned Parquet parts into the
store's staging folder (fsynced by background threads while the next batch is read), writes the
quarantined rows, and finally hands everything to :meth:`~mulegraph.io.store.Store.commit`, which
moves the files into place and then records the file in the manifest. A process killed at any
moment leaves the store as it was before the file or as it is after it, never in between.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from mulegraph.core.atomic import fsync_file
from mulegraph.core.errors import InputError, MappingError
from mulegraph.core.schema import OPTIONAL_SCHEMA, STORE_SCHEMA, TRANSFER_SCHEMA
from mulegraph.ingest.dedupe import ACCEPTED, CONFLICT, DUPLICATE, StoredIds, _SeenHashes, classify
from mulegraph.ingest.hashing import CONTENT, content_hash
from mulegraph.ingest.index import key_expr
from mulegraph.ingest.parse import _ORIG, canonicalize
from mulegraph.ingest.sources import Export, csv_error, looks_like_data, read_export
from mulegraph.ingest.validate import _ROW, _RULE, RULES, validate
from mulegraph.io.mapping import Mapping
from mulegraph.io.store import Store

__all__ = ["BATCH_ROWS", "ingest_file", "report_progress"]

#: Rows per batch: a file is read, validated and written in batches of this many rows (all
#: committed together); beyond one batch, memory grows only by the ids and fingerprints of the
#: accepted rows.
BATCH_ROWS = 2_000_000

#: Part columns written with dictionary encoding (few distinct values) and with statistics (the
#: ones a reader filters on by range); the ids and accounts get neither, which would cost time
#: (a third of the write) for no gain: their values are near-unique and their min/max prune nothing.
_DICT_COLUMNS = ("currency", "channel", "src_bank", "dst_bank", "src_country", "dst_country")
_STATS_COLUMNS = ("ts", "amount", "amount_base")


def _stage(name: str) -> None:
    """Fault-injection point, a no-op: called with each stage's name as a file is ingested.

    The stages, in order: ``read`` (first batch parsed), ``validated`` (every batch classified and
    its parts staged), ``written`` (quarantine staged, every file fsynced), then, inside
    :meth:`~mulegraph.io.store.Store.commit`, ``staged``, ``moved`` (files in place, manifest not
    yet replaced) and ``committed``. Tests replace this function to kill the process at a stage.
    """


def report_progress(progress: Callable[[str, str], None] | None, stage: str, path: Path) -> None:
    """Call the user's ``progress(stage, file)`` callback, if any."""
    if progress is not None:
        progress(stage, str(path))


def _batches(exp: Export, m: Mapping, path: Path):
    """Collected batches of :func:`canonicalize`, with read errors turned into InputError."""
    try:
        lf = canonicalize(exp, m)  # may read a sample of timestamps
        yield from lf.collect_batches(chunk_size=BATCH_ROWS, engine="streaming")
    except pl.exceptions.PolarsError as err:
        if exp.kind == "csv":
            raise csv_error(path, err) from None
        raise InputError(f"'{path}' could not be read (corrupt Parquet?); export it again.") from None


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



def _originals(exp: Export, m: Mapping, parsed: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
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




def ingest_file(
    path: Path,
    sha: "str | Future[str]",
    store: Store,
    mapping: Mapping,
    progress: Callable[[str, str], None] | None,
) -> tuple[dict, pl.Series, pl.DataFrame | None]:
    """Ingest one export into ``store`` (whose lock the caller holds) as one commit.

    Returns the manifest entry, the 64-bit hashes of the distinct accounts of the accepted rows,
    and the label rows (``txn_id``, ``ts``, accounts, the mapping's label columns) of the accepted
    and duplicate rows, or None when the mapping has no labels.
    """
    # ``sha`` may still be computed by another thread (see ingest()): files are staged under a
    # provisional id and renamed once the hash, and so the final ingest id, is known
    stage_id = store.next_ingest_id(sha if isinstance(sha, str) else "pending")
    staged = store.staging_dir(stage_id)
    exp = read_export(path, mapping, staged)
    try:
        m = mapping.resolve(exp.header, str(path))
    except MappingError:
        if exp.kind == "csv" and looks_like_data(exp.header):
            raise MappingError(
                f"'{path}' seems to have no header row (its first line looks like data); add a header "
                "naming the columns and retry."
            ) from None
        raise
    report_progress(progress, "read", path)
    status = pl.col("__status")
    # the canonical columns and the optional ones this export carries (see mulegraph.io.store)
    store_cols = [c for c in STORE_SCHEMA if c in m.columns or c in TRANSFER_SCHEMA]
    earlier = _SeenHashes()  # id hashes of the valid rows of earlier batches
    stored = StoredIds(store)  # the store's txn_ids, through its id index
    index_keys: list[np.ndarray] = []  # id index keys of the accepted rows
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
                .select("txn_id", *CONTENT)
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
                    txn_id=pl.when(pl.col(_RULE).is_null()).then(content_hash(parsed.select(list(CONTENT))))
                )
            if pending_hashes is not None:  # added only when a next batch comes: none for the last
                earlier.add(pending_hashes)
            status_col, pending_hashes, idh_col = classify(parsed, stored, earlier, read_earlier)
            # pending_hashes: hashes of every valid txn_id of the batch, the accepted ones and ids
            # accepted before (a superset is harmless: the hashes only pre-select candidates)
            parsed = parsed.with_columns(status_col, idh_col)
            bad = parsed.lazy().select(_ROW, _RULE, status).filter(
                pl.col(_RULE).is_not_null() | (status == CONFLICT)
            ).select(_ROW, pl.coalesce(_RULE, pl.when(status == CONFLICT).then(pl.lit("txn_id_conflict"))).alias(_RULE)).collect()
            if bad.height:
                if exp.kind == "csv":  # originals kept from this read
                    bad = bad.join(_originals(exp, m, parsed, bad[_ROW]), on=_ROW, how="left")
                bad_parts.append(bad)
            duplicates += parsed.select((status == DUPLICATE).sum()).item()
            parsed = parsed.select(pl.exclude(f"^{_ORIG}.*$"))
            if m.labels:
                label_parts.append(_labels_frame(parsed.filter(status.is_in([ACCEPTED, DUPLICATE])), m))
            accepted = parsed.lazy().filter(status == ACCEPTED).select(store_cols).collect()
            keys = parsed.lazy().filter(status == ACCEPTED).select(key_expr(pl.col("__idh"), pl.col("ts").dt.date()))
            index_keys.append(keys.collect().to_series().to_numpy())
            del parsed, keys
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
            report_progress(progress, "validated", path)
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
        # the id index run of the accepted rows, committed with the parts (mulegraph.ingest.index)
        keys = np.concatenate(index_keys) if index_keys else np.empty(0, np.uint64)
        del index_keys
        id_index = stored.index.add(staged, ingest_id, [ingest_id], keys)
        del keys
        syncs += [pool.submit(fsync_file, staged / r["file"]) for r in id_index["runs"] if (staged / r["file"]).is_file()]
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
    store.commit(entry, staged, hook=_stage, synced=True, id_index=id_index)
    return entry, accounts, labels
