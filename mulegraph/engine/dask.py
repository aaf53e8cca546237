"""The Dask engine: account shards as tasks on a Dask distributed cluster.

:class:`DaskEngine` implements the :class:`~mulegraph.engine.local.Engine` protocol with a
``distributed.Client``:

* the shared input (the shard plan) is sent to every worker once (``client.scatter`` with
  ``broadcast=True``), not once per task;
* each item is one task with a deterministic key (``mulegraph-shard-<key>-<i>``): the same inputs
  give the same keys, so a cluster that still holds a result reuses it;
* the combination (the graph step) is one more task that depends on the item tasks, so the items'
  results go from worker to worker and never through this process; only its result is gathered;
* results come back in the order of the items, whichever worker ran what and whenever it finished.

A worker that dies takes its running tasks and the results it held with it; the scheduler runs them
again on the other workers (tasks are pure functions of their inputs, so a second run gives the
same result). Only a task that kills ``distributed.scheduler.allowed-failures`` workers in a row
(default 3, e.g. one that runs out of memory every time) fails the run, with an
:class:`~mulegraph.core.errors.EngineError`. The shared input has no lineage to be computed again
from: when every worker holding a copy died, it is sent again and the work starts over (at most
:data:`SHARED_ATTEMPTS` times). Task exceptions are not retried: they come from the
data or the code, and a second run would raise them again.

:meth:`DaskEngine.connect` joins a running cluster (an unreachable scheduler is an
:class:`~mulegraph.core.errors.InputError` naming the address); :meth:`DaskEngine.local` starts a
``LocalCluster`` of worker processes on this machine, one thread each, with Polars and the BLAS/
OpenMP libraries held to their share of the cores so that the workers do not oversubscribe them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from typing import Any

from mulegraph.core.errors import ConfigError, EngineError, InputError

__all__ = ["DaskEngine", "CONNECT_TIMEOUT", "WORKER_TIMEOUT", "SHARED_ATTEMPTS", "worker_environment", "require_dask"]

#: seconds to wait for a scheduler before giving up on it
CONNECT_TIMEOUT = 5.0
#: seconds to wait for a scheduler without workers to get one
WORKER_TIMEOUT = 60.0
#: times the shared input (the plan) is sent again after the cluster lost every copy of it
SHARED_ATTEMPTS = 3
#: environment variables that set the size of a library's thread pool in a worker
_THREAD_VARIABLES = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def require_dask() -> None:
    """Raise a :class:`~mulegraph.core.errors.ConfigError` when Dask distributed is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the dask engine needs Dask distributed, which is not installed; install it with "
            "pip install 'mulegraph[dask]', or use --engine local."
        ) from None


