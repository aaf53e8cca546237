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
target. A full disk inside an atomic write is a :class:`~mulegraph.core.errors.DiskFullError`
naming the target (:func:`disk_full_names` does the same for any block of writes).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from mulegraph.core.errors import DiskFullError

__all__ = [
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "fsync_file",
    "fsync_dir",
    "file_sha256",
    "is_disk_full",
    "disk_full_names",
]

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


#: errno values of a full disk or quota, and how the Rust and C libraries under Polars and
#: pyarrow spell them in messages (they raise OSError without errno, or their own error classes)
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122", "errno 28")


def is_disk_full(err: BaseException) -> bool:
    """True when ``err`` says the disk (or quota) is full, however the library that raised it says it."""
    if isinstance(err, DiskFullError):
        return False  # already named
    if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
        return True
    text = str(err).lower()
    return any(t in text for t in _FULL_TEXTS)


@contextlib.contextmanager
def disk_full_names(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk inside the block into one :class:`~mulegraph.core.errors.DiskFullError`
    naming ``path`` (the file or folder being written); other errors pass through unchanged.

    >>> with disk_full_names("report.html"):
    ...     pass
    """
    try:
        yield
    except Exception as err:  # noqa: BLE001 - re-raised unchanged unless it is a full disk
        if not is_disk_full(err):
            raise
        full = DiskFullError(f"no space left on the device to write '{path}'; free some space and run again.")
        full.errno, full.filename = errno.ENOSPC, str(path)
        raise full from None


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
    with disk_full_names(target):
        tmp = _create_temp(folder, target.name)
    try:
        with disk_full_names(target):
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
