"""Store -> features: the one way to get the features of a window.

:func:`window_features` is the seam every command goes through (``features``, ``train``, ``score``
and ``run``): it reads the canonical transfers of a time window (from a store, with the window
pushed down to the Parquet scan, or from a frame), prepares them once and computes every feature
family, and returns all three, so that scoring, explanations and reports reuse the same prepared
transfers. A notebook gets exactly what the commands compute::

    from mulegraph.features.build import window_features, build_features
    wf = window_features("store", window="30d")
    wf.features, wf.prepared, wf.transfers, wf.window
    feats = build_features("store", window="30d")      # the features alone

What the families need, which is what a shard of accounts needs (see the README's Architecture):

* **flow families** (volume, fan, passthrough, temporal, amounts, channel) read only the
  transfers touching the account: a shard of accounts with every transfer touching it gives the
  whole-window values (``accounts=``);
* **patterns** (cycles, scatter-gather, gather-scatter, chains) read the 2-hop neighbourhood
  without hubs: the shard's transfers plus a 2-hop halo (:func:`mulegraph.features.graph.shard_with_halo`);
* **network** (components, PageRank, k-core, neighbour aggregates) and **proximity** (closeness to
  known mules) read global tables built once from the aggregated edges (one row per ordered pair).

Where the features are computed is the config's ``[engine]`` (or ``engine=``): by default the
whole window at once in this process; with ``shard_accounts`` set, shard by shard in this process;
with ``kind = "dask"``, shard by shard on a Dask cluster (:mod:`mulegraph.features.shards`,
:mod:`mulegraph.engine`). The features are identical; the transfers and prepared transfers that
scoring reads are read in this process either way.

:func:`write_features` writes the result atomically, so a killed run leaves the previous file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import atomic_path
from mulegraph.core.config import DEFAULT_SHARD_ACCOUNTS, Config, FeatureConfig
from mulegraph.core.errors import EmptyWindowError, FeatureError, InputError
from mulegraph.core.paths import refuse_protected_output
from mulegraph.core.window import TimeWindow, filter_window, resolve_window
from mulegraph.engine.local import Engine
from mulegraph.features import FAMILIES, compute_features
from mulegraph.features.prepare import Prepared, prepare
from mulegraph.features.registry import register_windows, specs
from mulegraph.features.shards import engine_features, prepared_window

__all__ = [
    "WindowFeatures",
    "window_features",
    "read_window",
    "build_features",
    "write_features",
    "feature_table",
    "feature_table_markdown",
]


@dataclass(frozen=True)
class WindowFeatures:
    """What :func:`window_features` returns.

    ``prepared``: the window's transfers, integer-keyed (:class:`~mulegraph.features.prepare.Prepared`);
    ``features``: one row per account (``account_id``, ``is_hub`` and the feature columns, sorted
    by account); ``window``: the resolved window; ``timings``: seconds for ``prepare`` and each
    family (by shards: for the ``plan``, the ``shards`` and the ``graph`` step); ``engine``: what
    computed the features (``kind``, ``scheduler``, ``workers``, ``shards``, ``shard_accounts``;
    ``shards`` is None for the whole window at once).

    The canonical transfers are not kept next to their prepared form (at bank scale that doubles
    the memory): :attr:`transfers` rebuilds them, and :meth:`touching` gives those of a few
    accounts, both sorted by time, then txn_id.
    """

    prepared: Prepared
    features: pl.DataFrame
    window: TimeWindow
    timings: dict[str, float]
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def n_transfers(self) -> int:
        """Transfers in the window."""
        return self.prepared.tx.height

    @property
    def transfers(self) -> pl.DataFrame:
        """The window's canonical transfers (rebuilt from the prepared ones on each access)."""
        return self.prepared.canonical()

    def touching(self, accounts: Iterable[str] | pl.Series) -> pl.DataFrame:
        """The canonical transfers of the window touching any of ``accounts``."""
        return self.prepared.canonical(accounts)