def worker_environment(n_workers: int, cpus: int | None = None) -> dict[str, str]:
    """Thread-pool sizes for ``n_workers`` worker processes sharing ``cpus`` cores (all by default)."""
    if cpus is None:
        from dask.system import CPU_COUNT

        cpus = CPU_COUNT
    threads = str(max(1, cpus // max(1, n_workers)))
    return {name: threads for name in _THREAD_VARIABLES}


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Hold back the warnings distributed logs while it retries a connection (the error says it)."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for log, _ in saved:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in saved:
            log.setLevel(level)


_PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


@contextlib.contextmanager
def _spawn_environment(env: dict[str, str]) -> Iterator[dict[str, str | None]]:
    """Nannies created inside give their workers ``env`` from the workers' first line on.

    Polars sizes its thread pool when it is imported, which may happen before the worker runs (a
    spawned process imports the parent's main module), so the sizes go in the nanny's
    ``pre-spawn-environ``, which it copies into its own environment each time it spawns a worker.
    This process's values of those variables before are yielded, and put back on leaving
    (:func:`_restore_environment` puts them back again after a worker was restarted).
    """
    import dask

    merged = {**dask.config.get(_PRE_SPAWN, default={}), **env}
    saved = {k: os.environ.get(k) for k in merged}
    try:
        with dask.config.set({_PRE_SPAWN: merged}):
            yield saved
    finally:
        _restore_environment(saved)


def _restore_environment(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class DaskEngine:
    """Runs items as tasks on the Dask cluster behind ``client``.

    ``progress(done, total)`` is called in this process as the item tasks finish. ``cluster``, when
    given, is closed with the engine (a cluster the engine started). Use as a context manager, or
    call :meth:`close`.
    """

    kind = "dask"

    def __init__(self, client: Any, progress: Callable[[int, int], None] | None = None, *, cluster: Any = None) -> None:
        self.client = client
        self.progress = progress
        self.cluster = cluster
        self._environ: dict[str, str | None] = {}

    # ------------------------------------------------------------------ starting and stopping
    @classmethod
    def connect(
        cls, address: str, progress: Callable[[int, int], None] | None = None, *, timeout: float | None = None
    ) -> "DaskEngine":
        """Join the cluster whose scheduler listens at ``address`` (e.g. ``tcp://10.0.0.5:8786``)."""
        require_dask()
        from distributed import Client

        wait = CONNECT_TIMEOUT if timeout is None else timeout
        try:
            with _quiet("distributed.client", "distributed.comm", "distributed.core"):
                client = Client(address, timeout=wait, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            timed_out = isinstance(err, TimeoutError) or "timed out" in str(err).lower()
            reason = f"no answer within {wait:g} s" if timed_out else (str(err).splitlines() or [type(err).__name__])[0]
            raise InputError(
                f"cannot reach the Dask scheduler at {address} ({reason}); check --scheduler or [engine] "
                "scheduler, or start one with 'dask scheduler' and workers with 'dask worker ADDRESS'."
            ) from None
        engine = cls(client, progress)
        engine._wait_for_workers()
        return engine

    @classmethod
    def local(
        cls, n_workers: int | None = None, progress: Callable[[int, int], None] | None = None, **cluster_kwargs: Any
    ) -> "DaskEngine":
        """Start a ``LocalCluster``: ``n_workers`` processes (one per core by default), one thread each."""
        require_dask()
        from dask.system import CPU_COUNT
        from distributed import Client, LocalCluster

        n = n_workers or CPU_COUNT
        options = {"dashboard_address": ":0", "silence_logs": logging.ERROR, **cluster_kwargs}
        with _spawn_environment(worker_environment(n)) as saved:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **options)
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        engine = cls(client, progress, cluster=cluster)
        engine._environ = saved
        return engine

    def _wait_for_workers(self) -> None:
        if self.workers:
            return
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        except TimeoutError:
            address = self.scheduler
            self.close()
            raise EngineError(
                f"the Dask scheduler at {address} has had no workers for {WORKER_TIMEOUT:g} s; "
                f"start some with 'dask worker {address}'."
            ) from None

    def close(self) -> None:
        """Disconnect; stop the cluster when this engine started it."""
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        _restore_environment(self._environ)

    def __enter__(self) -> "DaskEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ what it is
    @property
    def scheduler(self) -> str:
        """The scheduler's address."""
        return self.client.scheduler.address

    @property
    def workers(self) -> int:
        """Worker processes connected now."""
        return len(self.client.nthreads())

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "scheduler": self.scheduler, "workers": self.workers}

    # ------------------------------------------------------------------ running work
    def map(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        futures = self.client.map(func, list(items), pure=False)
        self._follow(futures)
        return self.client.gather(futures)

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
        prefix = f"mulegraph-{key}" if key else f"mulegraph-{id(items):x}-{time.time_ns():x}"
        t0 = time.perf_counter()
        for attempt in range(1, SHARED_ATTEMPTS + 1):
            try:
                out, t1 = self._map_reduce_once(func, list(items), combine, shared, prefix)
                break
            except CancelledError:
                # the shared input is lost when every worker holding it died (it has no lineage to
                # be computed again from): send it again and start over
                if attempt == SHARED_ATTEMPTS:
                    raise EngineError(
                        f"the cluster lost every copy of the shard plan {SHARED_ATTEMPTS} times (workers died); "
                        "check the workers' logs and memory, then run again."
                    ) from None
            except Exception as err:
                if _killed_worker(err):
                    raise EngineError(
                        "a shard task was lost with its worker several times (out of memory?); give the workers "
                        "more memory or set a smaller [engine] shard_accounts."
                    ) from None
                raise
        if timings is not None:
            timings["shards"] = t1 - t0
            timings["graph"] = time.perf_counter() - t1
        return out

    def _map_reduce_once(
        self, func: Callable, items: list[Any], combine: Callable, shared: Any, prefix: str
    ) -> tuple[Any, float]:
        shared_f = self.client.scatter(shared, broadcast=True, hash=False)
        parts = [
            self.client.submit(func, shared_f, item, key=f"{prefix}-shard-{i}", pure=True)
            for i, item in enumerate(items)
        ]
        final = self.client.submit(combine, shared_f, parts, key=f"{prefix}-graph", pure=True)
        try:
            self._follow(parts)
            t1 = time.perf_counter()
            return final.result(), t1
        finally:
            for f in (final, *parts, shared_f):
                f.release()

    def _follow(self, futures: list[Any]) -> None:
        """Wait for ``futures``, reporting progress; raise the first task error."""
        from distributed import as_completed

        for done, fut in enumerate(as_completed(futures, loop=self.client.loop), start=1):
            if fut.status == "error":
                fut.result()  # raises the task's exception here
            if self.progress:
                self.progress(done, len(futures))


def _killed_worker(err: Exception) -> bool:
    from distributed.scheduler import KilledWorker

    return isinstance(err, KilledWorker)
