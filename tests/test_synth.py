"""Tests of the synthetic data generator (mulegraph.synth).

The planted typologies are checked against plain-Python reference checks that walk the planted
transfers of each pattern one by one; hypothesis runs the invariants on many random small logs.
"""

from __future__ import annotations

import datetime as dt
import time
import tomllib
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.errors import InputError
from mulegraph.core.schema import LABEL_SCHEMA, TRANSFER_SCHEMA
from mulegraph.synth import (
    ROLES,
    STRUCTURING_THRESHOLD,
    TYPOLOGIES,
    check_export_folder,
    file_sha256,
    generate,
    mapping_toml,
    write_export,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
#: the exact arguments sample_data/ was generated with (see sample_data/README.md)
SAMPLE_ARGS = ["synth", "--accounts", "1500", "--days", "30", "--seed", "0"]
SAMPLE_FILES = ("transfers.csv", "mapping.toml", "labels.csv", "txn_labels.csv", "accounts.csv")
HOUR = 3600


@pytest.fixture(scope="module")
def data():
    return generate(2000, days=30, seed=7)


# ------------------------------------------------------------------------------------------------
# reference checks: plain loops over the planted transfers
# ------------------------------------------------------------------------------------------------


def _rows(d) -> list[dict]:
    """All transfers joined with their labels and both accounts' roles, as plain dicts."""
    roles = dict(zip(d.accounts["account_id"], d.accounts["role"]))
    out = []
    for r in d.transfers.join(d.txn_labels, on="txn_id").to_dicts():
        r["t"] = r["ts"].timestamp()
        r["src_role"], r["dst_role"] = roles[r["src_account"]], roles[r["dst_account"]]
        out.append(r)
    return out


def _patterns(rows) -> dict[int, list[dict]]:
    pats = defaultdict(list)
    for r in rows:
        if r["is_laundering"]:
            pats[r["pattern_id"]].append(r)
    for p in pats.values():
        p.sort(key=lambda r: (r["t"], r["txn_id"]))
    return pats


def _mules_of(pattern: list[dict]) -> set[str]:
    """Person accounts that both receive and send inside the pattern."""
    got = {r["dst_account"] for r in pattern if r["dst_role"] == "person"}
    sent = {r["src_account"] for r in pattern if r["src_role"] == "person"}
    return got & sent


def check_money_moves_forward(pattern: list[dict], max_delay_h: float = 8.0) -> None:
    """Every mule's outflow leaves after inflow arrived, within hours, never more than came in."""
    for m in _mules_of(pattern):
        balance, last_in, total_in, total_out = 0.0, None, 0.0, 0.0
        for r in pattern:
            if r["dst_account"] == m:
                balance += r["amount"]
                total_in += r["amount"]
                last_in = r["t"]
            elif r["src_account"] == m:
                assert last_in is not None and r["t"] > last_in, "outflow before any inflow"
                assert r["t"] - last_in <= max_delay_h * HOUR, "outflow not within hours of the inflow"
                balance -= r["amount"]
                total_out += r["amount"]
                assert balance >= -1e-6, "mule sent more than it had received"
        assert 0.80 * total_in <= total_out <= 0.98 * total_in + 0.02, (total_in, total_out)


def check_shape(typ: str, pattern: list[dict], all_rows: list[dict], early_cut: float) -> None:
    """The pattern has the structure its typology claims."""
    mules = _mules_of(pattern)
    ins = lambda m: [r for r in pattern if r["dst_account"] == m]  # noqa: E731
    outs = lambda m: [r for r in pattern if r["src_account"] == m]  # noqa: E731
    if typ == "fan_in":
        (m,) = mules
        senders = [r for r in ins(m)]
        assert len({r["src_account"] for r in senders}) >= 5
        assert all(r["src_role"] == "person" for r in senders)
        for r in senders:  # first-time payers: never paid this mule before
            earlier = [x for x in all_rows if x["src_account"] == r["src_account"] and x["dst_account"] == m and x["t"] < r["t"]]
            assert not earlier
    elif typ == "pass_through":
        (m,) = mules
        assert len(ins(m)) >= 2
        for o in outs(m):
            prev = [i for i in ins(m) if i["t"] < o["t"]][-1]
            assert o["t"] - prev["t"] <= 8 * HOUR and o["amount"] <= prev["amount"]
    elif typ in ("stack", "cycle"):
        assert 3 <= len(mules) <= 5
        hops = [r for r in pattern if r["src_account"] in mules and r["dst_account"] in mules]
        for a, b in zip(hops, hops[1:]):
            if b["src_account"] == a["dst_account"]:
                assert b["t"] > a["t"] and 0.899 * a["amount"] <= b["amount"] <= 0.981 * a["amount"]
        if typ == "cycle":
            # the member-to-member hops close a time-respecting loop within 7 days
            path = [hops[0]["src_account"]] + [h["dst_account"] for h in hops]
            assert path[0] == path[-1] and len(set(path[:-1])) == len(hops) == len(mules)
            assert all(h2["t"] > h1["t"] for h1, h2 in zip(hops, hops[1:]))
            assert hops[-1]["t"] - hops[0]["t"] <= 7 * 24 * HOUR
        else:
            first = {h["src_account"] for h in hops} - {h["dst_account"] for h in hops}
            assert len(first) == 1  # a chain: one head
    elif typ == "fan_out":
        (m,) = mules
        (i,) = ins(m)
        o = outs(m)
        assert len({r["dst_account"] for r in o}) >= 5 and all(r["t"] > i["t"] for r in o)
    elif typ == "scatter_gather":
        collectors = [m for m in mules if len(ins(m)) >= 3 and all(r["src_account"] in mules for r in ins(m))]
        assert len(collectors) == 1
        (c,) = collectors
        mids = mules - {c}
        assert len(mids) >= 3
        (src,) = {r["src_account"] for m in mids for r in ins(m)}  # one source scatters
        last = max(r["t"] for r in ins(c))
        assert all(r["t"] > last for r in outs(c))
    elif typ == "gather_scatter":
        (m,) = mules
        assert len({r["src_account"] for r in ins(m)}) >= 4 and len({r["dst_account"] for r in outs(m)}) >= 3
        assert min(r["t"] for r in outs(m)) > max(r["t"] for r in ins(m))
    elif typ == "structuring":
        (m,) = mules
        for r in ins(m):
            assert 0.9 * STRUCTURING_THRESHOLD <= r["amount"] < STRUCTURING_THRESHOLD
    elif typ == "dormant_burst":
        (m,) = mules
        burst_in = ins(m)
        assert len(burst_in) >= 5 and burst_in[-1]["t"] - burst_in[0]["t"] <= 24 * HOUR
        start = burst_in[0]["t"]
        silent = [x for x in all_rows if m in (x["src_account"], x["dst_account"]) and early_cut <= x["t"] < start]
        assert not silent
        assert start - early_cut >= 0.4 * (all_rows[-1]["t"] - all_rows[0]["t"])
    else:  # pragma: no cover
        raise AssertionError(typ)


def check_labels(d, rows) -> None:
    """labels agree with txn_labels: mules are exactly the persons that pass planted money on."""
    pats = _patterns(rows)
    expected: dict[str, set[str]] = defaultdict(set)
    for p in pats.values():
        for m in _mules_of(p):
            expected[m].add(p[0]["typology"])
    got = {r["account_id"]: r["typology"] for r in d.labels.filter("is_mule").to_dicts()}
    assert got == {m: "|".join(sorted(t)) for m, t in expected.items()}
    assert d.labels.filter(~pl.col("is_mule"))["typology"].null_count() == d.labels.filter(~pl.col("is_mule")).height


def check_all(d) -> None:
    """Every invariant on one generated log."""
    tr = d.transfers
    assert dict(tr.schema) == TRANSFER_SCHEMA
    assert tr["txn_id"].is_unique().all()
    assert tr.select(pl.exclude("channel").null_count()).sum_horizontal().item() == 0
    assert (tr["amount"] > 0).all() and (tr["amount"] * 100 - (tr["amount"] * 100).round(0)).abs().max() < 1e-6
    assert (tr["src_account"] != tr["dst_account"]).all()
    assert tr["ts"].is_sorted()
    start = dt.datetime.fromisoformat(d.params["start"])
    assert tr["ts"].min() >= start and tr["ts"].max() < start + dt.timedelta(days=d.params["days"])
    assert (tr["ts"].dt.microsecond() == 0).all()
    accounts = set(d.accounts["account_id"])
    assert set(tr["src_account"]) <= accounts and set(tr["dst_account"]) <= accounts
    assert d.labels["account_id"].to_list() == d.accounts["account_id"].to_list()
    assert dict(d.labels.schema) == LABEL_SCHEMA
    assert d.txn_labels["txn_id"].to_list() == tr["txn_id"].to_list()
    tl = d.txn_labels
    assert (tl["is_laundering"] == tl["pattern_id"].is_not_null()).all()
    assert (tl["is_laundering"] == tl["typology"].is_not_null()).all()
    rows = _rows(d)
    check_labels(d, rows)
    opened = {a: o.timestamp() for a, o in zip(d.accounts["account_id"], d.accounts["opened"]) if o is not None}
    assert all(r["t"] >= opened.get(r["src_account"], -1) and r["t"] >= opened.get(r["dst_account"], -1) for r in rows)
    early = min(3 * 86400, d.params["days"] * 86400 // 10) + start.timestamp()
    for p in _patterns(rows).values():
        check_money_moves_forward(p)
        check_shape(p[0]["typology"], p, rows, early)


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


def test_invariants_on_default_size(data):
    check_all(data)


@given(
    n=st.integers(100, 700),
    days=st.integers(2, 25),
    seed=st.integers(0, 2**32 - 1),
    mule_share=st.sampled_from([0.0, 0.01, 0.05, 0.1]),
    start=st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)),
    activity=st.sampled_from([0.05, 0.17, 0.4]),
    reuse_share=st.sampled_from([0.0, 0.15, 0.6]),
)
def test_invariants_on_random_logs(n, days, seed, mule_share, start, activity, reuse_share):
    d = generate(n, days=days, seed=seed, mule_share=mule_share, start=start.isoformat(), activity=activity,
                 reuse_share=reuse_share)
    check_all(d)
    if mule_share == 0:
        assert not d.labels["is_mule"].any() and not d.txn_labels["is_laundering"].any()
    else:
        assert set(d.txn_labels.filter("is_laundering")["typology"]) == set(TYPOLOGIES)


