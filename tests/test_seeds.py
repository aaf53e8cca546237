"""Seeds at scoring time: training labels of the same store only, decisions, --known, in the run manifest."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import Config, ModelConfig
from mulegraph.core.errors import InputError
from mulegraph.features.build import window_features
from mulegraph.ingest import ingest
from mulegraph.io.store import Store
from mulegraph.pipeline import run
from mulegraph.scoring.model import train_from_store
from mulegraph.scoring.persist import export_portable, load_model, save_model
from mulegraph.scoring.score import score_features, score_window
from mulegraph.scoring.seeds import SeedInputs, same_store, scoring_seeds, store_fingerprint
from mulegraph.synth import generate

TINY = ModelConfig(random_state=3, cv_folds=2, proximity_folds=2, max_leaf_nodes=(4,), max_iter=10, n_models=1,
                   importance_repeats=0)
CFG = Config(model=TINY)


def _write_parts(transfers: pl.DataFrame, folder, split_day: int) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    cut = transfers["ts"].min() + pl.duration(days=split_day)
    cut = pl.select(cut).item()
    first, second = folder / "part1.parquet", folder / "part2.parquet"
    transfers.filter(pl.col("ts") < cut).write_parquet(first)
    transfers.filter(pl.col("ts") >= cut).write_parquet(second)
    return first, second


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """Store A holds part 1 when the model is trained, then grows by part 2; store B holds the same
    exports but is another store; store C is another bank whose account ids collide with A's."""
    root = tmp_path_factory.mktemp("seeds")
    data = generate(700, 16, seed=31, mule_share=0.06)
    p1, p2 = _write_parts(data.transfers, root / "export", 10)
    ingest([p1], root / "A", mapping="canonical")
    train_labels = data.labels.sample(fraction=0.6, seed=4)
    model, _ = train_from_store(root / "A", train_labels, config=CFG)
    save_model(model, root / "model", key=None)
    ingest([p2], root / "A", mapping="canonical")  # the same store, grown
    ingest([p1, p2], root / "B", mapping="canonical")  # the same exports, another store
    other = generate(700, 16, seed=77, mule_share=0.06)
    c1, c2 = _write_parts(other.transfers, root / "export-c", 10)
    ingest([c1, c2], root / "C", mapping="canonical")
    export_portable(root / "model", root / "portable")
    return {"root": root, "data": data, "other": other, "model": root / "model", "portable": root / "portable",
            "train_labels": train_labels}


@pytest.fixture(autouse=True)
def _no_model_key(monkeypatch):
    monkeypatch.delenv("MULEGRAPH_MODEL_KEY", raising=False)


def _copy_store(bank, name, tmp_path):
    d = tmp_path / name
    shutil.copytree(bank["root"] / name, d)
    return d


# -- training labels: the same store only ------------------------------------------------------
def test_training_labels_seed_their_own_store_even_after_it_grew(bank):
    model = load_model(bank["model"])
    r = score_window(bank["root"] / "A", model_dir=bank["model"], config=CFG)
    s = r.seeds.summary()
    assert s["model_labels"].startswith("used")
    assert s["by_source"]["model"] == {"mules": int(model.known_["is_mule"].sum()), "not_mules": int((~model.known_["is_mule"]).sum())}
    assert s["in_window"]["mules"] == s["mules"] > 0
    # the same scores as the model's own known set (scores did not move for the store it was trained on)
    wf = window_features(bank["root"] / "A", config=CFG)
    assert score_features(wf.features, wf.prepared, load_model(bank["model"]), run_id=r.scores["run_id"][0]).equals(r.scores)


