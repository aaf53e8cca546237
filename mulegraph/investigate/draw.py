"""Pictures of subgraphs and money trails: a static matplotlib drawing and an offline HTML view.

Both take the MultiDiGraphs of :mod:`mulegraph.investigate` (one edge per transfer). For drawing, the
transfers between the same two accounts are merged into one arrow: its width grows with the value
moved (the traced value for trails, else the amount), its label gives the value, the number of
transfers and the time of the first one. Nodes are coloured by score (grey when unscored), hubs are
squares, the account under investigation has a thick outline. Trails are laid out by hop from left
to right (forward) or right to left (backward); other graphs with a seeded spring layout.

The HTML view is one self-contained file: an inline SVG with a little inline JavaScript for zoom
(wheel), pan (drag) and details on hover, rendered from the Jinja2 template
``templates/graph.html.j2`` with autoescaping. It loads nothing from the network.

Account ids, transfer ids and other values come from exports and are never trusted: in drawings
they are plain text (no mathtext, so ``$`` is a dollar sign) with control characters as visible
escapes (:func:`mulegraph.core.escape.visible`); in the HTML view every expression is
HTML-escaped by Jinja2 after the same visible escaping (the environment's finaliser), and the
page's title and its scripts are the template's own.
"""

from __future__ import annotations

import functools
import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import networkx as nx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mulegraph.core.errors import InputError
from mulegraph.core.escape import visible
from mulegraph.investigate.export import atomic_write

__all__ = ["PICTURE_FORMATS", "pair_edges", "graph_layout", "draw_graph", "save_picture", "to_html"]

#: file suffixes :func:`save_picture` writes
PICTURE_FORMATS = (".png", ".svg", ".pdf", ".html")

_CMAP = "YlOrRd"
# SVG stroke attributes of the account under investigation and of the others (trusted markup)
_FOCUS_STROKE = markupsafe.Markup('stroke="#000" stroke-width="4"')
_NODE_STROKE = markupsafe.Markup('stroke="#555" stroke-width="1.2"')


