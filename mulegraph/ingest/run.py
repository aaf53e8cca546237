"""The ingest entry point: exports in, one commit per file, an :class:`IngestReport` out.

:func:`ingest` resolves the inputs, takes the store's write lock (so ingests serialise), skips
files whose content hash the manifest already lists, ingests the others one by one with
:func:`~mulegraph.ingest.commit.ingest_file`, and writes the label columns to ``labels_out``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from mulegraph.core.atomic import atomic_path, disk_full_names, file_sha256
from mulegraph.core.errors import InputError, NothingNewError
from mulegraph.core.escape import neutralise_formulas
from mulegraph.core.paths import refuse_misplaced_folder, refuse_protected_output
from mulegraph.ingest.commit import ingest_file, report_progress
from mulegraph.ingest.sources import resolve_inputs
from mulegraph.ingest.validate import RULES
from mulegraph.io.mapping import Mapping, load_mapping
from mulegraph.io.store import Store

__all__ = ["IngestReport", "ingest"]


@dataclass
class IngestReport:
    """What an :func:`ingest` call did; :meth:`to_dict` is the ``--json`` output."""

    rows_read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=lambda: {r: 0 for r in RULES})
    files: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    date_min: str | None = None
    date_max: str | None = None
    accounts: int = 0
    labels_out: str | None = None
    labels_written: int = 0
    store: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict with integer counts."""
        return {
            "rows_read": int(self.rows_read),
            "accepted": int(self.accepted),
            "quarantined": int(self.quarantined),
            "duplicates": int(self.duplicates),
            "quarantined_by_rule": {k: int(v) for k, v in self.quarantined_by_rule.items()},
            "files": list(self.files),
            "skipped_files": list(self.skipped_files),
            "date_min": self.date_min,
            "date_max": self.date_max,
            "accounts": int(self.accounts),
            "labels_out": self.labels_out,
            "labels_written": int(self.labels_written),
            "store": self.store,
        }


def ingest(
    paths,
    store: "Store | str | os.PathLike",
    *,
    mapping: "Mapping | str | os.PathLike | None" = None,
    labels_out: "str | os.PathLike | None" = None,
    progress: Callable[[str, str], None] | None = None,
) -> IngestReport:
    """Ingest exports into a store; each file is committed atomically.

    Parameters
    ----------
    paths : files, folders or glob patterns (CSV, CSV.gz or Parquet).
    store : a :class:`~mulegraph.io.store.Store` or a folder (created when missing).
    mapping : a :class:`~mulegraph.io.mapping.Mapping`, a built-in name or a TOML path
        (default ``canonical``).
    labels_out : write the mapping's label columns here (``.parquet`` or ``.csv``).
    progress : called as ``progress(stage, file)`` with stages ``start``, ``read``, ``validated``,
        ``done`` and ``skipped``.

    Raises :class:`~mulegraph.core.errors.NothingNewError` when every file was already ingested
    (the report is attached as ``err.report``), and :class:`~mulegraph.core.errors.InputError` /
    :class:`~mulegraph.core.errors.MappingError` for unusable inputs.
    """
    if not isinstance(store, Store):
        refuse_misplaced_folder(store, "store", "--store")
    if labels_out is not None:
        refuse_protected_output(labels_out, "--labels-out")
    m = load_mapping(mapping)
    if labels_out is not None and not m.labels:
        raise InputError(f"mapping '{m.name}' has no [labels]; leave out --labels-out or use a mapping with labels.")
    if labels_out is not None and not Path(labels_out).parent.is_dir():
        raise InputError(f"folder '{Path(labels_out).parent}' for --labels-out does not exist; create it first.")
    files = resolve_inputs(paths)
    st = store if isinstance(store, Store) else Store.open(store, create=True)
    report = IngestReport(store=str(st.path))
    account_sets = []
    label_frames = []
    with disk_full_names(st.path), st.lock(), ThreadPoolExecutor(max_workers=1) as hasher:
        known = st.known_hashes()
        sizes = {e.get("size") for e in st.manifest()}
        for f in files:
            report_progress(progress, "start", f)
            size = f.stat().st_size
            # a file of a size never ingested cannot be a file already ingested: its hash is
            # computed while it is read; otherwise first, so that a repeat is skipped at once
            sha = file_sha256(f) if size in sizes else hasher.submit(file_sha256, f)
            if isinstance(sha, str) and sha in known:
                report.skipped_files.append(str(f))
                report.files.append({"path": str(f), "status": "already ingested", "ingest_id": known[sha]})
                report_progress(progress, "skipped", f)
                continue
            try:
                entry, accts, labels = ingest_file(f, sha, st, m, progress)
            except BaseException:
                st._cleanup()
                raise
            known[entry["sha256"]] = entry["ingest_id"]
            sizes.add(entry["size"])
            account_sets.append(accts)
            if labels is not None:
                label_frames.append(labels)
            report.files.append({"path": str(f), "status": "ingested", **{k: entry[k] for k in (
                "ingest_id", "rows_read", "accepted", "quarantined", "quarantined_by_rule", "duplicates",
                "ts_min", "ts_max")}})
            report.rows_read += entry["rows_read"]
            report.accepted += entry["accepted"]
            report.quarantined += entry["quarantined"]
            report.duplicates += entry["duplicates"]
            for r, n in entry["quarantined_by_rule"].items():
                report.quarantined_by_rule[r] = report.quarantined_by_rule.get(r, 0) + n
            for key, pick in (("ts_min", min), ("ts_max", max)):
                if entry[key]:
                    attr = "date_min" if key == "ts_min" else "date_max"
                    cur = getattr(report, attr)
                    setattr(report, attr, entry[key] if cur is None else pick(cur, entry[key]))
            report_progress(progress, "done", f)
    if account_sets:
        report.accounts = pl.concat(account_sets).n_unique()
    if labels_out is not None:
        frame = (
            pl.concat(label_frames, how="diagonal_relaxed").unique("txn_id", keep="first", maintain_order=True)
            if label_frames
            else pl.DataFrame(schema={"txn_id": pl.String()})
        )
        _write_labels(frame, Path(labels_out))
        report.labels_out = str(labels_out)
        report.labels_written = frame.height
    if files and len(report.skipped_files) == len(files):
        err = NothingNewError(
            f"all {len(files)} export(s) were already ingested into '{st.path}'; nothing new to add."
        )
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


def _write_labels(frame: pl.DataFrame, path: Path) -> None:
    """Write the label rows atomically, as CSV for a ``.csv`` name and as Parquet otherwise.

    In CSV a formula-like text cell gets a leading ``'`` (:func:`mulegraph.core.escape.neutralise_formulas`);
    :func:`mulegraph.io.labels.read_labels` removes it again.
    """
    if not path.parent.is_dir():
        raise InputError(f"folder '{path.parent}' for --labels-out does not exist; create it first.")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            neutralise_formulas(frame).write_csv(tmp)
        else:
            frame.write_parquet(tmp)
