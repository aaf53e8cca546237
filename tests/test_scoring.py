"""score / score_features / write_scores / the score command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import Config
from mulegraph.core.errors import FeatureError, InputError
from mulegraph.features import compute_features, prepare
from mulegraph.core.schema import REASONS_DTYPE, SCORE_SCHEMA, reasons_from_json, reasons_to_json
from mulegraph.scoring.score import ScoreOptions, rank_scores, score, score_features, write_scores

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_data():
    from mulegraph.synth import generate

    return generate(500, 20, 11)


@pytest.fixture(scope="module")
def scored(synth_data):
    cfg = Config().replace("features", hub_degree=100)
    scores, feats = score(synth_data.transfers, config=cfg, return_features=True, options=ScoreOptions(evidence_top=40))
    return scores, feats, cfg


def test_schema_ranks_and_range(scored):
    scores, feats, _ = scored
    assert scores.schema == pl.Schema(SCORE_SCHEMA)
    assert scores["rank"].to_list() == list(range(1, scores.height + 1))
    assert scores["score"].is_between(0.0, 1.0).all()
    assert scores["score"].is_sorted(descending=True)
    assert scores["account_id"].n_unique() == scores.height
    hubs = set(feats.filter(pl.col("is_hub"))["account_id"])
    assert hubs, "the fixture should have hubs at hub_degree=100"
    assert not hubs & set(scores["account_id"])
    assert set(scores["account_id"]) == set(feats["account_id"]) - hubs
    assert scores["model_version"].unique().to_list() == ["nolabel-3"]
    assert scores["run_id"].null_count() == 0


def test_deterministic(synth_data, scored):
    scores, _, cfg = scored
    again = score(synth_data.transfers, config=cfg, options=ScoreOptions(evidence_top=40))
    assert again.equals(scores)


def test_reasons_point_at_real_transfers_of_the_account(synth_data, scored):
    scores, _, _ = scored
    tx = synth_data.transfers.select("txn_id", "src_account", "dst_account")
    owners = {r[0]: (r[1], r[2]) for r in tx.rows()}
    with_evidence = 0
    for rank, acc, reasons in scores.select("rank", "account_id", "reasons").rows():
        assert 3 <= len(reasons) <= 5
        for r in reasons:
            assert set(r) == {"code", "feature", "family", "text", "value", "percentile", "txn_ids"}
            assert r["percentile"] is None or 0.0 <= r["percentile"] <= 1.0
            assert isinstance(r["text"], str) and r["text"]
            if rank > 40:
                assert r["txn_ids"] == []
            for tid in r["txn_ids"]:
                assert tid in owners, tid
                assert acc in owners[tid], (acc, tid)
            with_evidence += bool(r["txn_ids"])
    assert with_evidence >= 40  # every top account has evidence for at least one reason


def test_percentile_in_reasons_is_share_of_ranked_accounts_below(scored):
    scores, feats, _ = scored
    ranked = feats.filter(~pl.col("is_hub"))
    top = scores["reasons"][0].to_list()
    for r in top:
        if r["value"] is None or r["feature"] not in ranked.columns:
            continue
        col = ranked[r["feature"]].cast(pl.Float64).fill_nan(None).drop_nulls().to_numpy()
        acc_value = ranked.filter(pl.col("account_id") == scores["account_id"][0])[r["feature"]].item()
        want = float((col < acc_value).sum() / col.size)
        assert r["percentile"] == pytest.approx(want, abs=1e-5)


def test_rank_ties_broken_by_account_id():
    frame = pl.DataFrame({"account_id": ["b", "a", "c"], "score": [0.5, 0.5, 0.9]})
    out = rank_scores(frame)
    assert out["account_id"].to_list() == ["c", "a", "b"]
    assert out["rank"].to_list() == [1, 2, 3]


def test_window_restricts_accounts(synth_data):
    full = score(synth_data.transfers, options=ScoreOptions(evidence_top=0))
    newest = synth_data.transfers["ts"].max()
    short = score(synth_data.transfers, window="2d", as_of=newest, options=ScoreOptions(evidence_top=0))
    cutoff = newest - pl.duration(days=2)
    active = synth_data.transfers.filter(pl.col("ts") > pl.select(cutoff).item())
    ids = set(active["src_account"]) | set(active["dst_account"])
    assert set(short["account_id"]) <= ids
    assert short.height < full.height


def test_empty_window_is_a_clear_error(synth_data):
    oldest = synth_data.transfers["ts"].min()
    with pytest.raises(InputError, match="no transfers in the chosen window"):
        score(synth_data.transfers, window="1d", as_of=oldest - pl.select(pl.duration(days=5)).item())


class _FakeModel:
    """A model whose score is one feature's rank share (stands in for a trained MuleModel)."""

    feature_importance = {"in_cp": 0.7, "passthrough_share_24h": 0.3}
    training_hash_ = "abcdef0123456789"

    def set_context(self, transfers):
        self.context = transfers
        return self

    def predict_scores(self, features):
        v = features["in_cp"].cast(pl.Float64).fill_null(0).to_numpy()
        return pl.DataFrame({"account_id": features["account_id"], "score": v / max(v.max(), 1.0)})