def test_a_model_from_another_store_uses_none_of_its_training_labels(bank):
    for other in ("B", "C"):  # B: the same exports in a new store; C: another bank whose ids collide with A's
        store = bank["root"] / other
        overlap = set(Store.open(store).transfers()["src_account"].to_list()) & set(bank["train_labels"]["account_id"].to_list())
        assert overlap  # the training ids exist there too: only the store identity tells them apart
        r = score_window(store, model_dir=bank["model"], config=CFG)
        s = r.seeds.summary()
        assert s["by_source"]["model"] == {"mules": 0, "not_mules": 0}
        assert s["model_labels"] == "not used: the model was trained on another store"
        assert r.seeds.frame.height == 0
        # exactly what the portable model (no ids at all) gives there
        p = score_window(store, model_dir=bank["portable"], config=CFG)
        assert p.scores.select("account_id", "score").equals(r.scores.select("account_id", "score"))


def test_same_store_means_same_id_and_the_same_first_ingests(bank, tmp_path):
    a = bank["root"] / "A"
    recorded = load_model(bank["model"]).training_store_
    assert recorded["ingests"] == 1 and same_store(recorded, a) and same_store(recorded, Store.open(a))
    assert not same_store(dict(recorded, ingests_sha256="0" * 64), a)
    assert not same_store(dict(recorded, ingests=5), a)
    assert not same_store(recorded, bank["root"] / "B")
    assert not same_store(recorded, Store.open(a).transfers()) and not same_store(None, a)
    assert store_fingerprint(Store.open(a).transfers()) is None
    # a store made before store ids: an id derived from its creation time, the same on every open
    legacy = _copy_store(bank, "A", tmp_path)
    man = json.loads((legacy / "manifest.json").read_text())
    del man["store_id"]
    (legacy / "manifest.json").write_text(json.dumps(man))
    ident = Store.open(legacy).identity()
    assert ident["store_id"].startswith("created-") and ident == Store.open(legacy).identity()


def test_model_labels_can_be_forced_for_frames(bank):
    transfers = Store.open(bank["root"] / "A").transfers()
    auto = score_window(transfers, model_dir=bank["model"], config=CFG)
    assert auto.seeds.summary()["model_labels"].startswith("not used: the transfers scored are a frame")
    forced = score_window(transfers, model_dir=bank["model"], config=CFG, model_labels=True)
    assert forced.seeds.summary()["by_source"]["model"]["mules"] > 0


# -- decisions recorded in the store ---------------------------------------------------------------
def test_decisions_since_training_seed_confirmed_and_clear(bank, tmp_path):
    store = _copy_store(bank, "A", tmp_path)  # a copy of a store is the same store
    known = load_model(bank["model"]).known_
    payers = Store.open(store).transfers()["src_account"].unique().sort()
    fresh = payers.filter(~payers.is_in(known["account_id"].implode())).head(3).to_list()  # not labelled at training
    cleared_mule = known.filter(pl.col("is_mule"))["account_id"].head(2).to_list()
    day = datetime(2030, 1, 1, tzinfo=timezone.utc)
    Store.open(store).add_decisions(pl.DataFrame({
        "account_id": fresh + cleared_mule + [fresh[0]],
        "decision": ["confirmed"] * 3 + ["cleared"] * 2 + ["cleared"],
        "date": [day] * 5 + [datetime(2031, 1, 1, tzinfo=timezone.utc)],  # fresh[0] later cleared: the latest counts
    }))
    before = score_window(bank["root"] / "A", model_dir=bank["model"], config=CFG)
    after = score_window(store, model_dir=bank["model"], config=CFG)
    frame = after.seeds.frame
    dec = frame.filter(pl.col("source") == "decisions").sort("account_id")
    assert dec["account_id"].to_list() == sorted(fresh + cleared_mule)
    assert dict(zip(dec["account_id"], dec["is_mule"])) == {fresh[0]: False, fresh[1]: True, fresh[2]: True,
                                                            cleared_mule[0]: False, cleared_mule[1]: False}
    s = after.seeds.summary()
    assert s["by_source"]["decisions"] == {"mules": 2, "not_mules": 3}
    assert s["by_source"]["model"]["mules"] == before.seeds.summary()["by_source"]["model"]["mules"] - 2
    assert not after.scores["score"].equals(before.scores["score"])



