"""Account shards: a window's features computed a shard of accounts at a time.

The whole-window computation (:func:`mulegraph.features.build.window_features`) holds every
transfer of the window in memory at once. Here the same features are computed in pieces whose
size is set by ``shard_accounts``, with identical results (tested column by column):

1. **Plan** (:func:`plan_shards`): two streaming passes over the window's ``src_account``/``dst_account``
   columns give every active account, its number of distinct counterparties and so the global hub
   list, and each account's shard: a stable hash of its id (:func:`mulegraph.core.hashing.shard_of`),
   so a shard holds the same accounts on every machine.
2. **Flow families per shard** (:func:`compute_shard`): volume, fan, passthrough, temporal,
   amounts and channel read only the transfers touching an account, so a shard reads exactly the
   transfers touching its accounts (a filter the Parquet scan applies) and computes them. The
   global hub list is passed in, since a hub may not reach its degree within one shard.
3. **Graph families once** (:func:`compute_graph`): patterns and network read the graph around an
   account (pattern search follows chains up to ``chain_cap`` hops, PageRank and components the
   whole graph), so they run once on the *graph table*: the window's transfers without hubs and
   self-transfers, integer-coded (account indices, seconds, amounts; no text columns). The
   network family's neighbour aggregates read the flow features of every account, gathered from
   the shards.

Shards are pure functions of (store, plan, shard number): an engine may run them in any order, in
this process (:class:`~mulegraph.engine.local.LocalEngine`) or as tasks on a Dask cluster
(:class:`~mulegraph.engine.dask.DaskEngine`), and the result is concatenated in account order. The
graph step is the engine's combination of the shards' results (:func:`combine_shards`), so that on
a cluster the flow table goes from worker to worker, not through the calling process.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from mulegraph.core.config import Config, FeatureConfig
from mulegraph.core.errors import EmptyWindowError, FeatureError
from mulegraph.core.hashing import shard_of
from mulegraph.core.version import __version__
from mulegraph.core.window import TimeWindow
from mulegraph.engine.factory import make_engine, shard_layout
from mulegraph.engine.local import Engine, LocalEngine
from mulegraph.features import FAMILIES, compute_features, load_families
from mulegraph.features.prepare import LEAN_COLUMNS, Prepared, between_non_hubs, with_text_columns

__all__ = [
    "FLOW_FAMILIES",
    "GRAPH_FAMILIES",
    "ShardPlan",
    "ShardJob",
    "Engine",
    "LocalEngine",
    "plan_shards",
    "shard_transfers",
    "prepared_window",
    "LOW_CARDINALITY_TEXT",
    "compute_shard",
    "compute_graph",
    "run_shard",
    "combine_shards",
    "sharded_features",
    "engine_features",
]

#: families whose values for an account depend only on the transfers touching it
FLOW_FAMILIES: tuple[str, ...] = ("volume", "fan", "passthrough", "temporal", "amounts", "channel")
#: families that read the graph around an account; computed once on the graph table
GRAPH_FAMILIES: tuple[str, ...] = ("patterns", "network")

_TX_COLUMNS = ("txn_id", "ts", "src_account", "dst_account", "amount")

#: text columns of a transfer with few distinct values, held as categories by :func:`prepared_window`
LOW_CARDINALITY_TEXT: tuple[str, ...] = ("currency", "channel", "src_bank", "dst_bank", "src_country", "dst_country")


@dataclass(frozen=True)
class ShardPlan:
    """What every shard needs to know: the window, the settings and who is in which shard.

    ``accounts``: ``account_id`` (sorted), ``idx`` (its position: the same integer key the
    whole-window computation uses), ``degree``, ``is_hub`` and ``shard``. ``config`` lists the
    window's hubs in ``hub_accounts``.
    """

    window: TimeWindow
    config: FeatureConfig
    n_shards: int
    accounts: pl.DataFrame

    def shard_accounts(self, k: int) -> pl.Series:
        """The account ids of shard ``k``."""
        return self.accounts.filter(pl.col("shard") == k)["account_id"]


def _store(store: Any) -> Any:
    from mulegraph.io.store import Store

    return store if isinstance(store, Store) else Store.open(store)


def _scan(store: Any, window: TimeWindow, columns: Iterable[str] | None = None) -> pl.LazyFrame:
    """The window's transfers (``columns`` of them), reading only the day parts it overlaps."""
    return _store(store).scan_window(window, None if columns is None else list(columns))


