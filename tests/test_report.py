"""Reports: self-contained HTML, Markdown, CSV round trip, JSON schema, pseudonyms, drift (PSI)."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import ReportConfig, load_config
from mulegraph.report.drift import PSI_WARNING, feature_psi, psi
from mulegraph.core.errors import EXIT_BAD_INPUT, ConfigError, InputError
from mulegraph.pipeline import run
from mulegraph.report.pseudonym import Pseudonymiser, pseudonym
from mulegraph.report.coarsen import coarsen_text, round_amount
from mulegraph.report import (
    CSV_COLUMNS,
    CSV_SCHEMA,
    REPORT_JSON_SCHEMA,
    load_run,
    read_csv_report,
    render,
    render_html,
    report_document,
    check_report_config,
    validate_json,
    write_report,
)
from mulegraph.synth import generate

KEY = "test-pseudonym-key-of-at-least-32-bytes"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    inbox = root / "inbox"
    inbox.mkdir()
    generate(250, 20, seed=11).transfers.write_parquet(inbox / "export.parquet")
    cfg = load_config(data={"run": {"window": "all", "alert_budget": 12}, "report": {"top": 12}})
    t0 = datetime(2026, 2, 1, tzinfo=timezone.utc)
    run(cfg, inbox=inbox, store=root / "store", runs_dir=root / "runs", now=t0)
    cfg2 = load_config(data={"run": {"window": "all", "alert_budget": 8, "flow_accounts": 2}, "report": {"top": 12}})
    res = run(cfg2, inbox=inbox, store=root / "store", runs_dir=root / "runs", now=t0 + timedelta(days=1))
    return res.run_dir


@pytest.fixture(scope="module")
def first_run_dir(run_dir) -> Path:
    return run_dir.parent / "20260201T000000Z"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster", "background", "xlink:href"):
                self.refs.append((tag, name, value or ""))
            if name == "id":
                self.ids.append(value)


def _svgs(text: str) -> list[str]:
    """The embedded pictures, decoded."""
    return [base64.b64decode(b).decode("utf-8") for b in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', text)]


def _parse(text: str) -> _Refs:
    p = _Refs()
    p.feed(text)
    p.close()
    return p


# ------------------------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_complete(first_run_dir):
    text = (first_run_dir / "report.html").read_text(encoding="utf-8")
    p = _parse(text)
    assert p.refs, "expected embedded images"
    for tag, name, value in p.refs:
        assert value.startswith(("data:image/svg+xml;base64,", "#")), (tag, name, value[:40])
    for tag in ("script", "link", "iframe", "object", "embed"):
        assert tag not in p.tags
    assert not re.search(r"url\(|@import|https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "", text))
    # inside the embedded pictures: only the SVG namespace names, and links within the picture
    for svg in _svgs(text):
        assert set(re.findall(r"https?://[^\"\s>]+", svg)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
        assert all(v.startswith("#") for v in re.findall(r'(?:href|src)="([^"]*)"', svg))
        assert "<!DOCTYPE" not in svg and "<script" not in svg and "url(" not in svg.replace("url(#", "")
    assert "@media print" in text
    assert {"summary", "quality", "suspects", "signals", "distribution", "flows", "changes", "drift"} <= set(p.ids)
    alerts = pl.read_parquet(first_run_dir / "alerts.parquet")
    flows = [v for t, n, v in p.refs if t == "img"]
    assert len(flows) == 1 + min(10, alerts.height)  # score chart + one flow picture per top suspect
    assert alerts["account_id"][0] in text and alerts["top_reason"][0].split(";")[0] in text
    assert "first run" in text


def test_second_run_report_shows_changes_and_drift(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    doc = report_document(load_run(run_dir))
    assert doc["run"]["previous_run"] == "20260201T000000Z"
    statuses = {c["status"] for c in doc["alert_changes"]}
    assert statuses == {"persisting", "dropped"}
    assert sum(c["status"] == "dropped" for c in doc["alert_changes"]) == 4
    assert "dropped" in text and "outside this run" in text
    # same data in both runs: no drift (tiny values only where a feature's float sums vary in the last bit)
    assert doc["drift"] and all(d["psi"] < 0.01 and not d["warning"] for d in doc["drift"])
    assert "Warning" not in text
    md = (run_dir / "report.md").read_text()
    assert "## Alert changes since the previous run" in md and "dropped" in md
    imgs = [v for t, n, v in _parse(text).refs if t == "img"]
    assert len(imgs) == 1 + 2  # flow_accounts = 2


def test_drift_warning_is_shown(run_dir):
    data = load_run(run_dir)
    drifted = dataclasses.replace(
        data,
        drift=pl.DataFrame({"feature": ["in_cp", "out_value"], "psi": [0.9, 0.01], "warning": [True, False]}),
    )
    html_text = render_html(drifted)
    assert "Warning:" in html_text and "in_cp" in html_text
    md = render(drifted, "md")
    assert "**Warning:** 1 feature(s)" in md and "in_cp" in md


# --------------------------------------------------------------------------------------- Markdown


def test_markdown_has_every_section(first_run_dir):
    md = render(load_run(first_run_dir), "md", top=5)
    for heading in ("# mulegraph run", "## Data quality", "## Top suspects", "## Typology signals",
                    "## Alert changes", "## Feature drift"):
        assert heading in md
    table = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(table) == 5
    assert "rows read" in md


def test_a_report_reads_scores_without_their_reasons(first_run_dir, tmp_path):
    """The report reads the score columns it charts, not the reasons of every account."""
    data = load_run(first_run_dir)
    assert data.scores.columns == ["account_id", "score", "rank"]
    full = pl.read_parquet(first_run_dir / "scores.parquet")
    assert "reasons" in full.columns and data.scores.equals(full.select("account_id", "score", "rank"))
    broken = tmp_path / "run"
    broken.mkdir()
    for f in first_run_dir.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    full.drop("score").write_parquet(broken / "scores.parquet")
    with pytest.raises(InputError, match="scores.parquet"):
        load_run(broken)


# -------------------------------------------------------------------------------------------- CSV


def test_csv_round_trips(first_run_dir):
    data = load_run(first_run_dir)
    text = render(data, "csv")
    assert text.splitlines()[0].split(",") == list(CSV_COLUMNS)
    back = read_csv_report(text)
    assert back.schema == pl.Schema(CSV_SCHEMA)
    want = data.alerts.sort("alert_rank").select(list(CSV_COLUMNS)).cast(CSV_SCHEMA)
    assert back.equals(want)
    assert render(data, "csv", top=3).count("\n") == 4


# ------------------------------------------------------------------------------------------- JSON


def test_json_validates_against_the_schema(first_run_dir, run_dir):
    for d in (first_run_dir, run_dir):
        doc = json.loads(render(load_run(d), "json"))
        assert validate_json(doc) == []
        jsonschema.validate(doc, REPORT_JSON_SCHEMA, cls=jsonschema.Draft202012Validator)
    doc = json.loads(render(load_run(first_run_dir), "json", top=4))
    assert [s["alert_rank"] for s in doc["suspects"]] == [1, 2, 3, 4]
    s = doc["suspects"][0]
    assert s["reasons"] and all(r["text"] for r in s["reasons"])
    assert doc["data_quality"]["this_run"]["rows_read"] == doc["data_quality"]["this_run"]["accepted"] > 0
    assert sum(sig["first_reason"] for sig in doc["signals"]) == load_run(first_run_dir).alerts.height


def test_validator_rejects_broken_documents(first_run_dir):
    doc = json.loads(render(load_run(first_run_dir), "json"))
    broken = json.loads(json.dumps(doc))
    del broken["run"]["run_id"]
    broken["suspects"][0]["score"] = 1.5
    broken["suspects"][0]["status"] = "maybe"
    broken["suspects"][1]["rank"] = "one"
    broken["extra"] = 1
    errors = validate_json(broken)
    assert "$.run: 'run_id' is a required property" in errors
    assert "$.suspects[0].score: 1.5 is greater than the maximum of 1" in errors
    assert any(e.startswith("$.suspects[0].status: 'maybe' is not one of") for e in errors)
    assert "$.suspects[1].rank: 'one' is not of type 'integer'" in errors
    assert any(e.startswith("$: Additional properties are not allowed ('extra' was unexpected)") for e in errors)
    assert len(errors) == 5, errors
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, REPORT_JSON_SCHEMA, cls=jsonschema.Draft202012Validator)


# ------------------------------------------------------------------------------------ pseudonyms


def test_pseudonymised_reports_hide_every_account_id(first_run_dir):
    data = load_run(first_run_dir)
    cfg = ReportConfig(pseudonymise=True, pseudonym_key=KEY)
    ids = set(data.alerts["account_id"]) | set(data.flows["counterparty"]) | set(data.changes["account_id"])
    outputs = {fmt: render(data, fmt, config=cfg) for fmt in ("html", "md", "csv", "json")}
    outputs["pictures"] = "".join(_svgs(outputs["html"]))
    assert outputs["pictures"].count("P-") > 10  # the flow pictures label accounts by pseudonym
    for fmt, text in outputs.items():
        leaked = [a for a in ids if a in text]
        assert not leaked, (fmt, leaked[:3])
    first = data.alerts.sort("alert_rank")["account_id"][0]
    p = pseudonym(first, KEY)
    for fmt, text in outputs.items():
        assert p in text, fmt
    assert json.loads(outputs["json"])["pseudonymised"] is True
    assert validate_json(json.loads(outputs["json"])) == []
    # another key gives other pseudonyms; no key is an error
    other = render(data, "csv", config=ReportConfig(pseudonymise=True, pseudonym_key=KEY + "x"))
    assert p not in other and pseudonym(first, KEY + "x") in other
    with pytest.raises(ConfigError, match="MULEGRAPH_PSEUDONYM_KEY"):
        render(data, "md", config=ReportConfig(), pseudonymise=True)


def test_pseudonym_key_from_environment(monkeypatch):
    monkeypatch.setenv("MULEGRAPH_PSEUDONYM_KEY", KEY)
    assert ReportConfig(pseudonymise=True).resolved_key() == KEY
    assert ReportConfig(pseudonym_key="other-key-456").resolved_key() == "other-key-456"


@given(a=st.text(min_size=1, max_size=20), b=st.text(min_size=1, max_size=20))
def test_pseudonyms_are_consistent_and_keyed(a, b):
    p = Pseudonymiser(KEY)
    assert p(a) == pseudonym(a, KEY) and re.fullmatch(r"P-[0-9a-f]{16}", p(a))
    assert (p(a) == p(b)) == (a == b)
    assert pseudonym(a, KEY) != pseudonym(a, KEY + "!")
    s = p.series(pl.Series([a, b, None, a]))
    assert s.to_list() == [p(a), p(b), None, p(a)]


def test_short_key_is_refused():
    with pytest.raises(ConfigError, match="at least"):
        Pseudonymiser("short")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Pseudonymiser("x" * 31)
    with pytest.raises(ConfigError, match="at least 32 bytes"):  # bytes of the UTF-8 text, not characters
        pseudonym("A", "\u00e9" * 15)
    assert Pseudonymiser("\u00e9" * 16)("A").startswith("P-")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        check_report_config(ReportConfig(pseudonymise=True, pseudonym_key="short"))
    check_report_config(ReportConfig(pseudonymise=True, pseudonym_key=KEY))


# ------------------------------------------------------------------------------------- coarsening


def _sig2(v: float) -> bool:
    """True when ``v`` has at most 2 significant figures."""
    return v == 0 or float(f"{v:.2g}") == v


def test_coarsened_reports_round_amounts_and_drop_times(first_run_dir):
    data = load_run(first_run_dir)
    exact = data.alerts.sort("alert_rank")
    assert not all(_sig2(v) for v in exact["in_value"])  # the run has amounts to coarsen
    out = {fmt: render(data, fmt, config=ReportConfig(coarsen=True)) for fmt in ("html", "md", "csv", "json")}
    doc = json.loads(out["json"])
    assert doc["coarsened"] is True and validate_json(doc) == []
    assert json.loads(render(data, "json"))["coarsened"] is False
    for s, row in zip(doc["suspects"], exact.to_dicts()):
        k = s["key_figures"]
        assert k["in_value"] == pytest.approx(float(f"{row['in_value']:.2g}")) and _sig2(k["in_value"])
        assert k["first_ts"] == row["first_ts"].strftime("%Y-%m-%d") and k["last_ts"] == row["last_ts"].strftime("%Y-%m-%d")
        assert all(r["value"] is None or _sig2(r["value"]) for r in s["reasons"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", doc["run"]["window_end"])
    csv_back = read_csv_report(out["csv"])
    assert all(_sig2(v) for v in csv_back["in_value"]) and all(_sig2(v) for v in csv_back["out_value"])
    assert csv_back["first_ts"].to_list() == [
        datetime(t.year, t.month, t.day, tzinfo=timezone.utc) for t in exact["first_ts"].to_list()
    ]
    for fmt in ("html", "md"):  # no exact amount or time of day of any suspect is shown
        text = out[fmt]
        for row in exact.to_dicts():
            assert f"{row['in_value']:,.2f}" not in text and row["first_ts"].strftime("%H:%M:%S") not in text
    assert "rounded to 2 significant figures" in out["md"] and "rounded to 2 significant figures" in out["html"]
    # [report] coarsen in the config, or the option, in the nightly run's reports too
    assert render(data, "md", config=ReportConfig(coarsen=True), coarsen=False) == render(data, "md")


def test_coarsened_numbers_in_reason_texts():
    assert coarsen_text("sent 12,345.67 to known mules; higher than 99.6% of accounts") == (
        "sent 12,000 to known mules; higher than 99.6% of accounts")
    assert coarsen_text("received from 123 senders within 24h on 2025-01-31") == (
        "received from 120 senders within 24h on 2025-01-31")
    assert round_amount(0.0) == 0.0 and round_amount(float("nan")) != round_amount(float("nan"))


# ------------------------------------------------------------------------------------------ drift


def test_psi_textbook_example():
    """PSI = sum over bins of (a_i - e_i) * ln(a_i / e_i), worked out by hand for a small case.

    The bins documented in mulegraph.report.drift: interior edges are the distinct sorted expected
    values at positions i * (n - 1) // bins (i = 1 .. bins-1), a value equal to an edge falls in
    the bin above it, missing values form a bin of their own, shares are floored at eps = 1e-4.
    expected 1..8 with bins=4: positions 1, 3, 5 -> edges 2, 4, 6 -> bins (<2) [2,4) [4,6) (>=6) missing.
    """
    expected = [1, 2, 3, 4, 5, 6, 7, 8]
    actual = [1, 1, 1, 5, 7, float("nan")]
    eps = 1e-4
    e = [1 / 8, 2 / 8, 2 / 8, 3 / 8, eps]  # {1} {2,3} {4,5} {6,7,8} {} (empty: floored)
    a = [3 / 6, eps, 1 / 6, 1 / 6, 1 / 6]  # {1,1,1} {} {5} {7} {nan}
    want = (
        (a[0] - e[0]) * math.log(a[0] / e[0])
        + (a[1] - e[1]) * math.log(a[1] / e[1])
        + (a[2] - e[2]) * math.log(a[2] / e[2])
        + (a[3] - e[3]) * math.log(a[3] / e[3])
        + (a[4] - e[4]) * math.log(a[4] / e[4])
    )
    assert want == pytest.approx(3.9135, abs=1e-4)  # the figure itself, so a wrong hand sum shows
    assert psi(expected, actual, bins=4) == pytest.approx(want, rel=1e-12)
    assert psi(actual, actual, bins=4) == 0.0


def _psi_reference(expected, actual, bins=10, eps=1e-4):
    """The documented definition as a plain loop: bins from the expected values' inner quantiles
    (observed values at positions i * (n - 1) // bins), missing values apart, shares floored at eps."""
    fin = sorted(x for x in expected if not math.isnan(x))
    edges = []
    if fin:
        for i in range(1, bins):
            v = fin[i * (len(fin) - 1) // bins]  # the "lower" quantile: an observed value
            if v not in edges:
                edges.append(v)

    def shares(xs):
        counts = [0] * (len(edges) + 2)
        for x in xs:
            if math.isnan(x):
                counts[-1] += 1
            else:
                k = sum(1 for e in edges if x >= e)
                counts[k] += 1
        return [max(c / len(xs), eps) for c in counts]

    e, a = shares(expected), shares(actual)
    return sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e))


