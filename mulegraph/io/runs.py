"""Run folders: where the nightly run's outputs live, which run is the latest, and reading one.

A runs folder holds one folder per finished run (``<run_id>/`` with a ``manifest.json``) and a
``latest`` pointer: a symbolic link, or a text file holding the run id where links are not
possible. :mod:`mulegraph.pipeline` writes them; reports, scoring and investigators read them,
through :func:`resolve_run_dir` (a run folder, or the latest run of a runs folder) and
:func:`load_run` (the files of one run, with the contracts of :mod:`mulegraph.core.schema`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.schema import ALERT_COLUMNS, CHANGE_COLUMNS, DRIFT_COLUMNS, FLOW_COLUMNS, as_reasons

__all__ = ["LATEST", "RunData", "ParquetChunks", "list_runs", "latest_run", "resolve_run_dir", "load_run", "read_run_file"]

#: name of the pointer to the latest run inside a runs folder
LATEST = "latest"
_LATEST = LATEST


def list_runs(runs_dir: str | os.PathLike) -> list[Path]:
    """Finished run folders under ``runs_dir`` (those with a manifest), oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = [
        p
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and (p / "manifest.json").is_file()
    ]
    return sorted(out, key=lambda p: p.name)


def latest_run(runs_dir: str | os.PathLike) -> Path | None:
    """The run the ``latest`` pointer names, or None when there is none yet.

    A pointer naming anything but a folder directly in ``runs_dir`` (an absolute path elsewhere,
    ``..``, a link out of it) is refused with :class:`~mulegraph.core.errors.InputError` rather
    than followed: reports and the next run would otherwise read (and trust) another folder.
    """
    root = Path(runs_dir)
    ptr = root / _LATEST
    if ptr.is_symlink():
        name = os.readlink(ptr)
    elif ptr.is_file():
        name = ptr.read_text(encoding="utf-8").strip()
    else:
        return None
    target = root / name
    if target.resolve().parent != root.resolve():
        raise InputError(
            f"the latest-run pointer '{ptr}' names '{name}', which is not a run folder in '{root}'; "
            "remove the pointer (the next run writes a new one) or point it at a run folder there."
        )
    return target if (target / "manifest.json").is_file() else None


def resolve_run_dir(path: str | os.PathLike | None = None, runs_dir: str | os.PathLike = "runs") -> Path:
    """A run folder: ``path`` itself when it is one, else the run its ``latest`` pointer names.

    With ``path`` None, the latest run under ``runs_dir``.
    """
    p = Path(path) if path is not None else Path(runs_dir)
    if (p / "manifest.json").is_file():
        return p
    latest = latest_run(p) if p.is_dir() else None
    if latest is None:
        raise InputError(
            f"'{p}' is neither a run folder nor a runs folder with a latest run; run 'mulegraph run' first "
            "or give the path of a run folder."
        )
    return latest


class ParquetChunks:
    """A Parquet file written a frame at a time, for a table too large to hold at once.

    Every frame is cast to ``schema`` first; closing a writer that got no frame writes an empty
    file of ``schema``. Use as a context manager; the file is complete only once it is closed
    (a run writes into its work folder, which is published whole).
    """

    def __init__(self, path: str | os.PathLike, schema: dict[str, pl.DataType]) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._writer: Any = None

    def write(self, frame: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = frame.select(list(self.schema)).cast(self.schema).to_arrow()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)
        self.rows += frame.height

    def close(self) -> None:
        if self._writer is None:
            pl.DataFrame(schema=self.schema).write_parquet(self.path)
        else:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "ParquetChunks":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:  # failed: the file is incomplete (its writer removes it), never made whole
            self._writer.close()
            self._writer = None


#: the columns of ``scores.parquet`` a report reads
_REPORT_SCORES = ("account_id", "score", "rank")


@dataclass
class RunData:
    """The files of one run folder, read into memory.

    ``alerts`` has :data:`~mulegraph.core.schema.ALERT_COLUMNS` (its ``reasons`` as a struct
    list, also when an older run wrote them as JSON text); ``scores`` holds ``account_id``,
    ``score`` and ``rank`` of ``scores.parquet`` (what a report reads: not the reasons, at bank scale
    the largest column of the run; :func:`~mulegraph.investigate.load_scores` reads them); ``changes``, ``drift`` and ``flows`` are empty frames of their contract when the run
    folder lacks the file.
    """

    run_dir: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    scores: pl.DataFrame
    alerts: pl.DataFrame
    changes: pl.DataFrame
    drift: pl.DataFrame
    flows: pl.DataFrame


def read_run_file(
    path: Path, schema: dict[str, pl.DataType] | None = None, columns: list[str] | None = None
) -> pl.DataFrame:
    """A Parquet file of a run folder (``columns`` of it, or all); an empty frame of ``schema`` when
    it is not there.

    A file that cannot be read, or lacks one of ``columns``, is an
    :class:`~mulegraph.core.errors.InputError` naming it.
    """
    if path.is_file():
        try:
            return pl.read_parquet(path, columns=columns)
        except (pl.exceptions.PolarsError, OSError):
            raise InputError(
                f"the run file '{path.name}' cannot be read; the run folder is damaged, rerun 'mulegraph run'."
            ) from None
    return pl.DataFrame(schema=schema or {})


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read a run folder (or the latest run of a runs folder); see :mod:`mulegraph.pipeline` for its files.

    A folder without ``scores.parquet`` or ``alerts.parquet`` is refused: an empty report would
    read as "no suspects".
    """
    d = resolve_run_dir(run_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        config = json.loads((d / "config.json").read_text(encoding="utf-8")) if (d / "config.json").is_file() else {}
    except (OSError, ValueError):
        raise InputError(f"the run folder '{d}' has an unreadable manifest.json or config.json; rerun 'mulegraph run'.") from None
    missing = [n for n in ("scores.parquet", "alerts.parquet") if not (d / n).is_file()]
    if missing:
        raise InputError(f"the run folder '{d}' lacks {', '.join(missing)}; it is damaged, rerun 'mulegraph run'.")
    return RunData(
        run_dir=d,
        manifest=manifest,
        config=config,
        scores=read_run_file(d / "scores.parquet", columns=list(_REPORT_SCORES)),
        alerts=as_reasons(read_run_file(d / "alerts.parquet", ALERT_COLUMNS)),
        changes=read_run_file(d / "alert_changes.parquet", CHANGE_COLUMNS),
        drift=read_run_file(d / "drift.parquet", DRIFT_COLUMNS),
        flows=read_run_file(d / "flows.parquet", FLOW_COLUMNS),
    )
