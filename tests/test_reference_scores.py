"""The sample_data cases of benchmarks/reference_scores.py still give the recorded reference scores.

The cases run the CLI (``python -m mulegraph``) in subprocesses, exactly as the script does; the
comparison (same accounts, same ranks, scores within 1e-12, identical reasons) is the script's own
``compare``. After an intended change of the scores, record the reference again:

    python benchmarks/reference_scores.py record --out benchmarks/reference

(``--only sample-nolabel sample-supervised`` re-records just these two cases.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "reference_scores.py"
REFERENCE = REPO / "benchmarks" / "reference"


def _load_script():
    spec = importlib.util.spec_from_file_location("reference_scores", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference_scores = _load_script()


@pytest.mark.parametrize(
    "case",
    [
        "sample-nolabel",  # about 1-2 s
        pytest.param("sample-supervised", marks=pytest.mark.slow),  # about 15-30 s (training)
    ],
)
def test_sample_scores_match_reference(case: str, tmp_path: Path) -> None:
    ref_file = REFERENCE / f"{case}.parquet"
    assert ref_file.is_file(), f"no reference {ref_file}; run benchmarks/reference_scores.py record"
    scores, info = reference_scores.run_case(case, tmp_path, cli=[sys.executable, "-m", "mulegraph"])
    result = reference_scores.compare(pl.read_parquet(ref_file), scores)
    summary = ", ".join(
        f"{k} {result[k]}"
        for k in ("accounts_ref", "accounts_new", "missing", "extra", "max_score_diff", "rank_mismatches", "reason_mismatches")
    )
    assert result["equal"], f"{case}: scores differ from {ref_file.name} ({summary})\n" + "\n".join(result["examples"]) + (
        "\ncommands:\n" + "\n".join(info["commands"])
    )
