"""Files: atomic writes, and the one content-hash helper (:func:`file_sha256`).

Atomic file writes: a temporary file in the same folder, fsynced, then renamed into place.

A reader (or a later run) sees either the old file or the complete new one, never a half-written
file, even when the writer is killed mid-write::

    from mulegraph.core.atomic import atomic_path, write_text_atomic

    write_text_atomic("report.md", text)
    with atomic_path("scores.parquet") as tmp:   # any writer that takes a path
        frame.write_parquet(tmp)

The temporary file is named ``.<name>.<random>.tmp`` next to the target, created with the
permissions a plain ``open(path, "w")`` would give (the process umask applies). On success it is
fsynced, ``os.replace``\\ d over the target and the folder is fsynced where the platform allows; on
any exception, ``KeyboardInterrupt`` included, it is removed and the target is left as it was. A
process killed outright (SIGKILL, power loss) can leave a ``.tmp`` file behind, never a damaged
target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "fsync_file", "fsync_dir", "file_sha256"]

_TMP_SUFFIX = ".tmp"


def _fsync(path: str | os.PathLike, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (``os.fsync``)."""
    _fsync(path, os.O_RDONLY)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (e.g. after a rename in it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _create_temp(folder: Path, name: str) -> Path:
    # O_EXCL makes the name ours alone; mode 0o666 lets the umask decide, as open() would
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file next to '{name}'")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary file exists (empty) when the block starts; write it by path (writers that
    truncate, such as ``DataFrame.write_parquet`` or ``open(tmp, "wb")``, are fine). With
    ``fsync=True`` (the default) the file and then its folder are flushed to disk around the rename.
    The folder of ``path`` must exist.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    tmp = _create_temp(folder, target.name)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(folder)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path written."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (newlines written as given); returns the path written."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in chunks, never whole into memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