def test_supervised_path_uses_the_model(synth_data):
    p = prepare(synth_data.transfers)
    feats = compute_features(p)
    model = _FakeModel()
    out = score_features(feats, p, model, run_id="r1", options=ScoreOptions(evidence_top=5))
    assert model.context is p  # the model reads the graph of this window
    assert out["model_version"].unique().to_list() == ["model-abcdef012345"]
    ranked = feats.filter(~pl.col("is_hub"))
    best = ranked.sort(["in_cp", "account_id"], descending=[True, False])["account_id"][0]
    assert out["account_id"][0] == best
    first = out["reasons"][0].to_list()
    assert first[0]["feature"] == "in_cp" and first[0]["code"] == "VOLUME"
    assert out["run_id"].unique().to_list() == ["r1"]


def test_no_usable_features_is_an_error():
    feats = pl.DataFrame({"account_id": ["a", "b"], "is_hub": [False, False], "zz_unknown": [1.0, 2.0]})
    with pytest.raises(FeatureError, match="no-label rules"):
        score_features(feats)


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".json"])
def test_write_scores_formats(tmp_path, scored, ext):
    scores, _, _ = scored
    path = write_scores(scores.head(20), tmp_path / f"scores{ext}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    if ext == ".parquet":
        back = pl.read_parquet(path)
        assert back.schema["reasons"] == REASONS_DTYPE
        assert back.equals(scores.head(20))
    elif ext == ".csv":
        back = pl.read_csv(path, schema={**SCORE_SCHEMA, "reasons": pl.String})
        assert back["account_id"].to_list() == scores.head(20)["account_id"].to_list()
        # the reasons are JSON text in CSV, and read back to the same structs
        assert back.select(reasons_from_json())["reasons"].equals(scores.head(20)["reasons"])
        assert back["reasons"].to_list() == scores.head(20).select(reasons_to_json())["reasons"].to_list()
    else:
        rows = json.loads(path.read_text())
        assert rows[0]["account_id"] == scores["account_id"][0]
        assert isinstance(rows[0]["reasons"], list) and rows[0]["reasons"]
        assert [r["reasons"] for r in rows] == scores.head(20)["reasons"].to_list()


def test_write_scores_rejects_unknown_extension(tmp_path, scored):
    with pytest.raises(InputError, match="must end in"):
        write_scores(scored[0], tmp_path / "scores.xlsx")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from mulegraph.ingest import ingest
    from mulegraph.io.store import Store

    d = tmp_path_factory.mktemp("store") / "s"
    ingest([REPO / "sample_data" / "transfers.csv"], Store.open(d, create=True), mapping=REPO / "sample_data" / "mapping.toml")
    return d


def test_cli_score_writes_file_and_prints_top(tmp_path, store_dir):
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(app, ["score", "--store", str(store_dir), "--out", str(out), "--top-reasons", "4"])
    assert res.exit_code == 0, res.output
    frame = pl.read_parquet(out)
    assert frame.schema == pl.Schema(SCORE_SCHEMA)
    assert all(3 <= len(r) <= 4 for r in frame["reasons"].to_list())
    assert "scored" in res.output and frame["account_id"][0] in res.output


def test_cli_errors(tmp_path, store_dir):
    runner = CliRunner()
    res = runner.invoke(app, ["score", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "error:" in res.output
    res = runner.invoke(app, ["score", "--store", str(store_dir), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "must end in" in res.output
    res = runner.invoke(app, ["score", "--store", str(store_dir)])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(app, ["score", "--list-rules"])
    assert res.exit_code == 0 and "ONE_OFF_SQUARES" in res.output


def test_installed_command_runs(tmp_path, store_dir):
    exe = Path(sys.executable).parent / "mulegraph"
    out = tmp_path / "scores.json"
    proc = subprocess.run(
        [str(exe), "score", "--store", str(store_dir), "--out", str(out), "--window", "14d", "--show", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert rows and rows[0]["rank"] == 1
    assert np.all(np.diff([r["rank"] for r in rows]) == 1)


def test_scores_passed_to_a_sink_a_chunk_at_a_time_equal_the_whole_frame(synth_data, monkeypatch, tmp_path):
    """With a sink, the scores and their reasons come in chunks of accounts, in rank order, and
    make up the frame returned without one; the frame returned then lacks only the reasons."""
    import mulegraph.scoring.explain as explain_module
    from mulegraph.io.runs import ParquetChunks

    p = prepare(synth_data.transfers)
    feats = compute_features(p)
    options = ScoreOptions(evidence_top=30)
    whole = score_features(feats, p, run_id="r1", options=options)
    monkeypatch.setattr(explain_module, "CHUNK_ROWS", 37)
    parts = []
    light = score_features(feats, p, run_id="r1", options=options, sink=parts.append)
    assert len(parts) == -(-whole.height // 37) > 3
    assert pl.concat(parts).equals(whole)
    assert light.columns == [c for c in SCORE_SCHEMA if c != "reasons"] and light.equals(whole.drop("reasons"))
    path = tmp_path / "scores.parquet"
    with ParquetChunks(path, SCORE_SCHEMA) as sink:
        score_features(feats, p, run_id="r1", options=options, sink=sink.write)
    assert sink.rows == whole.height and pl.read_parquet(path).equals(whole)


def test_an_empty_chunked_parquet_file_has_the_schema(tmp_path):
    from mulegraph.io.runs import ParquetChunks

    with ParquetChunks(tmp_path / "s.parquet", SCORE_SCHEMA):
        pass
    back = pl.read_parquet(tmp_path / "s.parquet")
    assert back.is_empty() and back.schema == pl.Schema(SCORE_SCHEMA)


def test_scoring_only_the_columns_it_reads_gives_the_same_scores(synth_data):
    """The nightly run keeps only :func:`columns_read` of every account's features for scoring:
    fewer columns than the families compute, and the same scores, ranks and reasons (evidence
    included), in the no-label mode and with the IsolationForest (which reads them all)."""
    from mulegraph.scoring.score import columns_read

    p = prepare(synth_data.transfers)
    feats = compute_features(p)
    read = columns_read()
    assert read is not None and {"account_id", "is_hub"} <= set(read)
    kept = [c for c in feats.columns if c in read]
    assert len(kept) < len(feats.columns) / 2
    options = ScoreOptions(evidence_top=30)
    want = score_features(feats, p, run_id="r1", options=options)
    assert score_features(feats.select(kept), p, run_id="r1", options=options).equals(want)
    assert columns_read(options=ScoreOptions(detector_weight=0.3)) is None


class _Listing:
    """A model that lists its features and scores by one of them."""

    feature_names_ = ["fanin_max_72h", "in_cp"]
    feature_importance = {"fanin_max_72h": 1.0, "in_cp": 0.5}

    def set_context(self, transfers):
        return self

    def predict_scores(self, features):
        assert set(self.feature_names_) <= set(features.columns)
        return features.select("account_id", (pl.col("fanin_max_72h") + 0.1 * pl.col("in_cp")).alias("score"))


def test_a_model_scored_on_the_columns_it_reads_gives_the_same_scores(synth_data):
    from mulegraph.scoring.score import columns_read

    p = prepare(synth_data.transfers)
    feats = compute_features(p)
    model = _Listing()
    read = columns_read(model)
    assert set(model.feature_names_) <= set(read)
    want = score_features(feats, p, model, run_id="r1")
    assert score_features(feats.select([c for c in feats.columns if c in read]), p, model, run_id="r1").equals(want)
    assert columns_read(object()) is None  # a model that does not list its features reads them all
    model.stage1_ = _Listing()  # a first-stage model (neighbour scores) reads its own features too
    model.stage1_.feature_names_ = ["out_cp"]
    assert {"fanin_max_72h", "in_cp", "out_cp"} <= set(columns_read(model))
    model.stage1_ = object()
    assert columns_read(model) is None


def test_the_score_command_writes_parquet_as_the_reasons_are_built(tmp_path, store_dir, monkeypatch):
    """``score --out x.parquet`` writes the scores a chunk at a time: the file holds what scoring
    returns when it holds them all, and the top table shows the same reasons."""
    import mulegraph.scoring.explain as explain_module
    from mulegraph.scoring.score import score_window

    monkeypatch.setattr(explain_module, "CHUNK_ROWS", 50)
    out = tmp_path / "s.parquet"
    res = CliRunner().invoke(app, ["score", "--store", str(store_dir), "--out", str(out), "--show", "3"])
    assert res.exit_code == 0, res.output
    chunked = pl.read_parquet(out)
    want = score_window(store_dir).scores
    assert chunked.height > 150 and chunked.equals(want)
    assert want["account_id"][0] in res.output and "scored" in res.output
