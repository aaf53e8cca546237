"""The nightly run: end to end, idempotence, nothing-new, failure at every stage, alert lifecycle."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import Config, ModelConfig, load_config
from mulegraph.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_NOTHING_NEW, InputError, ModelError, NothingNewError
from conftest import InjectedFailure
from mulegraph.pipeline import (
    ALERT_COLUMNS,
    CHANGE_COLUMNS,
    STAGES,
    compute_alerts,
    find_exports,
    latest_run,
    list_runs,
    run,
)
from mulegraph.pipeline.alerts import flows, key_figures, reason_summary
from mulegraph.core.schema import REASONS_DTYPE, SCORE_SCHEMA, as_reasons
from mulegraph.io.store import Store
from mulegraph.synth import generate

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc)


def _config(**run) -> Config:
    # small pictures budget keeps the tests quick; the report tests draw the full set
    return load_config(data={"run": {"window": "all", "alert_budget": 15, "flow_accounts": 1, **run},
                             "report": {"top": 15}})


def _exports(tmp: Path) -> tuple[Path, pl.DataFrame]:
    data = generate(250, 20, seed=7)
    tx = data.transfers.sort("ts")
    cut = tx["ts"].min() + timedelta(days=14)
    inbox = tmp / "inbox"
    inbox.mkdir(parents=True)
    tx.filter(pl.col("ts") <= cut).write_parquet(inbox / "export-1.parquet")
    later = tx.filter(pl.col("ts") > cut)
    return inbox, later


def _tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (links resolved to their target name)."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = "->" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A workspace after one successful run: inbox/, store/, runs/ and the later transfers."""
    root = tmp_path_factory.mktemp("nightly")
    inbox, later = _exports(root)
    res = run(_config(), inbox=inbox, store=root / "store", runs_dir=root / "runs", now=T0)
    return root, res, later


@pytest.fixture
def ws(base, tmp_path):
    """A private copy of the base workspace."""
    root, res, later = base
    dst = tmp_path / "ws"
    shutil.copytree(root, dst, symlinks=True)
    return dst, res, later


def _run(ws: Path, **kw):
    kw.setdefault("now", T0 + timedelta(days=1))
    return run(kw.pop("config", _config()), inbox=ws / "inbox", store=ws / "store", runs_dir=ws / "runs", **kw)


# ---------------------------------------------------------------------------------------- end to end


def test_run_writes_a_complete_run_folder(base):
    root, res, _ = base
    d = res.run_dir
    assert d == root / "runs" / "20260101T030000Z"
    assert latest_run(root / "runs") == d
    for name in ("scores.parquet", "features.parquet", "alerts.csv", "alerts.parquet", "alerts.json",
                 "alert_changes.parquet", "drift.parquet", "flows.parquet", "report.html", "report.md",
                 "config.json", "manifest.json", "run.log"):
        assert (d / name).is_file(), name
    assert not [p for p in (root / "runs").iterdir() if p.name.startswith(".tmp-")]

    scores = pl.read_parquet(d / "scores.parquet")
    assert scores.schema == pl.Schema(SCORE_SCHEMA)
    assert scores["rank"].to_list() == list(range(1, scores.height + 1))
    assert (scores["run_id"] == res.run_id).all()

    alerts = pl.read_parquet(d / "alerts.parquet")
    assert alerts.schema == pl.Schema(ALERT_COLUMNS)
    assert alerts.height == 15
    assert alerts["account_id"].to_list() == scores["account_id"].head(15).to_list()
    assert set(alerts["status"]) == {"new"}
    assert json.loads((d / "alerts.json").read_text())[0]["account_id"] == alerts["account_id"][0]
    csv = pl.read_csv(d / "alerts.csv", infer_schema=False)
    assert csv.columns == list(ALERT_COLUMNS) and csv.height == 15
    # reasons: a struct list in Parquet, JSON text in CSV, objects in JSON
    first = alerts["reasons"][0].to_list()
    assert first and json.loads(csv["reasons"][0]) == first
    assert json.loads((d / "alerts.json").read_text())[0]["reasons"] == first

    m = json.loads((d / "manifest.json").read_text())
    export = root / "inbox" / "export-1.parquet"
    assert m["inputs"] == [{"path": str(export), "sha256": hashlib.sha256(export.read_bytes()).hexdigest(),
                            "bytes": export.stat().st_size}]
    n = pl.read_parquet(export).height
    assert m["ingest"]["rows_read"] == n and m["ingest"]["accepted"] == n
    assert m["store"]["accepted"] == n
    assert m["counts"]["transfers_in_window"] == n
    assert set(m["seconds"]) >= {"ingest", "features", "score", "report"}
    assert m["libraries"]["polars"] == pl.__version__
    assert m["model"]["mode"] == "no-label" and m["model"]["version"]
    assert m["previous_run"] is None and len(m["fingerprint"]) == 64

    cfg = json.loads((d / "config.json").read_text())
    assert cfg["run"]["alert_budget"] == 15 and cfg["resolved"]["exports"] == [str(export)]
    log = (d / "run.log").read_text()
    assert "stage score" in log and "published" in log
    assert not any(a in log for a in alerts["account_id"].to_list())  # no account ids in the log


