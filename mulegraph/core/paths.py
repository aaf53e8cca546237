"""Output paths that must never be written: inside a store or a run folder.

A store and a published run folder are written only by mulegraph's own commits (an ingest, a
run). Any other writer that lands inside one damages it: ``report --out store/manifest.json``
destroys the store's commit record, ``features --out store/transfers/day=.../x.parquet`` adds a
part no manifest lists, ``score --out runs/latest/scores.parquet`` silently rewrites a published
run. :func:`refuse_protected_output` refuses such a path before anything is written; every library
writer of a user-chosen path calls it (so Python callers are protected too), and the commands get
it through them (and call it first, before any work). :func:`refuse_misplaced_folder` does the same
for the store and runs folders themselves: a store inside a run folder, or runs inside a store.

The check resolves the path (symbolic links followed, ``..`` removed) and walks up from it:

* a **store** is a folder whose ``manifest.json`` carries the store format marker
  (:data:`STORE_FORMAT`, the ``format`` key written by :mod:`mulegraph.io.store`);
* a **run folder** is a folder whose ``manifest.json`` names a ``run_id`` and the
  ``mulegraph_version`` that wrote it (written by :mod:`mulegraph.pipeline`);
* a **runs folder** is a folder whose ``latest`` pointer (a symbolic link or a one-line text
  file) names a run folder in it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mulegraph.core.errors import InputError

__all__ = ["STORE_FORMAT", "protected_folder", "refuse_protected_output", "refuse_misplaced_folder", "probe_writable"]

#: the ``format`` marker of a store's manifest.json (mulegraph.io.store writes it)
STORE_FORMAT = "mulegraph-store"

#: the pointer to the latest run in a runs folder (mulegraph.io.runs.LATEST)
_LATEST = "latest"
_MANIFEST = "manifest.json"
#: a manifest larger than this is not read (no mulegraph run manifest comes close)
_MAX_MANIFEST_BYTES = 64 << 20


def _manifest_kind(folder: Path) -> str | None:
    """'store' or 'run folder' when ``folder/manifest.json`` is one of mulegraph's, else None."""
    man = folder / _MANIFEST
    try:
        if not man.is_file() or man.stat().st_size > _MAX_MANIFEST_BYTES:
            return None
        data = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("format") == STORE_FORMAT:
        return "store"
    if "run_id" in data and "mulegraph_version" in data:
        return "run folder"
    return None


def _is_runs_folder(folder: Path) -> bool:
    """True when ``folder/latest`` is a pointer to a run folder in ``folder``."""
    ptr = folder / _LATEST
    try:
        if ptr.is_symlink():
            name = os.readlink(ptr)
        elif ptr.is_file() and ptr.stat().st_size < 4096:
            name = ptr.read_text(encoding="utf-8").strip()
        else:
            return False
    except (OSError, UnicodeDecodeError):
        return False
    return bool(name) and _manifest_kind(folder / name) == "run folder"


def protected_folder(path: str | os.PathLike) -> tuple[str, Path] | None:
    """The store, run folder or runs folder that ``path`` lies in (or is), as ``(kind, folder)``.

    ``kind`` is ``"store"``, ``"run folder"`` or ``"runs folder"``; None when ``path`` is in none.
    The path is resolved first (symbolic links followed, also for the parts that exist of a path
    that does not).
    """
    here = Path(path).expanduser().resolve(strict=False)
    for folder in (here, *here.parents):
        kind = _manifest_kind(folder)
        if kind is not None:
            return kind, folder
        if _is_runs_folder(folder):
            return "runs folder", folder
    return None


def refuse_protected_output(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse (:class:`~mulegraph.core.errors.InputError`, exit code 2) an output path inside a
    store, a run folder or a runs folder; return the path otherwise.

    >>> refuse_protected_output("/tmp/report.html")
    PosixPath('/tmp/report.html')
    """
    found = protected_folder(path)
    if found is not None:
        kind, folder = found
        raise InputError(
            f"{option} '{path}' is in the {kind} '{folder}'; mulegraph never writes its outputs into a "
            f"store or a run folder (it would damage it); choose a path outside it."
        )
    return Path(path)


def refuse_misplaced_folder(path: str | os.PathLike, kind: str, option: str) -> Path:
    """Refuse a store (``kind="store"``) or runs folder (``kind="runs folder"``) at ``path`` that
    would lie inside another store, run folder or runs folder, or that is a folder of the other
    kind; return the path otherwise.

    >>> refuse_misplaced_folder("/tmp/new-store", "store", "--store")
    PosixPath('/tmp/new-store')
    """
    here = Path(path).expanduser().resolve(strict=False)
    found = protected_folder(here)
    if found is not None and found[1] == here and found[0] == kind:
        found = protected_folder(here.parent) if here.parent != here else None
    if found is not None:
        what, folder = found
        where = "is" if folder == here else "is in"
        raise InputError(
            f"{option} '{path}' {where} the {what} '{folder}'; a {kind} must be a folder of its own, outside "
            "any store or run folder; choose another path."
        )
    return Path(path)


def probe_writable(path: str | os.PathLike) -> Path:
    """The nearest existing folder of ``path``, after checking that a file can be created in it.

    Checked by creating (and removing) one: ``os.access`` says yes to root on a read-only file
    system. Raises ``NotADirectoryError`` when that nearest existing path is a file, and the
    ``OSError`` of the failed creation otherwise.
    """
    here = Path(path)
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise NotADirectoryError(str(here))
    fd, probe = tempfile.mkstemp(dir=here, prefix=".mulegraph-probe-")
    os.close(fd)
    os.unlink(probe)
    return here
