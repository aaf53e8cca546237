"""Operator mistakes and hostile environments (issue 10, items 4, 5, 7, 8 and the rest):

* outputs are never written inside a store or a run folder (symbolic links followed);
* a missing inbox is exit 2, an empty one "nothing new";
* absurd numbers are exit 2 naming the allowed range, never an internal OverflowError;
* a full disk is one line naming the path; Ctrl-C during an ingest says what was committed;
* a ``latest`` pointer leading out of the runs folder is refused; no empty ``.staging`` is left;
* control characters never reach the store, wherever they are in the file.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import LIMITS, Config, load_config
from mulegraph.core.errors import ConfigError, DiskFullError, InputError
from mulegraph.core.paths import STORE_FORMAT, protected_folder, refuse_protected_output
from mulegraph.ingest import ingest
from mulegraph.ingest.interrupt import IngestInterrupted
from mulegraph.io.runs import latest_run
from mulegraph.io.store import Store

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
H = "txn_id,ts,src_account,dst_account,amount,currency,channel\n"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("MULEGRAPH_DEBUG", raising=False)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A folder with a store (the sample export), an empty inbox and one published run."""
    root = tmp_path_factory.mktemp("mistakes")
    (root / "inbox").mkdir()
    (root / "empty.toml").write_text("")
    res = runner.invoke(app, ["run", str(SAMPLE / "transfers.csv"), "--mapping", str(SAMPLE / "mapping.toml"),
                              "--store", str(root / "store"), "--runs", str(root / "runs"), "--window", "all",
                              "--config", str(root / "empty.toml"), "-q"])
    assert res.exit_code == 0, res.output
    return root


def _user_error(res, *needles: str) -> str:
    """One ``error:`` line (or typer's usage error), exit code 2, no crash, no traceback; the message."""
    assert res.exit_code == 2, res.output
    assert "internal error" not in res.output and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    last = lines[-1]
    for n in needles:
        assert n in last, last
    return last


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _must_not_run(*_a, **_k):
    raise AssertionError("the computation started before the output path was checked")


# --- item 5: outputs never go into a store or a run folder ------------------------------------------


def _protected_targets(ws: Path) -> list[tuple[list[str], str]]:
    store, runs, latest = ws / "store", ws / "runs", ws / "runs" / "latest"
    day = sorted((store / "transfers").iterdir())[0].name
    account = pl.read_parquet(latest / "alerts.parquet")["account_id"][0]
    labels = str(SAMPLE / "labels.csv")
    return [
        (["report", str(runs), "--out", str(store / "manifest.json")], "store"),
        (["report", str(runs), "--out", str(latest / "report.md")], "run folder"),
        (["report", str(runs), "--out", str(runs / "report.html")], "runs folder"),
        (["features", "--store", str(store), "--out", str(store / "transfers" / day / "x.parquet")], "store"),
        (["score", "--store", str(store), "--out", str(latest / "scores.parquet")], "run folder"),
        (["train", "--store", str(store), "--labels", labels, "--out", str(store / "model")], "store"),
        (["trace", account, "--store", str(store), "--out", str(latest / "trail.graphml")], "run folder"),
        (["synth", "--out", str(store / "demo"), "--accounts", "100", "--days", "2"], "store"),
        (["ingest", str(SAMPLE / "transfers.csv"), "--store", str(ws / "other"), "--mapping", str(SAMPLE / "mapping.toml"),
          "--labels-out", str(latest / "labels.csv")], "run folder"),
        (["run", "--store", str(store), "--runs", str(store / "runs"), "--inbox", str(ws / "inbox"), "--force"], "store"),
        (["run", "--store", str(latest / "store"), "--runs", str(ws / "runs2"), "--inbox", str(ws / "inbox")], "run folder"),
    ]


