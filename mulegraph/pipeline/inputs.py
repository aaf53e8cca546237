"""A run's inputs, and the checks that cost nothing, done before any work.

:func:`find_exports` lists the exports waiting in the inbox. :func:`check_inputs` refuses, before
a run ingests anything or creates a folder, what would make it fail later: a bad window or as-of
(the settings' ranges are checked when the :class:`~mulegraph.core.config.Config` is built), a
mapping file named in the config that is not there, a missing inbox folder (a typo there must not
read as "nothing new" night after night), an empty start (no exports, no store), a model folder
that is missing or will be refused, a store or runs folder inside another store or run folder,
report settings the report stage would refuse (a missing or short pseudonym key), and output
folders that cannot be written. It returns the resolved exports and the loaded model, so
that the run reads each only once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mulegraph.core.config import Config
from mulegraph.core.errors import ConfigError, InputError
from mulegraph.core.keys import model_signing_key
from mulegraph.core.paths import probe_writable, refuse_misplaced_folder
from mulegraph.core.window import parse_duration, resolve_window
from mulegraph.ingest import resolve_inputs
from mulegraph.report.document import check_report_config
from mulegraph.scoring.model import load_model

__all__ = ["EXPORT_SUFFIXES", "RunInputs", "find_exports", "check_inputs"]

#: file name endings picked up from the inbox (those ingest reads)
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz", ".parquet", ".pq")


@dataclass(frozen=True)
class RunInputs:
    """What :func:`check_inputs` resolved: the exports to ingest, and the model (None: no-label mode)."""

    exports: list[Path]
    model_path: Path | None
    model: Any


def find_exports(inbox: str | os.PathLike) -> list[Path]:
    """Export files in ``inbox`` (not recursive), sorted by name; hidden and partial files skipped."""
    root = Path(inbox)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        name = p.name.lower()
        if p.is_file() and not name.startswith((".", "~")) and name.endswith(EXPORT_SUFFIXES):
            out.append(p)
    return sorted(out)


def check_inputs(
    config: Config,
    *,
    paths: Sequence[str | os.PathLike] | None,
    as_of: str | datetime | None,
    mapping_given: bool,
) -> RunInputs:
    """Check a run's settings and inputs before any work; see the module docstring.

    ``config`` is the run's resolved config (arguments already applied); ``paths`` replaces the
    inbox; ``mapping_given`` says that the mapping was passed as an argument rather than read
    from the config.
    """
    run = config.run
    if run.window is not None and str(run.window).strip().lower() != "all":
        parse_duration(run.window)
    if as_of is not None:
        resolve_window(run.window, as_of, None)  # a window starting before year 1 fails now
    if not mapping_given:
        _check_config_mapping(config.store.mapping)
    check_report_config(config.report)  # a missing or short pseudonym key fails now, not after scoring
    model_path = Path(run.model) if run.model else None
    if model_path is not None and not model_path.exists():
        raise InputError(
            f"the model folder '{model_path}' does not exist; train one with 'mulegraph train' or leave out --model."
        )
    # a refused model (changed files, a missing or wrong signature while a key is set) fails now
    model = load_model(model_path, key=model_signing_key(config.model)) if model_path is not None else None
    store = Path(config.store.path)
    refuse_misplaced_folder(store, "store", "--store")
    refuse_misplaced_folder(run.runs_dir, "runs folder", "--runs")
    if paths is not None:
        exports = resolve_inputs(list(paths))  # files, folders and globs; InputError when missing
    else:
        _check_inbox(Path(run.inbox), store)
        exports = find_exports(run.inbox)
    if not exports and not store.exists():
        raise InputError(
            f"no exports were found in the inbox '{run.inbox}' and there is no store '{store}' yet; "
            "put exports in the inbox, pass their paths, or run from the folder that holds the store."
        )
    _check_writable(store, "store")
    _check_writable(Path(run.runs_dir), "runs folder")
    return RunInputs(exports=exports, model_path=model_path, model=model)


def _check_inbox(inbox: Path, store: Path) -> None:
    """The inbox a run reads when given no export paths must be a folder that exists.

    An empty inbox means "no new exports"; a missing one is a typo or an unmounted share, and
    reading it as "nothing new" would hide every export night after night.
    """
    if inbox.is_dir():
        return
    if inbox.exists():
        raise InputError(f"the inbox '{inbox}' is a file, not a folder; set --inbox or [run] inbox to the folder exports land in.")
    hint = "" if store.exists() else f" and there is no store '{store}' yet"
    raise InputError(
        f"no exports were found: the inbox folder '{inbox}' does not exist{hint}; create it (mkdir -p {inbox}), "
        "set --inbox or [run] inbox to the folder exports land in, pass the exports' paths, or run from the "
        "folder that holds the inbox and the store."
    )


def _check_config_mapping(value: str) -> None:
    """A mapping file named in the config must exist; say where relative paths are read from."""
    if not value.lower().endswith(".toml") or Path(value).is_file():
        return
    raise ConfigError(
        f"[store] mapping file '{value}' does not exist; paths in a config file are read from the working "
        f"directory ({Path.cwd()}), not from the config file's folder: run from the folder they refer to, make "
        "them absolute, or pass --mapping."
    )


def _check_writable(folder: Path, what: str) -> None:
    """``folder`` (or its nearest existing parent) is a folder a file can be created in.

    Checked by creating one: ``os.access`` says yes to root on a read-only file system.
    """
    try:
        probe_writable(folder)
    except NotADirectoryError as err:
        raise InputError(f"the {what} '{folder}' cannot be created: '{err}' is a file; choose another path.") from None
    except OSError as err:
        here = Path(err.filename).parent if err.filename else folder
        raise InputError(f"cannot write the {what} in '{here}' ({err.strerror}); choose another path.") from None