def test_flows_and_key_figures_match_the_store(base):
    root, res, _ = base
    tx = Store.open(root / "store").transfers()
    alerts = pl.read_parquet(res.run_dir / "alerts.parquet")
    top = alerts.row(0, named=True)
    mine_in = tx.filter(pl.col("dst_account") == top["account_id"])
    mine_out = tx.filter(pl.col("src_account") == top["account_id"])
    assert top["in_count"] == mine_in.height and top["out_count"] == mine_out.height
    assert top["in_value"] == pytest.approx(mine_in["amount"].sum())
    assert top["out_counterparties"] == mine_out["dst_account"].n_unique()
    flows = pl.read_parquet(res.run_dir / "flows.parquet")
    assert set(flows["account_id"]) == {top["account_id"]}  # flow_accounts = 1
    assert flows.filter(pl.col("direction") == "in")["value"].sum() == pytest.approx(top["in_value"])


# ------------------------------------------------------------------------------ nothing new, idempotence


def test_rerun_without_new_data_is_nothing_new_and_writes_nothing(ws):
    w, res, _ = ws
    before = _tree(w / "runs")
    with pytest.raises(NothingNewError, match="nothing new") as err:
        _run(w)
    assert err.value.exit_code == EXIT_NOTHING_NEW
    # the same exports given as a folder or a glob: still nothing new
    for given_paths in ([w / "inbox"], [str(w / "inbox" / "*.parquet")]):
        with pytest.raises(NothingNewError):
            run(_config(), paths=given_paths, store=w / "store", runs_dir=w / "runs")
    assert _tree(w / "runs") == before


def test_forced_rerun_gives_identical_scores(ws):
    w, res, _ = ws
    again = _run(w, force=True)
    assert again.run_id != res.run_id
    a = pl.read_parquet(res.run_dir / "scores.parquet").drop("run_id")
    b = pl.read_parquet(again.run_dir / "scores.parquet").drop("run_id")
    assert a.equals(b)
    alerts = pl.read_parquet(again.run_dir / "alerts.parquet")
    assert set(alerts["status"]) == {"persisting"}
    assert alerts["previous_rank"].to_list() == alerts["rank"].to_list()
    assert latest_run(w / "runs") == again.run_dir
    assert json.loads((again.run_dir / "manifest.json").read_text())["previous_run"] == res.run_id
    drift = pl.read_parquet(again.run_dir / "drift.parquet")
    assert drift.height > 5 and drift["psi"].max() < 0.01 and not drift["warning"].any()


