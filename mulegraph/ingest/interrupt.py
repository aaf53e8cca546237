"""What an interrupted ingest left in the store, said in one line.

Each export file is one atomic commit (:mod:`mulegraph.ingest.commit`), so an ingest stopped with
Ctrl-C (SIGINT) leaves the store holding every file committed before the interrupt and nothing of
the file being read. "The store is left as it was" is then wrong as soon as one file was
committed. :func:`interrupt_report` compares the store's commit record (``manifest.json``) before
and after and turns the ``KeyboardInterrupt`` into an :class:`IngestInterrupted` (still a
``KeyboardInterrupt``) whose message lists the files committed before it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["IngestInterrupted", "interrupt_report", "committed_files"]

#: files named in the message; more are counted
_SHOWN = 5


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest; ``str()`` says what the store holds, ``committed`` lists the files."""

    def __init__(self, message: str, committed: list[str]):
        super().__init__(message)
        self.committed = committed


def committed_files(store: str | os.PathLike) -> dict[str, str]:
    """``ingest_id -> source path`` of every file the store's manifest records ({} when there is none)."""
    try:
        data = json.loads((Path(store) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    ingests = data.get("ingests") if isinstance(data, dict) else None
    return {str(e.get("ingest_id")): str(e.get("path", "")) for e in ingests or [] if isinstance(e, dict)}


def _names(paths: list[str]) -> str:
    shown = ", ".join(Path(p).name or p for p in paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


@contextlib.contextmanager
def interrupt_report(store: str | os.PathLike, *, after: str = "") -> Iterator[None]:
    """Turn a ``KeyboardInterrupt`` inside the block into an :class:`IngestInterrupted` saying
    which files the block committed to ``store`` before it; ``after`` is appended to the message
    (e.g. what else the interrupted command left as it was).
    """
    before = committed_files(store)
    try:
        yield
    except IngestInterrupted:
        raise
    except KeyboardInterrupt:
        new = [p for i, p in committed_files(store).items() if i not in before]
        if new:
            message = (
                f"interrupted; {len(new)} file(s) committed before the interrupt: {_names(new)}; the store "
                f"'{store}' holds them (they are not ingested again); a file still being read was not committed"
            )
        else:
            message = f"interrupted; no file was committed, the store '{store}' is as it was"
        raise IngestInterrupted(message + (f"; {after}" if after else "") + ".", new) from None
