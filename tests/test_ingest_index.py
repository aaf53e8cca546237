"""The store's id index: appends read only what they must, and every outcome stays the same.

The index (:mod:`mulegraph.ingest.index`) is only a pre-filter: with it, without it (a store
written before it existed), rebuilt after a hash change, or with every id hash colliding, the
same exports must give the same accepted rows, duplicates, conflicts and counts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mulegraph.ingest.commit as commit_module
import mulegraph.ingest.dedupe as dedupe_module
import mulegraph.ingest.index as index_module
from mulegraph.core.schema import ID_INDEX_SCHEMA
from mulegraph.ingest import ingest
from mulegraph.ingest.index import UNKNOWN_DAY, IdIndex, key_expr, merge_plan
from mulegraph.io.store import MANIFEST_NAME, Store

HEADER = "txn_id,ts,src_account,dst_account,amount,currency,channel\n"


def export(path: Path, rows: list[tuple]) -> Path:
    """rows: (txn_id, day of January 2024, amount)."""
    body = "".join(f"{t},2024-01-{d:02d}T10:00:00Z,A{t},B{t},{a},EUR,X\n" for t, d, a in rows)
    path.write_text(HEADER + body, encoding="utf-8")
    return path


@pytest.fixture
def exports(tmp_path) -> list[Path]:
    """Three files: the later ones repeat (same content) and contradict (other amount) earlier ids."""
    a = export(tmp_path / "a.csv", [(f"a{i}", 1 + i % 5, 5) for i in range(40)])
    b = export(
        tmp_path / "b.csv",
        [(f"b{i}", 6 + i % 3, 7) for i in range(30)]
        + [("a1", 2, 5), ("a2", 3, 9), ("a3", 4, 5), ("a3", 4, 5), ("a4", 9, 5)],  # dup, conflict, dup x2, conflict
    )
    c = export(
        tmp_path / "c.csv",
        [(f"c{i}", 10, 1) for i in range(25)] + [("b0", 6, 7), ("b1", 7, 8), ("a5", 1, 5), ("c0", 10, 1), ("c1", 10, 2)],
    )
    return [a, b, c]


def outcome(store_path: Path, reports) -> tuple:
    s = Store.open(store_path)
    counts = [(r.rows_read, r.accepted, r.duplicates, r.quarantined) for r in reports]
    q = s.quarantine()
    return (
        counts,
        s.transfers().sort("txn_id").to_dict(as_series=False),
        sorted(zip(q["source_file"].map_elements(lambda p: Path(p).name, return_dtype=pl.String), q["line"], q["rule"])),
    )


def ingest_each(files: list[Path], store: Path) -> list:
    return [ingest([f], store) for f in files]


def drop_index(store: Path) -> None:
    """Make ``store`` look like one written before the id index existed."""
    man = store / MANIFEST_NAME
    data = json.loads(man.read_text())
    data.pop("id_index", None)
    man.write_text(json.dumps(data))
    shutil.rmtree(store / "index", ignore_errors=True)


def index_matches_store(store: Path) -> None:
    """The runs hold exactly the hashes and days of the stored transfers, each ingest covered once."""
    s = Store.open(store)
    section = s.id_index()
    covered = [i for r in section["runs"] for i in r["ingests"]]
    assert sorted(covered) == sorted(e["ingest_id"] for e in s.manifest())
    runs = [pl.read_parquet(s.path / r["file"]) for r in section["runs"]]
    for run, r in zip(runs, section["runs"]):
        assert run.schema == pl.Schema(ID_INDEX_SCHEMA) and run.height == r["rows"]
        assert run["key"].is_sorted()
    got = np.sort(pl.concat(runs)["key"].to_numpy())
    t = s.transfers()
    want = t.select(key_expr(pl.col("txn_id").hash(7), pl.col("ts").dt.date())).to_series().to_numpy()
    assert got.tolist() == np.sort(want).tolist()
    on_disk = {p.relative_to(s.path).as_posix() for p in (s.path / "index").glob("*")}
    assert on_disk == {r["file"] for r in section["runs"]}


def test_outcomes_across_files(tmp_path, exports):
    got = outcome(tmp_path / "s", ingest_each(exports, tmp_path / "s"))
    counts, transfers, quarantine = got
    assert counts == [(40, 40, 0, 0), (35, 30, 3, 2), (30, 25, 3, 2)]
    assert quarantine == [("b.csv", 32, "txn_id_conflict"), ("b.csv", 35, "txn_id_conflict"),
                          ("c.csv", 27, "txn_id_conflict"), ("c.csv", 30, "txn_id_conflict")]
    index_matches_store(tmp_path / "s")


def test_append_reads_only_the_days_of_ids_found(tmp_path, exports, monkeypatch):
    ingest(exports[:1], tmp_path / "s")
    reads = []
    real_subset, real_scan = Store.scan_subset, Store.scan
    monkeypatch.setattr(Store, "scan_subset", lambda self, *a, **k: reads.append(k) or real_subset(self, *a, **k))
    monkeypatch.setattr(Store, "scan", lambda self, *a, **k: reads.append("all") or real_scan(self, *a, **k))
    fresh = export(tmp_path / "fresh.csv", [(f"n{i}", 20, 3) for i in range(50)])
    ingest([fresh], tmp_path / "s")
    assert reads == []  # no stored id among the new ones: no part of the store is read
    ingest([exports[1]], tmp_path / "s")
    # a1, a2, a3 and a4 are stored on January 2, 3, 4 and 5: those days are read, no other
    assert reads == [{"days": ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]}]


def test_store_without_index_builds_it_on_first_append(tmp_path, exports):
    want = outcome(tmp_path / "ref", ingest_each(exports, tmp_path / "ref"))
    old = tmp_path / "old"
    reports = ingest_each(exports[:2], old)
    drop_index(old)
    assert Store.open(old).id_index() is None
    reports.append(ingest([exports[2]], old))
    assert outcome(old, reports) == want
    index_matches_store(old)


def test_ingest_not_covered_by_the_index_is_indexed(tmp_path, exports):
    """An ingest committed by a mulegraph without the index (the runs do not list it) is indexed."""
    want = outcome(tmp_path / "ref", ingest_each(exports, tmp_path / "ref"))
    s = tmp_path / "s"
    reports = [ingest(exports[:1], s)]
    before = Store.open(s).id_index()
    shutil.copytree(s / "index", tmp_path / "index-before")
    reports.append(ingest([exports[1]], s))
    # what an older mulegraph leaves: its ingest in the manifest, the index as it was before it
    man = s / MANIFEST_NAME
    data = json.loads(man.read_text())
    data["id_index"] = before
    man.write_text(json.dumps(data))
    shutil.copytree(tmp_path / "index-before", s / "index", dirs_exist_ok=True)
    assert IdIndex(Store.open(s), dedupe_module.HASH_NAME).uncovered() == [data["ingests"][1]["ingest_id"]]
    reports.append(ingest([exports[2]], s))
    assert outcome(s, reports) == want
    index_matches_store(s)


def test_index_of_another_hash_is_rebuilt(tmp_path, exports, monkeypatch):
    want = outcome(tmp_path / "ref", ingest_each(exports, tmp_path / "ref"))
    s = tmp_path / "s"
    reports = ingest_each(exports[:2], s)
    old_files = {r["file"] for r in Store.open(s).id_index()["runs"]}
    monkeypatch.setattr(dedupe_module, "HASH_NAME", "another-hash")
    reports.append(ingest([exports[2]], s))
    assert outcome(s, reports) == want
    section = Store.open(s).id_index()
    assert section["hash"] == "another-hash"
    assert not old_files & {r["file"] for r in section["runs"]}
    assert not any((s / f).exists() for f in old_files)
    index_matches_store(s)


def test_every_id_hash_colliding_across_files(tmp_path, exports, monkeypatch):
    """With every id hash equal, the index finds every id on every day: slower, same outcomes."""
    want = outcome(tmp_path / "ref", ingest_each(exports, tmp_path / "ref"))
    monkeypatch.setattr(commit_module, "BATCH_ROWS", 7)
    monkeypatch.setattr(dedupe_module, "_id_hash", lambda ids: pl.Series("__idh", [0] * ids.len(), pl.UInt64))
    assert outcome(tmp_path / "s", ingest_each(exports, tmp_path / "s")) == want


def test_file_without_accepted_rows_is_covered(tmp_path, exports):
    s = tmp_path / "s"
    ingest(exports[:1], s)
    again = export(tmp_path / "again.csv", [("a1", 2, 5), ("a2", 3, 9)])  # a duplicate and a conflict
    r = ingest([again], s)
    assert (r.accepted, r.duplicates, r.quarantined) == (0, 1, 1)
    section = Store.open(s).id_index()
    assert len(section["runs"]) == 1 and len(section["runs"][0]["ingests"]) == 2
    index_matches_store(s)


def test_runs_are_merged_and_stay_few(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "ROW_GROUP_ROWS", 4)  # many row groups: pruning by hash range
    s = tmp_path / "s"
    files = [export(tmp_path / f"d{k}.csv", [(f"d{k}-{i}", 1 + k % 28, 1 + k) for i in range(10)]) for k in range(12)]
    for f in files:
        ingest([f], s)
    repeat = export(tmp_path / "repeat.csv", [("d0-1", 1, 1), ("d5-2", 6, 1), ("d11-3", 12, 12)])
    r = ingest([repeat], s)
    assert (r.accepted, r.duplicates, r.quarantined) == (0, 2, 1)
    section = Store.open(s).id_index()
    assert len(section["runs"]) <= 4  # O(log n) runs, not one per file
    index_matches_store(s)


def test_kill_leftovers_of_the_index_are_removed(tmp_path, exports):
    s = tmp_path / "s"
    ingest(exports[:1], s)
    orphan = s / "index" / "i999999-dead-0000.parquet"
    orphan.write_bytes(b"half a run")
    Store.open(s)
    assert not orphan.exists()
    index_matches_store(s)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=12), st.integers(0, 60))
def test_merge_plan_is_a_binary_counter(sizes, new):
    k = merge_plan(sizes, new)
    acc = new + sum(sizes[len(sizes) - k :])
    assert 0 <= k <= len(sizes)
    assert all(sizes[-1 - j] <= 2 * (new + sum(sizes[len(sizes) - j :])) for j in range(k))
    assert k == len(sizes) or sizes[-1 - k] > 2 * acc


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 30) | st.integers(2**16, 2**16 + 30), max_size=25),
             min_size=1, max_size=4),
    st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 30) | st.integers(2**16, 2**16 + 30), max_size=25),
    st.sampled_from([1, 3, 1 << 18]),
    st.booleans(),
)
def test_find_matches_a_plain_set(tmp_path_factory, runs, query, row_group, odd_day):
    """Hits and their days against Python sets, with runs of several row groups: a hash is a hit
    when a stored hash has its top 48 bits."""
    root = tmp_path_factory.mktemp("idx")
    saved = index_module.ROW_GROUP_ROWS
    index_module.ROW_GROUP_ROWS = row_group
    try:
        store = Store.open(root / "s", create=True)
        rng = np.random.default_rng(len(query))
        days_of: dict[int, set[int]] = {}
        for k, values in enumerate(runs):
            idh = np.array(values, dtype=np.uint64)
            day = rng.integers(19000, 19010, len(idh))
            if odd_day and len(day):
                day[0] = -3  # before 1970: stored as UNKNOWN_DAY
            for h, d in zip(idh.tolist(), day.tolist()):
                days_of.setdefault(h >> 16, set()).add(d if d >= 0 else UNKNOWN_DAY)
            staged = store.staging_dir(f"r{k}")
            keys = pl.select(key_expr(pl.lit(pl.Series(idh, dtype=pl.UInt64)), pl.lit(pl.Series(day, dtype=pl.Int64))))
            section = IdIndex(store, "h").add(staged, f"i{k:06d}", [f"i{k:06d}"], keys.to_series().to_numpy())
            store.commit(None, staged, id_index=section)
        hits, days = IdIndex(store, "h").find(np.sort(np.array(query, dtype=np.uint64)))
    finally:
        index_module.ROW_GROUP_ROWS = saved
    want_hits = sorted({q for q in query if q >> 16 in days_of})
    assert hits.tolist() == want_hits
    want_days = sorted({d for h in want_hits for d in days_of[h >> 16]})
    if UNKNOWN_DAY in want_days:
        assert days is None  # read every day
    else:
        epoch = np.datetime64("1970-01-01")
        assert days == [str(epoch + np.timedelta64(d, "D")) for d in want_days]


def test_transfer_on_a_day_out_of_range_is_found(tmp_path):
    """A transfer stored before 1970 has no day in its key: a lookup that finds it reads every day."""
    old = tmp_path / "old.csv"
    old.write_text(HEADER + "x1,1965-03-01T10:00:00Z,A,B,5,EUR,X\nx2,2024-01-01T10:00:00Z,A,C,5,EUR,X\n")
    ingest([old], tmp_path / "s")
    again = tmp_path / "again.csv"
    again.write_text(HEADER + "x1,1965-03-01T10:00:00Z,A,B,5,EUR,X\nx1,2024-01-02T10:00:00Z,A,B,5,EUR,X\nx3,2024-01-02T10:00:00Z,A,B,1,EUR,X\n")
    r = ingest([again], tmp_path / "s")
    assert (r.accepted, r.duplicates, r.quarantined) == (1, 1, 1)
    assert r.quarantined_by_rule["txn_id_conflict"] == 1
    index_matches_store(tmp_path / "s")
