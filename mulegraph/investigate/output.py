"""Writing subgraphs and money trails to files: a picture or a graph file, chosen by the suffix.

:func:`save_graph` writes a :class:`~mulegraph.investigate.trails.Trail` or a networkx graph as a
picture (``.png``, ``.svg``, ``.pdf``, or an interactive ``.html`` page, see
:mod:`~mulegraph.investigate.draw`) or as a graph file for Gephi and Cytoscape (``.graphml``,
``.gexf``, ``.json``/``.cyjs``, see :mod:`~mulegraph.investigate.export`). :func:`trace_to_file`
is what ``mulegraph trace`` does: open a store, trace one account's money and save the trail.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Literal

import networkx as nx
import polars as pl

from mulegraph.core.config import Config, FeatureConfig
from mulegraph.core.errors import InputError
from mulegraph.core.paths import refuse_protected_output
from mulegraph.investigate.draw import PICTURE_FORMATS, save_picture
from mulegraph.investigate.export import EXPORT_FORMATS, export_graph
from mulegraph.investigate.session import open_investigation
from mulegraph.investigate.trails import Trail

__all__ = ["SAVE_FORMATS", "check_save_path", "save_graph", "trail_title", "trace_to_file"]

#: file suffixes :func:`save_graph` writes: pictures first, then graph files
SAVE_FORMATS: tuple[str, ...] = PICTURE_FORMATS + tuple(s for s in EXPORT_FORMATS if s not in PICTURE_FORMATS)


def check_save_path(path: str | os.PathLike) -> Path:
    """Refuse a path whose suffix :func:`save_graph` cannot write (before any work is done)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise InputError(f"--out must end in one of {', '.join(SAVE_FORMATS)}. Got '{suffix or path.name}' instead.")
    return refuse_protected_output(path)  # never into a store or a run folder


def _duration(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s % 3_600 == 0:
        return f"{s // 3_600}h"
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


def trail_title(trail: Trail, within: str | timedelta | None = None) -> str:
    """The picture title of a trail, e.g. ``forward trail, fifo, within 72h``."""
    shown = within if isinstance(within, str) else _duration(within if within is not None else trail.within)
    return f"{trail.direction} trail, {trail.alloc}, within {shown}"


def save_graph(graph: Trail | nx.Graph, path: str | os.PathLike, *, title: str | None = None, seed: int = 0) -> Path:
    """Write a trail or graph to ``path`` as a picture or a graph file, chosen by the suffix.

    ``.png``, ``.svg``, ``.pdf`` and ``.html`` are drawn (:func:`~mulegraph.investigate.draw.save_picture`,
    with ``title`` and the layout ``seed``; a trail's title defaults to its direction, allocation
    and ``within``); ``.graphml``, ``.gexf``, ``.json`` and ``.cyjs`` are exported
    (:func:`~mulegraph.investigate.export.export_graph`). Written atomically; returns the path.

    Examples
    --------
    >>> save_graph(inv.trace("ACC123"), "trail.html")          # doctest: +SKIP
    >>> save_graph(inv.ego_graph("ACC123"), "ego.graphml")     # doctest: +SKIP
    """
    path = check_save_path(path)
    if isinstance(graph, Trail):
        title = title if title is not None else trail_title(graph)
        graph = graph.to_graph()
    if path.suffix.lower() in PICTURE_FORMATS:
        return save_picture(graph, path, title=title, seed=seed)
    return export_graph(graph, path)


def trace_to_file(
    store: Any,
    account: str,
    out: str | os.PathLike,
    *,
    run: str | os.PathLike | pl.DataFrame | None = None,
    config: FeatureConfig | Config | None = None,
    direction: Literal["forward", "backward"] = "forward",
    hops: int = 4,
    within: str | timedelta = "72h",
    alloc: Literal["fifo", "proportional"] = "fifo",
    window: str | None = "all",
    as_of=None,
    txn_ids: Iterable[str] | None = None,
    expand_hubs: bool = False,
    value: Literal["amount", "amount_base"] = "amount",
) -> Trail:
    """Trace ``account``'s money in a store and save the trail to ``out`` (see :func:`save_graph`).

    The suffix of ``out`` is checked before the store is read. ``run`` (a run folder or scores)
    colours accounts by score; ``config`` gives the hub settings. The other arguments are those of
    :meth:`~mulegraph.investigate.session.Investigation.trace`. Returns the trail.
    """
    out = check_save_path(out)
    inv = open_investigation(store, run, config=config)
    trail = inv.trace(account, direction, hops=hops, within=within, alloc=alloc, window=window, as_of=as_of,
                      expand_hubs=expand_hubs, txn_ids=txn_ids, value=value)
    save_graph(trail, out, title=trail_title(trail, within))
    return trail
