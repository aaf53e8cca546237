"""CLI: `mulegraph ingest` and `mulegraph store-info` through typer's runner and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from mulegraph.cli import app

HEADER = "txn_id,ts,src_account,dst_account,amount,currency,channel\n"
BODY = "t1,2024-01-01T10:00:00Z,A,B,5,EUR,card\nt2,2024-01-02,A,C,7,EUR,\nt3,bad,A,B,1,EUR,\nt1,2024-01-01T10:00:00Z,A,B,5,EUR,card\n"
runner = CliRunner()


def export(tmp_path: Path, name="e.csv", body=BODY) -> Path:
    f = tmp_path / name
    f.write_text(HEADER + body)
    return f


def test_ingest_json_then_nothing_new(tmp_path):
    f = export(tmp_path)
    res = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {k: d[k] for k in ("rows_read", "accepted", "quarantined", "duplicates")} == {
        "rows_read": 4, "accepted": 2, "quarantined": 1, "duplicates": 1,
    }
    assert all(isinstance(d[k], int) for k in ("rows_read", "accepted", "quarantined", "duplicates", "accounts"))
    assert d["quarantined_by_rule"]["bad_timestamp"] == 1 and d["accounts"] == 3
    again = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s"), "--json"])
    assert again.exit_code == 3
    d2 = json.loads(again.stdout)
    assert d2["accepted"] == 0 and d2["files"][0]["status"] == "already ingested"


def test_ingest_table_output(tmp_path):
    f = export(tmp_path)
    res = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s")])
    assert res.exit_code == 0
    for word in ("rows read", "accepted", "quarantined", "bad_timestamp", "duplicates", "date range", "accounts"):
        assert word in res.stdout
    g = export(tmp_path, "f.csv", "t9,2024-01-03,B,C,1,EUR,\n")
    res = runner.invoke(app, ["ingest", str(f), str(g), "--store", str(tmp_path / "s")])
    assert res.exit_code == 0  # one new file: success
    assert "already ingested" in res.stdout
    res = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s")])
    assert res.exit_code == 3 and "already ingested" in res.stdout


def test_file_names_with_brackets_are_names_not_patterns_or_markup(tmp_path):
    f = export(tmp_path, "a[bold red]b*.csv")
    res = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accepted"] == 2
    again = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s")])
    assert again.exit_code == 3  # the name printed as it is, not read as Rich markup (wrapping aside)
    assert "a[boldred]b*.csv:alreadyingested" in "".join(again.stdout.split())


def test_store_info(tmp_path):
    runner.invoke(app, ["ingest", str(export(tmp_path)), "--store", str(tmp_path / "s")])
    res = runner.invoke(app, ["store-info", "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    assert d["rows"] == 2 and d["files"] == 1 and d["quarantined"] == 1
    res = runner.invoke(app, ["store-info", "--store", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_labels_out_and_mapping_option(tmp_path):
    f = tmp_path / "ibm.csv"
    f.write_text(
        "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,Amount Paid,"
        "Payment Currency,Payment Format,Is Laundering\n"
        "2022/09/01 00:20,1,A1,2,B1,10,Euro,10,Euro,ACH,1\n"
    )
    out = tmp_path / "labels.csv"
    res = runner.invoke(app, ["ingest", str(f), "--store", str(tmp_path / "s"), "--mapping", "ibm-aml",
                              "--labels-out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["labels_written"] == 1
    assert pl.read_csv(out)["is_laundering"].to_list() == [True]


def test_usage_errors(tmp_path):
    res = runner.invoke(app, ["ingest", str(tmp_path / "none.csv"), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "does not exist" in res.stderr
    res = runner.invoke(app, ["ingest", str(export(tmp_path)), "--store", str(tmp_path / "s"), "--mapping", "nope"])
    assert res.exit_code == 2 and "neither a built-in" in res.stderr
    assert runner.invoke(app, ["ingest", "--help"]).exit_code == 0
    assert runner.invoke(app, ["store-info", "--help"]).exit_code == 0


def test_installed_command_subprocess(tmp_path):
    exe = Path(sys.executable).parent / "mulegraph"
    f = export(tmp_path)
    proc = subprocess.run([str(exe), "ingest", str(f), "--store", str(tmp_path / "s"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accepted"] == 2
    proc = subprocess.run([str(exe), "ingest", str(tmp_path / "missing.csv"), "--store", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