def test_changed_settings_are_not_nothing_new(ws):
    w, res, _ = ws
    again = _run(w, config=_config(alert_budget=5))
    assert pl.read_parquet(again.run_dir / "alerts.parquet").height == 5
    changes = pl.read_parquet(again.run_dir / "alert_changes.parquet")
    assert changes.schema == pl.Schema(CHANGE_COLUMNS)
    assert changes.filter(pl.col("status") == "dropped").height == 10


def test_new_export_is_ingested_and_compared(ws):
    w, res, later = ws
    later.write_parquet(w / "inbox" / "export-2.parquet")
    new = _run(w)
    m = new.manifest
    assert m["ingest"]["accepted"] == later.height
    assert [Path(f).name for f in m["ingest"]["skipped_files"]] == ["export-1.parquet"]
    assert m["counts"]["transfers_in_window"] == m["store"]["accepted"]
    changes = pl.read_parquet(new.run_dir / "alert_changes.parquet")
    prev = set(pl.read_parquet(res.run_dir / "alerts.parquet")["account_id"])
    cur = set(pl.read_parquet(new.run_dir / "alerts.parquet")["account_id"])
    by = {s: set(changes.filter(pl.col("status") == s)["account_id"]) for s in ("new", "persisting", "dropped")}
    assert by["new"] == cur - prev and by["persisting"] == cur & prev and by["dropped"] == prev - cur


def test_cleared_account_is_not_alerted_again_unless_its_score_rises(ws):
    w, res, _ = ws
    top = pl.read_parquet(res.run_dir / "alerts.parquet")["account_id"][0]
    Store.open(w / "store").add_decisions(
        pl.DataFrame({"account_id": [top], "decision": ["cleared"], "date": [T0 + timedelta(hours=12)], "note": ["ok"]})
    )
    # decisions changed: not "nothing new" even without new exports
    again = _run(w)
    alerts = pl.read_parquet(again.run_dir / "alerts.parquet")
    assert top not in alerts["account_id"].to_list() and alerts.height == 15
    changes = pl.read_parquet(again.run_dir / "alert_changes.parquet")
    assert changes.filter(pl.col("account_id") == top)["status"].to_list() == ["suppressed"]
    # a negative margin means "any score counts as a rise": it is alerted again
    third = _run(w, config=_config(cleared_margin=-1.0), now=T0 + timedelta(days=2))
    assert top in pl.read_parquet(third.run_dir / "alerts.parquet")["account_id"].to_list()


def test_reason_summary_reads_the_reason_structs():
    """top_reason, reason_codes and reason_families from struct reasons (legacy JSON text read through as_reasons)."""
    def reason(code, family, text):
        return {"code": code, "feature": "f", "family": family, "text": text, "value": 1.0, "percentile": 90.0,
                "txn_ids": []}

    given = [[reason("X", "fan", "t1"), reason("Y", "fan", "t2"), reason("Z", "", "t3"), reason("W", "flow", "t4")],
             [], None, [reason("Q", None, "x")]]
    text = [None if r is None else json.dumps(r) for r in given]
    frame = as_reasons(pl.DataFrame({"account_id": ["a", "b", "c", "d"], "reasons": text}))
    assert frame.schema["reasons"] == REASONS_DTYPE
    out = reason_summary(frame)
    assert out["top_reason"].to_list() == ["t1", None, None, "x"]
    assert out["reason_codes"].to_list() == ["X|Y|Z|W", None, None, "Q"]
    assert out["reason_families"].to_list() == ["fan|flow", None, None, None]


# ------------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("stage", STAGES)
def test_failure_at_any_stage_leaves_the_previous_run_intact(ws, stage, fail_at_stage):
    w, res, later = ws
    later.write_parquet(w / "inbox" / "export-2.parquet")  # so that the run has work to do
    before = _tree(w / "runs")
    with fail_at_stage(stage) as seen, pytest.raises(InjectedFailure):
        _run(w)
    assert seen and not Path(seen[0]).exists()  # the hidden work folder is gone
    assert _tree(w / "runs") == before
    assert latest_run(w / "runs") == w / "runs" / res.run_id
    # the next run works and publishes normally
    ok = _run(w, now=T0 + timedelta(days=2))
    assert latest_run(w / "runs") == ok.run_dir and len(list_runs(w / "runs")) == 2


