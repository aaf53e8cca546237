"""The runs folder: the hidden work folder of a run, the ``latest`` pointer, the lock, stale leftovers.

A run writes into ``<runs>/.tmp-<run_id>/`` (:func:`new_work_folder`); only a complete folder is
renamed to ``<runs>/<run_id>/`` and then ``<runs>/latest`` is switched to it (:func:`publish`), so
readers never see a half-written run. One run at a time per runs folder: :func:`runs_lock` holds an
exclusive lock on ``<runs>/.lock`` (``filelock``) and refuses at once when another run holds it.
:func:`clean_stale` removes what killed runs left; it is called while holding the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mulegraph.core.atomic import fsync_dir, fsync_file
from mulegraph.core.errors import EXIT_FAILURE, InputError, MulegraphError
from mulegraph.io.runs import LATEST

__all__ = [
    "RunBusyError",
    "LOCK_NAME",
    "TMP_PREFIX",
    "runs_lock",
    "clean_stale",
    "new_run_id",
    "new_work_folder",
    "publish",
    "point_latest",
    "fsync_tree",
    "write_json",
]

#: the lock file of a runs folder
LOCK_NAME = ".lock"
#: prefix of work folders and other files a run has not published yet
TMP_PREFIX = ".tmp-"


class RunBusyError(MulegraphError):
    """Another run holds the runs folder."""

    exit_code = EXIT_FAILURE


@contextlib.contextmanager
def runs_lock(runs_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<runs>/.lock`` for the duration of the block.

    Raises :class:`RunBusyError` at once (no waiting) when another process holds it.
    """
    lock = FileLock(runs_dir / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(
            f"another run is using '{runs_dir}'; wait for it to finish (or use another --runs folder)."
        ) from None
    try:
        yield
    finally:
        lock.release()


def clean_stale(runs_dir: Path) -> None:
    """Remove what killed runs left (work folders, pointer temporaries); call it while holding the lock."""
    for p in runs_dir.iterdir():
        if p.name.startswith(TMP_PREFIX):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def new_run_id(runs_dir: Path, now: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of ``now`` in UTC, with ``-2``, ``-3``... when that id is taken."""
    base = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (runs_dir / run_id).exists() or (runs_dir / f"{TMP_PREFIX}{run_id}").exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def new_work_folder(runs_dir: Path, run_id: str) -> Path:
    """Create the hidden work folder ``<runs>/.tmp-<run_id>/`` of a run."""
    tmp = runs_dir / f"{TMP_PREFIX}{run_id}"
    tmp.mkdir()
    return tmp


def point_latest(runs_dir: Path, run_id: str) -> None:
    """Switch ``latest`` to ``run_id`` atomically (symlink; a text file where links fail)."""
    tmp = runs_dir / f"{TMP_PREFIX}latest-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(run_id + "\n", encoding="utf-8")
    ptr = runs_dir / LATEST
    if ptr.is_dir() and not ptr.is_symlink():
        raise InputError(f"'{ptr}' is a folder; remove it so that the latest-run pointer can be written.")
    os.replace(tmp, ptr)
    fsync_dir(runs_dir)


def publish(work: Path, runs_dir: Path, run_id: str) -> Path:
    """Rename a complete work folder to ``<runs>/<run_id>/`` and point ``latest`` at it."""
    final = runs_dir / run_id
    os.replace(work, final)
    fsync_dir(runs_dir)
    point_latest(runs_dir, run_id)
    return final


def fsync_tree(path: Path) -> None:
    """Flush every file and folder under ``path`` to disk."""
    for p in path.rglob("*"):
        if p.is_file():
            with contextlib.suppress(OSError):
                fsync_file(p)
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(path)


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented JSON (inside a work folder, which is published as a whole)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
