"""Investigator decisions recorded in the store reach the next training."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.errors import InputError
from mulegraph.ingest import ingest
from mulegraph.io.labels import training_labels
from mulegraph.io.store import Store
from mulegraph.synth import generate


@pytest.fixture
def store_and_labels(tmp_path):
    data = generate(300, 10, seed=5)
    src = tmp_path / "t.parquet"
    data.transfers.write_parquet(src)
    store = tmp_path / "store"
    ingest([src], store)
    labels = tmp_path / "labels.csv"
    data.labels.select("account_id", "is_mule").write_csv(labels)
    return store, labels, data.labels


def _decide(store, rows):
    Store.open(store).add_decisions(
        pl.DataFrame(
            {
                "account_id": [r[0] for r in rows],
                "decision": [r[1] for r in rows],
                "date": [datetime(2025, 2, 1, tzinfo=timezone.utc)] * len(rows),
                "note": ["test"] * len(rows),
            }
        )
    )


def test_store_decisions_override_labels(store_and_labels):
    store, labels, truth = store_and_labels
    mule = truth.filter(pl.col("is_mule"))["account_id"][0]
    clean = truth.filter(~pl.col("is_mule"))["account_id"][0]
    _decide(store, [(mule, "cleared"), (clean, "confirmed")])
    table = training_labels(labels, store=store).sort("account_id")
    got = dict(zip(table["account_id"], table["is_mule"]))
    assert got[mule] is False and got[clean] is True
    assert table.filter(pl.col("account_id").is_in([mule, clean]))["source"].to_list() == ["decision", "decision"]
    # without the store, the file labels stand
    plain = dict(zip(*training_labels(labels).select("account_id", "is_mule").to_dict(as_series=False).values()))
    assert plain[mule] is True and plain[clean] is False


def test_decisions_alone_are_labels(store_and_labels):
    store, _, truth = store_and_labels
    with pytest.raises(InputError, match="no labels"):
        training_labels(None, store=store)
    _decide(store, [(truth["account_id"][0], "confirmed")])
    table = training_labels(None, store=store)
    assert table.height == 1 and table["is_mule"].to_list() == [True]


def test_train_command_reads_store_decisions(store_and_labels, tmp_path, monkeypatch):
    store, labels, truth = store_and_labels
    mule = truth.filter(pl.col("is_mule"))["account_id"][0]
    _decide(store, [(mule, "cleared")])
    seen = {}

    class Stop(Exception):
        pass

    def fake_train(store_, table, **kwargs):
        seen["table"] = table
        raise Stop

    monkeypatch.setattr("mulegraph.scoring.model.train_from_store", fake_train)
    monkeypatch.setenv("MULEGRAPH_DEBUG", "1")
    for flag, expected in (([], False), (["--no-store-decisions"], True)):
        res = CliRunner().invoke(app, ["train", "--store", str(store), "--labels", str(labels), "--out", str(tmp_path / "m"), *flag])
        assert isinstance(res.exception, Stop)
        table = seen["table"]
        assert table.filter(pl.col("account_id") == mule)["is_mule"].item() is expected