@pytest.mark.slow
def test_killed_run_leaves_previous_run_and_is_cleaned_up(ws):
    w, res, later = ws
    later.write_parquet(w / "inbox" / "export-2.parquet")
    before = _tree(w / "runs")
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import inject_at_stage
        from mulegraph.core.config import load_config
        from mulegraph.pipeline import run
        cfg = load_config(data={{"run": {{"window": "all", "alert_budget": 15, "flow_accounts": 1}}}})
        inject_at_stage("report", lambda _dir: os.kill(os.getpid(), signal.SIGKILL))
        run(cfg, inbox={str(w / 'inbox')!r}, store={str(w / 'store')!r}, runs_dir={str(w / 'runs')!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9
    leftovers = [p.name for p in (w / "runs").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers  # the killed run's hidden folder...
    assert {k: v for k, v in _tree(w / "runs").items() if not k.startswith(".tmp-")} == before
    assert latest_run(w / "runs") == w / "runs" / res.run_id  # ...is never a run
    ok = _run(w, now=T0 + timedelta(days=2))
    assert not [p for p in (w / "runs").iterdir() if p.name.startswith(".tmp-")]
    assert latest_run(w / "runs") == ok.run_dir


# ---------------------------------------------------------------------------------- inputs, CLI


def test_bad_inputs_are_clear_errors(tmp_path):
    # checked before any folder is made
    with pytest.raises(InputError, match="inbox folder .* does not exist and there is no store"):
        run(_config(), inbox=tmp_path / "nothing", store=tmp_path / "s", runs_dir=tmp_path / "r")
    (tmp_path / "empty-inbox").mkdir()
    with pytest.raises(InputError, match="no exports were found .* no store"):
        run(_config(), inbox=tmp_path / "empty-inbox", store=tmp_path / "s", runs_dir=tmp_path / "r")
    with pytest.raises(InputError, match="does not exist"):
        run(_config(), paths=[tmp_path / "missing.csv"], store=tmp_path / "s", runs_dir=tmp_path / "r")
    with pytest.raises(InputError, match="positive duration"):
        run(_config(window="0h"), paths=[tmp_path / "missing.csv"], store=tmp_path / "s", runs_dir=tmp_path / "r")
    with pytest.raises(InputError, match="model folder"):
        run(_config(), model=tmp_path / "no-model", inbox=tmp_path / "nothing", store=tmp_path / "s",
            runs_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
    # a store that exists but holds nothing
    Store.open(tmp_path / "s", create=True)
    with pytest.raises(InputError, match="store is empty"):
        run(_config(), inbox=tmp_path / "empty-inbox", store=tmp_path / "s", runs_dir=tmp_path / "r")
    assert not any((tmp_path / "r").glob("2*"))
    # test seams are not part of the API
    with pytest.raises(TypeError):
        run(_config(), fail_at="score", store=tmp_path / "s", runs_dir=tmp_path / "r")


def test_a_refused_model_fails_before_any_work(tmp_path, monkeypatch):
    """Python callers get the same early refusal as the command: nothing ingested, no folder made."""
    import mulegraph.pipeline.nightly as nightly

    def must_not_run(*_a, **_k):
        raise AssertionError("the run started before its model was checked")

    monkeypatch.setattr(nightly, "_stage_ingest", must_not_run)
    stale = tmp_path / "old-model"
    stale.mkdir()
    (stale / "model_card.json").write_text('{"format": "0.1", "kind": "mulegraph.MuleModel"}')
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "export.csv").write_text("txn_id,ts\n")
    with pytest.raises(ModelError, match="format"):
        run(_config(), model=stale, inbox=tmp_path / "inbox", store=tmp_path / "s", runs_dir=tmp_path / "r")
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_find_exports_skips_hidden_and_partial_files(tmp_path):
    for name in ("b.csv", "a.parquet", "c.csv.gz", ".hidden.csv", "~lock.csv", "notes.pdf", "x.csv.part"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in find_exports(tmp_path)] == ["a.parquet", "b.csv", "c.csv.gz"]
    assert find_exports(tmp_path / "absent") == []


def test_latest_pointer_as_text_file(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "manifest.json").write_text("{}")
    (tmp_path / "latest").write_text("r1\n")
    assert latest_run(tmp_path) == tmp_path / "r1"


def test_cli_run_exit_codes(ws, monkeypatch, fail_at_stage):
    w, res, later = ws
    runner = CliRunner()
    monkeypatch.chdir(w)
    # the same settings as the base run (a different setting would make a run that is not "nothing new")
    (w / "mulegraph.toml").write_text('[run]\nwindow = "all"\nalert_budget = 15\nflow_accounts = 1\n[report]\ntop = 15\n')
    r = runner.invoke(app, ["run"])
    assert r.exit_code == EXIT_NOTHING_NEW, r.output
    assert "nothing new" in r.output
    later.write_parquet(w / "inbox" / "export-2.parquet")
    with fail_at_stage("score"):
        r = runner.invoke(app, ["run"])
    assert r.exit_code == EXIT_FAILURE and "internal error" in r.output
    r = runner.invoke(app, ["run", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "report.html" in r.output and "alerts" in r.output
    r = runner.invoke(app, ["run", "--json"])
    assert r.exit_code == EXIT_NOTHING_NEW
    r = runner.invoke(app, ["run", "--force", "--json", "--alert-budget", "3"])
    assert r.exit_code == 0 and json.loads(r.output)["counts"]["alerts"] == 3
    r = runner.invoke(app, ["run", str(w / "missing.csv")])
    assert r.exit_code == EXIT_BAD_INPUT and "does not exist" in r.output
    assert len(list_runs(w / "runs")) == 3


# ------------------------------------------------------------------- alert lifecycle vs a reference


def _alerts_reference(scores, budget, threshold, prev, decisions, refs, margin):
    """Plain-Python statement of the alert rules."""
    ranked = sorted((r for r in scores if r[2] is not None), key=lambda r: r[2])
    prev_map = {a: (rk, sc) for a, rk, sc in prev}
    suppressed = set()
    alerts = []
    passing = [r for r in ranked if threshold is None or r[1] >= threshold]
    for acc, score, rank in passing:
        if decisions.get(acc) == "cleared":
            ref = refs.get(acc)
            if ref is None or score <= ref + margin:
                if passing.index((acc, score, rank)) < budget:
                    suppressed.add(acc)  # would be alerted without the clearing decision
                continue
        if len(alerts) < budget:
            alerts.append(acc)
    status = {a: ("persisting" if a in prev_map else "new") for a in alerts}
    dropped = {a for a in prev_map if a not in status and a not in suppressed}
    return alerts, status, dropped, suppressed


@settings(max_examples=50)
@given(
    n=st.integers(0, 25),
    data=st.data(),
    budget=st.integers(0, 12),
    threshold=st.one_of(st.none(), st.floats(0, 1)),
    margin=st.sampled_from([-1.0, 0.0, 0.1, 0.3]),
)
def test_compute_alerts_matches_reference(n, data, budget, threshold, margin):
    ids = [f"A{i}" for i in range(n + 5)]
    scored = data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    order = sorted(range(n), key=lambda i: (-scored[i], ids[i]))
    rank = {i: r + 1 for r, i in enumerate(order)}
    rows = [(ids[i], scored[i], rank[i]) for i in range(n)] + [(ids[n], 0.5, None)]  # one unranked hub
    prev_ids = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=8))
    prev = [(a, k + 1, 0.5) for k, a in enumerate(prev_ids)]
    dec = data.draw(st.dictionaries(st.sampled_from(ids), st.sampled_from(["cleared", "confirmed"]), max_size=6))
    refs = data.draw(st.dictionaries(st.sampled_from(ids), st.floats(0, 1), max_size=6))
    scores = pl.DataFrame(rows, schema={"account_id": pl.String, "score": pl.Float64, "rank": pl.Int64}, orient="row")
    alerts, changes = compute_alerts(
        scores,
        budget=budget,
        threshold=threshold,
        previous_alerts=pl.DataFrame(prev, schema={"account_id": pl.String, "rank": pl.Int64, "score": pl.Float64}, orient="row"),
        decisions=pl.DataFrame({"account_id": list(dec), "decision": list(dec.values())},
                               schema={"account_id": pl.String, "decision": pl.String}),
        reference_scores=pl.DataFrame({"account_id": list(refs), "reference_score": list(refs.values())},
                                      schema={"account_id": pl.String, "reference_score": pl.Float64}),
        cleared_margin=margin,
    )
    want, status, dropped, suppressed = _alerts_reference(rows, budget, threshold, prev, dec, refs, margin)
    assert alerts["account_id"].to_list() == want
    assert alerts["alert_rank"].to_list() == list(range(1, len(want) + 1))
    assert dict(zip(alerts["account_id"], alerts["status"])) == status
    got = {s: set(changes.filter(pl.col("status") == s)["account_id"]) for s in ("dropped", "suppressed")}
    assert got["dropped"] == dropped
    assert got["suppressed"] == suppressed
    assert changes["account_id"].is_unique().all()


# ------------------------------------------------------------------- key figures and flows vs loops


_tx = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.sampled_from("abcdef"), st.integers(1, 500), st.integers(0, 10**6)),
    min_size=1, max_size=40,
).map(lambda rows: [r for r in rows if r[0] != r[1]])


def _frame(rows):
    return pl.DataFrame(
        {"txn_id": [f"t{i}" for i in range(len(rows))], "src_account": [r[0] for r in rows],
         "dst_account": [r[1] for r in rows], "amount": [float(r[2]) for r in rows],
         "ts": [T0 + timedelta(seconds=r[3]) for r in rows]},
        schema={"txn_id": pl.String, "src_account": pl.String, "dst_account": pl.String, "amount": pl.Float64,
                "ts": pl.Datetime("us", "UTC")},
    )


@settings(max_examples=40)
@given(rows=_tx, accounts=st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=4, unique=True))
def test_key_figures_and_flows_match_loops(rows, accounts):
    tx = _frame(rows)
    kf = {r["account_id"]: r for r in key_figures(tx, pl.Series(accounts)).to_dicts()}
    fl = flows(tx, accounts)
    for a in accounts:
        ins = [r for r in rows if r[1] == a]
        outs = [r for r in rows if r[0] == a]
        k = kf[a]
        assert (k["in_count"], k["out_count"]) == (len(ins), len(outs))
        assert k["in_value"] == pytest.approx(sum(r[2] for r in ins))
        assert k["out_value"] == pytest.approx(sum(r[2] for r in outs))
        assert k["in_counterparties"] == len({r[0] for r in ins})
        assert k["out_counterparties"] == len({r[1] for r in outs})
        times = [T0 + timedelta(seconds=r[3]) for r in ins + outs]
        assert k["first_ts"] == (min(times) if times else None)
        want = {}
        for s, d, amt, _ in rows:
            if d == a:
                want[("in", s)] = (want.get(("in", s), (0, 0))[0] + amt, want.get(("in", s), (0, 0))[1] + 1)
            if s == a:
                want[("out", d)] = (want.get(("out", d), (0, 0))[0] + amt, want.get(("out", d), (0, 0))[1] + 1)
        mine = fl.filter(pl.col("account_id") == a)
        got = {(r["direction"], r["counterparty"]): (r["value"], r["count"]) for r in mine.to_dicts()}
        assert got == {k2: (float(v[0]), v[1]) for k2, v in want.items()}


