"""The transfer store: a directory of day-partitioned Parquet with a manifest as its commit record.

Layout::

    STORE/
      manifest.json                                  the commit record (replaced atomically)
      transfers/day=YYYY-MM-DD/<ingest_id>-<n>.parquet   canonical transfers, one folder per UTC day
      quarantine/<ingest_id>.parquet                 rejected rows of one ingested file
      index/<name>.parquet                           id index runs (see mulegraph.ingest.index)
      decisions.parquet                              investigator decisions (confirmed / cleared)
      .staging/<ingest_id>/                          work area of an ingest in progress
      .lock                                          held (filelock) while an ingest writes

Every transfer part holds the canonical columns, then the optional columns
(:data:`~mulegraph.core.schema.OPTIONAL_SCHEMA`) its export carried, in
:data:`~mulegraph.core.schema.STORE_SCHEMA` order
(writing all-null columns costs time for nothing). Readers go through :meth:`Store.scan`, which
gives every optional column that any ingest carried, null in the parts without it.

Readers only read the parts that ``manifest.json`` lists, so a file is visible entirely or not at
all: an ingest writes its parts into ``.staging``, fsyncs them, renames them into place and only
then replaces the manifest (:func:`mulegraph.core.atomic.write_text_atomic`: a temporary file,
fsync, ``os.replace``). If the process is killed before that last step the new parts are orphans
that no reader sees; the next ingest (or :meth:`Store.open` when no ingest holds the lock)
deletes them. Writers serialise on the ``.lock`` file (:class:`filelock.FileLock`, an ``flock``
on Unix, released by the kernel when a writer dies, so a killed ingest never leaves a stale lock).
The store's column contracts (:data:`~mulegraph.core.schema.STORE_SCHEMA`,
:data:`~mulegraph.core.schema.QUARANTINE_SCHEMA`) live in :mod:`mulegraph.core.schema` and are
re-exported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import polars as pl
from filelock import FileLock, Timeout

from mulegraph.core.atomic import atomic_path, fsync_dir, fsync_file, write_text_atomic
from mulegraph.core.errors import InputError, StoreError
from mulegraph.core.paths import STORE_FORMAT
from mulegraph.core.schema import (
    DECISION_SCHEMA,
    OPTIONAL_SCHEMA,
    QUARANTINE_SCHEMA,
    STORE_SCHEMA,
    TRANSFER_COLUMNS,
)
from mulegraph.core.window import TimeWindow, filter_window, resolve_window

__all__ = ["Store", "STORE_SCHEMA", "QUARANTINE_SCHEMA", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"
_LOCK_NAME = ".lock"
_FORMAT = STORE_FORMAT  # the marker core.paths looks for to refuse outputs inside a store
_VERSION = 1

_DECISIONS = ("confirmed", "cleared")

#: Folders of committed files: transfer parts, quarantine tables, id index runs.
_DATA_DIRS = ("transfers", "quarantine", "index")


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


class Store:
    """A mulegraph store directory. Create or open one with :meth:`Store.open`."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self._manifest = manifest

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False) -> "Store":
        """Open the store at ``path``; with ``create=True`` make a new one if there is none.

        Raises :class:`StoreError` when the folder is missing (and ``create`` is false) or is not
        a mulegraph store. Leftovers of a killed ingest are removed when no ingest is running.
        """
        p = Path(path)
        man = p / MANIFEST_NAME
        if not p.exists():
            if not create:
                raise StoreError(
                    f"store '{p}' does not exist; create it with 'mulegraph ingest EXPORT --store {p}'."
                )
            p.mkdir(parents=True)
        if not p.is_dir():
            raise StoreError(f"store '{p}' is not a folder; pass a store folder with --store.")
        if not man.is_file():
            leftovers = [x for x in p.iterdir() if x.name not in (_LOCK_NAME, ".staging")]
            if not create or leftovers:
                raise StoreError(
                    f"'{p}' is not a mulegraph store (no {MANIFEST_NAME}); pass a store folder "
                    "made by 'mulegraph ingest', or an empty/new folder to create one."
                )
            manifest = {
                "format": _FORMAT,
                "version": _VERSION,
                "store_id": uuid.uuid4().hex,  # written once: what "the same store" means (identity())
                "created_at": datetime.now(timezone.utc).isoformat(),
                "ingests": [],
            }
            write_text_atomic(man, json.dumps(manifest, indent=1))
        store = cls(p, cls._read_manifest(p))
        store._try_cleanup()
        return store

    @staticmethod
    def _read_manifest(p: Path) -> dict[str, Any]:
        try:
            data = json.loads((p / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise StoreError(
                f"the manifest of store '{p}' is unreadable; restore it from a backup or start a new store."
            ) from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise StoreError(f"'{p}' is not a mulegraph store (unknown manifest format).")
        if data.get("version", 0) > _VERSION:
            raise StoreError(f"store '{p}' was written by a newer mulegraph; upgrade mulegraph to read it.")
        return data

    def reload(self) -> None:
        """Re-read the manifest (after another process committed an ingest)."""
        self._manifest = self._read_manifest(self.path)

    # ------------------------------------------------------------------ locking and commits
    def _file_lock(self, timeout: float = -1) -> FileLock:
        return FileLock(self.path / _LOCK_NAME, timeout=timeout)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's write lock (other writers wait). Cleans up orphans on entry."""
        with self._file_lock():
            self.reload()
            self._cleanup()
            yield

    def _try_cleanup(self) -> None:
        try:
            lock = self._file_lock(timeout=0)
            lock.acquire()
        except Timeout:
            return  # an ingest is running; its files are not orphans
        except OSError:
            return  # read-only store: nothing to clean
        try:
            self.reload()
            self._cleanup()
        finally:
            lock.release()

    def _committed_files(self) -> set[str]:
        files: set[str] = set()
        for e in self._manifest["ingests"]:
            files.update(e.get("parts", []))
            if e.get("quarantine"):
                files.add(e["quarantine"])
        return files | self._index_files(self._manifest)

    @staticmethod
    def _index_files(manifest: dict[str, Any]) -> set[str]:
        return {r["file"] for r in (manifest.get("id_index") or {}).get("runs", [])}

    def _cleanup(self) -> None:
        """Delete staging folders and any part not listed in the manifest. Caller holds the lock."""
        shutil.rmtree(self.path / ".staging", ignore_errors=True)
        committed = self._committed_files()
        for sub in _DATA_DIRS:
            root = self.path / sub
            if not root.is_dir():
                continue
            emptied = set()
            for f in root.rglob("*"):
                if f.is_file() and f.relative_to(self.path).as_posix() not in committed:
                    f.unlink()
                    emptied.add(f.parent)
            for d in emptied - {root}:
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when nothing else is in it
        # temporary files of an interrupted atomic write (see mulegraph.core.atomic)
        for name in (MANIFEST_NAME, "decisions.parquet"):
            for f in self.path.glob(f".{name}.*"):
                f.unlink()

    def staging_dir(self, ingest_id: str) -> Path:
        """A fresh staging folder for one ingest (inside the store, same file system)."""
        d = self.path / ".staging" / ingest_id
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def next_ingest_id(self, sha256: str) -> str:
        """The id the next committed ingest gets: a sequence number and the file hash's prefix."""
        return f"i{len(self._manifest['ingests']) + 1:06d}-{sha256[:10]}"

    def commit(
        self,
        entry: dict[str, Any] | None,
        staged: Path,
        hook=None,
        synced: bool = False,
        id_index: dict[str, Any] | None = None,
    ) -> None:
        """Move staged files into place and record ``entry`` in the manifest (caller holds the lock).

        ``staged`` mirrors the store layout (``transfers/...``, ``quarantine/...``, ``index/...``);
        the entry's ``parts`` and ``quarantine`` name those relative paths. ``id_index``, when
        given, replaces the manifest's id index section (see :mod:`mulegraph.ingest.index`): its
        runs found in ``staged`` are moved too, and runs it no longer lists are deleted after the
        manifest is written. ``entry`` may be None to commit an index change alone. ``synced``:
        the caller has already fsynced the staged files.
        """
        rel_files = []
        if entry is not None:
            rel_files = list(entry.get("parts", [])) + ([entry["quarantine"]] if entry.get("quarantine") else [])
        if id_index is not None:
            rel_files += [r["file"] for r in id_index["runs"] if (staged / r["file"]).is_file()]
        dirs = set()
        for rel in rel_files if not synced else ():
            fsync_file(staged / rel)
        if hook:
            hook("staged")
        for rel in rel_files:
            dst = self.path / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / rel, dst)
            dirs.add(dst.parent)
        for d in dirs | {self.path / sub for sub in _DATA_DIRS}:
            fsync_dir(d)
        if hook:
            hook("moved")
        manifest = dict(self._manifest)
        if entry is not None:
            manifest["ingests"] = list(self._manifest["ingests"]) + [entry]
        if id_index is not None:
            manifest["id_index"] = id_index
        write_text_atomic(self.path / MANIFEST_NAME, json.dumps(manifest, indent=1, default=str))
        replaced = self._index_files(self._manifest) - self._index_files(manifest)
        self._manifest = manifest
        if hook:
            hook("committed")
        for rel in replaced:  # runs merged into a new one; the next cleanup would delete them too
            with contextlib.suppress(OSError):
                (self.path / rel).unlink()
        shutil.rmtree(staged, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.path / ".staging").rmdir()  # no empty work area left behind (kept while not empty)

    # ------------------------------------------------------------------ reading
    def manifest(self) -> list[dict]:
        """One entry per ingested file: path, sha256, counts, ingested_at, ingest_id, parts, ..."""
        return [dict(e) for e in self._manifest["ingests"]]

    def identity(self) -> dict[str, Any]:
        """What makes this store this store: ``store_id`` and the ``ingests`` so far.

        ``store_id`` is a random id written into the manifest once, when the store is created (a
        store made before store ids gets one derived from its creation time); a copy of the
        folder keeps it. ``ingests`` is the sha256 of every ingested file, in ingest order: a
        store only grows by appending to it. A model records this at training
        (:mod:`mulegraph.scoring.seeds`), and its training labels seed scoring only in the same store.
        """
        sid = self._manifest.get("store_id")
        if not sid:
            created = str(self._manifest.get("created_at", ""))
            sid = "created-" + hashlib.sha256(created.encode("utf-8")).hexdigest()[:32]
        return {"store_id": str(sid), "ingests": [str(e.get("sha256")) for e in self._manifest["ingests"]]}

    def known_hashes(self) -> dict[str, str]:
        """sha256 of every ingested file -> its ingest_id."""
        return {e["sha256"]: e["ingest_id"] for e in self._manifest["ingests"]}

    def id_index(self) -> dict[str, Any] | None:
        """The manifest's id index section (``hash``, ``runs``), or None for a store without one."""
        section = self._manifest.get("id_index")
        return json.loads(json.dumps(section)) if section else None

    def optional_columns(self) -> list[str]:
        """Optional canonical columns that at least one ingested export carried."""
        have = {c for e in self._manifest["ingests"] for c in e.get("optional_columns", [])}
        return [c for c in OPTIONAL_SCHEMA if c in have]

    def _parts(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        days: "set[str] | None" = None,
        ingests: "set[str] | None" = None,
    ) -> list[str]:
        lo = start.date().isoformat() if start else None
        hi = end.date().isoformat() if end else None
        out = []
        for e in self._manifest["ingests"]:
            if ingests is not None and e["ingest_id"] not in ingests:
                continue
            for rel in e.get("parts", []):
                day = rel.split("/")[1].removeprefix("day=")
                if (lo and day < lo) or (hi and day > hi) or (days is not None and day not in days):
                    continue
                out.append(str(self.path / rel))
        return out

    def _scan_parts(self, parts: list[str], columns: list[str] | None) -> pl.LazyFrame:
        cols = list(TRANSFER_COLUMNS) + self.optional_columns()
        if columns is not None:
            unknown = [c for c in columns if c not in STORE_SCHEMA]
            if unknown:
                raise InputError(
                    f"unknown transfer column(s) {', '.join(unknown)}; known: {', '.join(STORE_SCHEMA)}."
                )
            cols = list(columns)
        if not parts:
            return pl.LazyFrame(schema={c: STORE_SCHEMA[c] for c in cols})
        missing = [p for p in parts if not os.path.isfile(p)]
        if missing:
            rel = os.path.relpath(missing[0], self.path)
            raise StoreError(
                f"the store at '{self.path}' is damaged: {len(missing)} committed part file(s) are missing "
                f"(first: {rel}); restore the store from a backup or ingest the exports into a new store."
            )
        # parts lack the optional columns their export did not carry: read as nulls
        return pl.scan_parquet(
            parts, hive_partitioning=False, schema=STORE_SCHEMA, missing_columns="insert"
        ).select(cols)

    def scan(self, columns: list[str] | None = None) -> pl.LazyFrame:
        """Lazy frame of all committed transfers (canonical columns + optional columns present)."""
        return self._scan_parts(self._parts(), columns)

    def scan_subset(
        self,
        columns: list[str] | None = None,
        *,
        days: "Iterable[str] | None" = None,
        ingests: "Iterable[str] | None" = None,
    ) -> pl.LazyFrame:
        """Like :meth:`scan`, reading only the parts of the given UTC ``days`` (``YYYY-MM-DD``)
        and/or ``ingests`` (ingest ids); None means no restriction."""
        return self._scan_parts(
            self._parts(days=None if days is None else set(days), ingests=None if ingests is None else set(ingests)),
            columns,
        )

    def time_window(self, window: "TimeWindow | str | None" = "all", as_of=None) -> TimeWindow:
        """Resolve ``window``/``as_of`` against the newest transfer (see :mod:`mulegraph.core.window`)."""
        if isinstance(window, TimeWindow):
            return window
        return resolve_window(window, as_of, self.newest_ts())

    def transfers(self, window: "TimeWindow | str | None" = "all", as_of=None, columns=None) -> pl.DataFrame:
        """Committed transfers in a time window (default: all of them), as a DataFrame."""
        everything = not isinstance(window, TimeWindow) and as_of is None and (
            window is None or str(window).strip().lower() == "all"
        )
        if everything:
            return self.collect(self.scan(columns))
        return self.collect(self.scan_window(self.time_window(window, as_of), columns))

    def scan_window(self, window: "TimeWindow", columns: list[str] | None = None) -> pl.LazyFrame:
        """Lazy frame of the transfers in ``window``, reading only the day parts it overlaps."""
        read = None if columns is None else list(dict.fromkeys(list(columns) + ["ts"]))
        lf = filter_window(self._scan_parts(self._parts(window.start, window.end), read), window)
        return lf if columns is None else lf.select(list(columns))

    def collect(self, lf: pl.LazyFrame, *, streaming: bool = False) -> pl.DataFrame:
        """Collect a read of the store's parts (``streaming``: with Polars' streaming engine);
        a damaged part becomes a :class:`StoreError`."""
        try:
            return lf.collect(engine="streaming") if streaming else lf.collect()
        except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, OSError) as err:
            raise StoreError(
                f"the store at '{self.path}' could not be read ({type(err).__name__}): a part file is damaged "
                "or was changed by hand; restore the store from a backup or ingest the exports into a new store."
            ) from None

    def _ts_bound(self, key: str, pick) -> datetime | None:
        vals = [e[key] for e in self._manifest["ingests"] if e.get(key)]
        return datetime.fromisoformat(pick(vals)) if vals else None

    def newest_ts(self) -> datetime | None:
        """Timestamp of the newest stored transfer (UTC), or None for an empty store."""
        return self._ts_bound("ts_max", max)

    def oldest_ts(self) -> datetime | None:
        """Timestamp of the oldest stored transfer (UTC), or None for an empty store."""
        return self._ts_bound("ts_min", min)

    def quarantine(self) -> pl.DataFrame:
        """All quarantined rows: ingest_id, source_file, line, rule, original (JSON text)."""
        files = [str(self.path / e["quarantine"]) for e in self._manifest["ingests"] if e.get("quarantine")]
        if not files:
            return _empty(QUARANTINE_SCHEMA)
        return self.collect(pl.scan_parquet(files).select(list(QUARANTINE_SCHEMA)))

    # ------------------------------------------------------------------ decisions
    def decisions(self) -> pl.DataFrame:
        """Investigator decisions (:data:`~mulegraph.core.schema.DECISION_SCHEMA`); empty when none."""
        f = self.path / "decisions.parquet"
        if not f.is_file():
            return _empty(DECISION_SCHEMA)
        return self.collect(pl.scan_parquet(f).select(list(DECISION_SCHEMA)))

    def add_decisions(self, frame: pl.DataFrame) -> None:
        """Validate and append decisions (``decision`` is ``confirmed`` or ``cleared``), atomically."""
        missing = [c for c in ("account_id", "decision") if c not in frame.columns]
        if missing:
            raise InputError(f"decisions need column(s) {', '.join(missing)}; got {', '.join(frame.columns)}.")
        f = frame
        if "date" not in f.columns:
            f = f.with_columns(date=pl.lit(datetime.now(timezone.utc)))
        if "note" not in f.columns:
            f = f.with_columns(note=pl.lit(None, dtype=pl.String))
        try:
            f = f.select(
                pl.col("account_id").cast(pl.String),
                pl.col("decision").cast(pl.String).str.strip_chars().str.to_lowercase(),
                pl.col("date").cast(pl.Datetime("us", "UTC")),
                pl.col("note").cast(pl.String),
            )
        except pl.exceptions.PolarsError:
            raise InputError("decisions have a column of the wrong type; dates must be datetimes (UTC).") from None
        bad = f.filter(~pl.col("decision").is_in(_DECISIONS) | pl.col("decision").is_null()).height
        if bad:
            raise InputError(f"{bad} decision(s) are neither 'confirmed' nor 'cleared'; fix them and retry.")
        if f["account_id"].null_count() or (f["account_id"].str.strip_chars() == "").any():
            raise InputError("every decision needs a non-blank account_id.")
        with self.lock():
            out = pl.concat([self.decisions(), f], how="vertical")
            with atomic_path(self.path / "decisions.parquet") as tmp:
                out.write_parquet(tmp)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """rows, accounts, date range, files, quarantined (and by rule), duplicates, decisions."""
        ing = self._manifest["ingests"]
        rows = sum(int(e.get("accepted", 0)) for e in ing)
        accounts = 0
        if rows:
            lf = self.scan(["src_account", "dst_account"])
            accounts = self.collect(
                pl.concat([lf.select(a=pl.col("src_account")), lf.select(a=pl.col("dst_account"))]).select(
                    pl.col("a").n_unique()
                )
            ).item()
        oldest, newest = self.oldest_ts(), self.newest_ts()
        return {
            "path": str(self.path),
            "rows": rows,
            "accounts": int(accounts),
            "date_min": oldest.isoformat() if oldest else None,
            "date_max": newest.isoformat() if newest else None,
            "files": len(ing),
            "quarantined": sum(int(e.get("quarantined", 0)) for e in ing),
            "quarantined_by_rule": {
                r: sum(int(e.get("quarantined_by_rule", {}).get(r, 0)) for e in ing)
                for r in dict.fromkeys(r for e in ing for r in e.get("quarantined_by_rule", {}))
            },
            "duplicates": sum(int(e.get("duplicates", 0)) for e in ing),
            "decisions": self.decisions().height,
        }
