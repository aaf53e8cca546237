"""The engine a configuration asks for, and how it splits a window into shards.

:func:`make_engine` turns an ``[engine]`` section into a running engine (a context manager, since a
Dask engine may start a local cluster that must be stopped again); :func:`shard_layout` says how
many accounts go into a shard; :func:`engine_settings` applies the ``--engine`` and
``--scheduler`` options of the commands to a :class:`~mulegraph.core.config.Config`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from mulegraph.core.config import DEFAULT_SHARD_ACCOUNTS, Config, EngineConfig
from mulegraph.core.errors import InputError
from mulegraph.engine.local import Engine, LocalEngine

__all__ = ["make_engine", "shard_layout", "engine_settings", "SHARDS_PER_WORKER"]

#: with the dask engine and no explicit shard size, at least this many shards per worker, so that
#: a worker that finishes early finds more work and a lost worker costs a small share of the run
SHARDS_PER_WORKER = 2


@contextlib.contextmanager
def make_engine(config: EngineConfig, progress: Callable[[int, int], None] | None = None) -> Iterator[Engine]:
    """The engine of ``config``, ready to run; stopped (with any cluster it started) on exit.

    ``kind = "local"``: a :class:`~mulegraph.engine.local.LocalEngine`. ``kind = "dask"``: a
    :class:`~mulegraph.engine.dask.DaskEngine` on the cluster at ``scheduler``, or on a local
    cluster sized to this machine when ``scheduler`` is empty. ``progress(done, total)`` is called
    as shards finish.

    Raises :class:`~mulegraph.core.errors.ConfigError` when Dask is asked for but not installed and
    :class:`~mulegraph.core.errors.InputError` when the scheduler cannot be reached.
    """
    if config.kind == "local":
        yield LocalEngine(progress)
        return
    from mulegraph.engine.dask import DaskEngine

    engine = DaskEngine.connect(config.scheduler, progress) if config.scheduler else DaskEngine.local(progress=progress)
    with engine:
        yield engine


def shard_layout(config: EngineConfig, engine: Engine) -> tuple[int, int]:
    """``(shard_accounts, min_shards)`` for a window computed by ``engine``.

    An explicit ``shard_accounts`` is used as it is; otherwise shards hold at most
    :data:`~mulegraph.core.config.DEFAULT_SHARD_ACCOUNTS` accounts and, on a Dask cluster, there are
    at least :data:`SHARDS_PER_WORKER` per worker.
    """
    if config.shard_accounts is not None:
        return config.shard_accounts, 1
    if engine.kind == "local":
        return DEFAULT_SHARD_ACCOUNTS, 1
    return DEFAULT_SHARD_ACCOUNTS, SHARDS_PER_WORKER * max(1, engine.workers)


def engine_settings(config: Config, kind: str | None = None, scheduler: str | None = None) -> Config:
    """``config`` with the ``--engine`` and ``--scheduler`` options of a command applied.

    ``--scheduler`` alone means the dask engine; ``--engine local`` alone drops a scheduler the
    config file named; both together with ``local`` is an :class:`~mulegraph.core.errors.InputError`.
    """
    kind = getattr(kind, "value", kind)
    if kind is None and scheduler is None:
        return config
    if kind == "local" and scheduler:
        raise InputError(
            "--scheduler needs the dask engine; leave out --engine local, or pass --engine dask."
        )
    if scheduler is not None:
        return config.replace("engine", kind="dask", scheduler=scheduler.strip())
    return config.replace("engine", kind=kind, scheduler="" if kind == "local" else None)