_values = st.lists(st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.just(float("nan")), st.integers(0, 3).map(float)),
                   min_size=1, max_size=60)


@settings(max_examples=60)
@given(e=_values, a=_values)
def test_psi_matches_reference(e, a):
    assert psi(e, a) == pytest.approx(_psi_reference(e, a), rel=1e-9, abs=1e-12)


def test_psi_reads_as_expected():
    rng = np.random.default_rng(3)
    x = rng.normal(size=5000)
    assert psi(x, x) == 0.0
    assert psi(x, rng.normal(size=5000)) < 0.02
    assert psi(x, rng.normal(1.0, 1.0, size=5000)) > PSI_WARNING
    assert math.isnan(psi([], [1.0]))
    prev = pl.DataFrame({"account_id": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 4.0], "flag": [True, False, False, True], "name": ["p", "q", "r", "s"]})
    cur = prev.with_columns(pl.col("x") + 10)
    out = feature_psi(prev, cur)
    assert out["feature"].to_list() == ["x", "flag"]
    assert out.row(0, named=True)["warning"] and not out.row(1, named=True)["warning"]


def test_psi_reads_a_lazy_previous_frame_a_column_at_a_time(tmp_path):
    """The last run's features may be a scan of its file: same figures as the frame read whole."""
    rng = np.random.default_rng(5)
    prev = pl.DataFrame({"account_id": [f"a{i}" for i in range(300)], "x": rng.normal(size=300),
                         "n": rng.integers(0, 9, 300), "is_hub": [False] * 300})
    cur = prev.with_columns(pl.col("x") * 2, pl.col("n") + 1)
    prev.write_parquet(tmp_path / "features.parquet")
    cur.write_parquet(tmp_path / "current.parquet")
    eager = feature_psi(prev, cur)
    assert eager.height == 2 and eager.equals(feature_psi(pl.scan_parquet(tmp_path / "features.parquet"), cur))
    lazy = feature_psi(pl.scan_parquet(tmp_path / "features.parquet"), pl.scan_parquet(tmp_path / "current.parquet"))
    assert lazy.equals(eager)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_report_formats(run_dir, tmp_path, monkeypatch):
    runner = CliRunner()
    for fmt in ("html", "md", "csv", "json"):
        out = tmp_path / f"r.{fmt}"
        r = runner.invoke(app, ["report", str(run_dir), "--format", fmt, "--top", "3", "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert out.is_file() and out.stat().st_size > 100
    assert validate_json(json.loads((tmp_path / "r.json").read_text())) == []
    r = runner.invoke(app, ["report", str(run_dir.parent), "-f", "csv"])  # a runs folder: its latest run
    assert r.exit_code == 0 and r.output.splitlines()[0].split(",") == list(CSV_COLUMNS)
    monkeypatch.setenv("MULEGRAPH_PSEUDONYM_KEY", KEY)
    r = runner.invoke(app, ["report", str(run_dir), "-f", "md", "--pseudonymise"])
    assert r.exit_code == 0 and "P-" in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "nope"), "-f", "md"])
    assert r.exit_code == EXIT_BAD_INPUT and "mulegraph run" in r.output
    r = runner.invoke(app, ["report", str(run_dir), "-f", "pdf"])
    assert r.exit_code == EXIT_BAD_INPUT