def test_outputs_inside_a_store_or_run_folder_are_refused_before_any_work(ws, monkeypatch):
    for target in ("mulegraph.features.build.build_features", "mulegraph.scoring.score.score",
                   "mulegraph.scoring.model.train_from_store", "mulegraph.synth.generate",
                   "mulegraph.investigate.output.open_investigation", "mulegraph.ingest.run.ingest_file"):
        monkeypatch.setattr(target, _must_not_run)
    before_store, before_runs = _tree(ws / "store"), _tree(ws / "runs")
    for args, kind in _protected_targets(ws):
        res = runner.invoke(app, [*args, "--quiet"] if args[0] == "run" else args)
        _user_error(res, kind)
    assert _tree(ws / "store") == before_store and _tree(ws / "runs") == before_runs
    assert not (ws / "other").exists() and not (ws / "runs2").exists()


def test_symbolic_links_into_a_store_are_followed(ws, tmp_path):
    link = tmp_path / "innocent"
    link.symlink_to(ws / "store" / "transfers", target_is_directory=True)
    res = runner.invoke(app, ["report", str(ws / "runs"), "--out", str(link / "r.md")])
    _user_error(res, "store", str((ws / "store").resolve()))
    res = runner.invoke(app, ["report", str(ws / "runs"), "--out", str(tmp_path / "x" / ".." / link.name / "r.md")])
    _user_error(res, "store")


def test_library_writers_refuse_too(ws):
    """Python callers get the refusal from the writers themselves, not only from the commands."""
    from mulegraph.features.build import write_features
    from mulegraph.investigate import save_graph
    from mulegraph.report import write_report
    from mulegraph.scoring.score import write_scores
    from mulegraph.scoring.persist import check_model_dir

    latest = ws / "runs" / "latest"
    scores = pl.read_parquet(latest / "scores.parquet")
    before = _tree(ws / "runs")
    for call in (
        lambda: write_scores(scores, latest / "scores.parquet"),
        lambda: write_features(pl.read_parquet(latest / "features.parquet"), ws / "store" / "f.parquet"),
        lambda: write_report(ws / "runs", "md", latest / "report.md"),
        lambda: save_graph(__import__("networkx").DiGraph(), latest / "g.graphml"),
        lambda: check_model_dir(latest / "model"),
    ):
        with pytest.raises(InputError, match="never writes its outputs into a store or a run folder"):
            call()
    assert _tree(ws / "runs") == before


def test_what_counts_as_protected(ws, tmp_path):
    assert protected_folder(ws / "store" / "deep" / "er" / "x.csv") == ("store", (ws / "store").resolve())
    assert protected_folder(ws / "runs" / "latest" / "x") == ("run folder", latest_run(ws / "runs").resolve())
    assert protected_folder(ws / "runs" / "x")[0] == "runs folder"
    assert protected_folder(ws / "report.html") is None
    # a file named "latest" or a foreign manifest.json does not make a folder protected
    (tmp_path / "latest").write_text("notes\n")
    (tmp_path / "manifest.json").write_text('{"format": "something else"}')
    assert refuse_protected_output(tmp_path / "report.html") == tmp_path / "report.html"
    assert json.loads((ws / "store" / "manifest.json").read_text())["format"] == STORE_FORMAT


# --- item 7: a missing inbox is an error, an empty one is nothing new ---------------------------------


