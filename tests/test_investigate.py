"""Investigation views: ego graphs, timeline, summary, reasons, decisions, pictures."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone

import networkx as nx
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mulegraph.core.config import FeatureConfig
from mulegraph.investigate.draw import draw_graph, pair_edges, save_picture, to_html
from mulegraph.core.errors import InputError, StoreError
from mulegraph.investigate import Investigation, load_scores, open_investigation

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
SCHEMA = {"txn_id": pl.String, "ts": pl.Datetime("us", "UTC"), "src_account": pl.String, "dst_account": pl.String,
          "amount": pl.Float64, "currency": pl.String, "channel": pl.String}


def frame(rows):
    """rows: (txn_id, hour, src, dst, amount)"""
    return pl.DataFrame(
        [(t, T0 + timedelta(hours=h), s, d, float(a), "EUR", "TRANSFER") for t, h, s, d, a in rows],
        schema=SCHEMA, orient="row",
    )


ROWS = [
    ("t1", 1, "A", "B", 100), ("t2", 2, "B", "C", 90), ("t3", 3, "C", "D", 80), ("t4", 4, "D", "E", 70),
    ("t5", 5, "B", "A", 5), ("t6", 6, "X", "B", 40), ("t7", 6, "B", "Y", 35),
]


# ------------------------------------------------------------------------------ ego graphs


def ref_ego(rows, focus, hops, hub_degree, expand_hubs=False):
    """Plain BFS over the undirected account graph; hubs (other than the focus) do not expand."""
    nbrs = defaultdict(set)
    for _, _, s, d, _ in rows:
        nbrs[s].add(d)
        nbrs[d].add(s)
    dist = {focus: 0}
    q = deque([focus])
    while q:
        a = q.popleft()
        if dist[a] == hops:
            continue
        if a != focus and not expand_hubs and len(nbrs[a]) > hub_degree:
            continue
        for b in sorted(nbrs[a]):
            if b not in dist:
                dist[b] = dist[a] + 1
                q.append(b)
    edges = sorted(t for t, _, s, d, _ in rows if s in dist and d in dist)
    return dist, edges


def test_ego_graph_edges_carry_transfers():
    g = Investigation(frame(ROWS)).ego_graph("B", hops=1)
    assert isinstance(g, nx.MultiDiGraph)
    assert set(g.nodes) == {"A", "B", "C", "X", "Y"}
    assert sorted(k for _, _, k in g.edges(keys=True)) == ["t1", "t2", "t5", "t6", "t7"]
    e = g.edges["A", "B", "t1"]
    assert e["txn_id"] == "t1" and e["amount"] == 100.0 and e["ts"] == T0 + timedelta(hours=1)
    assert g.nodes["B"]["focus"] and g.nodes["B"]["hop"] == 0 and g.nodes["C"]["hop"] == 1
    assert g.number_of_edges("B", "A") == 1 and g.number_of_edges("A", "B") == 1


def test_ego_graph_window_and_limits():
    inv = Investigation(frame(ROWS))
    g = inv.ego_graph("B", hops=1, window="2h", as_of=T0 + timedelta(hours=6))
    assert set(g.nodes) == {"B", "A", "X", "Y"}  # the window (4h, 6h] holds t5, t6 and t7 only
    assert sorted(k for _, _, k in g.edges(keys=True)) == ["t5", "t6", "t7"]
    with pytest.raises(InputError, match="more than 3 accounts"):
        inv.ego_graph("B", hops=2, max_nodes=3)
    with pytest.raises(InputError, match="no transfers"):
        inv.ego_graph("NOPE")


def test_ego_graph_hubs_shown_not_expanded():
    rows = ROWS + [(f"h{i}", 7, f"P{i}", "C", 1) for i in range(5)]
    inv = Investigation(frame(rows), config=FeatureConfig(hub_degree=4))
    g = inv.ego_graph("B", hops=3)
    assert g.nodes["C"]["is_hub"]
    assert "D" not in g and not any(n.startswith("P") for n in g)
    g = inv.ego_graph("B", hops=3, expand_hubs=True)
    assert {"D", "E", "P0"} <= set(g.nodes)
    # the focus account is expanded even when it is a hub itself
    g = inv.ego_graph("C", hops=1)
    assert {"B", "D", "P0"} <= set(g.nodes)


@st.composite
def small_logs(draw):
    n_acc = draw(st.integers(2, 8))
    n_tx = draw(st.integers(1, 18))
    rows = [
        (f"t{i:02d}", draw(st.integers(0, 20)), f"a{draw(st.integers(0, n_acc - 1))}", f"a{draw(st.integers(0, n_acc - 1))}",
         draw(st.integers(1, 50)))
        for i in range(n_tx)
    ]
    focus = draw(st.sampled_from(sorted({r[2] for r in rows} | {r[3] for r in rows})))
    return rows, focus


@given(data=small_logs(), hops=st.integers(0, 3), hub_degree=st.sampled_from([1, 2, 1000]))
def test_ego_graph_matches_reference(data, hops, hub_degree):
    rows, focus = data
    g = Investigation(frame(rows), config=FeatureConfig(hub_degree=hub_degree)).ego_graph(focus, hops=hops)
    dist, edges = ref_ego(rows, focus, hops, hub_degree)
    assert {n: d["hop"] for n, d in g.nodes(data=True)} == dist
    assert sorted(k for _, _, k in g.edges(keys=True)) == edges
    if hub_degree == 1000:  # no hubs: exactly networkx's ego graph on the undirected view
        full = nx.MultiDiGraph()
        full.add_edges_from((s, d, t) for t, _, s, d, _ in rows)
        ref = nx.ego_graph(full, focus, radius=hops, undirected=True)
        assert set(g.nodes) == set(ref.nodes)
        assert sorted(k for _, _, k in g.edges(keys=True)) == sorted(k for _, _, k in ref.edges(keys=True))


# ------------------------------------------------------------------------------ timeline and summary


@given(data=small_logs())
def test_timeline_matches_loop(data):
    rows, focus = data
    tl = Investigation(frame(rows)).timeline(focus)
    events = []
    for t, h, s, d, a in rows:
        if d == focus:
            events.append((h, "in", t, float(a)))
        if s == focus:
            events.append((h, "out", t, -float(a)))
    events.sort()
    bal, want = 0.0, []
    for h, kind, t, f in events:
        bal += f
        want.append((t, kind, bal))
    got = list(zip(tl["txn_id"].to_list(), tl["direction"].to_list(), tl["balance"].to_list()))
    assert [(t, k) for t, k, _ in got] == [(t, k) for t, k, _ in want]
    assert [b for _, _, b in got] == pytest.approx([b for _, _, b in want])


def test_timeline_columns_and_last():
    tl = Investigation(frame(ROWS)).timeline("B", last=2)
    assert tl.columns == ["ts", "txn_id", "direction", "counterparty", "amount", "flow", "balance", "channel"]
    assert tl["txn_id"].to_list() == ["t6", "t7"]  # equal times: inbound first
    assert tl["balance"].to_list() == pytest.approx([45.0, 10.0])


def test_account_summary():
    s = Investigation(frame(ROWS)).account_summary("B")
    assert (s.n_in, s.n_out) == (2, 3)
    assert s.total_in == pytest.approx(140.0) and s.total_out == pytest.approx(130.0)
    assert (s.senders, s.recipients, s.counterparties) == (2, 3, 4)
    assert s.first_seen == T0 + timedelta(hours=1) and s.last_seen == T0 + timedelta(hours=6)
    assert s.currencies == ["EUR"] and s.channels == ["TRANSFER"] and s.is_hub is False
    assert s.score is None and s.as_dict()["account_id"] == "B"
    with pytest.raises(InputError) as err:
        Investigation(frame(ROWS)).account_summary("SECRET-9")
    assert "SECRET" not in str(err.value)


# ------------------------------------------------------------------------------ reasons and scores


def scores_frame():
    reasons = [
        {"code": "PASSTHROUGH_24H", "feature": "passthrough_share_24h", "family": "passthrough",
         "text": "most of what arrived left within 24h", "value": 0.93, "percentile": 99.1, "txn_ids": ["t1", "t2"]},
        {"code": "FAN_OUT", "feature": "out_cp", "family": "fan", "text": "3 recipients", "value": 3,
         "percentile": 80.0, "txn_ids": ["t7", "missing"]},
        {"code": "PASSTHROUGH_24H", "feature": "passthrough_share_72h", "family": "passthrough",
         "text": "all of it left within 72h", "value": 1.0, "percentile": 98.0, "txn_ids": ["t6", "t7", "t3"]},
    ]
    return pl.DataFrame({
        "account_id": ["B", "C"], "score": [0.9, 0.2], "rank": [1, 2],
        "reasons": [json.dumps(reasons), "[]"], "model_version": ["m1", "m1"], "run_id": ["r1", "r1"],
    })


def test_explain_with_evidence():
    inv = Investigation(frame(ROWS), scores=scores_frame())
    ex = inv.explain("B")
    assert ex["code"].to_list() == ["PASSTHROUGH_24H", "FAN_OUT", "PASSTHROUGH_24H"]
    assert ex["reason"].to_list() == [1, 2, 3]
    assert ex["n_transfers"].to_list() == [2, 1, 3]  # an id missing from the store is not evidence
    assert ex["evidence_total"].to_list() == pytest.approx([190.0, 35.0, 155.0])
    assert ex["score"][0] == pytest.approx(0.9) and ex["rank"][0] == 1
    ev = inv.evidence("B", "PASSTHROUGH_24H")
    assert ev["txn_id"].to_list() == ["t1", "t2", "t3", "t6", "t7"]
    assert ev["direction"].to_list() == ["in", "out", "other", "in", "out"]
    assert inv.evidence("B", reason=2)["txn_id"].to_list() == ["t7"]
    assert inv.explain("C").height == 0
    with pytest.raises(InputError, match="not in the run"):
        inv.explain("ZZ")
    with pytest.raises(InputError, match="no run is open"):
        Investigation(frame(ROWS)).explain("B")
    s = inv.account_summary("B")
    assert s.score == pytest.approx(0.9) and s.rank == 1
    g = inv.ego_graph("B", hops=1)
    assert g.nodes["B"]["score"] == pytest.approx(0.9) and "score" not in g.nodes["A"]


def test_explain_reads_struct_and_json_reasons_alike(tmp_path):
    """Scores carry reasons as a List(Struct) column; old run folders as JSON text."""
    from mulegraph.core.schema import EXPLAIN_SCHEMA, REASONS_DTYPE, as_reasons

    legacy = scores_frame()
    struct = as_reasons(legacy)
    assert struct.schema["reasons"] == REASONS_DTYPE
    a = Investigation(frame(ROWS), scores=legacy).explain("B")
    b = Investigation(frame(ROWS), scores=struct).explain("B")
    assert a.equals(b) and dict(a.schema) == EXPLAIN_SCHEMA
    assert a["value"].to_list() == [0.93, 3.0, 1.0] and a["txn_ids"][1].to_list() == ["t7", "missing"]
    struct.write_parquet(tmp_path / "scores.parquet")
    assert Investigation(frame(ROWS), scores=load_scores(tmp_path)).explain("B").equals(a)
    assert dict(Investigation(frame(ROWS), scores=struct).explain("C").schema) == EXPLAIN_SCHEMA
    bare = Investigation(frame(ROWS), scores=legacy.drop("reasons")).explain("B")
    assert bare.height == 0 and dict(bare.schema) == EXPLAIN_SCHEMA
    damaged = legacy.with_columns(pl.lit("not json").alias("reasons"))
    with pytest.raises(InputError, match="reasons for the account cannot be read"):
        Investigation(frame(ROWS), scores=damaged).explain("B")


def test_load_scores_forms(tmp_path):
    sf = scores_frame()
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    sf.write_parquet(run / "scores.parquet")
    (tmp_path / "runs" / "latest").write_text("r1", encoding="utf-8")
    assert load_scores(run).equals(sf)
    assert load_scores(tmp_path / "runs" / "latest").equals(sf)
    assert load_scores(tmp_path / "runs").equals(sf)
    sf.write_csv(tmp_path / "s.csv")
    assert load_scores(tmp_path / "s.csv")["account_id"].to_list() == ["B", "C"]
    with pytest.raises(InputError, match="does not exist"):
        load_scores(tmp_path / "nothing.parquet")
    (tmp_path / "bad.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError):
        load_scores(tmp_path / "bad.txt")
    empty = tmp_path / "emptyrun"
    empty.mkdir()
    with pytest.raises(InputError, match="no scores.parquet"):
        load_scores(empty)


# ------------------------------------------------------------------------------ store and decisions


def test_open_store_and_record_decision(tmp_path):
    from mulegraph.ingest import ingest
    from mulegraph.io.store import Store

    src = tmp_path / "export.parquet"
    frame(ROWS).write_parquet(src)
    ingest([src], tmp_path / "store")
    sf = scores_frame()
    sf.write_parquet(tmp_path / "scores.parquet")
    inv = open_investigation(tmp_path / "store", run=tmp_path / "scores.parquet")
    assert inv.account_summary("B").n_out == 3
    tr = inv.trace("A", hops=3)
    assert tr.traced_by_hop()[1] == pytest.approx(100.0)
    mem = open_investigation(tmp_path / "store", in_memory=True)
    assert mem.trace("A", hops=3).to_frame().equals(tr.to_frame())
    assert mem.timeline("B").equals(inv.timeline("B"))
    inv.record_decision("B", "confirmed", note="seen the chain")
    dec = Store.open(tmp_path / "store").decisions()
    assert dec["account_id"].to_list() == ["B"] and dec["decision"].to_list() == ["confirmed"]
    assert inv.account_summary("B").decision == "confirmed"
    with pytest.raises(InputError, match="confirmed"):
        inv.record_decision("B", "maybe")
    with pytest.raises(StoreError):
        Investigation(frame(ROWS)).record_decision("B", "cleared")
    with pytest.raises(StoreError):
        open_investigation(tmp_path / "no-store")


# ------------------------------------------------------------------------------ pictures


def test_pair_edges_merge_transfers():
    g = Investigation(frame(ROWS + [("t8", 9, "A", "B", 50)])).ego_graph("A", hops=1)
    pairs = {(p["u"], p["v"]): p for p in pair_edges(g)}
    assert pairs[("A", "B")]["n"] == 2 and pairs[("A", "B")]["value"] == pytest.approx(150.0)
    tr = Investigation(frame(ROWS)).trace("A", hops=3)
    pairs = {(p["u"], p["v"]): p for p in pair_edges(tr.to_graph())}
    assert pairs[("B", "C")]["value"] == pytest.approx(90.0)  # traced value, not the amount


def test_pictures(tmp_path):
    inv = Investigation(frame(ROWS), scores=scores_frame())
    g = inv.ego_graph("B", hops=2)
    fig = draw_graph(g, title="B")
    assert len(fig.axes) == 2  # drawing and the score colour bar
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "B" in texts and any("100" in t for t in texts)
    png = save_picture(g, tmp_path / "ego.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trail = inv.trace("A", hops=4).to_graph()
    assert save_picture(trail, tmp_path / "trail.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(InputError, match="cannot draw"):
        save_picture(g, tmp_path / "x.bmp")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_html_is_offline_and_escaped(tmp_path):
    rows = ROWS + [("t9", 8, "<script>alert(1)</script>", "B", 3)]
    g = Investigation(frame(rows)).ego_graph("B", hops=1)
    page = to_html(g, title="B & co")
    assert "http" not in page.lower() and "src=" not in page and "@import" not in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert page.count("<circle") + page.count("<rect") == g.number_of_nodes()
    assert page.count('class="e"') == len(pair_edges(g))
    assert "wheel" in page and "data-info" in page
    import xml.etree.ElementTree as ET

    svg = page[page.index("<svg"): page.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg.replace("&middot;", "&#183;"))  # the SVG part is well-formed XML
    assert root.tag == "svg"
    out = save_picture(g, tmp_path / "view.html")
    assert out.read_text(encoding="utf-8") == to_html(g, title="mulegraph")


def test_html_data_cannot_close_the_script():
    evil = "</script><script>alert(1)</script>"
    rows = ROWS + [("t9", 8, evil, "B", 3), ("t10", 9, "B", "x'&<y>", 2)]
    page = to_html(Investigation(frame(rows)).ego_graph("B", hops=1), title=evil)
    assert page.count("<script") == 1 and page.count("</script>") == 1
    assert page.rstrip().endswith("</script></body></html>")
    assert evil not in page and "alert(1)" in page  # shown, as escaped text
    script = page[page.index("<script>") + 8: page.index("</script>")]
    assert "alert" not in script
    view = script[script.index("var view = ") + len("var view = "): script.index(";", script.index("var view = "))]
    assert json.loads(view) == {"size": 1000}


def test_html_has_a_fixed_layout():
    rows = ROWS + [(f"u{i}", 9 + i, "B", f"R{i}", 1 + i) for i in range(12)]
    pages = {to_html(Investigation(frame(rows)).ego_graph("B", hops=2)) for _ in range(4)}
    assert len(pages) == 1


def test_save_graph_chooses_picture_or_graph_file_by_suffix(tmp_path):
    from mulegraph.investigate import SAVE_FORMATS, save_graph

    inv = Investigation(frame(ROWS), scores=scores_frame())
    trail = inv.trace("A", hops=3)
    assert save_graph(trail, tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = save_graph(trail, tmp_path / "t.html").read_text(encoding="utf-8")
    assert "<title>forward trail, fifo, within 72h</title>" in page
    back = nx.read_graphml(save_graph(trail, tmp_path / "t.graphml"), force_multigraph=True)
    assert sorted(k for _, _, k in back.edges(keys=True)) == sorted(trail.transfers["txn_id"].unique())
    doc = json.loads(save_graph(inv.ego_graph("B", hops=1), tmp_path / "ego.json").read_text())
    assert {n["data"]["id"] for n in doc["elements"]["nodes"]} == {"A", "B", "C", "X", "Y"}
    assert save_graph(trail, tmp_path / "t.gexf").read_text().lstrip().startswith("<?xml")
    with pytest.raises(InputError, match="must end in one of"):
        save_graph(trail, tmp_path / "t.txt")
    assert {".png", ".svg", ".pdf", ".html", ".graphml", ".gexf", ".json"} <= set(SAVE_FORMATS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ command line


def test_cli_trace_and_show(tmp_path):
    from typer.testing import CliRunner

    from mulegraph.cli import app
    from mulegraph.ingest import ingest

    src = tmp_path / "export.parquet"
    frame(ROWS).write_parquet(src)
    store = tmp_path / "store"
    ingest([src], store)
    run = tmp_path / "run"
    run.mkdir()
    scores_frame().write_parquet(run / "scores.parquet")
    runner = CliRunner()
    for name in ("t.png", "t.html", "t.graphml", "t.gexf", "t.json"):
        res = runner.invoke(app, ["trace", "A", "--store", str(store), "--hops", "3", "--run", str(run), "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        assert (tmp_path / name).stat().st_size > 0
    back = nx.read_graphml(tmp_path / "t.graphml", force_multigraph=True)
    assert sorted(k for _, _, k in back.edges(keys=True)) == ["t1", "t2", "t3", "t5", "t7"]
    res = runner.invoke(app, ["trace", "D", "--store", str(store), "--backward", "--alloc", "proportional",
                              "--within", "1h", "--out", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b.json").read_text())
    assert {e["data"]["id"] for e in doc["elements"]["edges"]} == {"t3", "t2", "t1"}
    res = runner.invoke(app, ["trace", "B", "--store", str(store), "--txn", "t7", "--hops", "3", "--out", str(tmp_path / "one.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "one.json").read_text())
    assert [e["data"]["id"] for e in doc["elements"]["edges"]] == ["t7"]
    res = runner.invoke(app, ["show", "B", "--store", str(store), "--run", str(run), "--last", "3"])
    assert res.exit_code == 0, res.output
    assert "PASSTHROUGH_24H" in res.output and "t7" in res.output and "0.900" in res.output
    cfg = tmp_path / "mulegraph.toml"
    cfg.write_text('[features]\nhub_accounts = ["B"]\n', encoding="utf-8")
    res = runner.invoke(app, ["trace", "A", "--store", str(store), "--config", str(cfg), "--out", str(tmp_path / "hub.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "hub.json").read_text())
    assert [e["data"]["id"] for e in doc["elements"]["edges"]] == ["t1"]  # B is a hub: not expanded
    res = runner.invoke(app, ["show", "B", "--store", str(store), "--config", str(cfg)])
    assert res.exit_code == 0 and "yes (not expanded" in res.output
    res = runner.invoke(app, ["show", "SECRET-1", "--store", str(store)])
    assert res.exit_code == 2 and "SECRET" not in res.output
    res = runner.invoke(app, ["trace", "A", "--store", str(store), "--out", str(tmp_path / "t.txt")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["trace", "A", "--store", str(tmp_path / "nostore"), "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2


@pytest.mark.slow
def test_installed_command_runs(tmp_path):
    import subprocess
    import sys

    from mulegraph.ingest import ingest

    src = tmp_path / "export.parquet"
    frame(ROWS).write_parquet(src)
    ingest([src], tmp_path / "store")
    out = tmp_path / "trail.gexf"
    res = subprocess.run(
        [sys.executable, "-m", "mulegraph", "trace", "A", "--store", str(tmp_path / "store"), "--hops", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and out.is_file()
    res = subprocess.run([sys.executable, "-m", "mulegraph", "show", "NOT-THERE", "--store", str(tmp_path / "store")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "NOT-THERE" not in res.stderr and res.stderr.startswith("error:")


def test_large_drawings_label_a_subset():
    rows = [(f"s{i}", i % 24, f"P{i:03d}", "HUBLESS", 1 + i) for i in range(130)]
    scores = pl.DataFrame({"account_id": [f"P{i:03d}" for i in range(130)], "score": [i / 130 for i in range(130)]})
    g = Investigation(frame(rows), scores=scores).ego_graph("HUBLESS", hops=1)
    fig = draw_graph(g)
    labels = [t.get_text() for t in fig.axes[0].texts if t.get_text()]  # arrows are empty annotations
    assert len(labels) == 26 and "HUBLESS" in labels and "P129" in labels and "P000" not in labels
    small = draw_graph(Investigation(frame(rows[:30])).ego_graph("HUBLESS", hops=1))
    assert len([t for t in small.axes[0].texts if t.get_text().startswith("P")]) == 30


_NODE_HARNESS = """
const handlers = {};
const svg = { attrs: {}, style: {}, setAttribute(k, v) { this.attrs[k] = v; },
  getBoundingClientRect() { return { left: 0, top: 0, width: 1000, height: 1000 }; },
  addEventListener(t, f) { handlers['svg:' + t] = f; } };
