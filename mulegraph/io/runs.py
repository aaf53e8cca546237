"""Run folders: where the nightly run's outputs live, and which run is the latest.

A runs folder holds one folder per finished run (``<run_id>/`` with a ``manifest.json``) and a
``latest`` pointer: a symbolic link, or a text file holding the run id where links are not
possible. :mod:`mulegraph.pipeline` writes them; reports, scoring and investigators read them.
"""

from __future__ import annotations

import os
from pathlib import Path

from mulegraph.core.errors import InputError

__all__ = ["LATEST", "list_runs", "latest_run", "resolve_run_dir"]

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
    """The run the ``latest`` pointer names, or None when there is none yet."""
    root = Path(runs_dir)
    ptr = root / _LATEST
    if ptr.is_symlink():
        target = root / os.readlink(ptr)
    elif ptr.is_file():
        target = root / ptr.read_text(encoding="utf-8").strip()
    else:
        return None
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