def test_missing_inbox_is_exit_2_naming_the_folder(ws, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.pipeline.nightly._stage_ingest", _must_not_run)
    args = ["--store", str(ws / "store"), "--runs", str(ws / "runs"), "--config", str(ws / "empty.toml"), "-q"]
    missing = tmp_path / "no" / "such" / "inbox"
    for extra in ([], ["--force"]):
        res = runner.invoke(app, ["run", "--inbox", str(missing), *args, *extra])
        _user_error(res, f"the inbox folder '{missing}' does not exist", "--inbox or [run] inbox")
    # a typo in [run] inbox
    cfg = tmp_path / "typo.toml"
    cfg.write_text(f'[run]\ninbox = "{tmp_path / "inbx"}"\n')
    res = runner.invoke(app, ["run", "--store", str(ws / "store"), "--runs", str(ws / "runs"), "--config", str(cfg), "-q"])
    _user_error(res, "inbx", "does not exist")
    # the default inbox/ of the working directory
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["run", "--store", str(ws / "store"), "--runs", str(ws / "runs"), "-q"])
    _user_error(res, "the inbox folder 'inbox' does not exist")
    # an inbox that is a file
    (tmp_path / "afile").write_text("x")
    res = runner.invoke(app, ["run", "--inbox", str(tmp_path / "afile"), *args])
    _user_error(res, "is a file, not a folder")


def test_empty_inbox_is_nothing_new_or_a_forced_rescoring(ws):
    args = ["--store", str(ws / "store"), "--runs", str(ws / "runs"), "--inbox", str(ws / "inbox"),
            "--mapping", str(SAMPLE / "mapping.toml"), "--window", "all", "--config", str(ws / "empty.toml"), "-q"]
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 3, res.output
    assert "nothing new" in res.output
    res = runner.invoke(app, ["run", *args, "--force"])
    assert res.exit_code == 0, res.output


# --- item 8: absurd numbers are exit 2 with the allowed range -----------------------------------------

HUGE = "99999999999999999999"


def _absurd_cases(ws: Path, tmp: Path) -> list[tuple[list[str], tuple[str, ...]]]:
    store, runs = str(ws / "store"), str(ws / "runs")
    run = ["run", "--store", store, "--runs", str(tmp / "runs"), "--inbox", str(ws / "inbox"), "-q"]
    account = pl.read_parquet(ws / "runs" / "latest" / "alerts.parquet")["account_id"][0]
    return [
        ([*run, "--alert-budget", HUGE], ("--alert-budget", "1000000")),
        ([*run, "--alert-budget", "-1"], ("--alert-budget",)),
        ([*run, "--window", "99999999999d"], ("window", "36500d")),
        ([*run, "--alert-threshold", "7"], ("--alert-threshold",)),
        ([*run, "--as-of", "0001-01-01", "--window", "30d"], ("before year 1",)),
        (["report", runs, "--top", HUGE, "--out", str(tmp / "r.md")], ("--top", "1000000")),
        (["trace", account, "--store", store, "--out", str(tmp / "t.json"), "--within", "99999999999d"], ("within", "36500d")),
        (["trace", account, "--store", store, "--out", str(tmp / "t.json"), "--hops", HUGE], ("--hops",)),
        (["show", account, "--store", store, "--last", HUGE], ("--last", "1000000")),
        (["features", "--store", store, "--out", str(tmp / "f.parquet"), "--window", "99999999999d"], ("window", "36500d")),
        (["score", "--store", store, "--out", str(tmp / "s.parquet"), "--show", HUGE], ("--show", "1000000")),
        (["score", "--store", store, "--out", str(tmp / "s.parquet"), "--evidence-top", HUGE], ("--evidence-top", "1000000")),
        (["synth", "--out", str(tmp / "s"), "--accounts", HUGE], ("--accounts", "10000000")),
        (["synth", "--out", str(tmp / "s"), "--days", "99999999999"], ("--days", "3660")),
        (["synth", "--out", str(tmp / "s"), "--seed", "-1"], ("--seed",)),
        (["synth", "--out", str(tmp / "s"), "--activity", "1e300"], ("--activity",)),
        (["synth", "--out", str(tmp / "s"), "--start", "9999-12-30"], ("--start",)),
        (["evaluate", "--scores", runs, "--labels", str(SAMPLE / "labels.csv"), "--budget", HUGE], ("(0, 1]",)),
    ]


