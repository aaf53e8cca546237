"""Tests of the synthetic data generator (mulegraph.synth)."""

from __future__ import annotations

import polars as pl
import pytest

from mulegraph.errors import InputError
from mulegraph.schema import TRANSFER_SCHEMA
from mulegraph.synth import TYPOLOGIES, file_sha256, generate, write_export


@pytest.fixture(scope="module")
def data():
    return generate(2000, days=30, seed=7)


def test_schema_is_canonical(data):
    assert dict(data.transfers.schema) == TRANSFER_SCHEMA
    assert data.transfers["txn_id"].is_unique().all()
    assert data.transfers.null_count().select(pl.exclude("channel")).sum_horizontal().item() == 0
    assert (data.transfers["amount"] > 0).all()
    assert (data.transfers["src_account"] != data.transfers["dst_account"]).all()


def test_same_seed_same_bytes(tmp_path):
    a = write_export(generate(500, days=10, seed=3), tmp_path / "a")
    b = write_export(generate(500, days=10, seed=3), tmp_path / "b")
    c = write_export(generate(500, days=10, seed=4), tmp_path / "c")
    for name in ("transfers", "labels", "txn_labels", "mapping"):
        assert file_sha256(a[name]) == file_sha256(b[name])
    assert file_sha256(a["transfers"]) != file_sha256(c["transfers"])


def test_every_typology_planted(data):
    planted = set(data.txn_labels.filter("is_laundering")["typology"].unique())
    assert planted == set(TYPOLOGIES)


def test_bad_arguments():
    with pytest.raises(InputError, match="n_accounts"):
        generate(10)
    with pytest.raises(InputError, match="unknown synth option"):
        generate(200, colour="red")
