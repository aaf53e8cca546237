"""kill -9 during an ingest leaves the store as it was before or after that file, never half."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mulegraph.ingest import ingest
from mulegraph.io.store import Store

HEADER = "txn_id,ts,src_account,dst_account,amount,currency,channel\n"

# Fault injection: runs an ingest in a fresh interpreter with the stage function of
# mulegraph.ingest.commit replaced, so that the process SIGKILLs itself when the named stage
# ("read", "validated", "written", "staged", "moved", "committed"; see commit._stage) is reached.
SCRIPT = """
import os, signal, sys
import mulegraph.ingest.commit as commit
from mulegraph.ingest import ingest
stage = sys.argv[3]
if len(sys.argv) > 4:
    commit.BATCH_ROWS = int(sys.argv[4])  # several batches staged before the commit
def kill_at(name):
    if name == stage:
        os.kill(os.getpid(), signal.SIGKILL)
commit._stage = kill_at
ingest([sys.argv[1]], sys.argv[2])
"""


def make_export(path: Path, n: int, seed: int, day0: int) -> Path:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "txn_id": [f"s{seed}-{i}" for i in range(n)],
            "ts": [f"2024-01-{day0 + (i % 5):02d}T{i % 24:02d}:00:00Z" for i in range(n)],
            "src_account": rng.integers(0, 500, n).astype(str),
            "dst_account": (rng.integers(0, 500, n) + 1000).astype(str),
            "amount": np.round(rng.uniform(-5, 500, n), 2),  # some negatives go to quarantine
            "currency": "EUR",
            "channel": "card",
        }
    )
    frame.write_csv(path)
    return path


def state(root: Path):
    s = Store.open(root)  # also removes a killed ingest's leftovers
    t = s.transfers().sort("txn_id")
    committed = {str(root / p) for e in s.manifest() for p in e["parts"]}
    on_disk = {str(p) for p in (root / "transfers").rglob("*.parquet")} if (root / "transfers").exists() else set()
    assert on_disk == committed, "uncommitted parts left in the store"
    runs = {r["file"] for r in (s.id_index() or {}).get("runs", [])}
    indexed = {p.relative_to(root).as_posix() for p in (root / "index").glob("*")} if (root / "index").exists() else set()
    assert indexed == runs, "id index runs on disk differ from those the manifest lists"
    assert sum(r["rows"] for r in s.id_index()["runs"]) == t.height, "the id index does not cover the store"
    assert not (root / ".staging").exists() or not any((root / ".staging").iterdir())
    return (t.to_dict(as_series=False), s.quarantine().drop("ingest_id").sort("line").to_dict(as_series=False),
            [e["sha256"] for e in s.manifest()])


@pytest.fixture
def stores(tmp_path):
    first = make_export(tmp_path / "day1.csv", 500, 1, 1)
    second = make_export(tmp_path / "day2.csv", 3000, 2, 6)
    base = tmp_path / "base"
    ingest([first], base)
    after = tmp_path / "after"
    shutil.copytree(base, after)
    ingest([second], after)
    return base, state(base), state(after), second


def kill_run(store: Path, export: Path, stage: str) -> int:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(export), str(store), stage], capture_output=True, timeout=120)
    return proc.returncode


@pytest.mark.parametrize("stage", ["read", "validated", "written", "staged", "moved", "committed"])
def test_kill_at_each_stage(tmp_path, stores, stage):
    base, before, after, second = stores
    work = tmp_path / f"w-{stage}"
    shutil.copytree(base, work)
    rc = kill_run(work, second, stage)
    assert rc == -9
    got = state(work)
    assert got == (after if stage == "committed" else before)
    # and the ingest can simply be run again
    if stage != "committed":
        ingest([second], work)
    assert state(work) == after


@pytest.mark.slow
def test_kill_at_random_moments(tmp_path, stores):
    base, before, after, second = stores
    big = make_export(tmp_path / "big.csv", 150_000, 3, 11)
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    ingest([big], ref)
    after_big = state(ref)
    rng = np.random.default_rng(7)
    for k, delay in enumerate(rng.uniform(0.3, 4.0, 4)):
        work = tmp_path / f"r{k}"
        shutil.copytree(base, work)
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(big), str(work), "never", "40000"])
        time.sleep(delay)
        proc.kill()  # SIGKILL
        proc.wait()
        got = state(work)
        assert got in (before, after_big)