def test_checks_catch_broken_flows(data):
    """The reference checks are not vacuous: corrupting a planted flow makes them fail."""
    rows = _rows(data)
    pats = _patterns(rows)
    stack = next(p for p in pats.values() if p[0]["typology"] == "stack")
    backwards = [dict(r) for r in stack]
    out = next(r for r in backwards if r["src_account"] in _mules_of(stack))
    out["t"] -= 10 * 24 * HOUR  # leaves before the money arrived
    with pytest.raises(AssertionError):
        check_money_moves_forward(sorted(backwards, key=lambda r: r["t"]))
    greedy = [dict(r) for r in stack]
    for r in greedy:
        if r["src_account"] in _mules_of(stack):
            r["amount"] *= 1.5  # sends on more than it got
    with pytest.raises(AssertionError):
        check_money_moves_forward(greedy)
    fan = next(p for p in pats.values() if p[0]["typology"] == "fan_in")
    (mule,) = _mules_of(fan)
    first = next(r for r in fan if r["dst_account"] == mule)
    prior = dict(first, t=first["t"] - 3600, is_laundering=False, pattern_id=None)
    with pytest.raises(AssertionError):
        check_shape("fan_in", fan, rows + [prior], 0)


def test_new_accounts(data):
    """Some ordinary accounts and about a quarter of the mules are opened during the period."""
    acc = data.accounts.join(data.labels, on="account_id")
    new = acc.filter(pl.col("opened").is_not_null())
    persons = acc.filter(pl.col("role") == "person")
    assert set(new["role"]) == {"person"}
    normal_new = new.filter(~pl.col("is_mule")).height
    assert 0.01 * persons.height <= normal_new <= 0.06 * persons.height
    mules = acc.filter(pl.col("is_mule") & ~pl.col("typology").str.contains("dormant_burst"))
    share = mules["opened"].is_not_null().mean()
    assert 0.1 <= share <= 0.45, share
    # a new mule is opened at most three days before its first planted transfer
    tl = data.transfers.join(data.txn_labels, on="txn_id").filter("is_laundering")
    first = pl.concat([tl.select(pl.col("src_account").alias("account_id"), "ts"), tl.select(pl.col("dst_account").alias("account_id"), "ts")])
    first = first.group_by("account_id").agg(pl.col("ts").min().alias("first"))
    gap = mules.filter(pl.col("opened").is_not_null()).join(first, on="account_id").select((pl.col("first") - pl.col("opened")).dt.total_seconds())
    assert gap.height and (gap.to_series() >= 0).all() and (gap.to_series() <= 3 * 86400).all()