const info = { textContent: '' };
global.document = { getElementById: (id) => (id === 'view' ? svg : info) };
global.window = { addEventListener(t, f) { handlers['win:' + t] = f; } };
require(process.argv[2]);
handlers['svg:wheel']({ preventDefault() {}, deltaY: -1, clientX: 500, clientY: 500 });
const zoomed = svg.attrs.viewBox;
handlers['svg:mousedown']({ clientX: 100, clientY: 100 });
handlers['win:mousemove']({ clientX: 150, clientY: 120 });
handlers['win:mouseup']();
handlers['svg:mouseover']({ target: { closest: () => ({ getAttribute: () => 'A | score 0.5' }) } });
console.log(JSON.stringify({ zoomed, panned: svg.attrs.viewBox, info: info.textContent }));
"""


def test_html_script_zooms_pans_and_shows_details(tmp_path):
    """The view's inline script, run under node with a stub DOM (skipped where node is missing)."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    page = to_html(Investigation(frame(ROWS)).ego_graph("B", hops=1))
    (tmp_path / "view.js").write_text(page[page.index("<script>") + 8: page.index("</script>")], encoding="utf-8")
    (tmp_path / "harness.js").write_text(_NODE_HARNESS, encoding="utf-8")
    res = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "view.js")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    zoomed = [float(x) for x in out["zoomed"].split()]
    panned = [float(x) for x in out["panned"].split()]
    assert zoomed[2] < 1000 and zoomed[0] > 0  # zoomed in around the pointer
    assert panned[2] == zoomed[2] and panned[0] < zoomed[0]  # dragging right moves the view left
    assert out["info"] == "A\nscore 0.5"