# ------------------------------------------------------------------------- sample_data, model mode


def test_end_to_end_on_sample_data(sample_dir, tmp_path, monkeypatch):
    """The README's quick start: `mulegraph run sample_data/transfers.csv --config sample_data/mulegraph.toml`."""
    if not (sample_dir / "transfers.csv").is_file():
        pytest.skip("sample_data/ is not there")
    shutil.copytree(sample_dir, tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    # fewer flow pictures than the default keeps the test quick
    cfg_text = (sample_dir / "mulegraph.toml").read_text().replace("[run]\n", "[run]\nflow_accounts = 2\n")
    (tmp_path / "sample_data" / "mulegraph.toml").write_text(cfg_text)
    r = CliRunner().invoke(app, ["run", "sample_data/transfers.csv", "--config", "sample_data/mulegraph.toml", "--quiet"])
    assert r.exit_code == 0, r.output
    latest = latest_run(tmp_path / "runs")
    assert latest is not None and (latest / "report.html").is_file()
    m = json.loads((latest / "manifest.json").read_text())
    ing = m["ingest"]
    assert ing["rows_read"] == ing["accepted"] + ing["quarantined"] + ing["duplicates"] > 5000
    alerts = pl.read_parquet(latest / "alerts.parquet")
    labels = pl.read_csv(sample_dir / "labels.csv", schema_overrides={"account_id": pl.String})
    mules = set(labels.filter(pl.col("is_mule").cast(pl.String).str.to_lowercase().is_in(["true", "1"]))["account_id"])
    prevalence = len(mules) / labels.height
    hits = sum(a in mules for a in alerts["account_id"])
    # the alerts are much richer in planted mules than the population (not a tuned number: 5x prevalence)
    assert hits / alerts.height > 5 * prevalence, (hits, alerts.height, prevalence)
    r = CliRunner().invoke(app, ["run", "sample_data/transfers.csv", "--config", "sample_data/mulegraph.toml", "--quiet"])
    assert r.exit_code == EXIT_NOTHING_NEW


@pytest.mark.slow
def test_run_with_a_trained_model(ws):
    from mulegraph.features import compute_features, prepare
    from mulegraph.scoring import model as model_mod

    w, res, _ = ws
    data = generate(250, 20, seed=7)
    tx = Store.open(w / "store").transfers()
    p = prepare(tx)
    feats = compute_features(p)
    fast = ModelConfig(random_state=3, cv_folds=3, max_leaf_nodes=(7,), max_iter=30, n_models=1, importance_repeats=0)
    mdl = model_mod.train(feats, data.labels, p, fast)
    model_mod.save_model(mdl, w / "model")
    out = _run(w, model=w / "model")
    m = out.manifest
    assert m["model"]["mode"] == "supervised" and len(m["model"]["sha256"]) == 64
    scores = pl.read_parquet(out.run_dir / "scores.parquet")
    assert scores["model_version"][0] == m["model"]["version"] != "nolabel-3"
    doc = json.loads((out.run_dir / "manifest.json").read_text())
    assert doc["previous_run"] == res.run_id
    with pytest.raises(NothingNewError):
        _run(w, model=w / "model")
    with pytest.raises(InputError, match="model folder"):
        _run(w, model=w / "no-model")


def test_window_and_as_of_choose_the_transfers(ws):
    w, res, _ = ws
    tx = Store.open(w / "store").transfers()
    as_of = tx["ts"].min() + timedelta(days=6)
    out = _run(w, config=_config(window="3d"), as_of=as_of.isoformat())
    want = tx.filter((pl.col("ts") > as_of - timedelta(days=3)) & (pl.col("ts") <= as_of)).height
    assert out.counts["transfers_in_window"] == want < tx.height
    assert out.manifest["window"]["end"] == as_of.isoformat()


def test_one_run_at_a_time(ws):
    import fcntl

    from mulegraph.pipeline import RunBusyError

    w, res, _ = ws
    with open(w / "runs" / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunBusyError, match="another run"):
            _run(w, force=True)
    assert latest_run(w / "runs") == w / "runs" / res.run_id