def test_write_report_is_atomic_and_checks_arguments(run_dir, tmp_path):
    out = write_report(run_dir, "md", tmp_path / "sub" / "r.md", top=2)
    assert out.read_text().startswith("# mulegraph run")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(InputError, match="format"):
        render(load_run(run_dir), "pdf")


def test_a_run_without_alerts_renders_in_every_format(first_run_dir):
    data = load_run(first_run_dir)
    empty = dataclasses.replace(data, alerts=data.alerts.head(0), flows=data.flows.head(0),
                                changes=data.changes.head(0), drift=data.drift.head(0))
    for fmt in ("html", "md", "csv", "json"):
        text = render(empty, fmt)
        assert text
    assert "No alerts in this run." in render(empty, "md")
    assert validate_json(json.loads(render(empty, "json"))) == []
    assert read_csv_report(render(empty, "csv")).height == 0


def test_installed_command_writes_a_report(run_dir, tmp_path):
    import shutil
    import subprocess
    import sys

    exe = shutil.which("mulegraph") or str(Path(sys.executable).with_name("mulegraph"))
    if not Path(exe).exists():
        pytest.skip("the mulegraph command is not installed")
    out = tmp_path / "r.json"
    proc = subprocess.run([exe, "report", str(run_dir), "--format", "json", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert validate_json(json.loads(out.read_text())) == []