def test_every_typology_planted_with_mule_share(data):
    assert set(data.txn_labels.filter("is_laundering")["typology"].unique()) == set(TYPOLOGIES)
    n_mules = int(data.labels["is_mule"].sum())
    assert 0.015 * 2000 <= n_mules <= 0.04 * 2000
    multi = data.labels.filter(pl.col("typology").str.contains("|", literal=True)).height
    assert multi >= 1  # some mules serve several patterns


def test_size_and_speed_sanity():
    t0 = time.perf_counter()
    d = generate(2000, days=30, seed=1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0  # well under a second when the machine is idle
    expected = 0.17 * 2000 * 30
    assert 0.7 * expected <= d.transfers.height <= 1.3 * expected
    dense = generate(2000, days=30, seed=1, activity=0.5)
    assert dense.transfers.height > 2.2 * d.transfers.height


def test_same_seed_same_bytes(tmp_path):
    a = write_export(generate(500, days=10, seed=3), tmp_path / "a")
    b = write_export(generate(500, days=10, seed=3), tmp_path / "b")
    c = write_export(generate(500, days=10, seed=4), tmp_path / "c")
    for name in a:
        assert file_sha256(a[name]) == file_sha256(b[name])
    assert file_sha256(a["transfers"]) != file_sha256(c["transfers"])
    assert file_sha256(a["labels"]) != file_sha256(c["labels"])


# ---- background realism: no single trait gives the mules away ---------------------------------


def test_background_has_legitimate_lookalikes(data):
    tr = data.transfers.join(data.txn_labels, on="txn_id")
    roles = data.accounts.select("account_id", "role")
    mules = set(data.labels.filter("is_mule")["account_id"])
    persons = set(data.accounts.filter(pl.col("role") == "person")["account_id"])
    normal = persons - mules
    legit = tr.filter(~pl.col("is_laundering"))

    # cash: plenty of ordinary people withdraw cash
    cash_users = set(legit.filter(pl.col("channel") == "CASH")["src_account"]) & normal
    assert len(cash_users) >= 0.1 * len(normal)

    # legitimate fast forwarders: an ordinary person passes >= 50% of an inbound on within 2 hours
    inbound = defaultdict(list)
    for r in legit.select("dst_account", "ts", "amount").to_dicts():
        inbound[r["dst_account"]].append((r["ts"], r["amount"]))
    forwarders = set()
    for r in legit.select("src_account", "ts", "amount").to_dicts():
        a = r["src_account"]
        if a in normal and any(0 < (r["ts"] - t).total_seconds() <= 2 * HOUR and r["amount"] >= 0.5 * amt for t, amt in inbound[a]):
            forwarders.add(a)
    assert len(forwarders) >= 10

    # legitimate time-respecting 3-cycles among ordinary people (flatmates settling costs)
    out_by = defaultdict(list)
    p2p_legit = legit.filter(pl.col("src_account").is_in(list(normal)) & pl.col("dst_account").is_in(list(normal)))
    for r in p2p_legit.select("src_account", "dst_account", "ts").to_dicts():
        out_by[r["src_account"]].append((r["ts"], r["dst_account"]))
    week = dt.timedelta(days=7)
    rings = {
        frozenset((a, b, c))
        for a, edges in out_by.items()
        for t1, b in edges
        for t2, c in out_by.get(b, ())
        if t1 < t2 <= t1 + week and c != a
        for t3, back in out_by.get(c, ())
        if back == a and t2 < t3 <= t1 + week
    }
    assert len(rings) >= 3

    # legitimate fan-in from first-time payers: marketplace sellers
    per_pair = legit.group_by("src_account", "dst_account").len()
    one_off = per_pair.filter(pl.col("len") == 1).group_by("dst_account").len().filter(pl.col("dst_account").is_in(list(normal)))
    assert one_off["len"].max() >= 8

    # legitimate amounts just below the reporting threshold
    below = legit.filter((pl.col("amount") >= 0.9 * STRUCTURING_THRESHOLD) & (pl.col("amount") < STRUCTURING_THRESHOLD))
    assert below.height >= 3

    # legitimate hubs: the processor and top merchants take far more senders than any mule
    fan_in = tr.group_by("dst_account").agg(pl.col("src_account").n_unique().alias("senders")).join(roles, left_on="dst_account", right_on="account_id")
    hub = fan_in.filter(pl.col("role").is_in(["processor", "merchant", "biller"]))["senders"].max()
    mule_max = fan_in.filter(pl.col("dst_account").is_in(list(mules)))["senders"].max()
    assert hub >= 5 * mule_max
    # salaries: employers pay many people in one night batch
    sal = legit.filter(pl.col("channel") == "SALARY")
    assert sal.height >= 0.5 * len(persons) and (sal["ts"].dt.hour() < 7).all()
    assert sal.group_by("src_account").len()["len"].max() >= 50

    # heavy-tailed activity: the busiest tenth of people start a large share of transfers
    counts = legit.filter(pl.col("src_account").is_in(list(normal))).group_by("src_account").len()["len"].sort(descending=True)
    assert counts.head(len(counts) // 10).sum() >= 0.25 * counts.sum()

    # a day/night profile: far fewer personal transfers at night than in the afternoon
    p2p = legit.filter(pl.col("channel").is_in(["CARD", "INSTANT"]))
    hours = p2p["ts"].dt.hour()
    assert (hours < 5).sum() * 4 < ((hours >= 12) & (hours < 17)).sum()

    # a couple of currencies and countries
    assert data.transfers["currency"].n_unique() >= 3
    assert data.accounts["country"].n_unique() >= 4
    assert set(data.accounts["role"]) == set(ROLES)


def test_bad_arguments():
    with pytest.raises(InputError, match="n_accounts"):
        generate(10)
    with pytest.raises(InputError, match="days"):
        generate(200, days=1)
    with pytest.raises(InputError, match="unknown synth option"):
        generate(200, colour="red")
    with pytest.raises(InputError, match="currency"):
        generate(200, currency="euro")
    with pytest.raises(InputError, match="start"):
        generate(200, start="yesterday")
    with pytest.raises(InputError, match="hour_profile"):
        generate(200, hour_profile=[1.0] * 23)
    with pytest.raises(InputError, match="new_mule_share"):
        generate(200, new_mule_share=1.5)
    with pytest.raises(InputError, match="mule_share"):
        generate(200, mule_share=0.5)


def test_other_currency_and_start():
    d = generate(300, days=5, seed=2, currency="CHF", start="2024-03-30")
    assert d.transfers["currency"].value_counts(sort=True)["currency"][0] == "CHF"
    assert d.transfers["ts"].min() >= dt.datetime(2024, 3, 30, tzinfo=dt.timezone.utc)


# ---- export, CLI, sample data ------------------------------------------------------------------


def test_export_reads_back_with_its_mapping(tmp_path):
    d = generate(400, days=7, seed=5)
    paths = write_export(d, tmp_path)
    raw = pl.read_csv(paths["transfers"], separator=";", infer_schema=False)
    m = tomllib.loads(paths["mapping"].read_text())
    assert set(m["columns"].values()) | set(m["drop"]) == set(raw.columns)
    back = raw.select(
        pl.col(m["columns"]["txn_id"]).alias("txn_id"),
        pl.col(m["columns"]["ts"]).str.to_datetime(m["timestamp"]["format"], time_zone="UTC", time_unit="us").alias("ts"),
        pl.col(m["columns"]["src_account"]).alias("src_account"),
        pl.col(m["columns"]["dst_account"]).alias("dst_account"),
        # numpy division is correctly rounded (Polars divides by multiplying with 0.01)
        pl.col(m["columns"]["amount"]).cast(pl.Int64).map_batches(lambda c: pl.Series(c.to_numpy() / 100.0)).alias("amount"),
        pl.col(m["columns"]["currency"]).alias("currency"),
        pl.col(m["columns"]["channel"]).alias("channel"),
    )
    assert back.equals(d.transfers)
    labels = pl.read_csv(paths["labels"], schema=LABEL_SCHEMA)
    assert labels.equals(d.labels)
    assert mapping_toml() == paths["mapping"].read_text()


def test_export_refuses_a_file_or_a_store_folder(tmp_path):
    d = generate(200, days=3, seed=1)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_export(d, tmp_path / "afile")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match="store or run folder"):
        write_export(d, tmp_path / "store")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["manifest.json"]
    assert check_export_folder(tmp_path / "new" / "out") == tmp_path / "new" / "out"


def test_summary_counts(data):
    s = data.summary()
    assert s == {
        "transfers": data.transfers.height,
        "accounts": data.labels.height,
        "mules": data.labels.filter(pl.col("is_mule")).height,
        "laundering_transfers": data.txn_labels.filter(pl.col("is_laundering")).height,
    }
    assert s["mules"] > 0 and s["laundering_transfers"] > 0


def test_daily_exports_ingest_as_a_folder(tmp_path):
    from mulegraph.io.store import Store

    res = CliRunner().invoke(app, ["synth", "--accounts", "300", "--days", "5", "--seed", "2", "--daily", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "o" / "exports").glob("transfers_*.csv"))
    assert [f.name for f in files] == [f"transfers_202501{d:02d}.csv" for d in range(1, 6)]
    whole = write_export(generate(300, days=5, seed=2), tmp_path / "whole")["transfers"].read_text().splitlines()
    parts = [f.read_text().splitlines() for f in files]
    assert all(p[0] == whole[0] for p in parts)  # each file has the header
    assert [line for p in parts for line in p[1:]] == whole[1:]
    for f in files:  # every row of a file is booked on that file's day
        day = f.stem.split("_")[1]
        assert all(line.split(";")[1][:10] == f"{day[6:]}.{day[4:6]}.{day[:4]}" for line in f.read_text().splitlines()[1:])
    res = CliRunner().invoke(app, ["ingest", str(tmp_path / "o" / "exports"), "--store", str(tmp_path / "S"),
                                   "--mapping", str(tmp_path / "o" / "mapping.toml"), "--json"])
    assert res.exit_code == 0, res.output
    assert Store.open(tmp_path / "S").transfers().height == len(whole) - 1


def test_cli_synth(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "--accounts", "300", "--days", "7", "--seed", "1", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    import json

    summary = json.loads(res.stdout)
    assert summary["transfers"] == generate(300, days=7, seed=1).transfers.height
    assert all(Path(p).is_file() for p in summary["files"].values())
    bad = runner.invoke(app, ["synth", "--accounts", "300", "--start", "not-a-date", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "start must be an ISO date" in bad.output
    assert "Traceback" not in bad.output
    (tmp_path / "afile").write_text("x")
    clash = runner.invoke(app, ["synth", "--accounts", "300", "--out", str(tmp_path / "afile")])
    assert clash.exit_code == 2 and "Traceback" not in clash.output


def test_sample_data_regenerates_identically(tmp_path):
    res = CliRunner().invoke(app, SAMPLE_ARGS + ["--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for name in SAMPLE_FILES:
        assert file_sha256(tmp_path / name) == file_sha256(SAMPLE / name), name
    assert sum((SAMPLE / n).stat().st_size for n in SAMPLE_FILES) < 5_000_000
    readme = (SAMPLE / "README.md").read_text()
    assert "mulegraph " + " ".join(SAMPLE_ARGS) + " --out sample_data" in readme


def test_installed_command_writes_the_sample(tmp_path):
    """A real process (another hash seed) writes the same bytes as the committed sample."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-m", "mulegraph", *SAMPLE_ARGS, "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1,500 accounts" in proc.stdout
    for name in SAMPLE_FILES:
        assert file_sha256(tmp_path / name) == file_sha256(SAMPLE / name), name


def test_sample_run_config_loads():
    from mulegraph.core.config import load_config

    cfg = load_config(SAMPLE / "mulegraph.toml")
    assert Path(REPO / cfg.store.mapping).is_file()


def test_sample_ingests_with_its_mapping(tmp_path, monkeypatch):
    from mulegraph.io.store import Store

    monkeypatch.chdir(REPO)
    store = tmp_path / "S"
    res = CliRunner().invoke(
        app, ["ingest", "sample_data/transfers.csv", "--store", str(store), "--mapping", "sample_data/mapping.toml", "--json"]
    )
    assert res.exit_code == 0, res.output
    expected = generate(1500, days=30, seed=0).transfers
    got = Store.open(store).transfers().sort("txn_id")
    assert got.height == expected.height
    cols = [c for c in expected.columns if c != "amount"]
    assert got.select(cols).equals(expected.sort("txn_id").select(cols))
    cents = lambda f: (f["amount"] * 100).round(0).cast(pl.Int64)  # noqa: E731
    assert (cents(got) == cents(expected.sort("txn_id"))).all()