def test_a_backtest_as_of_a_past_date_reads_only_the_decisions_taken_by_then(bank, tmp_path):
    store = _copy_store(bank, "A", tmp_path)
    known = load_model(bank["model"]).known_
    payers = Store.open(store).transfers()["src_account"].unique().sort()
    fresh = payers.filter(~payers.is_in(known["account_id"].implode())).head(2).to_list()
    as_of = Store.open(store).transfers()["ts"].max().replace(hour=0, minute=0, second=0, microsecond=0)
    Store.open(store).add_decisions(pl.DataFrame({
        "account_id": fresh,
        "decision": ["confirmed", "confirmed"],
        "date": [as_of - timedelta(days=1), datetime(2031, 1, 1, tzinfo=timezone.utc)],  # before / after as_of
    }))
    today = score_window(store, model_dir=bank["model"], config=CFG)
    assert sorted(today.seeds.frame.filter(pl.col("source") == "decisions")["account_id"]) == sorted(fresh)
    past = score_window(store, model_dir=bank["model"], config=CFG, as_of=as_of)
    assert past.seeds.frame.filter(pl.col("source") == "decisions")["account_id"].to_list() == [fresh[0]]
    (tmp_path / "inbox").mkdir()
    res = run(config=CFG, store=store, runs_dir=tmp_path / "runs", inbox=tmp_path / "inbox", model=bank["model"],
              window="all", as_of=as_of)
    assert res.manifest["seeds"]["by_source"]["decisions"] == {"mules": 1, "not_mules": 0}

# -- a --known file ---------------------------------------------------------------------------------
def test_known_file_csv_and_parquet_with_and_without_is_mule(bank, tmp_path):
    ids = bank["other"].labels.filter(pl.col("is_mule"))["account_id"].head(6).to_list()
    csv = tmp_path / "known.csv"
    csv.write_text("account_id\n" + "\n".join(ids) + "\n")
    inputs = SeedInputs.load(known=csv)
    assert inputs.known["is_mule"].all() and inputs.known.height == 6
    pq = tmp_path / "known.parquet"
    pl.DataFrame({"account_id": ids, "is_mule": [True, True, True, True, False, False]}).write_parquet(pq)
    r = score_window(bank["root"] / "C", model_dir=bank["portable"], config=CFG, seeds=SeedInputs.load(known=pq))
    s = r.seeds.summary()
    assert s["by_source"]["known_file"] == {"mules": 4, "not_mules": 2} and s["by_source"]["model"]["mules"] == 0
    plain = score_window(bank["root"] / "C", model_dir=bank["portable"], config=CFG)
    assert not r.scores["score"].equals(plain.scores["score"])  # the local seeds reach the closeness features
    bad = tmp_path / "bad.csv"
    bad.write_text("acct\nx\n")
    with pytest.raises(InputError, match="account_id"):
        SeedInputs.load(known=bad)
    both = tmp_path / "both.csv"
    both.write_text("account_id,is_mule\na1,1\na1,0\n")
    with pytest.raises(InputError, match="both as mules and as not mules"):
        SeedInputs.load(known=both)
    with pytest.raises(InputError, match="need --model"):
        score_window(bank["root"] / "C", config=CFG, seeds=SeedInputs.load(known=csv))


def test_known_file_overrides_decisions_and_labels(bank):
    model = load_model(bank["model"])
    mule = model.known_.filter(pl.col("is_mule"))["account_id"][0]
    decisions = pl.DataFrame({"account_id": [mule], "decision": ["confirmed"],
                              "date": [datetime(2030, 1, 1, tzinfo=timezone.utc)], "note": [None]},
                             schema_overrides={"note": pl.String})
    inputs = SeedInputs.load(known=pl.DataFrame({"account_id": [mule], "is_mule": [False]}))
    p = window_features(bank["root"] / "A", config=CFG).prepared
    seeds = scoring_seeds(model, bank["root"] / "A", p.accounts["account_id"], decisions=decisions, inputs=inputs)
    row = seeds.frame.filter(pl.col("account_id") == mule)
    assert row.to_dicts() == [{"account_id": mule, "is_mule": False, "source": "known_file"}]


