"""The broken-export corpus (tests/broken_exports/cases.toml): clear errors or quarantined rows."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mulegraph.core.errors as errors
from mulegraph.cli import app
from mulegraph.ingest import RULES, ingest
from mulegraph.io.store import Store

CORPUS = Path(__file__).parent / "broken_exports"
CASES = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))["case"]


def _id(case):
    return f"{case['file']}-{case.get('mapping', 'canonical')}"


def _mapping(case):
    m = case.get("mapping")
    return str(CORPUS / m) if m and m.endswith(".toml") else m


def test_corpus_is_large_enough():
    assert len({c["kind"] for c in CASES}) >= 15
    for c in CASES:
        assert c["file"] == "missing_file.csv" or (CORPUS / c["file"]).exists(), c["file"]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_library(tmp_path, case):
    export = CORPUS / case["file"]
    if case["expect"] == "error":
        cls = getattr(errors, case["error"])
        with pytest.raises(cls) as err:
            ingest([export], tmp_path / "store", mapping=_mapping(case))
        msg = str(err.value)
        assert case["message"] in msg
        assert "\n" not in msg
        assert err.value.exit_code == case["exit_code"]
        # nothing was committed for the broken file
        if (tmp_path / "store").exists():
            assert Store.open(tmp_path / "store").manifest() == []
        return
    r = ingest([export], tmp_path / "store", mapping=_mapping(case))
    assert (r.rows_read, r.accepted, r.duplicates) == (case["rows_read"], case["accepted"], case["duplicates"])
    want = {rule: case["quarantined"].get(rule, 0) for rule in RULES}
    assert r.quarantined_by_rule == want
    assert r.rows_read == r.accepted + r.quarantined + r.duplicates
    s = Store.open(tmp_path / "store")
    assert s.transfers().height == r.accepted
    assert s.quarantine().height == r.quarantined


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] == "error"], ids=_id)
def test_cli_one_line_no_traceback(tmp_path, case):
    args = ["ingest", str(CORPUS / case["file"]), "--store", str(tmp_path / "store")]
    if case.get("mapping"):
        args += ["--mapping", _mapping(case)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == case["exit_code"]
    assert "Traceback" not in res.output
    err_lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(err_lines) == 1 and err_lines[0].startswith("error: ")
    assert case["message"] in err_lines[0]
