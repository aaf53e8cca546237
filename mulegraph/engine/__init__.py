"""Engines: where the account shards of a window are computed.

``local`` runs them one after another in this process
(:class:`~mulegraph.engine.local.LocalEngine`); ``dask`` runs them as tasks on a Dask distributed
cluster (:class:`~mulegraph.engine.dask.DaskEngine`, with the optional ``mulegraph[dask]``
extra). Both give identical results. Pick one in ``mulegraph.toml``::

    [engine]
    kind = "dask"
    scheduler = "tcp://10.0.0.5:8786"   # empty: a local cluster sized to this machine
    shard_accounts = 250000

or with ``--engine`` and ``--scheduler`` on ``run``, ``features``, ``score`` and ``train``.
"""

from __future__ import annotations

from mulegraph.engine.factory import SHARDS_PER_WORKER, engine_settings, make_engine, shard_layout
from mulegraph.engine.local import Engine, LocalEngine

__all__ = ["Engine", "LocalEngine", "make_engine", "shard_layout", "engine_settings", "SHARDS_PER_WORKER"]
