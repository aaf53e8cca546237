"""Money trails: hand-built cases with documented values, and agreement with a plain reference."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import networkx as nx
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mulegraph.core.config import FeatureConfig
from mulegraph.core.errors import InputError
from mulegraph.investigate import Investigation, ledger_links

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
SCHEMA = {"txn_id": pl.String, "ts": pl.Datetime("us", "UTC"), "src_account": pl.String, "dst_account": pl.String, "amount": pl.Float64}


def frame(rows):
    """rows: (txn_id, hour, src, dst, amount)"""
    return pl.DataFrame(
        [(t, T0 + timedelta(hours=h), s, d, float(a)) for t, h, s, d, a in rows], schema=SCHEMA, orient="row"
    )


# The worked example of mulegraph.investigate's module docstring.
WORKED = [
    ("x1", 8, "X", "A", 1000),
    ("a1", 9, "A", "M", 800),
    ("y1", 7, "Y", "M", 400),
    ("m1", 10, "M", "B", 500),
    ("m2", 11, "M", "C", 600),
    ("a2", 12, "A", "M", 200),
    ("m3", 13, "M", "D", 150),
]


def traced(trail, hop=None):
    df = trail.to_frame()
    if hop is not None:
        df = df.filter(pl.col("hop") == hop)
    return dict(zip(df["txn_id"].to_list(), df["traced"].to_list()))


def test_worked_example_fifo():
    inv = Investigation(frame(WORKED))
    tr = inv.trace("A", "forward", hops=2, within="72h", alloc="fifo")
    assert traced(tr, 1) == {"a1": 800.0, "a2": 200.0}
    assert traced(tr, 2) == pytest.approx({"m1": 100.0, "m2": 600.0, "m3": 150.0})
    assert tr.traced_by_hop() == pytest.approx({1: 1000.0, 2: 850.0})
    dwell = dict(zip(tr.to_frame()["txn_id"].to_list(), tr.to_frame()["dwell_s"].to_list()))
    # m1: 100 of a1 after 1h; m2: 600 of a1 after 2h; m3: 100 of a1 after 4h and 50 of a2 after 1h
    assert dwell["m1"] == pytest.approx(3600)
    assert dwell["m2"] == pytest.approx(7200)
    assert dwell["m3"] == pytest.approx((100 * 4 + 50 * 1) / 150 * 3600)
    links = {(r["from_txn"], r["to_txn"]): r["value"] for r in tr.links.to_dicts()}
    assert links == pytest.approx({("a1", "m1"): 100.0, ("a1", "m2"): 600.0, ("a1", "m3"): 100.0, ("a2", "m3"): 50.0})
    acc = {r["account_id"]: r for r in tr.accounts.to_dicts()}
    assert acc["A"]["focus"] and acc["A"]["hop"] == 0
    assert acc["M"]["hop"] == 1 and acc["D"]["hop"] == 2
    assert acc["M"]["traced_in"] == pytest.approx(1000.0) and acc["M"]["traced_out"] == pytest.approx(850.0)


def test_worked_example_proportional():
    inv = Investigation(frame(WORKED))
    tr = inv.trace("A", "forward", hops=2, within="72h", alloc="proportional")
    assert traced(tr, 2) == pytest.approx({"m1": 1000 / 3, "m2": 400.0, "m3": 400 / 3})
    assert tr.traced_by_hop()[2] == pytest.approx(2600 / 3)


def test_money_arriving_after_an_outbound_is_not_traced_through_it():
    inv = Investigation(frame(WORKED))
    for alloc in ("fifo", "proportional"):
        tr = inv.trace("A", hops=2, alloc=alloc)
        assert not tr.links.filter((pl.col("from_txn") == "a2") & pl.col("to_txn").is_in(["m1", "m2"])).height
    # a2 alone: M's earlier outbound transfers never carry it
    tr = inv.trace("A", hops=3, txn_ids=["a2"])
    assert traced(tr) == pytest.approx({"a2": 200.0, "m3": 50.0})
    # nothing left after the money arrived: the trail stops
    late = frame([("s", 5, "S", "M", 100), ("o", 4, "M", "Z", 100)])
    tr = Investigation(late).trace("S", hops=3)
    assert traced(tr) == {"s": 100.0}


def test_equal_timestamps_count_as_possibly_after():
    rows = [("s", 5, "S", "M", 100), ("o", 5, "M", "Z", 60)]
    tr = Investigation(frame(rows)).trace("S", hops=2)
    assert traced(tr, 2) == pytest.approx({"o": 60.0})
    back = Investigation(frame(rows)).trace("Z", "backward", hops=2)
    assert traced(back, 2) == pytest.approx({"s": 60.0})


def test_within_limits_the_dwell():
    rows = [("s", 0, "S", "M", 100), ("o1", 2, "M", "Z", 30), ("o2", 5, "M", "Z", 50)]
    inv = Investigation(frame(rows))
    assert traced(inv.trace("S", hops=2, within="3h"), 2) == pytest.approx({"o1": 30.0})
    assert traced(inv.trace("S", hops=2, within="5h"), 2) == pytest.approx({"o1": 30.0, "o2": 50.0})
    # an expired lot no longer blocks the FIFO queue: o2 draws on the newer lot n
    rows2 = [("u", 0, "U", "M", 100), ("n", 4, "S", "M", 40), ("o", 5, "M", "Z", 40)]
    tr = Investigation(frame(rows2)).trace("S", hops=2, within="3h", alloc="fifo")
    assert traced(tr, 2) == pytest.approx({"o": 40.0})
    tr = Investigation(frame(rows2)).trace("S", hops=2, within="6h", alloc="fifo")
    assert traced(tr, 2) == {}


def test_backward_worked_example():
    inv = Investigation(frame(WORKED))
    tr = inv.trace("D", "backward", hops=3, alloc="fifo")
    assert traced(tr, 1) == {"m3": 150.0}
    assert traced(tr, 2) == pytest.approx({"a1": 100.0, "a2": 50.0})
    assert traced(tr, 3) == pytest.approx({"x1": 150.0})
    tr = inv.trace("B", "backward", hops=2, alloc="proportional")
    assert traced(tr, 2) == pytest.approx({"a1": 1000 / 3, "y1": 500 / 3})


def test_hubs_are_shown_but_not_expanded():
    rows = [("a", 1, "A", "H", 100), ("h", 2, "H", "Z", 90)] + [(f"f{i}", 3, f"P{i}", "H", 1) for i in range(5)]
    inv = Investigation(frame(rows), config=FeatureConfig(hub_degree=3))
    tr = inv.trace("A", hops=3)
    assert traced(tr) == {"a": 100.0}
    acc = {r["account_id"]: r for r in tr.accounts.to_dicts()}
    assert acc["H"]["is_hub"] and not acc["H"]["expanded"]
    tr = inv.trace("A", hops=3, expand_hubs=True)
    assert traced(tr, 2) == pytest.approx({"h": 90.0})
    listed = Investigation(frame(rows), config=FeatureConfig(hub_accounts=("H",)))
    assert traced(listed.trace("A", hops=3)) == {"a": 100.0}


def test_trail_graph_and_summary():
    tr = Investigation(frame(WORKED)).trace("A", hops=2)
    g = tr.to_graph()
    assert isinstance(g, nx.MultiDiGraph)
    assert set(g.nodes) == {"A", "M", "B", "C", "D"}
    assert sorted(k for _, _, k in g.edges(keys=True)) == ["a1", "a2", "m1", "m2", "m3"]
    assert g.edges["M", "D", "m3"]["traced"] == pytest.approx(150.0)
    assert g.nodes["A"]["focus"] is True
    s = tr.summary()
    assert s["transfers"].to_list() == [2, 3] and s["accounts"].to_list() == [1, 3]


def test_errors_do_not_leak_ids():
    inv = Investigation(frame(WORKED))
    with pytest.raises(InputError, match="no transfers") as err:
        inv.trace("SECRET-ACCOUNT-42")
    assert "SECRET" not in str(err.value)
    with pytest.raises(InputError, match="allocation"):
        inv.trace("A", alloc="lifo")
    with pytest.raises(InputError, match="direction"):
        inv.trace("A", direction="sideways")
    with pytest.raises(InputError, match="within"):
        inv.trace("A", within="soon")


def test_ledger_links_conserve_money():
    ev = pl.DataFrame({"txn_id": ["i1", "i2", "o1", "o2"], "t": [0, 10, 20, 30], "amount": [50.0, 70.0, 100.0, 40.0],
                       "is_in": [True, True, False, False]})
    for alloc in ("fifo", "proportional"):
        links = ledger_links(ev, "72h", alloc)
        out = links.group_by("out_txn").agg(pl.col("value").sum())
        got = dict(zip(out["out_txn"].to_list(), out["value"].to_list()))
        assert got == pytest.approx({"o1": 100.0, "o2": 20.0})


# ------------------------------------------------------------------------------ plain reference


def ref_links(rows, within_h, alloc):
    """Global time sweep per account. FIFO by unit coins (integer amounts); proportional exact."""
    by_acc = defaultdict(list)
    for txn, h, s, d, a in rows:
        by_acc[d].append((h, 0, txn, a))
        by_acc[s].append((h, 1, txn, a))
    links = defaultdict(Fraction)
    for acc, evs in by_acc.items():
        evs.sort()
        if alloc == "fifo":
            coins = []  # (arrival hour, txn) per unit of money, in arrival order
            for h, kind, txn, a in evs:
                if kind == 0:
                    coins.extend([(h, txn)] * int(a))
                    continue
                while coins and coins[0][0] < h - within_h:
                    coins.pop(0)
                take = coins[: int(a)]
                del coins[: int(a)]
                for _, src in take:
                    links[(src, txn)] += 1
        else:
            lots = []  # [hour, txn, remaining]
            for h, kind, txn, a in evs:
                if kind == 0:
                    lots.append([h, txn, Fraction(a)])
                    continue
                pool = [lot for lot in lots if h - within_h <= lot[0] <= h and lot[2] > 0]
                total = sum(lot[2] for lot in pool)
                if total == 0:
                    continue
                x = min(Fraction(a), total)
                for lot in pool:
                    part = lot[2] * x / total
                    links[(lot[1], txn)] += part
                    lot[2] -= part
    return links


def ref_trace(rows, focus, direction, hops, within_h, alloc, hub_degree):
    amount = {t: Fraction(a) for t, _, _, _, a in rows}
    src = {t: s for t, _, s, _, _ in rows}
    dst = {t: d for t, _, _, d, _ in rows}
    nbrs = defaultdict(set)
    for _, _, s, d, _ in rows:
        nbrs[s].add(d)
        nbrs[d].add(s)
    hub = {a for a, n in nbrs.items() if len(n) > hub_degree}
    links = ref_links(rows, within_h, alloc)
    fwd = direction == "forward"
    cur = {t: amount[t] for t in amount if (src[t] if fwd else dst[t]) == focus}
    out = {(1, t): v for t, v in cur.items()}
    for k in range(2, hops + 1):
        nxt = defaultdict(Fraction)
        for (i, o), v in links.items():
            a, b = (i, o) if fwd else (o, i)
            if a in cur:
                at = dst[a] if fwd else src[a]
                if at in hub and at != focus:
                    continue
                nxt[b] += v * cur[a] / amount[a]
        cur = {t: v for t, v in nxt.items() if v > Fraction(1, 10**9)}
        if not cur:
            break
        out.update({(k, t): v for t, v in cur.items()})
    return out


@st.composite
def ledgers(draw):
    n_acc = draw(st.integers(2, 5))
    n_tx = draw(st.integers(1, 16))
    rows = []
    for i in range(n_tx):
        s = draw(st.integers(0, n_acc - 1))
        d = draw(st.integers(0, n_acc - 1))
        rows.append((f"t{i:02d}", draw(st.integers(0, 10)), f"a{s}", f"a{d}", draw(st.integers(1, 20))))
    focus = draw(st.sampled_from(sorted({r[2] for r in rows} | {r[3] for r in rows})))
    return rows, focus


@given(
    data=ledgers(),
    direction=st.sampled_from(["forward", "backward"]),
    hops=st.integers(1, 4),
    within_h=st.sampled_from([1, 3, 100]),
    alloc=st.sampled_from(["fifo", "proportional"]),
    hub_degree=st.sampled_from([1, 2, 1000]),
)
def test_trace_matches_reference(data, direction, hops, within_h, alloc, hub_degree):
    rows, focus = data
    inv = Investigation(frame(rows), config=FeatureConfig(hub_degree=hub_degree))
    tr = inv.trace(focus, direction, hops=hops, within=f"{within_h}h", alloc=alloc, min_value=0.0)
    got = {(r["hop"], r["txn_id"]): r["traced"] for r in tr.to_frame().to_dicts()}
    want = {key: float(v) for key, v in ref_trace(rows, focus, direction, hops, within_h, alloc, hub_degree).items()}
    assert set(got) == set(want)
    for key, v in want.items():
        assert got[key] == pytest.approx(v, rel=1e-9, abs=1e-9)


def test_trace_matches_reference_on_seeded_cases():
    """A fixed batch of random ledgers (denser in chains than the hypothesis draws)."""
    import random

    rng = random.Random(7)
    checked_deep = 0
    for case in range(60):
        n_acc = rng.randint(2, 4)
        rows = [
            (f"t{i:02d}", rng.randint(0, 10), f"a{rng.randrange(n_acc)}", f"a{rng.randrange(n_acc)}", rng.randint(1, 20))
            for i in range(rng.randint(4, 16))
        ]
        focus = rng.choice(sorted({r[2] for r in rows}))
        within_h = rng.choice([1, 2, 4, 100])
        hub_degree = rng.choice([1, 2, 1000])
        inv = Investigation(frame(rows), config=FeatureConfig(hub_degree=hub_degree))
        for direction in ("forward", "backward"):
            for alloc in ("fifo", "proportional"):
                tr = inv.trace(focus, direction, hops=4, within=f"{within_h}h", alloc=alloc, min_value=0.0)
                got = {(r["hop"], r["txn_id"]): r["traced"] for r in tr.to_frame().to_dicts()}
                want = ref_trace(rows, focus, direction, 4, within_h, alloc, hub_degree)
                assert set(got) == set(want), (case, direction, alloc)
                for key, v in want.items():
                    assert got[key] == pytest.approx(float(v), rel=1e-9, abs=1e-9), (case, direction, alloc, key)
                checked_deep += any(h >= 3 for h, _ in want)
    assert checked_deep > 40  # the batch really exercises multi-hop trails


@given(
    rows=st.lists(st.tuples(st.integers(0, 20), st.booleans(), st.integers(1, 50)), min_size=1, max_size=25),
    within_h=st.sampled_from([1, 5, 100]),
    alloc=st.sampled_from(["fifo", "proportional"]),
)
def test_ledger_links_invariants(rows, within_h, alloc):
    ev = pl.DataFrame(
        {"txn_id": [f"x{i:02d}" for i in range(len(rows))], "t": [h * 3_600_000_000 for h, _, _ in rows],
         "amount": [float(a) for _, _, a in rows], "is_in": [b for _, b, _ in rows]}
    )
    links = ledger_links(ev, f"{within_h}h", alloc)
    info = {r["txn_id"]: r for r in ev.to_dicts()}
    for r in links.to_dicts():
        i, o = info[r["in_txn"]], info[r["out_txn"]]
        assert i["is_in"] and not o["is_in"]
        assert 0 <= o["t"] - i["t"] <= within_h * 3_600_000_000  # never from money that came later or too early
        assert r["dwell_s"] == pytest.approx((o["t"] - i["t"]) / 1e6)
        assert r["value"] > 0
    by_out = links.group_by("out_txn").agg(pl.col("value").sum())
    by_in = links.group_by("in_txn").agg(pl.col("value").sum())
    for txn, v in zip(by_out["out_txn"], by_out["value"]):
        assert v <= info[txn]["amount"] + 1e-9
    for txn, v in zip(by_in["in_txn"], by_in["value"]):
        assert v <= info[txn]["amount"] + 1e-9
    # with no expiry an outbound transfer draws everything available up to its amount
    if within_h == 100:
        order = sorted(info.values(), key=lambda r: (r["t"], not r["is_in"], r["txn_id"]))
        pool = 0.0
        drawn = dict(zip(by_out["out_txn"], by_out["value"]))
        for r in order:
            if r["is_in"]:
                pool += r["amount"]
            else:
                take = min(pool, r["amount"])
                assert drawn.get(r["txn_id"], 0.0) == pytest.approx(take, abs=1e-9)
                pool -= take


def test_trace_in_base_currency():
    df = frame([("a", 1, "A", "M", 100), ("m", 2, "M", "B", 100)]).with_columns(
        pl.Series("amount_base", [110.0, None]), pl.Series("currency", ["USD", "EUR"])
    )
    inv = Investigation(df)
    tr = inv.trace("A", hops=2, value="amount_base")
    assert traced(tr) == pytest.approx({"a": 110.0, "m": 100.0})  # m has no base amount: its own amount
    assert traced(inv.trace("A", hops=2)) == pytest.approx({"a": 100.0, "m": 100.0})
    with pytest.raises(InputError, match="amount_base"):
        Investigation(frame(WORKED)).trace("A", value="amount_base")
