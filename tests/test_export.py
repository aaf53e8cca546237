"""Graph exports reload in networkx with the same nodes and edges."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import networkx as nx
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mulegraph.core.errors import InputError
from mulegraph.investigate.export import export_graph, portable_graph, to_cytoscape
from mulegraph.investigate import Investigation

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
SCHEMA = {"txn_id": pl.String, "ts": pl.Datetime("us", "UTC"), "src_account": pl.String, "dst_account": pl.String,
          "amount": pl.Float64}


def frame(rows):
    return pl.DataFrame([(t, T0 + timedelta(hours=h), s, d, float(a)) for t, h, s, d, a in rows], schema=SCHEMA, orient="row")


def edge_set(g):
    return sorted((str(u), str(v), str(k)) for u, v, k in g.edges(keys=True))


def reload(path):
    if path.suffix == ".graphml":
        return nx.read_graphml(path, force_multigraph=True)
    if path.suffix == ".gexf":
        g = nx.read_gexf(path)
        if g.is_multigraph():
            return g
        # without parallel edges networkx reads a DiGraph; the edge id is still the txn_id
        m = nx.MultiDiGraph()
        m.add_nodes_from(g.nodes(data=True))
        m.add_edges_from((u, v, d["id"], d) for u, v, d in g.edges(data=True))
        return m
    doc = json.loads(path.read_text(encoding="utf-8"))
    g = nx.MultiDiGraph()
    g.add_nodes_from((n["data"]["id"], n["data"]) for n in doc["elements"]["nodes"])
    g.add_edges_from((e["data"]["source"], e["data"]["target"], e["data"]["id"], e["data"]) for e in doc["elements"]["edges"])
    return g


@st.composite
def logs(draw):
    # ids with characters that need escaping in XML and JSON
    names = draw(st.lists(st.sampled_from(["NL01BANK0001", "acc<2>", "a&b", "c\"d", "x y", "7", "ÄÖ-9"]), min_size=2, max_size=6, unique=True))
    n_tx = draw(st.integers(1, 15))
    rows = [(f"tx{i}", draw(st.integers(0, 30)), draw(st.sampled_from(names)), draw(st.sampled_from(names)),
             draw(st.integers(1, 10_000)) / 100) for i in range(n_tx)]
    return rows


@given(rows=logs(), suffix=st.sampled_from([".graphml", ".gexf", ".json"]), trail=st.booleans())
def test_exports_reload_with_same_nodes_and_edges(tmp_path_factory, rows, suffix, trail):
    inv = Investigation(frame(rows))
    focus = rows[0][2]
    g = inv.trace(focus, hops=3).to_graph() if trail else inv.ego_graph(focus, hops=2)
    path = tmp_path_factory.mktemp("exp") / f"g{suffix}"
    export_graph(g, path)
    back = reload(path)
    assert sorted(map(str, back.nodes)) == sorted(map(str, g.nodes))
    assert edge_set(back) == edge_set(g)
    for u, v, k, d in g.edges(keys=True, data=True):
        assert float(back.edges[u, v, k]["amount"]) == pytest.approx(d["amount"])
        assert back.edges[u, v, k]["ts"] == d["ts"].isoformat()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_portable_graph_attribute_types():
    g = nx.MultiDiGraph()
    g.add_node("a", score=1, tags=["x"], when=T0, missing=None)
    g.add_node("b", score=0.5)
    g.add_edge("a", "b", key="k", txn_id="k", amount=3, ts=T0)
    g.add_edge("b", "a", key="j", txn_id="j", amount=2.5, ts=T0)
    p = portable_graph(g)
    assert p.nodes["a"] == {"score": 1.0, "tags": '["x"]', "when": T0.isoformat()}
    assert isinstance(p.edges["a", "b", "k"]["amount"], float)
    doc = to_cytoscape(g)
    assert {e["data"]["id"] for e in doc["elements"]["edges"]} == {"k", "j"}
    assert doc["elements"]["nodes"][0]["data"]["id"] == "a"


def test_export_errors_and_atomicity(tmp_path):
    g = Investigation(frame([("t1", 1, "A", "B", 5.0)])).ego_graph("A", hops=1)
    with pytest.raises(InputError, match="graphml"):
        export_graph(g, tmp_path / "g.txt")
    with pytest.raises(InputError, match="folder does not exist"):
        export_graph(g, tmp_path / "missing" / "g.graphml")
    target = tmp_path / "g.graphml"
    target.write_text("previous", encoding="utf-8")
    bad = nx.MultiDiGraph()
    bad.add_edge("A", "B", key="t", weird=object())  # becomes text, still writes
    export_graph(bad, target)
    assert nx.read_graphml(target, force_multigraph=True).number_of_edges() == 1
