"""Every command finds its settings the same way: --config, else ./mulegraph.toml, else defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from mulegraph.cli import app

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

SETTINGS = """
[store]
path = "bank-store"
mapping = "mapping.toml"

[features]
fan_windows = ["6h"]
passthrough_windows = ["24h"]
hub_degree = 200
"""


def test_commands_read_mulegraph_toml_in_the_working_directory(tmp_path, monkeypatch):
    shutil.copy(SAMPLE / "transfers.csv", tmp_path / "transfers.csv")
    shutil.copy(SAMPLE / "mapping.toml", tmp_path / "mapping.toml")
    (tmp_path / "mulegraph.toml").write_text(SETTINGS)
    monkeypatch.chdir(tmp_path)

    res = runner.invoke(app, ["ingest", "transfers.csv", "--json"])  # store and mapping from the file
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accepted"] > 1000
    assert (tmp_path / "bank-store" / "manifest.json").is_file()
    info = runner.invoke(app, ["store-info", "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["rows"] > 1000

    res = runner.invoke(app, ["features", "--store", "bank-store", "--out", "f.parquet"])
    assert res.exit_code == 0, res.output
    cols = pl.read_parquet(tmp_path / "f.parquet").columns
    assert "fanin_max_6h" in cols and "fanin_max_24h" not in cols  # [features] of ./mulegraph.toml

    res = runner.invoke(app, ["score", "--store", "bank-store", "--out", "s.parquet"])
    assert res.exit_code == 0, res.output
    # --config wins over ./mulegraph.toml
    (tmp_path / "other.toml").write_text('[features]\nfan_windows = ["12h"]\n')
    res = runner.invoke(app, ["features", "--store", "bank-store", "--out", "g.parquet", "--config", "other.toml"])
    assert res.exit_code == 0, res.output
    assert "fanin_max_12h" in pl.read_parquet(tmp_path / "g.parquet").columns