def test_absurd_options_are_exit_2_with_the_range(ws, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.pipeline.nightly._stage_ingest", _must_not_run)
    for args, needles in _absurd_cases(ws, tmp_path):
        res = runner.invoke(app, args)
        _user_error(res, *needles)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "toml, needles",
    [
        (f"[run]\nalert_budget = {HUGE}\n", ("[run] alert_budget", "between 0 and 1000000")),
        ('[run]\nwindow = "99999999999d"\n', ("[run] window", "36500d")),
        (f"[report]\ntop = {HUGE}\n", ("[report] top", "between 0 and 1000000")),
        (f"[features]\nhub_degree = {HUGE}\n", ("[features] hub_degree", "between 1 and 1000000000")),
        ("[features]\nchain_cap = 0\n", ("[features] chain_cap", "between 1 and 100")),
        ('[features]\nfan_windows = ["24h", "99999999999d"]\n', ("[features] fan_windows", "36500d")),
        ("[features]\nnight_hours = [22, 30]\n", ("[features] night_hours", "between 0 and 24")),
        ("[features]\nmax_cycle_length = 9\n", ("[features] max_cycle_length", "between 2 and 5")),
        ("[features]\nstructuring_margin = 1.5\n", ("[features] structuring_margin", "below 1")),
        ("[model]\ncv_folds = 0\n", ("[model] cv_folds", "between 2 and 100")),
        ("[model]\nlearning_rate = 0\n", ("[model] learning_rate", "above 0")),
        (f"[model]\nrandom_state = {HUGE}\n", ("[model] random_state", "4294967295")),
        ('[model]\nclass_weight = "heavy"\n', ("[model] class_weight", "'balanced'")),
        ("[model]\nppr_alpha = 1.0\n", ("[model] ppr_alpha", "below 1")),
        ('[model]\nsync_window = "-7d"\n', ("[model] sync_window", "positive duration")),
    ],
)
def test_absurd_config_values_are_exit_2_with_the_range(ws, tmp_path, toml, needles, monkeypatch):
    monkeypatch.setattr("mulegraph.pipeline.nightly._stage_ingest", _must_not_run)
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    res = runner.invoke(app, ["run", "--store", str(ws / "store"), "--runs", str(tmp_path / "runs"),
                              "--inbox", str(ws / "inbox"), "--config", str(cfg), "-q"])
    _user_error(res, *needles)
    with pytest.raises(ConfigError, match="must"):  # Python callers get the same check
        load_config(cfg)


def test_ranges_hold_for_python_callers_and_defaults():
    Config()  # the defaults are inside every range
    with pytest.raises(ConfigError, match=r"\[run\] alert_budget \(--alert-budget\) must be between 0 and 1000000"):
        Config().replace("run", alert_budget=10**20)
    with pytest.raises(ConfigError, match="split_low"):
        Config().replace("features", split_low=0.95, split_high=0.9)
    assert Config().replace("run", window="ALL").run.window == "ALL"
    assert Config().replace("run", cleared_margin=-1.0).run.cleared_margin == -1.0  # documented: any rise
    assert set(LIMITS) <= {"features", "model", "run", "report"}
    for section, limits in LIMITS.items():
        fields = set(getattr(Config(), section).__dataclass_fields__)
        assert set(limits) <= fields, section


# --- disk full: one line naming the path --------------------------------------------------------------


def test_disk_full_names_the_path(ws, tmp_path, monkeypatch):
    def full(*_a, **_k):  # how Polars reports it: no errno, no file name
        raise pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device (os error 28)")

    from mulegraph.io.runs import ParquetChunks

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    monkeypatch.setattr(ParquetChunks, "write", full)  # a .parquet file of scores is written a chunk at a time
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["score", "--store", str(ws / "store"), "--out", str(out)])
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: no space left on the device to write '{out}'; free some space and run again."]
    assert not list(tmp_path.iterdir()), "no temporary file is left behind"


