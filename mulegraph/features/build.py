"""Store -> features: the library call behind ``mulegraph features``.

:func:`build_features` reads the canonical transfers of a time window from a store
(:meth:`mulegraph.store.Store.transfers`) and computes every feature family on them
(:func:`mulegraph.features.compute_features`). A notebook gets exactly what the command writes::

    from mulegraph.features.build import build_features
    feats = build_features("store", window="30d")

:func:`write_features` writes the result atomically (:func:`mulegraph.atomic.atomic_path`), so a
killed run leaves the previous file in place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from ..atomic import atomic_path
from ..config import Config, FeatureConfig
from ..errors import FeatureError, InputError
from . import FAMILIES, compute_features, load_families
from .registry import specs

__all__ = ["build_features", "write_features", "feature_table", "feature_table_markdown"]


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
        When given, receives ``transfers``, ``accounts``, ``seconds``, ``window`` and ``timings``
        (seconds per family, and for ``prepare``).

    Returns
    -------
    One row per account: ``account_id``, ``is_hub`` and the feature columns, sorted by account.
    """
    from ..store import Store  # the store module imports nothing from here; keep import light

    t0 = time.perf_counter()
    st = store if isinstance(store, Store) else Store.open(store)
    fcfg = _feature_config(config)
    win = st.time_window(window, as_of)
    transfers = st.transfers(win)
    if transfers.height == 0:
        raise FeatureError(
            f"no transfers in the window {win.describe()}; widen --window, check --as-of, or ingest exports first."
        )
    names = list(FAMILIES) if families is None else list(families)
    timings: dict[str, float] = {}
    if progress is True:
        out = _with_progress_bar(transfers, fcfg, names, accounts, timings)
    else:
        callback = progress if callable(progress) else None
        out = compute_features(transfers, fcfg, families=names, accounts=accounts, progress=callback, timings=timings)
    if stats is not None:
        stats.update(
            transfers=transfers.height,
            accounts=out.height,
            seconds=time.perf_counter() - t0,
            window=win.describe(),
            timings=timings,
        )
    return out


def _with_progress_bar(transfers, fcfg, names, accounts, timings) -> pl.DataFrame:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("features: {task.description:<12}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("prepare", total=len(names))

        def step(name: str) -> None:
            done = sum(1 for n in names if n in timings)
            bar.update(task, description=name, completed=done)

        out = compute_features(transfers, fcfg, families=names, accounts=accounts, progress=step, timings=timings)
        bar.update(task, completed=len(names))
    return out


def write_features(frame: pl.DataFrame, path: str | os.PathLike) -> Path:
    """Write features as Parquet atomically; returns the path written."""
    out = Path(path)
    if out.suffix.lower() != ".parquet":
        raise InputError(f"the features output '{out.name}' must end in .parquet; pass e.g. --out features.parquet.")
    if not out.parent.exists():
        raise InputError(f"the folder of '{out}' does not exist; create it first or choose another --out.")
    with atomic_path(out) as tmp:
        frame.write_parquet(tmp)
    return out


def feature_table() -> pl.DataFrame:
    """Every feature a run can compute (all families, and the label-based ones), in run order.

    Columns: ``name``, ``family``, ``unit``, ``direction`` (+1 higher is suspicious, -1 lower,
    0 neither), ``description``.
    """
    load_families()
    try:  # label-based closeness features live outside the default run
        from . import proximity  # noqa: F401
    except ImportError:  # pragma: no cover - optional family
        pass
    order = {f: i for i, f in enumerate([*FAMILIES, "proximity"])}
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