def test_score_command_prints_the_seeds(bank, tmp_path):
    csv = tmp_path / "known.csv"
    csv.write_text("account_id\n" + "\n".join(bank["other"].labels.filter(pl.col("is_mule"))["account_id"].head(5)) + "\n")
    res = CliRunner().invoke(app, ["score", "--store", str(bank["root"] / "C"), "--model", str(bank["portable"]),
                                   "--known", str(csv), "--out", str(tmp_path / "s.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["seeds"]["by_source"]["known_file"]["mules"] == 5 and out["scored"] > 0
    res = CliRunner().invoke(app, ["score", "--store", str(bank["root"] / "C"), "--known", str(csv),
                                   "--out", str(tmp_path / "s2.parquet")])
    assert res.exit_code == 2 and "need --model" in res.output


# -- the run manifest -------------------------------------------------------------------------------
def test_run_manifest_counts_seeds_and_a_new_known_file_is_something_new(bank, tmp_path):
    store = _copy_store(bank, "A", tmp_path)
    (tmp_path / "inbox").mkdir()
    common = dict(config=CFG, store=store, runs_dir=tmp_path / "runs", inbox=tmp_path / "inbox", model=bank["model"],
                  window="all")
    first = run(**common)
    seeds = first.manifest["seeds"]
    assert seeds["model_labels"].startswith("used") and seeds["by_source"]["model"]["mules"] > 0
    assert seeds["by_source"]["known_file"] == {"mules": 0, "not_mules": 0}
    known = tmp_path / "known.csv"
    known.write_text("account_id\n" + "\n".join(bank["data"].labels.filter(pl.col("is_mule"))["account_id"].tail(3)) + "\n")
    second = run(**common, known=known)  # not "nothing new": the known file decides scores
    assert second.manifest["seeds"]["by_source"]["known_file"]["mules"] >= 1
    assert second.manifest["fingerprint"] != first.manifest["fingerprint"]
    with pytest.raises(InputError, match="need a model"):
        run(**dict(common, model=None), known=known)


def test_run_reads_known_file_and_shared_lists_from_the_config(bank, tmp_path):
    from mulegraph.core.config import load_config

    store = _copy_store(bank, "A", tmp_path)
    (tmp_path / "inbox").mkdir()
    known = tmp_path / "known.csv"
    known.write_text("account_id\n" + "\n".join(bank["data"].labels.filter(pl.col("is_mule"))["account_id"].tail(3)) + "\n")
    cfg = load_config(data={"model": {"random_state": 3, "cv_folds": 2, "proximity_folds": 2, "max_leaf_nodes": [4],
                                      "max_iter": 10, "n_models": 1, "importance_repeats": 0},
                            "run": {"known": str(known), "model": str(bank["model"]), "window": "all",
                                    "inbox": str(tmp_path / "inbox"), "runs_dir": str(tmp_path / "runs")}})
    res = run(cfg, store=store)
    assert res.manifest["seeds"]["by_source"]["known_file"]["mules"] >= 1
    assert json.loads((res.run_dir / "config.json").read_text())["run"]["known"] == str(known)
    listed = load_config(data={"run": {"shared_lists": ["a.csv", "b.csv"]}})
    assert listed.run.shared_lists == ("a.csv", "b.csv")
    with pytest.raises(InputError, match=r"\[run\] key_file"):
        run(load_config(data={"run": {"shared_lists": [str(known)], "model": str(bank["model"]), "window": "all",
                                      "inbox": str(tmp_path / "inbox"), "runs_dir": str(tmp_path / "runs")}}),
            store=store)