def test_disk_full_without_a_file_name_never_prints_none():
    from test_cli_errors import _app_raising

    for exc in (OSError(errno.ENOSPC, "No space left on device"), OSError("No space left on device (os error 28)"),
                pl.exceptions.ComputeError("No space left on device (os error 28)")):
        res = runner.invoke(_app_raising(exc), ["boom"])
        assert res.exit_code == 1
        assert res.output.strip() == "error: no space left on the device; free some space and run again."
    res = runner.invoke(_app_raising(DiskFullError("no space left on the device to write 'x'; free some space")), ["boom"])
    assert res.exit_code == 1 and res.output.strip() == "error: no space left on the device to write 'x'; free some space"
    assert isinstance(DiskFullError("x"), OSError)


# --- Ctrl-C during an ingest says what was committed ---------------------------------------------------


def _exports(tmp: Path) -> list[Path]:
    a, b = tmp / "a.csv", tmp / "b.csv"
    a.write_text(H + "t1,2024-01-01T10:00:00Z,A,B,5,EUR,\n")
    b.write_text(H + "t2,2024-01-02T10:00:00Z,A,C,5,EUR,\n")
    return [a, b]


def _interrupt_second_file(monkeypatch):
    import mulegraph.ingest.commit as commit

    seen = []

    def stage(name: str) -> None:
        if name == "read":
            seen.append(name)
            if len(seen) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(commit, "_stage", stage)


def test_interrupted_ingest_says_what_was_committed(tmp_path, monkeypatch):
    files = _exports(tmp_path)
    _interrupt_second_file(monkeypatch)
    res = runner.invoke(app, ["ingest", *map(str, files), "--store", str(tmp_path / "store")])
    assert res.exit_code == 130, res.output
    line = res.output.strip().splitlines()[-1]
    assert "1 file(s) committed before the interrupt: a.csv" in line
    assert "the store" in line and "holds them" in line and "not committed" in line
    assert "left as they were" not in line
    st = Store.open(tmp_path / "store")
    assert [Path(e["path"]).name for e in st.manifest()] == ["a.csv"]
    assert not (tmp_path / "store" / ".staging").exists()


def test_interrupt_before_any_commit_says_the_store_is_as_it_was(tmp_path, monkeypatch):
    import mulegraph.ingest.commit as commit

    def stage(name: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commit, "_stage", stage)
    res = runner.invoke(app, ["ingest", *map(str, _exports(tmp_path)), "--store", str(tmp_path / "store")])
    assert res.exit_code == 130
    assert "no file was committed" in res.output and "is as it was" in res.output


def test_interrupted_run_says_what_its_ingest_committed(tmp_path, fail_at_stage):
    files = _exports(tmp_path)

    def ctrl_c(_work):
        raise KeyboardInterrupt

    with fail_at_stage("features", ctrl_c):
        res = runner.invoke(app, ["run", *map(str, files), "--store", str(tmp_path / "store"),
                                  "--runs", str(tmp_path / "runs"), "--window", "all", "-q"])
    assert res.exit_code == 130, res.output
    line = res.output.strip().splitlines()[-1]
    assert "2 file(s) committed before the interrupt: a.csv, b.csv" in line and "no run was published" in line
    assert latest_run(tmp_path / "runs") is None


def test_interrupt_is_still_a_keyboard_interrupt_for_python_callers(tmp_path, monkeypatch):
    files = _exports(tmp_path)
    _interrupt_second_file(monkeypatch)
    from mulegraph.ingest.interrupt import interrupt_report

    with pytest.raises(KeyboardInterrupt) as err, interrupt_report(tmp_path / "store"):
        ingest(files, tmp_path / "store")
    assert isinstance(err.value, IngestInterrupted) and [Path(p).name for p in err.value.committed] == ["a.csv"]


# --- the latest pointer, the staging folder ------------------------------------------------------------


