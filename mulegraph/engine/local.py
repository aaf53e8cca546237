"""The engine protocol, and the local engine that runs shards one after another in this process.

An engine runs pure functions of (shared input, item), such as the account shards of
:mod:`mulegraph.features.shards`, and hands their results back in the order of the items, however
and wherever they ran. :class:`LocalEngine` is the reference: results are exactly what a plain loop
gives. :class:`mulegraph.engine.dask.DaskEngine` runs the same functions on a Dask cluster.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import polars as pl

__all__ = ["Engine", "LocalEngine"]


class Engine(Protocol):
    """Runs functions over items; results come back in the order of the items.

    ``kind`` names the engine (``"local"``, ``"dask"``) and ``workers`` says how many processes
    compute at once; :meth:`describe` is what a run's manifest records about it.
    """

    kind: str

    @property
    def workers(self) -> int: ...

    def map(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[func(item) for item in items]``."""
        ...

    def map_reduce(
        self,
        func: Callable[[Any, Any], Any],
        items: Sequence[Any],
        combine: Callable[[Any, list[Any]], Any],
        *,
        shared: Any = None,
        key: str = "",
        timings: dict[str, float] | None = None,
    ) -> Any:
        """``combine(shared, [func(shared, item) for item in items])``.

        ``shared`` is sent to where the work runs once, not once per item; ``key`` names the work
        (equal keys mean equal inputs, so an engine may reuse results); ``timings`` receives the
        seconds until every item was done (``shards``) and for the combination (``graph``).
        """
        ...

    def describe(self) -> dict[str, Any]:
        """``kind``, ``scheduler`` (None when local) and ``workers``."""
        ...


class LocalEngine:
    """Runs items one after another in this process (memory bounded by one item's work).

    ``progress(done, total)`` is called after each item. With ``spill`` (the default),
    :meth:`map_reduce` writes each item's result that is a non-empty Polars ``DataFrame`` to a
    temporary Parquet file as soon as it is done and hands ``combine`` a scan of it
    (``LazyFrame``), so the results do not pile up in memory while the other items run, and
    ``combine`` reads only the columns it needs when it needs them. The files are removed once
    ``combine`` returns (the folder is Python's temporary folder: ``TMPDIR``).
    """

    kind = "local"

    def __init__(self, progress: Callable[[int, int], None] | None = None, *, spill: bool = True) -> None:
        self.progress = progress
        self.spill = spill

    @property
    def workers(self) -> int:
        return 1

    def map(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            out.append(func(item))
            if self.progress:
                self.progress(i + 1, len(items))
        return out

    def map_reduce(
        self,
        func: Callable[[Any, Any], Any],
        items: Sequence[Any],
        combine: Callable[[Any, list[Any]], Any],
        *,
        shared: Any = None,
        key: str = "",
        timings: dict[str, float] | None = None,
    ) -> Any:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mulegraph-parts-") as folder:
            task = partial(func, shared)
            if self.spill:
                task = partial(_spilled, task, Path(folder), itertools.count())
            parts = self.map(task, items)
            t1 = time.perf_counter()
            out = combine(shared, parts)
            del parts
        if timings is not None:
            timings["shards"] = t1 - t0
            timings["graph"] = time.perf_counter() - t1
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "scheduler": None, "workers": self.workers}

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _spilled(func: Callable[[Any], Any], folder: Path, numbers: Iterator[int], item: Any) -> Any:
    """``func(item)``; a non-empty DataFrame result is written to ``folder`` (named by the next of
    ``numbers``) and a scan of it returned."""
    out = func(item)
    if not isinstance(out, pl.DataFrame) or out.is_empty():
        return out
    path = folder / f"part-{next(numbers):06d}.parquet"
    out.write_parquet(path, compression="lz4", statistics=False)
    return pl.scan_parquet(path)
