"""The same transfers give bit-identical features on every run (a forced re-run must not drift).

Bit for bit across repeated runs, across any order of the input rows, and across thread counts
(``POLARS_MAX_THREADS``, set before polars starts, hence in subprocesses).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mulegraph.features import compute_features
from mulegraph.synth import generate

_SCRIPT = """
import sys
import polars as pl
from mulegraph.features import compute_features
compute_features(pl.read_parquet(sys.argv[1])).write_parquet(sys.argv[2])
"""


@pytest.fixture(scope="module")
def transfers() -> pl.DataFrame:
    return generate(1500, 20, seed=3).transfers


@pytest.fixture(scope="module")
def features(transfers) -> pl.DataFrame:
    return compute_features(transfers)


def _assert_bit_identical(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns
    assert got["account_id"].to_list() == want["account_id"].to_list()
    for col in want.columns:
        assert got[col].equals(want[col], null_equal=True), col


def test_features_are_bit_identical_across_runs(transfers, features):
    for _ in range(2):
        _assert_bit_identical(compute_features(transfers), features)


@pytest.mark.parametrize("seed", [1, 2])
def test_features_do_not_depend_on_the_order_of_the_rows(transfers, features, seed):
    _assert_bit_identical(compute_features(transfers.sample(fraction=1.0, shuffle=True, seed=seed)), features)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_features_do_not_depend_on_the_thread_count(transfers, features, tmp_path, threads):
    src = tmp_path / "transfers.parquet"
    transfers.sample(fraction=1.0, shuffle=True, seed=7).write_parquet(src)
    out = tmp_path / "features.parquet"
    env = dict(os.environ, POLARS_MAX_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", _SCRIPT, str(src), str(out)], env=env, check=True, timeout=600)
    _assert_bit_identical(pl.read_parquet(out), features)
