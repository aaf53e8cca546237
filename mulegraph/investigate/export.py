"""Export subgraphs and trails for Gephi and Cytoscape: GraphML, GEXF and Cytoscape JSON.

Node ids are the account ids as they appear in the store; each transfer is one edge whose id is its
``txn_id``. Attribute values are made portable first: times become ISO 8601 text, lists and dicts
become JSON text, missing values are left out, and every attribute keeps one type across the graph
(numbers that are whole in some rows and fractional in others are written as floats). Files are
written atomically (a temporary file in the same folder, then a rename).

Reload an export with ``nx.read_graphml(path, force_multigraph=True)`` or ``nx.read_gexf(path)``
(networkx reads GEXF as a DiGraph when no two transfers share a pair of accounts; each edge's ``id``
attribute is still its ``txn_id``).

GraphML and GEXF are XML 1.0, which cannot carry most control characters (NUL, ESC, ...), not even
as character references. Node ids and edge ids must stay the store's ids, so a graph whose account
or transfer id holds one is refused (:class:`~mulegraph.core.errors.InputError`; the JSON export
carries any value, as JSON escapes); in attribute text such characters are written as visible
escapes (``\x00``, :func:`mulegraph.core.escape.xml_text`). Every file written is well-formed.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import networkx as nx

from mulegraph.core.atomic import atomic_path
from mulegraph.core.errors import InputError
from mulegraph.core.escape import has_xml_illegal, xml_text

__all__ = ["EXPORT_FORMATS", "portable_graph", "to_cytoscape", "write_graphml", "write_gexf", "write_json", "export_graph", "atomic_write"]

#: file suffix -> format name
EXPORT_FORMATS = {".graphml": "graphml", ".gexf": "gexf", ".json": "json", ".cyjs": "json"}


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` for a temporary file next to ``path``, then rename it into place.

    See :func:`mulegraph.atomic.atomic_path`; this adds the check that the output folder exists.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("the output folder does not exist; create it first or choose another --out.")
    with atomic_path(path) as tmp:
        write(str(tmp))
    return path


def _portable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)):
        if isinstance(value, float) and value != value:  # NaN
            return None
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (list, tuple, set, dict)):
        return json.dumps(list(value) if isinstance(value, (set, tuple)) else value, default=str)
    try:  # numpy scalars
        return value.item()
    except AttributeError:
        return str(value)


def _unify(records: list[dict]) -> None:
    """Make each attribute one type across records: int+float -> float; anything mixed -> str."""
    kinds: dict[str, set[type]] = {}
    for rec in records:
        for k, v in rec.items():
            kinds.setdefault(k, set()).add(type(v))
    for k, ts in kinds.items():
        if len(ts) <= 1:
            continue
        if ts <= {int, float}:
            conv = float
        else:
            conv = str
        for rec in records:
            if k in rec:
                rec[k] = conv(rec[k])


def portable_graph(graph: nx.Graph) -> nx.MultiDiGraph:
    """A copy of ``graph`` as a MultiDiGraph whose attributes GraphML and GEXF can hold.

    Node ids become strings; each edge's key is its ``txn_id`` when it has one.
    """
    g = nx.MultiDiGraph()
    g.graph.update({k: v for k, v in ((k, _portable(v)) for k, v in graph.graph.items()) if v is not None})
    nodes = [(str(n), {k: p for k, p in ((k, _portable(v)) for k, v in d.items()) if p is not None}) for n, d in graph.nodes(data=True)]
    _unify([d for _, d in nodes])
    g.add_nodes_from(nodes)
    if graph.is_multigraph():
        it = graph.edges(keys=True, data=True)
    else:
        it = ((u, v, None, d) for u, v, d in graph.edges(data=True))
    edges = []
    for u, v, key, d in it:
        attrs = {k: p for k, p in ((k, _portable(val)) for k, val in d.items()) if p is not None}
        k = attrs.get("txn_id", key)
        edges.append((str(u), str(v), None if k is None else str(k), attrs))
    _unify([e[3] for e in edges])
    for u, v, k, attrs in edges:
        g.add_edge(u, v, key=k, **attrs)
    return g


def to_cytoscape(graph: nx.Graph) -> dict:
    """The graph in Cytoscape.js / Cytoscape desktop JSON (``elements.nodes`` and ``elements.edges``)."""
    g = portable_graph(graph)
    nodes = [{"data": {"id": n, "name": n, **d}} for n, d in g.nodes(data=True)]
    edges = []
    for i, (u, v, k, d) in enumerate(g.edges(keys=True, data=True)):
        data = {"id": str(k) if k is not None else f"e{i}", "source": u, "target": v}
        data.update({a: b for a, b in d.items() if a not in ("id", "source", "target")})
        edges.append({"data": data})
    return {"format_version": "1.0", "generated_by": "mulegraph", "data": dict(g.graph), "directed": True,
            "multigraph": True, "elements": {"nodes": nodes, "edges": edges}}


def _xml_graph(graph: nx.Graph) -> nx.MultiDiGraph:
    """:func:`portable_graph` for an XML file: ids XML cannot carry refused, attribute text made well-formed."""
    g = portable_graph(graph)
    if any(has_xml_illegal(n) for n in g.nodes) or any(has_xml_illegal(k) for _, _, k in g.edges(keys=True)):
        raise InputError(
            "an account or transfer id in the graph holds a control character that GraphML and GEXF (XML 1.0) "
            "cannot carry; export it as .json instead."
        )
    for attrs in [g.graph, *(d for _, d in g.nodes(data=True)), *(d for _, _, d in g.edges(data=True))]:
        for k, v in attrs.items():
            if has_xml_illegal(v):
                attrs[k] = xml_text(v)
    return g


def write_graphml(graph: nx.Graph, path: str | os.PathLike) -> Path:
    """Write GraphML (reload with ``nx.read_graphml(path, force_multigraph=True)``)."""
    g = _xml_graph(graph)
    return atomic_write(path, lambda tmp: nx.write_graphml(g, tmp, named_key_ids=True))


def write_gexf(graph: nx.Graph, path: str | os.PathLike) -> Path:
    """Write GEXF 1.2 for Gephi (reload with ``nx.read_gexf(path)``)."""
    g = _xml_graph(graph)
    # GEXF reserves "label" for nodes; the account id is the label Gephi shows
    for n, d in g.nodes(data=True):
        d.setdefault("label", n)
    for _, _, k, d in g.edges(keys=True, data=True):
        d.pop("id", None)
        if k is not None:
            d["id"] = k
    return atomic_write(path, lambda tmp: nx.write_gexf(g, tmp))


def write_json(graph: nx.Graph, path: str | os.PathLike) -> Path:
    """Write Cytoscape JSON (see :func:`to_cytoscape`)."""
    doc = to_cytoscape(graph)

    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, ensure_ascii=True)

    return atomic_write(path, _w)


def export_graph(graph: nx.Graph, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``graph`` as GraphML, GEXF or JSON, chosen by ``fmt`` or the file suffix."""
    path = Path(path)
    fmt = fmt or EXPORT_FORMATS.get(path.suffix.lower())
    writers = {"graphml": write_graphml, "gexf": write_gexf, "json": write_json}
    if fmt not in writers:
        raise InputError(f"cannot export to '{path.suffix or fmt}'; use a .graphml, .gexf or .json file.")
    return writers[fmt](graph, path)