@pytest.mark.parametrize("pointer", ["../elsewhere", "ABSOLUTE", "sub/run"])
@pytest.mark.parametrize("as_link", [True, False])
def test_latest_pointer_out_of_the_runs_folder_is_refused(tmp_path, pointer, as_link):
    runs = tmp_path / "runs"
    target = tmp_path / "elsewhere"
    for d in (runs, target, runs / "sub" / "run"):
        d.mkdir(parents=True, exist_ok=True)
    for d in (target, runs / "sub" / "run"):
        (d / "manifest.json").write_text('{"run_id": "x", "mulegraph_version": "0"}')
    name = str(target) if pointer == "ABSOLUTE" else pointer
    if as_link:
        (runs / "latest").symlink_to(name, target_is_directory=True)
    else:
        (runs / "latest").write_text(name + "\n")
    with pytest.raises(InputError, match="not a run folder in"):
        latest_run(runs)
    res = runner.invoke(app, ["report", str(runs), "--format", "json"])
    _user_error(res, "latest-run pointer")


def test_latest_pointer_inside_the_runs_folder_still_works(ws):
    assert latest_run(ws / "runs").parent == ws / "runs"


def test_no_empty_staging_folder_after_ingest_and_run(tmp_path):
    files = _exports(tmp_path)
    ingest(files[:1], tmp_path / "store")
    assert not (tmp_path / "store" / ".staging").exists()
    res = runner.invoke(app, ["run", str(files[1]), "--store", str(tmp_path / "store"), "--runs", str(tmp_path / "runs"),
                              "--window", "all", "-q"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "store" / ".staging").exists()


# --- item 4: control characters never reach the store ----------------------------------------------------


def test_nul_after_the_first_64_kib_is_quarantined_with_its_original(tmp_path):
    rows = [f"t{i},2024-01-01T10:00:00Z,A{i % 97},B{i % 89},{i + 1}.00,EUR,card\n" for i in range(3000)]
    rows[2990] = "t2990,2024-01-01T10:00:00Z,A\x00evil,B,5.00,EUR,card\n"
    export = tmp_path / "x.csv"
    export.write_text(H + "".join(rows), encoding="utf-8")
    assert export.read_bytes().index(b"\x00") > 1 << 16
    r = ingest([export], tmp_path / "store")
    assert (r.rows_read, r.accepted, r.quarantined, r.quarantined_by_rule["control_chars"]) == (3000, 2999, 1, 1)
    assert r.rows_read == r.accepted + r.quarantined + r.duplicates
    st = Store.open(tmp_path / "store")
    q = st.quarantine()
    assert q["line"].to_list() == [2991] and q["rule"].to_list() == ["control_chars"]
    assert json.loads(q["original"][0])["src_account"] == "A\x00evil"
    stored = st.transfers()
    for c in ("txn_id", "src_account", "dst_account", "currency", "channel"):
        assert not stored[c].str.contains(r"[\x00-\x1f\x7f-\x9f]").any(), c


def test_control_characters_in_parquet_strings_are_quarantined(tmp_path):
    export = tmp_path / "x.parquet"
    pl.DataFrame({
        "txn_id": ["t1", "t2", "t3", "t4"],
        "ts": ["2024-01-01T10:00:00Z"] * 4,
        "src_account": ["A", "A\x1b[2J", "A", "A"],
        "dst_account": ["B", "B", "B\u009bx", "B"],
        "amount": [5.0] * 4,
        "currency": ["EUR"] * 4,
        "channel": ["card", "card", "card", "ca\x07rd"],
    }).write_parquet(export)
    r = ingest([export], tmp_path / "store")
    assert (r.accepted, r.quarantined_by_rule["control_chars"]) == (1, 3)
    originals = [json.loads(o) for o in Store.open(tmp_path / "store").quarantine()["original"]]
    assert [o["txn_id"] for o in originals] == ["t2", "t3", "t4"]
    assert originals[0]["src_account"] == "A\x1b[2J"
