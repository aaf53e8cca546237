"""What a run records about its inputs: file hashes, the input fingerprint, library versions.

A run's **fingerprint** is the SHA-256 of everything that decides its scores: the content hashes
of the files in the store, the investigator decisions, the ``--known`` file and consortium lists
(with the key's public id), the resolved settings (without paths, secrets and the ``[engine]``,
which changes where features are computed, not what), the window, the model files and the
mulegraph version. When nothing was ingested and the fingerprint equals
the latest run's, a new run would give identical scores
(:class:`~mulegraph.core.errors.NothingNewError`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import file_sha256
from mulegraph.core.config import Config
from mulegraph.core.version import __version__
from mulegraph.core.window import TimeWindow

__all__ = ["input_files", "hash_tree", "frame_hash", "run_fingerprint", "libraries", "store_totals"]

#: settings that say where things are, not what is computed (left out of the fingerprint); the
#: thread budget changes how fast, not what (the boosting gives the same trees on any thread count)
_LOCATION_SETTINGS = (("run", "inbox"), ("run", "runs_dir"), ("store", "path"), ("report", "pseudonym_key"),
                      ("model", "signing_key_file"), ("model", "threads"))
#: libraries whose versions a manifest records
_LIBRARIES = ("polars", "pyarrow", "numpy", "scipy", "networkx", "scikit-learn", "matplotlib", "skops")


def input_files(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """``path``, ``sha256`` and ``bytes`` of each export a run was given."""
    return [{"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size} for p in paths]


def hash_tree(path: Path) -> str | None:
    """One SHA-256 over the relative names and contents of every file under ``path`` (or of the file)."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def frame_hash(df: pl.DataFrame) -> str:
    """SHA-256 of a frame's CSV text (rows in the given order)."""
    return hashlib.sha256(df.write_csv().encode("utf-8")).hexdigest()


def run_fingerprint(
    store_manifest: list[dict[str, Any]],
    decisions: pl.DataFrame,
    config: Config,
    window: TimeWindow,
    model_hash: str | None,
    seeds: dict[str, Any] | None = None,
) -> str:
    """The fingerprint of a run's inputs (see the module docstring); ``seeds``: what decides the
    seeds given beyond the store (:meth:`mulegraph.scoring.seeds.SeedInputs.fingerprint`)."""
    settings = config.to_dict()
    settings.pop("engine", None)  # where features are computed, not what: the same scores anywhere
    for section, key in _LOCATION_SETTINGS:
        settings[section].pop(key, None)
    doc = {
        "store": sorted(str(e.get("sha256")) for e in store_manifest),
        "decisions": frame_hash(decisions.sort(decisions.columns)) if decisions.height else None,
        "settings": settings,
        "window": [window.start.isoformat() if window.start else None, window.end.isoformat()],
        "model": model_hash,
        "version": __version__,
    }
    if seeds is not None:  # left out when none are given, so earlier runs' fingerprints still compare
        doc["seeds"] = seeds
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def libraries() -> dict[str, str]:
    """Versions of Python, mulegraph and the libraries the scores depend on."""
    out = {"python": platform.python_version(), "mulegraph": __version__}
    for name in _LIBRARIES:
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def store_totals(manifest: list[dict[str, Any]]) -> dict[str, Any]:
    """Row counts over every file ever ingested into the store (the data-quality totals)."""
    totals: dict[str, Any] = {"files": len(manifest), "rows_read": 0, "accepted": 0, "quarantined": 0, "duplicates": 0}
    by_rule: dict[str, int] = {}
    for entry in manifest:
        for k in ("rows_read", "accepted", "quarantined", "duplicates"):
            totals[k] += int(entry.get(k) or 0)
        for rule, n in (entry.get("quarantined_by_rule") or {}).items():
            by_rule[rule] = by_rule.get(rule, 0) + int(n)
    totals["quarantined_by_rule"] = dict(sorted(by_rule.items()))
    return totals
