"""The store: opening, reading windows, orphans of a killed ingest, decisions, summary."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from mulegraph.core.errors import InputError, StoreError
from mulegraph.ingest import ingest
from mulegraph.core.schema import DECISION_SCHEMA, TRANSFER_COLUMNS, TRANSFER_SCHEMA
from mulegraph.io.store import QUARANTINE_SCHEMA, Store

UTC = timezone.utc
HEADER = "txn_id,ts,src_account,dst_account,amount,currency,channel\n"


@pytest.fixture
def store(tmp_path):
    rows = [f"t{i},2024-01-{1 + i:02d}T12:00:00Z,A{i % 3},B{i % 4},{i + 1},EUR,card\n" for i in range(10)]
    f = tmp_path / "e.csv"
    f.write_text(HEADER + "".join(rows) + "bad,xx,A,B,1,EUR,\n")
    ingest([f], tmp_path / "s")
    return Store.open(tmp_path / "s")


def test_open_missing_and_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("hi")
    with pytest.raises(StoreError, match="not a mulegraph store"):
        Store.open(tmp_path / "other", create=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        Store.open(tmp_path / "file")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        Store.open(tmp_path / "bad")


def test_empty_store(tmp_path):
    s = Store.open(tmp_path / "new", create=True)
    assert s.transfers().schema == pl.Schema(TRANSFER_SCHEMA)
    assert s.scan().collect().height == 0
    assert s.newest_ts() is None and s.oldest_ts() is None
    assert s.quarantine().schema == pl.Schema(QUARANTINE_SCHEMA)
    assert s.decisions().schema == pl.Schema(DECISION_SCHEMA)
    assert s.summary()["rows"] == 0
    with pytest.raises(InputError, match="no transfers"):
        s.time_window("30d")


def test_scan_and_windows(store):
    t = store.transfers()
    assert tuple(t.columns) == TRANSFER_COLUMNS and t.height == 10
    assert t.schema == pl.Schema(TRANSFER_SCHEMA)
    assert store.newest_ts() == datetime(2024, 1, 10, 12, tzinfo=UTC)
    assert store.oldest_ts() == datetime(2024, 1, 1, 12, tzinfo=UTC)
    w = store.transfers("72h")  # (Jan 7 12:00, Jan 10 12:00]
    assert sorted(w["txn_id"]) == ["t7", "t8", "t9"]
    w2 = store.transfers("2d", as_of="2024-01-05T12:00:00Z", columns=["txn_id", "amount"])
    assert w2.columns == ["txn_id", "amount"] and sorted(w2["txn_id"]) == ["t3", "t4"]
    win = store.time_window("1w")
    assert win.end - win.start == timedelta(days=7)
    assert store.time_window().start is None
    assert store.scan(["src_account"]).collect().columns == ["src_account"]
    with pytest.raises(InputError, match="unknown transfer column"):
        store.scan(["iban"])


def test_window_reads_only_needed_days(store):
    # a window that ends before the store's data starts reads nothing (day pruning)
    assert store.transfers("1d", as_of="2023-12-01").height == 0
    assert store.transfers("all", as_of="2024-01-02T12:00:00Z").height == 2


def test_quarantine_and_summary(store):
    q = store.quarantine()
    assert q["rule"].to_list() == ["bad_timestamp"] and q["line"].to_list() == [11]
    s = store.summary()
    assert s["rows"] == 10 and s["files"] == 1 and s["quarantined"] == 1
    assert s["quarantined_by_rule"]["bad_timestamp"] == 1 and sum(s["quarantined_by_rule"].values()) == 1
    assert s["accounts"] == 7  # A0..A2, B0..B3
    assert s["date_min"].startswith("2024-01-01") and s["date_max"].startswith("2024-01-10")


def test_orphans_are_removed_and_never_read(store):
    root = store.path
    orphan = root / "transfers" / "day=2024-01-01" / "i999999-dead-0.parquet"
    pl.DataFrame({"txn_id": ["zz"]}).write_parquet(orphan)
    (root / ".staging" / "i999999").mkdir(parents=True)
    (root / "quarantine" / "i999999-dead.parquet").write_bytes(b"junk")
    assert store.transfers().height == 10  # not listed in the manifest: invisible
    s2 = Store.open(root)
    assert not orphan.exists() and not (root / ".staging" / "i999999").exists()
    assert not (root / "quarantine" / "i999999-dead.parquet").exists()
    assert s2.transfers().height == 10


def test_open_does_not_clean_while_locked(store):
    import fcntl

    orphan = store.path / "transfers" / "day=2024-01-01" / "i999999-busy-0.parquet"
    orphan.write_bytes(b"in progress")
    with open(store.path / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        Store.open(store.path)
        assert orphan.exists()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    Store.open(store.path)
    assert not orphan.exists()


def test_decisions(store):
    store.add_decisions(pl.DataFrame({"account_id": ["A1", "B2"], "decision": ["confirmed", " Cleared "], "note": ["x", None]}))
    store.add_decisions(pl.DataFrame({"account_id": ["A2"], "decision": ["cleared"],
                                      "date": [datetime(2024, 2, 1, tzinfo=UTC)]}))
    d = Store.open(store.path).decisions()
    assert d.schema == pl.Schema(DECISION_SCHEMA)
    assert d["account_id"].to_list() == ["A1", "B2", "A2"]
    assert d["decision"].to_list() == ["confirmed", "cleared", "cleared"]
    assert d["date"][2] == datetime(2024, 2, 1, tzinfo=UTC)
    with pytest.raises(InputError, match="neither 'confirmed' nor 'cleared'"):
        store.add_decisions(pl.DataFrame({"account_id": ["A1"], "decision": ["maybe"]}))
    with pytest.raises(InputError, match="need column"):
        store.add_decisions(pl.DataFrame({"account_id": ["A1"]}))
    with pytest.raises(InputError, match="non-blank account_id"):
        store.add_decisions(pl.DataFrame({"account_id": [" "], "decision": ["cleared"]}))
    assert Store.open(store.path).decisions().height == 3
    assert store.summary()["decisions"] == 3


def test_optional_columns_appear_when_an_export_has_them(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text(HEADER.strip() + ",src_bank\nt1,2024-01-01,A,B,5,EUR,,SEB\n")
    ingest([f], tmp_path / "s")
    g = tmp_path / "b.csv"
    g.write_text(HEADER + "t2,2024-01-02,A,B,5,EUR,\n")
    ingest([g], tmp_path / "s")
    t = Store.open(tmp_path / "s").transfers().sort("txn_id")
    assert t.columns == list(TRANSFER_COLUMNS) + ["src_bank"]
    assert t["src_bank"].to_list() == ["SEB", None]


def test_manifest_is_json_with_format(store):
    data = json.loads((store.path / "manifest.json").read_text())
    assert data["format"] == "mulegraph-store" and len(data["ingests"]) == 1
    assert all((store.path / p).is_file() for p in data["ingests"][0]["parts"])


def test_parts_hold_only_carried_optional_columns_and_read_back_as_nulls(tmp_path):
    from mulegraph.io.store import STORE_SCHEMA

    g = tmp_path / "b.csv"  # no optional column, ingested first
    g.write_text(HEADER + "t2,2024-01-02T10:00:00Z,A,B,5,EUR,\n")
    ingest([g], tmp_path / "s")
    f = tmp_path / "a.csv"  # two optional columns that are not next to each other
    f.write_text(HEADER.strip() + ",dst_country,amount_base\nt1,2024-01-01T10:00:00Z,A,B,5,EUR,,SE,4.5\n")
    ingest([f], tmp_path / "s")
    s = Store.open(tmp_path / "s")
    parts = [s.path / rel for e in s.manifest() for rel in e["parts"]]
    assert [pl.read_parquet_schema(p).names() for p in parts] == [
        list(TRANSFER_COLUMNS), list(TRANSFER_COLUMNS) + ["dst_country", "amount_base"]
    ]
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(parts[1]).metadata.row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert cols["ts"].statistics.has_min_max and cols["amount"].statistics.has_min_max  # for range filters
    t = s.transfers().sort("txn_id")
    assert t.columns == list(TRANSFER_COLUMNS) + ["dst_country", "amount_base"]
    assert t["dst_country"].to_list() == ["SE", None] and t["amount_base"].to_list() == [4.5, None]
    assert t.schema["amount_base"] == pl.Float64
    w = s.transfers(window="1d", columns=["txn_id", "src_bank", "amount_base"])  # newest day only
    assert w.rows() == [("t2", None, None)] and w.schema["src_bank"] == pl.String
    assert dict(s.scan().collect_schema()) == {c: STORE_SCHEMA[c] for c in t.columns}


def _damaged_store(tmp_path):
    from mulegraph.ingest import ingest
    from mulegraph.synth import generate

    src = tmp_path / "t.parquet"
    generate(200, 5, seed=2).transfers.write_parquet(src)
    ingest([src], tmp_path / "s")
    return Store.open(tmp_path / "s")


def test_missing_part_is_a_store_error(tmp_path):
    store = _damaged_store(tmp_path)
    part = next((tmp_path / "s" / "transfers").rglob("*.parquet"))
    part.unlink()
    with pytest.raises(StoreError, match="damaged: 1 committed part file"):
        store.transfers()
    with pytest.raises(StoreError, match="damaged"):
        store.summary()


def test_corrupt_part_is_a_store_error(tmp_path):
    store = _damaged_store(tmp_path)
    for part in (tmp_path / "s" / "transfers").rglob("*.parquet"):
        part.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(StoreError, match="could not be read"):
        store.transfers()
    with pytest.raises(StoreError, match="could not be read"):
        store.transfers(window="1d")