def plan_shards(
    store: Any, window: TimeWindow, config: FeatureConfig, shard_accounts: int, *, min_shards: int = 1
) -> ShardPlan:
    """Accounts, degrees, hubs and shards of a window (two streaming passes over the two account
    columns: the distinct ids, then the distinct pairs coded on them).

    Shards hold at most ``shard_accounts`` accounts each (on average: an account's shard is a hash
    of its id), and there are at least ``min_shards`` of them when there are that many accounts.
    """
    if shard_accounts < 1:
        raise FeatureError(f"shard_accounts must be a positive number of accounts. Got {shard_accounts} instead.")
    lf = _scan(store, window, ["src_account", "dst_account"])
    # the ids first (a few million strings at most), then the distinct pairs as 64-bit integer keys
    # of the ids' positions: far less memory than distinct pairs of strings
    ids = (
        pl.concat([lf.select(pl.col("src_account").alias("account_id")), lf.select(pl.col("dst_account").alias("account_id"))])
        .unique()
        .sort("account_id")
        .collect(engine="streaming")
    )
    if ids.is_empty():
        raise EmptyWindowError(
            f"there are no transfers in the chosen window ({window.describe()}); widen --window, check --as-of, "
            "or ingest exports first."
        )
    coded = _coded(lf, ids["account_id"]).select("src", "dst")
    keys = pl.concat(
        [
            coded.select((pl.col("src").cast(pl.UInt64) * (1 << 32) + pl.col("dst")).alias("k")),
            coded.select((pl.col("dst").cast(pl.UInt64) * (1 << 32) + pl.col("src")).alias("k")),
        ]
    ).unique()
    degree = (
        keys.select((pl.col("k") // (1 << 32)).cast(pl.UInt32).alias("idx"))
        .group_by("idx")
        .agg(pl.len().cast(pl.UInt32).alias("degree"))
        .collect(engine="streaming")
    )
    listed = list(config.hub_accounts)
    acc = (
        ids.with_row_index("idx")
        .with_columns(pl.col("idx").cast(pl.UInt32))
        .join(degree, on="idx", how="left")
        .sort("idx")
        .select("idx", "account_id", "degree")
        .with_columns(((pl.col("degree") > config.hub_degree) | pl.col("account_id").is_in(listed)).alias("is_hub"))
    )
    n_shards = max(1, math.ceil(acc.height / shard_accounts), min(min_shards, acc.height))
    acc = acc.with_columns(pl.Series("shard", shard_of(acc["account_id"], n_shards)))
    hubs = tuple(sorted(set(listed) | set(acc.filter(pl.col("is_hub"))["account_id"].to_list())))
    return ShardPlan(window=window, config=replace(config, hub_accounts=hubs), n_shards=n_shards, accounts=acc)


def _coded(lf: pl.LazyFrame, ids: pl.Series) -> pl.LazyFrame:
    """``lf`` with ``src``/``dst``: the positions of its account ids in the sorted ``ids`` (UInt32),
    read as the codes of an Enum whose categories are ``ids`` (no join on strings)."""
    codes = pl.Enum(ids)
    return lf.with_columns(
        pl.col("src_account").cast(codes).to_physical().cast(pl.UInt32).alias("src"),
        pl.col("dst_account").cast(codes).to_physical().cast(pl.UInt32).alias("dst"),
    )


def prepared_window(
    store: Any, plan: ShardPlan, config: FeatureConfig, *, lean: bool = False, touching: pl.Series | None = None
) -> Prepared:
    """The window's prepared transfers, read coded: what ``prepare(read_window(...))`` gives, with less memory.

    The account columns are coded on the plan's accounts as the store is scanned (streaming), so
    the window's text account ids are never held; the accounts (degree, hubs) are the plan's. The
    low-cardinality text columns (:data:`LOW_CARDINALITY_TEXT`: currency, channel, banks,
    countries) are held as ``Categorical`` (16 bytes a row as text, 4 as a category: about 0.9 GiB
    less at 20M transfers); :meth:`~mulegraph.features.prepare.Prepared.canonical` gives them back
    as text. This frame serves scoring, explanations and reports; the feature families, which
    compare text, read their transfers through :func:`~mulegraph.features.prepare.prepare`.
    ``config`` becomes the result's ``config`` (the caller's, not the plan's with the hub list).

    ``lean``: keep only :data:`~mulegraph.features.prepare.LEAN_COLUMNS` (about a third of the
    memory); the full rows of a few accounts (evidence, key figures, flows) are read from the store
    again when asked for (:meth:`~mulegraph.features.prepare.Prepared.rows_touching`).
    ``touching``: only the transfers touching these account indices (all columns, ``row`` numbered
    within them).
    """
    st = _store(store)
    lf = with_text_columns(st.scan_window(plan.window))
    low = [c for c in LOW_CARDINALITY_TEXT if c in lf.collect_schema().names()]
    if touching is not None:
        # on the stored text ids, so that the scan tests them first and decodes the other columns
        # of the matching rows only
        ids = plan.accounts["account_id"].gather(touching.cast(pl.UInt32)).implode()
        lf = lf.filter(pl.col("src_account").is_in(ids) | pl.col("dst_account").is_in(ids))
    tx = _coded(lf, plan.accounts["account_id"])
    tx = (
        tx.with_columns(pl.col("ts").dt.epoch("s").alias("t"), *(pl.col(c).cast(pl.Categorical) for c in low))
        .drop("src_account", "dst_account")
        .sort(["t", "txn_id"])
        .with_row_index("row")
        .with_columns(pl.col("row").cast(pl.UInt32))
    )
    if lean:
        tx = tx.select(LEAN_COLUMNS)
    tx = st.collect(tx, streaming=True)
    accounts = plan.accounts.select("idx", "account_id", "degree", "is_hub")
    rows = None
    if lean:
        def rows(idx: pl.Series | None) -> pl.DataFrame:
            return prepared_window(st, plan, config, touching=idx).tx

    return Prepared(tx=tx, accounts=accounts, config=config, rows=rows)


def compact_text(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its text columns copied into buffers of their own.

    A filtered text column still points into the buffers of every row it was filtered from: the
    transfers of one shard, read from the whole window, would keep the text of the whole window
    alive (about 1 GiB at 20M transfers for a shard of 2M). Through Arrow's plain strings, the
    kept values are copied and the window's buffers can go.
    """
    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not text:
        return frame
    oldest = pl.CompatLevel.oldest()
    return frame.with_columns(pl.Series(c, frame[c].to_arrow(compat_level=oldest), dtype=pl.String) for c in text)


def shard_transfers(store: Any, plan: ShardPlan, k: int) -> pl.DataFrame:
    """Every transfer of the window touching an account of shard ``k`` (its text in buffers of its
    own, :func:`compact_text`: the memory a shard holds does not grow with the window)."""
    ids = plan.shard_accounts(k).implode()
    lf = _scan(store, plan.window)
    return compact_text(lf.filter(pl.col("src_account").is_in(ids) | pl.col("dst_account").is_in(ids)).collect())


def compute_shard(store: Any, plan: ShardPlan, k: int, families: Sequence[str] = FLOW_FAMILIES) -> pl.DataFrame:
    """The flow-family features of shard ``k``'s accounts: ``account_id``, ``is_hub``, features.

    A pure function of its arguments: an engine may run it anywhere, any number of times.
    """
    ids = plan.shard_accounts(k)
    if ids.is_empty() or not families:
        return plan.accounts.filter(pl.col("shard") == k).select("account_id", "is_hub")
    tx = shard_transfers(store, plan, k)
    return compute_features(tx, plan.config, families=list(families), accounts=ids.to_list())


def graph_table(store: Any, plan: ShardPlan) -> Prepared:
    """The window's transfers between two non-hub accounts, integer-coded on the plan's indices:
    ``row`` (their order by time, then txn_id), ``t``, ``src``, ``dst``, ``amount``. The graph
    families read no text, so the ids are not held (at 20M transfers about 0.4 GiB)."""
    tx = (
        _coded(_scan(store, plan.window, _TX_COLUMNS).select(*_TX_COLUMNS), plan.accounts["account_id"])
        .filter(between_non_hubs(plan.accounts.filter(pl.col("is_hub"))["idx"]))
        .select("txn_id", pl.col("ts").dt.epoch("s").alias("t"), "src", "dst", "amount")
        .sort(["t", "txn_id"])
        .with_row_index("row")
        .select(pl.col("row").cast(pl.UInt32), "t", "src", "dst", "amount")
        .collect(engine="streaming")
    )
    return Prepared(tx=tx, accounts=plan.accounts.select("idx", "account_id", "is_hub", "degree"), config=plan.config)


def compute_graph(
    store: Any, plan: ShardPlan, flow: pl.DataFrame | pl.LazyFrame, families: Sequence[str] = GRAPH_FAMILIES
) -> pl.DataFrame:
    """Graph-family features of every account (``account_id`` plus their columns).

    ``flow``: the flow features of every account (what the shards returned; a scan of them will
    do). A family reads the earlier families' columns it names in its ``READS`` (the network
    family's neighbour aggregates), so only those are gathered, not a second copy of every
    account's features.
    """
    p = graph_table(store, plan)
    mods = load_families(families)
    reads = {c for mod in mods.values() for c in getattr(mod, "READS", ())}
    base = p.accounts.select("idx", "account_id", "is_hub")
    wanted = [c for c in flow.collect_schema().names() if c in reads]
    so_far = base.join(flow.lazy().select("account_id", *wanted).collect(), on="account_id", how="left")
    out = base.select("idx")
    for mod in mods.values():
        p.extra["so_far"] = so_far
        part = mod.compute(p)
        so_far = so_far.join(part.select("idx", *(c for c in part.columns if c in reads)), on="idx", how="left")
        out = out.join(part, on="idx", how="left")
    return out.join(base.select("idx", "account_id"), on="idx").drop("idx")


@dataclass(frozen=True)
class ShardJob:
    """Everything a shard task needs: the store (its path and the parts it held when the plan was
    made), the plan and the families of each step. Sent to every worker once."""

    store: Any
    plan: ShardPlan
    flow_families: tuple[str, ...]
    graph_families: tuple[str, ...]

    def key(self) -> str:
        """A name for this job's tasks: equal for equal inputs (same store parts, window, settings, code)."""
        doc = {
            "store": str(self.store.path),
            "parts": sorted(str(e.get("sha256")) for e in self.store.manifest()),
            "window": self.plan.window.describe(),
            "config": dataclasses.asdict(self.plan.config),
            "shards": self.plan.n_shards,
            "families": [self.flow_families, self.graph_families],
            "version": __version__,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_shard(job: ShardJob, k: int) -> pl.DataFrame:
    """The flow features of shard ``k`` of ``job`` (a task)."""
    return compute_shard(job.store, job.plan, k, job.flow_families)


def combine_shards(job: ShardJob, parts: Sequence[pl.DataFrame | pl.LazyFrame]) -> pl.DataFrame:
    """Every account's features from the shards' flow features, plus the graph families (a task).

    ``parts`` are the shards' frames, or scans of them (the local engine writes each shard's
    frame to a temporary file as it is done); a list is emptied once read. The graph step reads
    only the flow columns it needs; every account's flow features are gathered after it, so the
    two are never held together.
    """
    frames = [p.lazy() for p in parts if isinstance(p, pl.LazyFrame) or p.height]
    if isinstance(parts, list):
        parts.clear()
    base = job.plan.accounts.select("account_id", "is_hub")
    flow = pl.concat(frames, how="vertical").drop("is_hub") if frames else None
    del frames
    graph = None
    if job.graph_families:
        empty = base.select("account_id").lazy()
        graph = compute_graph(job.store, job.plan, flow if flow is not None else empty, job.graph_families)
    out = base.join(flow.collect(), on="account_id", how="left") if flow is not None else base
    del flow
    if graph is not None:
        out = out.join(graph, on="account_id", how="left")
    # the plan's accounts are sorted by id and left joins keep that order: sort only if they did not
    return out if out["account_id"].is_sorted() else out.sort("account_id")


def _absolute(store: Any) -> Any:
    """The store with an absolute path, so that a worker in another folder finds it too."""
    from mulegraph.io.store import Store

    st = store if isinstance(store, Store) else Store.open(store)
    if st.path.is_absolute():
        return st
    st = copy.copy(st)
    st.path = st.path.absolute()
    return st


def sharded_features(
    store: Any,
    window: TimeWindow,
    config: FeatureConfig | None = None,
    *,
    shard_accounts: int,
    min_shards: int = 1,
    families: Iterable[str] | None = None,
    engine: Engine | None = None,
    timings: dict[str, float] | None = None,
    info: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """The features :func:`mulegraph.features.compute_features` gives for the window, by shards.

    One row per account, ``account_id``, ``is_hub`` and the feature columns in the same order,
    sorted by account; equal to the whole-window computation, whichever ``engine`` runs the shards
    (a :class:`~mulegraph.engine.local.LocalEngine` by default). ``timings`` (if given) receives
    the seconds of the ``plan``, the ``shards`` and the ``graph`` step, ``info`` the number of
    ``shards``.
    """
    config = config or FeatureConfig()
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise FeatureError(f"unknown feature family {', '.join(unknown)}; known: {', '.join(FAMILIES)}.")
    st = _absolute(store)
    t0 = time.perf_counter()
    plan = plan_shards(st, window, config, shard_accounts, min_shards=min_shards)
    if timings is not None:
        timings["plan"] = time.perf_counter() - t0
    if info is not None:
        info["shards"] = plan.n_shards
        info["plan"] = plan
    job = ShardJob(
        store=st,
        plan=plan,
        flow_families=tuple(n for n in FLOW_FAMILIES if n in names),
        graph_families=tuple(n for n in GRAPH_FAMILIES if n in names),
    )
    engine = engine or LocalEngine()
    return engine.map_reduce(
        run_shard, list(range(plan.n_shards)), combine_shards, shared=job, key=job.key(), timings=timings
    )


def engine_features(
    store: Any,
    window: TimeWindow,
    config: Config,
    *,
    engine: Engine | None = None,
    families: Iterable[str] | None = None,
    progress: bool | Callable[[str], None] | None = None,
    timings: dict[str, float] | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The window's features by shards, on ``engine`` or else the engine of ``config``'s ``[engine]``.

    Returns the features (as :func:`sharded_features`) and what computed them: ``kind``,
    ``scheduler``, ``workers``, ``shards`` and ``shard_accounts``. ``progress``: True shows shards
    done / total on stderr, a callable receives ``"shards 3/8"`` as they finish. ``info`` (if
    given) receives the ``plan`` (:class:`ShardPlan`), for :func:`prepared_window`.
    """
    with _shard_progress(progress) as report, contextlib.ExitStack() as stack:
        if engine is None:
            engine = stack.enter_context(make_engine(config.engine, report))
        size, min_shards = shard_layout(config.engine, engine)
        info = {} if info is None else info
        feats = sharded_features(
            store, window, config.features, shard_accounts=size, min_shards=min_shards, families=families,
            engine=engine, timings=timings, info=info,
        )
        return feats, {**engine.describe(), "shards": info["shards"], "shard_accounts": size}


@contextlib.contextmanager
def _shard_progress(progress: bool | Callable[[str], None] | None) -> Iterator[Callable[[int, int], None] | None]:
    """A ``(done, total)`` callback showing shards done: a bar on stderr (True), text (a callable)."""
    if callable(progress):
        yield lambda done, total: progress(f"shards {done}/{total}")
        return
    if progress is not True:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("features: shards"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("shards", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