def read_window(
    source: Any, *, window: str = "all", as_of: str | datetime | None = None, require_rows: bool = False
) -> tuple[pl.DataFrame, TimeWindow]:
    """The canonical transfers of a window, from a store folder, a ``Store`` or a frame.

    With ``require_rows`` an empty window raises :class:`~mulegraph.errors.InputError`.
    """
    if isinstance(source, (pl.DataFrame, pl.LazyFrame)):
        lf = source.lazy()
        if "ts" not in lf.collect_schema().names():
            raise FeatureError("transfers lack the ts column; they must follow the canonical schema.")
        newest = lf.select(pl.col("ts").max()).collect().item()
        win = resolve_window(window, as_of, newest)
        transfers = filter_window(lf, win).collect()
    else:
        from mulegraph.io.store import Store

        store = source if isinstance(source, Store) else Store.open(source)
        win = store.time_window(window, as_of)
        transfers = store.transfers(win)
    if require_rows and transfers.is_empty():
        raise InputError("there are no transfers in the chosen window; widen --window or check --as-of.")
    return transfers, win


def window_features(
    source: Any,
    *,
    window: str = "all",
    as_of: str | datetime | None = None,
    config: Config | FeatureConfig | None = None,
    families: Iterable[str] | None = None,
    accounts: list[str] | None = None,
    progress: bool | Callable[[str], None] | None = None,
    transfers: pl.DataFrame | None = None,
    engine: Engine | None = None,
    lean: bool = False,
    then: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> WindowFeatures:
    """Transfers, prepared transfers and features of every account active in a window.

    Parameters
    ----------
    source
        A :class:`~mulegraph.store.Store`, the path of a store folder, or canonical transfers.
    window, as_of
        The window ``(as_of - window, as_of]`` (see :mod:`mulegraph.core.window`); ``"all"`` for
        the whole store, ``as_of`` defaults to the newest transfer.
    config
        A :class:`~mulegraph.config.Config` (its ``features`` section is used) or a
        :class:`~mulegraph.config.FeatureConfig`; defaults when None.
    families, accounts
        Restrict the families computed, or the accounts returned (a shard: the source must hold
        every transfer touching them, plus the halo the pattern family needs).
    progress
        True shows a progress bar per family on stderr; a callable is called with each family's
        name as it starts; None or False is silent.
    transfers
        The window's transfers when the caller has read them already (skips the read).
    engine
        Compute the features by shards on this engine (:mod:`mulegraph.engine`) instead of the
        one ``config``'s ``[engine]`` section names. A store is needed then, not a frame.
    lean
        When the features are computed by shards, hold the window's transfers lean
        (:attr:`~mulegraph.features.prepare.Prepared.lean`: the columns scoring reads over the
        whole window; the full rows of a few accounts are read again from the store when asked
        for). What a nightly run scores at bank scale; ``transfers`` and ``touching`` work the same.
    then
        Called with every account's features once they are computed; the result holds what it
        returns. By shards this comes before the window's transfers are read for scoring, so a
        caller that writes the features out and keeps only the columns it scores with (a nightly
        run) never holds every feature and the window at once.

    Raises
    ------
    EmptyWindowError
        When the window holds no transfers (an ``InputError`` and a ``FeatureError``).
    InputError
        When the features are to be computed by shards and ``source`` is a frame, or the Dask
        scheduler cannot be reached.
    """
    fcfg = _feature_config(config)
    ecfg = config.engine if isinstance(config, Config) else None
    is_frame = isinstance(source, (pl.DataFrame, pl.LazyFrame))
    sharded = engine is not None or (ecfg is not None and (ecfg.kind != "local" or (ecfg.shard_accounts and not is_frame)))
    if sharded and is_frame:
        raise InputError(
            "computing features by shards (the dask engine) reads the window from a store; pass a store "
            "folder on a path every worker can read, or use the local engine."
        )
    unset = ecfg is None or (ecfg.kind == "local" and ecfg.shard_accounts is None)
    if not sharded and unset and not is_frame and transfers is None and accounts is None:
        # the local engine shards on its own when the window is large (memory set by the shard)
        sharded = _window_is_large(source, window, as_of)
    names = list(FAMILIES) if families is None else list(families)
    timings: dict[str, float] = {}
    used: dict[str, Any] = {"kind": "local", "scheduler": None, "workers": 1, "shards": None, "shard_accounts": None}
    feats = None
    if sharded:
        # by shards, the features come first: the shards read the store themselves, so the window's
        # transfers are read and prepared (for scoring) only once the shards are done
        from mulegraph.io.store import Store

        store = source if isinstance(source, Store) else Store.open(source)
        win = store.time_window(window, as_of)
        register_windows(fcfg)  # the shards register them where they run, scoring reads them here
        full = config if isinstance(config, Config) else Config(features=fcfg)
        info: dict[str, Any] = {}
        feats, used = engine_features(store, win, full, engine=engine, families=names, progress=progress,
                                      timings=timings, info=info)
        if accounts is not None:
            feats = feats.filter(pl.col("account_id").is_in(accounts))
        elif transfers is None:
            if then is not None:
                feats = then(feats)
            # the prepared transfers for scoring, coded on the plan's accounts as the store is read
            t0 = time.perf_counter()
            prepared = prepared_window(store, info["plan"], fcfg, lean=lean)
            timings["prepare"] = time.perf_counter() - t0
            return WindowFeatures(prepared=prepared, features=feats, window=win, timings=timings, engine=used)
        source = store
    if transfers is None:
        transfers, win = read_window(source, window=window, as_of=as_of)
    else:
        newest = transfers["ts"].max() if transfers.height else None
        win = resolve_window(window, as_of, newest)
    if transfers.height == 0:
        raise EmptyWindowError(
            f"there are no transfers in the chosen window ({win.describe()}); widen --window, check --as-of, "
            "or ingest exports first."
        )
    t0 = time.perf_counter()
    prepared = prepare(transfers, fcfg, accounts)
    timings["prepare"] = time.perf_counter() - t0
    del transfers  # the caller's reference, if any, is the caller's: this function keeps the prepared form only
    if feats is None and progress is True:
        feats = _with_progress_bar(prepared, fcfg, names, timings)
    elif feats is None:
        callback = progress if callable(progress) else None
        feats = compute_features(prepared, fcfg, families=names, progress=callback, timings=timings)
    if then is not None:
        feats = then(feats)
    return WindowFeatures(prepared=prepared, features=feats, window=win, timings=timings, engine=used)


def _window_is_large(source: Any, window: str, as_of: Any) -> bool:
    """Whether the window may hold more than ``DEFAULT_SHARD_ACCOUNTS`` accounts.

    Read from the store's manifest, without reading any transfer: the accounts of every ingested
    file that overlaps the window, added up (an upper bound, since files share accounts).
    """
    from mulegraph.io.store import Store

    store = source if isinstance(source, Store) else Store.open(source)
    win = store.time_window(window, as_of)
    total = 0
    for entry in store.manifest():
        lo, hi = entry.get("ts_min"), entry.get("ts_max")
        if lo is None or hi is None:
            continue
        if (win.end is not None and datetime.fromisoformat(lo) > win.end) or (
            win.start is not None and datetime.fromisoformat(hi) <= win.start
        ):
            continue
        total += int(entry.get("accounts") or 0)
    return total > DEFAULT_SHARD_ACCOUNTS


def _feature_config(config) -> FeatureConfig:
    if config is None:
        return FeatureConfig()
    if isinstance(config, Config):
        return config.features
    if isinstance(config, FeatureConfig):
        return config
    raise FeatureError("config must be a mulegraph Config or FeatureConfig; load one with mulegraph.config.load_config.")


def build_features(
    store,
    *,
    window: str = "all",
    as_of=None,
    config: Config | FeatureConfig | None = None,
    progress: bool | Callable[[str], None] = True,
    families: Iterable[str] | None = None,
    accounts: list[str] | None = None,
    stats: dict | None = None,
) -> pl.DataFrame:
    """Compute the features of every account active in a window of a store.

    Parameters
    ----------
    store
        A :class:`~mulegraph.store.Store` or the path of a store folder.
    window, as_of
        The window ``(as_of - window, as_of]`` (see :mod:`mulegraph.window`); ``"all"`` for the
        whole store, ``as_of`` defaults to the newest transfer.
    config
        A :class:`~mulegraph.config.Config` (its ``features`` section is used) or a
        :class:`~mulegraph.config.FeatureConfig`; defaults when None.
    progress
        True shows a progress bar per family on stderr; a callable is called with each family's
        name as it starts; False is silent.
    families, accounts
        Restrict the families computed, or the accounts returned (a shard: pass a store holding
        every transfer touching them).
    stats
        When given, receives ``transfers``, ``accounts``, ``seconds``, ``window``, ``timings``
        (seconds per family, and for ``prepare``) and ``engine`` (what computed the features).

    Returns
    -------
    One row per account: ``account_id``, ``is_hub`` and the feature columns, sorted by account.
    """
    t0 = time.perf_counter()
    wf = window_features(store, window=window, as_of=as_of, config=config, families=families, accounts=accounts,
                         progress=progress)
    if stats is not None:
        stats.update(
            transfers=wf.transfers.height,
            accounts=wf.features.height,
            seconds=time.perf_counter() - t0,
            window=wf.window.describe(),
            timings=wf.timings,
            engine=wf.engine,
        )
    return wf.features


def _with_progress_bar(prepared: Prepared, fcfg: FeatureConfig, names: list[str], timings: dict) -> pl.DataFrame:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("features: {task.description:<12}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("prepare", total=len(names))

        def step(name: str) -> None:
            done = sum(1 for n in names if n in timings and n != "prepare")
            bar.update(task, description=name, completed=done)

        out = compute_features(prepared, fcfg, families=names, progress=step, timings=timings)
        bar.update(task, completed=len(names))
    return out


def write_features(frame: pl.DataFrame, path: str | os.PathLike) -> Path:
    """Write features as Parquet atomically; returns the path written."""
    out = Path(path)
    if out.suffix.lower() != ".parquet":
        raise InputError(f"the features output '{out.name}' must end in .parquet; pass e.g. --out features.parquet.")
    refuse_protected_output(out)  # never into a store or a run folder
    if not out.parent.exists():
        raise InputError(f"the folder of '{out}' does not exist; create it first or choose another --out.")
    with atomic_path(out) as tmp:
        frame.write_parquet(tmp)
    return out


def feature_table() -> pl.DataFrame:
    """Every feature a run can compute (all families, the label-based and the one-off structure ones), in run order.

    Columns: ``name``, ``family``, ``unit``, ``direction`` (+1 higher is suspicious, -1 lower,
    0 neither), ``description``.
    """
    order = {f: i for i, f in enumerate([*FAMILIES, "proximity", "structure"])}
    rows = [
        {"name": s.name, "family": s.family, "unit": s.unit, "direction": s.direction, "description": s.description}
        for s in specs()
    ]
    schema = {"name": pl.String, "family": pl.String, "unit": pl.String, "direction": pl.Int64, "description": pl.String}
    frame = pl.DataFrame(rows, schema=schema)
    return frame.with_columns(
        pl.col("family").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o")
    ).with_row_index("_i").sort(["_o", "_i"]).drop("_o", "_i")


def feature_table_markdown() -> str:
    """:func:`feature_table` as a Markdown table (for the README)."""
    arrows = {1: "higher", -1: "lower", 0: "-"}
    lines = ["| feature | family | unit | suspicious when | description |", "|---|---|---|---|---|"]
    for r in feature_table().iter_rows(named=True):
        desc = r["description"].replace("|", "\\|")
        lines.append(f"| `{r['name']}` | {r['family']} | {r['unit']} | {arrows.get(r['direction'], '-')} | {desc} |")
    return "\n".join(lines)
