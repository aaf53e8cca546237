"""The commands as a demanding user meets them: bad options fail fast, with one line and exit code 2.

Each test pins one problem found by using the CLI: without its fix the test fails.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("MULEGRAPH_DEBUG", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("usability") / "store"
    res = runner.invoke(
        app, ["ingest", str(SAMPLE / "transfers.csv"), "--store", str(path), "--mapping", str(SAMPLE / "mapping.toml"), "--json"]
    )
    assert res.exit_code == 0, res.output
    return path


def _isolated(root: Path) -> list[str]:
    """Options that keep a run away from the working directory's mulegraph.toml and inbox/."""
    (root / "inbox").mkdir(exist_ok=True)
    (root / "empty.toml").write_text("")
    return ["--inbox", str(root / "inbox"), "--config", str(root / "empty.toml")]


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("usability")
    path = root / "runs"
    res = runner.invoke(app, ["run", "--store", str(store), "--runs", str(path), "--window", "all", "--quiet", *_isolated(root)])
    assert res.exit_code == 0, res.output
    return path


def _user_error(res, *needles: str) -> None:
    """One ``error:`` line, exit code 2, no crash notice, no traceback."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: "), res.output
    assert "internal error" not in res.output and "Traceback" not in res.output
    for n in needles:
        assert n in lines[-1], lines[-1]


#: the first stage of the nightly run: checks of its options and inputs must come before it
RUN_STARTS = "mulegraph.pipeline.nightly._stage_ingest"


def _must_not_run(*_a, **_k):
    raise AssertionError("the computation started before the options were checked")


# --- --out is checked before any work ------------------------------------------------------------


def test_features_bad_out_suffix_fails_before_computing(store, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.features.build.build_features", _must_not_run)
    res = runner.invoke(app, ["features", "--store", str(store), "--out", str(tmp_path / "f.csv")])
    _user_error(res, ".parquet")


def test_score_bad_out_fails_before_computing(store, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.scoring.score.score", _must_not_run)
    res = runner.invoke(app, ["score", "--store", str(store), "--out", str(tmp_path / "s.xlsx")])
    _user_error(res, ".parquet, .csv, .json")
    res = runner.invoke(app, ["score", "--store", str(store), "--out", str(tmp_path / "no" / "such" / "s.parquet")])
    _user_error(res, "does not exist")
    folder = tmp_path / "scores.parquet"
    folder.mkdir()
    res = runner.invoke(app, ["score", "--store", str(store), "--out", str(folder)])
    _user_error(res, "is a folder")


def test_train_out_that_is_a_file_or_foreign_folder_fails_before_training(store, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.scoring.model.train_from_store", _must_not_run)
    labels = str(SAMPLE / "labels.csv")
    afile = tmp_path / "model.txt"
    afile.write_text("x")
    res = runner.invoke(app, ["train", "--store", str(store), "--labels", labels, "--out", str(afile)])
    _user_error(res, "is a file")
    # the store itself is not a place for model files
    res = runner.invoke(app, ["train", "--store", str(store), "--labels", labels, "--out", str(store)])
    _user_error(res, "holds other files")


# --- report: the format follows --out, and an unknown suffix is refused ---------------------------


def test_report_out_unknown_suffix_is_refused(runs, tmp_path):
    out = tmp_path / "r.xlsx"
    res = runner.invoke(app, ["report", str(runs), "--out", str(out)])
    _user_error(res, ".html, .md, .csv or .json")
    assert not out.exists()


def test_report_format_follows_out_suffix(runs, tmp_path):
    out = tmp_path / "r.md"
    res = runner.invoke(app, ["report", str(runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8").startswith("# "), "a .md file must hold Markdown, not HTML"
    out_csv = tmp_path / "alerts.csv"
    assert runner.invoke(app, ["report", str(runs), "--out", str(out_csv)]).exit_code == 0
    assert "account_id" in pl.read_csv(out_csv).columns


def test_report_format_conflicting_with_out_is_refused(runs, tmp_path):
    out = tmp_path / "r.md"
    res = runner.invoke(app, ["report", str(runs), "--format", "html", "--out", str(out)])
    _user_error(res, "--format html")
    assert not out.exists()


# --- config values of the wrong type ----------------------------------------------------------------


def test_config_wrong_type_is_a_user_error_not_a_crash(store, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nalert_budget = "ten"\n')
    res = runner.invoke(app, ["run", "--store", str(store), "--runs", str(tmp_path / "runs"), "--config", str(cfg), "-q"])
    _user_error(res, "[run] alert_budget", "whole number")


def test_config_text_instead_of_list_names_the_key(store, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.features.build.build_features", _must_not_run)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nfan_windows = "24h"\n')
    res = runner.invoke(app, ["features", "--store", str(store), "--out", str(tmp_path / "f.parquet"), "--config", str(cfg)])
    _user_error(res, "[features] fan_windows must be a list", '["24h", "72h"]')


def test_config_right_types_still_load(tmp_path):
    from mulegraph.core.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[features]\nstructuring_thresholds = [10000, 4999.5]\nnight_hours = [1, 5]\n'
        '[run]\nalert_threshold = 1\nmodel = "m"\n[report]\npseudonymise = false\n'
    )
    c = load_config(cfg)
    assert c.features.structuring_thresholds == (10000, 4999.5) and c.run.alert_threshold == 1
    assert load_config(str(SAMPLE / "mulegraph.toml")).run.alert_budget == 25


# --- evaluate -----------------------------------------------------------------------------------------


def test_evaluate_accepts_a_run_folder(runs):
    res = runner.invoke(app, ["evaluate", "--scores", str(runs / "latest"), "--labels", str(SAMPLE / "labels.csv")])
    assert res.exit_code == 0, res.output
    assert "PR-AUC" in res.output
    res = runner.invoke(app, ["evaluate", "--scores", str(runs), "--labels", str(SAMPLE / "labels.csv"), "--json"])
    assert res.exit_code == 0, res.output


def test_evaluate_scores_wrong_columns_names_what_was_found(tmp_path):
    bad = tmp_path / "s.csv"
    bad.write_text("account,prob\nA,0.5\n")
    res = runner.invoke(app, ["evaluate", "--scores", str(bad), "--labels", str(SAMPLE / "labels.csv")])
    _user_error(res, "found: account, prob")


# --- trace --------------------------------------------------------------------------------------------


def test_trace_unknown_txn_is_an_error_not_an_empty_picture(store, tmp_path):
    tx = pl.read_parquet(store / "transfers" / "**" / "*.parquet").row(0, named=True)
    out = tmp_path / "t.json"
    res = runner.invoke(app, ["trace", tx["src_account"], "--store", str(store), "--out", str(out), "--txn", "NO-SUCH-TXN"])
    _user_error(res, "given transfer id")
    assert not out.exists()
    assert tx["src_account"] not in res.output.splitlines()[-1]
    # the same transfer is an outbound one: tracing it backward is refused, forward works
    res = runner.invoke(app, ["trace", tx["src_account"], "--store", str(store), "--out", str(out),
                              "--txn", tx["txn_id"], "--backward"])
    _user_error(res, "inbound")
    res = runner.invoke(app, ["trace", tx["src_account"], "--store", str(store), "--out", str(out), "--txn", tx["txn_id"]])
    assert res.exit_code == 0, res.output


# --- a model that will be refused is refused before any work -------------------------------------


def _stale_model(tmp_path: Path) -> Path:
    d = tmp_path / "old-model"
    d.mkdir()
    (d / "model_card.json").write_text('{"format": "0.1", "kind": "mulegraph.MuleModel"}')
    return d


def test_score_refused_model_fails_before_features(store, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.scoring.score.read_window", _must_not_run)
    res = runner.invoke(app, ["score", "--store", str(store), "--out", str(tmp_path / "s.parquet"),
                              "--model", str(_stale_model(tmp_path))])
    _user_error(res, "format")


def test_run_refused_model_fails_before_ingest(store, tmp_path, monkeypatch):
    monkeypatch.setattr(RUN_STARTS, _must_not_run)
    res = runner.invoke(app, ["run", str(SAMPLE / "transfers.csv"), "--store", str(store), "--runs", str(tmp_path / "runs"),
                              "--model", str(_stale_model(tmp_path)), "-q"])
    _user_error(res, "format")


# --- the nightly run says where the report is --------------------------------------------------------


def test_run_prints_the_report_path_on_a_line_of_its_own(store, tmp_path):
    runs = tmp_path / "a-rather-long-folder-name-for-the-nightly-runs-of-the-bank" / "runs"
    res = runner.invoke(app, ["run", "--store", str(store), "--runs", str(runs), "--window", "all", "-q", *_isolated(tmp_path)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("report: ")]
    assert len(lines) == 1, res.output
    path = Path(lines[0].removeprefix("report: "))
    assert path.is_absolute() and path.is_file() and path.name == "report.html"


def test_run_config_mapping_path_says_where_paths_are_read_from(tmp_path, monkeypatch):
    monkeypatch.setattr(RUN_STARTS, _must_not_run)
    monkeypatch.chdir(tmp_path)  # not the repository root the sample config expects
    res = runner.invoke(app, ["run", str(SAMPLE / "transfers.csv"), "--config", str(SAMPLE / "mulegraph.toml"), "-q"])
    _user_error(res, "[store] mapping", "working directory", "--mapping")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "store").exists()


# --- help -------------------------------------------------------------------------------------------

COMMANDS = ("ingest", "store-info", "synth", "features", "train", "evaluate", "score", "run", "report", "trace", "show")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_an_example(command):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output and f"mulegraph {command} " in res.output


def test_root_help_quick_start_works(tmp_path, monkeypatch):
    """The commands the top-level help offers as a first try run as written."""
    import shlex

    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "exit codes" in res.output.lower()
    start = res.output.index("A first try")
    steps = [ln.strip() for ln in res.output[start:].splitlines()[1:] if ln.strip().startswith("mulegraph ")]
    assert [s.split()[1] for s in steps] == ["synth", "run", "report"]
    monkeypatch.chdir(tmp_path)
    for step in steps:
        args = shlex.split(step)[1:]
        if args[0] == "synth":
            args += ["--accounts", "300", "--days", "10"]  # the same command, smaller for the test
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (step, r.output)
    assert (tmp_path / "report.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


# --- run: checks that cost nothing come before ingest, and leave no folders behind -------------------


def test_run_bad_window_fails_before_ingest(tmp_path, monkeypatch):
    monkeypatch.setattr(RUN_STARTS, _must_not_run)
    for opts in (["--window", "0h"], ["--window", "garbage"], ["--as-of", "yesterday"]):
        res = runner.invoke(app, ["run", str(SAMPLE / "transfers.csv"), "--store", str(tmp_path / "store"),
                                  "--runs", str(tmp_path / "runs"), "-q", *opts])
        _user_error(res, opts[0].lstrip("-"))
    assert not (tmp_path / "store").exists()


def test_run_in_an_empty_folder_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["run", "-q"])
    _user_error(res, "no exports were found", "run from the folder")
    assert list(tmp_path.iterdir()) == [], "a failed start must not leave store/ or runs/ behind"


# --- evaluate: labels that match no scored account --------------------------------------------------


def test_evaluate_labels_matching_no_scored_account_is_an_error(runs, tmp_path):
    labels = tmp_path / "l.csv"
    labels.write_text("account_id,is_mule\nOTHER-ID-1,true\nOTHER-ID-2,false\n")
    res = runner.invoke(app, ["evaluate", "--scores", str(runs), "--labels", str(labels)])
    _user_error(res, "none of the 2 labelled accounts has a score")


def test_headerless_labels_or_scores_never_echo_their_first_row(runs, store, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.scoring.model.train_from_store", _must_not_run)
    account = pl.read_parquet(runs / "latest" / "scores.parquet")["account_id"][0]
    headerless = tmp_path / "l.csv"
    headerless.write_text(f"{account},true\nSOMEONE-ELSE,false\n")
    for args in (
        ["evaluate", "--scores", str(runs), "--labels", str(headerless)],
        ["evaluate", "--scores", str(headerless), "--labels", str(SAMPLE / "labels.csv")],
        ["train", "--store", str(store), "--labels", str(headerless), "--out", str(tmp_path / "m")],
    ):
        res = runner.invoke(app, args)
        _user_error(res, "header row")
        assert account not in res.output


def test_synth_refuses_to_write_into_a_store(store, monkeypatch):
    monkeypatch.setattr("mulegraph.synth.generate", _must_not_run)
    before = sorted(p.name for p in store.iterdir())
    res = runner.invoke(app, ["synth", "--out", str(store), "--accounts", "100", "--days", "2"])
    _user_error(res, "store or run folder")
    assert sorted(p.name for p in store.iterdir()) == before


# --- folders that cannot be written, and file-system errors ------------------------------------------


def _no_write(*_a, **_k):
    raise PermissionError(13, "Permission denied")


def test_unwritable_out_fails_before_work(store, runs, tmp_path, monkeypatch):
    """As root, os.access says yes even on a read-only file system: the check creates a file."""
    monkeypatch.setattr("tempfile.mkstemp", _no_write)
    for target in ("mulegraph.features.build.build_features", "mulegraph.scoring.score.score", "mulegraph.scoring.model.train_from_store",
                   "mulegraph.synth.generate", "mulegraph.report.render"):
        monkeypatch.setattr(target, _must_not_run)
    for args in (
        ["features", "--store", str(store), "--out", str(tmp_path / "f.parquet")],
        ["score", "--store", str(store), "--out", str(tmp_path / "s.csv")],
        ["train", "--store", str(store), "--labels", str(SAMPLE / "labels.csv"), "--out", str(tmp_path / "m")],
        ["synth", "--out", str(tmp_path / "demo"), "--accounts", "100", "--days", "2"],
        ["report", str(runs), "--out", str(tmp_path / "r.html")],
    ):
        res = runner.invoke(app, args)
        _user_error(res, "cannot write in", "Permission denied")


def _raising(exc: BaseException):
    """A throwaway app whose one command raises ``exc`` (shared with test_cli_errors)."""
    from test_cli_errors import _app_raising

    return _app_raising(exc)


def test_file_system_errors_are_one_line():
    import errno

    res = runner.invoke(_raising(PermissionError(errno.EACCES, "Permission denied", "/data/runs")), ["boom"])
    _user_error(res, "cannot use '/data/runs': Permission denied")
    res = runner.invoke(_raising(OSError(errno.ENOSPC, "No space left on device", "/data/store/x.parquet")), ["boom"])
    assert res.exit_code == 1 and res.output.strip().startswith("error: no space left") and "Traceback" not in res.output
    res = runner.invoke(_raising(OSError(errno.EIO, "I/O error for SE1234")), ["boom"])
    assert res.exit_code == 1 and "internal error (OSError)" in res.output and "SE1234" not in res.output


def test_report_of_a_damaged_run_is_a_user_error(runs, tmp_path):
    import shutil

    damaged = tmp_path / "run"
    shutil.copytree(runs / "latest", damaged)
    (damaged / "alerts.parquet").write_bytes(b"not parquet")
    res = runner.invoke(app, ["report", str(damaged), "--format", "md"])
    _user_error(res, "alerts.parquet", "damaged")


@pytest.mark.parametrize("name", ["alerts.parquet", "scores.parquet"])
def test_report_of_a_run_missing_its_alerts_or_scores_is_refused(runs, tmp_path, name):
    """Without the check the report rendered "no suspects" from a damaged run."""
    import shutil

    damaged = tmp_path / "run"
    shutil.copytree(runs / "latest", damaged)
    (damaged / name).unlink()
    res = runner.invoke(app, ["report", str(damaged), "--format", "csv"])
    _user_error(res, name, "damaged")