def _short(name: Any, n: int = 14) -> str:
    s = visible(name)
    if len(s) <= n:
        return s
    # ids often share a long prefix (country, bank code): keep the head and the distinctive tail
    head = max(2, n // 3)
    return s[:head] + "\u2026" + s[-(n - head - 1):]


def _when(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.strftime("%m-%d %H:%M")
    if isinstance(ts, str):
        return ts[5:16].replace("T", " ")
    return ""


def _money(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:,.1f}M"
    if x >= 1e4:
        return f"{x / 1e3:,.0f}k"
    return f"{x:,.0f}"


def pair_edges(graph: nx.Graph) -> list[dict]:
    """Merge the transfers between each ordered pair of accounts.

    Returns one dict per pair: ``u``, ``v``, ``value`` (sum of ``traced`` where present, else of
    ``amount``), ``amount`` (sum), ``n`` (transfers), ``first`` and ``last`` (times), ``txn_ids``.
    """
    pairs: dict[tuple, dict] = {}
    edges = graph.edges(data=True)
    for u, v, d in edges:
        p = pairs.setdefault((u, v), {"u": u, "v": v, "value": 0.0, "amount": 0.0, "n": 0, "first": None, "last": None, "txn_ids": []})
        amt = float(d.get("amount") or 0.0)
        val = d.get("traced")
        p["value"] += float(val) if val is not None else amt
        p["amount"] += amt
        p["n"] += 1
        ts = d.get("ts")
        if ts is not None:
            p["first"] = ts if p["first"] is None or ts < p["first"] else p["first"]
            p["last"] = ts if p["last"] is None or ts > p["last"] else p["last"]
        if d.get("txn_id") is not None:
            p["txn_ids"].append(str(d["txn_id"]))
    return list(pairs.values())


def graph_layout(graph: nx.Graph, *, seed: int = 0) -> dict[Any, tuple[float, float]]:
    """Node positions in [0, 1] x [0, 1]: by hop for trails, a seeded spring layout otherwise."""
    n = graph.number_of_nodes()
    if n == 0:
        return {}
    if n == 1:
        return {next(iter(graph.nodes)): (0.5, 0.5)}
    if graph.graph.get("kind") == "trail" and all("hop" in d for _, d in graph.nodes(data=True)):
        sign = -1 if graph.graph.get("direction") == "backward" else 1
        layers: dict[int, list] = {}
        for node, d in graph.nodes(data=True):
            layers.setdefault(int(d["hop"]), []).append(node)
        pos = {}
        hops = sorted(layers)
        span = max(hops) - min(hops) or 1
        und = nx.Graph()
        und.add_edges_from((u, v) for u, v in graph.edges())
        for h in hops:
            col = sorted(layers[h], key=str)
            if pos:
                # order each layer by the mean height of its already placed neighbours (fewer crossings)
                def _bary(node, col_len=len(col)):
                    ys = [pos[m][1] for m in und.neighbors(node) if m in pos] if node in und else []
                    return sum(ys) / len(ys) if ys else 0.5

                col = sorted(col, key=lambda node: (-_bary(node), str(node)))
            x = (h - min(hops)) / span
            if sign < 0:
                x = 1 - x
            for i, node in enumerate(col):
                y = 0.5 if len(col) == 1 else 1 - i / (len(col) - 1)
                pos[node] = (x, y)
        return pos
    simple = nx.Graph()
    simple.add_nodes_from(graph.nodes)
    simple.add_edges_from((u, v) for u, v in graph.edges())
    raw = nx.spring_layout(simple, seed=seed, k=1.6 / math.sqrt(n), iterations=100)
    xs = [p[0] for p in raw.values()]
    ys = [p[1] for p in raw.values()]
    dx = (max(xs) - min(xs)) or 1.0
    dy = (max(ys) - min(ys)) or 1.0
    return {k: ((p[0] - min(xs)) / dx, (p[1] - min(ys)) / dy) for k, p in raw.items()}


def draw_graph(graph: nx.Graph, *, ax=None, title: str | None = None, seed: int = 0, edge_labels: bool | None = None) -> Figure:
    """Draw a subgraph or trail with matplotlib and return the figure.

    Legible up to about 50 accounts: the figure grows with the node count, labels are short, and
    edge labels are left out above 80 account pairs unless ``edge_labels=True``. Above 120 accounts
    only the investigated account, hubs and the 25 highest scores are labelled.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    n = graph.number_of_nodes()
    if ax is None:
        side = min(22.0, max(7.0, 1.9 * math.sqrt(max(n, 1))))
        fig = Figure(figsize=(side * 1.25, side), dpi=110, layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ax.set_axis_off()
    if title:
        ax.set_title(visible(title), fontsize=11, parse_math=False)
    if n == 0:
        ax.text(0.5, 0.5, "no accounts", ha="center", va="center")
        return fig
    pos = graph_layout(graph, seed=seed)
    pairs = pair_edges(graph)
    cmap = colormaps[_CMAP]
    norm = Normalize(0.0, 1.0)
    vmax = max((p["value"] for p in pairs), default=1.0) or 1.0
    font = 8 if n <= 25 else 6.5
    if edge_labels is None:
        edge_labels = len(pairs) <= 80
    both = {(p["u"], p["v"]) for p in pairs}
    for p in pairs:
        (x0, y0), (x1, y1) = pos[p["u"]], pos[p["v"]]
        width = 0.6 + 5.5 * math.sqrt(p["value"] / vmax)
        rad = 0.18 if (p["v"], p["u"]) in both else 0.06
        if p["u"] == p["v"]:
            continue
        ax.annotate(
            "", xy=(x1, y1), xytext=(x0, y0),
            arrowprops=dict(arrowstyle="-|>", lw=width, color="#4a6fa5", alpha=0.65, shrinkA=11, shrinkB=11,
                            mutation_scale=8 + width * 2, connectionstyle=f"arc3,rad={rad}"),
            zorder=1,
        )
        if edge_labels:
            label = _money(p["value"]) + (f" x{p['n']}" if p["n"] > 1 else "")
            when = _when(p["first"])
            if when:
                label += "\n" + when
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            # offset along the normal so that both directions of a pair stay readable
            nx_, ny_ = -(y1 - y0), (x1 - x0)
            ln = math.hypot(nx_, ny_) or 1.0
            off = rad * 0.5 * math.hypot(x1 - x0, y1 - y0)
            ax.text(mx - nx_ / ln * off, my - ny_ / ln * off, label, fontsize=font - 1, ha="center", va="center",
                    color="#222222", zorder=3, parse_math=False, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    for shape, is_hub in (("o", False), ("s", True)):
        nodes = [v for v, d in graph.nodes(data=True) if bool(d.get("is_hub", False)) == is_hub]
        if not nodes:
            continue
        xs = [pos[v][0] for v in nodes]
        ys = [pos[v][1] for v in nodes]
        colours = [cmap(norm(graph.nodes[v]["score"])) if graph.nodes[v].get("score") is not None else "#d0d0d0" for v in nodes]
        edge = ["black" if graph.nodes[v].get("focus") else "#555555" for v in nodes]
        lw = [3.0 if graph.nodes[v].get("focus") else 0.8 for v in nodes]
        ax.scatter(xs, ys, s=420 if n <= 25 else 260, c=colours, marker=shape, edgecolors=edge, linewidths=lw, zorder=2)
    labelled = set(pos)
    if n > 120:
        # too many to label legibly: the account under investigation, hubs and the 25 highest scores
        scored = sorted((d.get("score") or 0.0, str(v), v) for v, d in graph.nodes(data=True))
        labelled = {v for *_, v in scored[-25:]} | {v for v, d in graph.nodes(data=True) if d.get("focus") or d.get("is_hub")}
    for v, (x, y) in pos.items():
        if v not in labelled:
            continue
        ax.text(x, y - (0.045 if n <= 25 else 0.032), _short(v), fontsize=font, ha="center", va="top", zorder=4,
                parse_math=False, fontweight="bold" if graph.nodes[v].get("focus") else "normal")
    ax.set_xlim(-0.08, 1.08)
    ax.set_ylim(-0.1, 1.06)
    if any(d.get("score") is not None for _, d in graph.nodes(data=True)):
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.5, label="score")
    handles = [
        Line2D([], [], marker="o", ls="", color="#d0d0d0", markeredgecolor="#555555", label="account (grey: unscored)"),
        Line2D([], [], marker="s", ls="", color="#d0d0d0", markeredgecolor="#555555", label="hub, not expanded"),
        Line2D([], [], marker="o", ls="", color="white", markeredgecolor="black", markeredgewidth=2.5, label="investigated account"),
        Line2D([], [], color="#4a6fa5", lw=3, label="transfers (width ~ value)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7, frameon=False)
    return fig


def to_html(graph: nx.Graph, *, title: str = "mulegraph", seed: int = 0) -> str:
    """A self-contained interactive HTML page (inline SVG and JavaScript, no network access).

    Rendered from the package template ``templates/graph.html.j2`` with autoescaping: account ids,
    attributes and the title are HTML-escaped text, and the data the script reads is JSON with
    ``<``, ``>``, ``&`` and ``'`` escaped, so no value can close the ``<script>`` element.
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps[_CMAP]
    pos = graph_layout(graph, seed=seed)
    size = 1000.0
    pad = 60.0
    P = {k: (pad + x * (size - 2 * pad), pad + (1 - y) * (size - 2 * pad)) for k, (x, y) in pos.items()}
    pairs = pair_edges(graph)
    vmax = max((p["value"] for p in pairs), default=1.0) or 1.0
    edges: list[dict[str, str]] = []
    for p in pairs:
        if p["u"] == p["v"]:
            continue
        (x0, y0), (x1, y1) = P[p["u"]], P[p["v"]]
        w = 1.0 + 7.0 * math.sqrt(p["value"] / vmax)
        info = (f"{p['u']} -> {p['v']} | value {p['value']:,.2f} | amount {p['amount']:,.2f} | "
                f"{p['n']} transfer(s) | first {_iso(p['first'])} | last {_iso(p['last'])} | txn {', '.join(p['txn_ids'][:12])}"
                + (" ..." if len(p["txn_ids"]) > 12 else ""))
        mx, my = (x0 + x1) / 2 + (y1 - y0) * 0.08, (y0 + y1) / 2 - (x1 - x0) * 0.08
        edges.append({"d": f"M{x0:.1f},{y0:.1f} Q{mx:.1f},{my:.1f} {x1:.1f},{y1:.1f}", "width": f"{w:.2f}", "info": info})
    nodes: list[dict[str, Any]] = []
    for v, d in graph.nodes(data=True):
        x, y = P[v]
        score = d.get("score")
        details = " | ".join(f"{k} {_fmt(val)}" for k, val in d.items() if val is not None)
        nodes.append({
            "info": f"{v} | {details}",
            "label": _short(v, 18),
            "hub": bool(d.get("is_hub")),
            "fill": to_hex(cmap(float(score))) if score is not None else "#d0d0d0",
            "stroke": _FOCUS_STROKE if d.get("focus") else _NODE_STROKE,
            "x": f"{x:.1f}", "y": f"{y:.1f}", "rx": f"{x - 13:.1f}", "ry": f"{y - 13:.1f}", "ty": f"{y + 30:.1f}",
        })
    meta = " | ".join(f"{k} {_fmt(v)}" for k, v in graph.graph.items())
    return _template().render(title=title, meta=meta, view={"size": int(size)}, edges=edges, nodes=nodes,
                              n_nodes=graph.number_of_nodes(), n_edges=graph.number_of_edges())


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        finalize=_finalize,
        loader=jinja2.PackageLoader("mulegraph.investigate", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("graph.html.j2")


def _finalize(value: Any) -> Any:
    """Every ``{{ expression }}`` of the page: text with control characters made visible (trusted
    markup and non-text values as they are); autoescape then escapes it for HTML."""
    return visible(value) if isinstance(value, str) and not isinstance(value, markupsafe.Markup) else value


def _iso(ts: Any) -> str:
    return ts.isoformat() if isinstance(ts, datetime) else ("" if ts is None else str(ts))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


def save_picture(graph: nx.Graph, path: str | os.PathLike, *, title: str | None = None, seed: int = 0) -> Path:
    """Write a .png/.svg/.pdf drawing or an .html interactive view of ``graph`` (atomically)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PICTURE_FORMATS:
        raise InputError(f"cannot draw to '{suffix}'; use a .png, .svg, .pdf or .html file.")
    if suffix == ".html":
        text = to_html(graph, title=title or "mulegraph", seed=seed)

        def _w(tmp: str) -> None:
            Path(tmp).write_text(text, encoding="utf-8")

        return atomic_write(path, _w)
    fig = draw_graph(graph, title=title, seed=seed)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix[1:]))
