"""A model from elsewhere: its score blended with the local no-label score (mulegraph.scoring.blend)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import Config, ModelConfig, load_config
from mulegraph.core.errors import ConfigError, InputError, ModelError
from mulegraph.features.build import window_features
from mulegraph.ingest import ingest
from mulegraph.scoring import blend as B
from mulegraph.scoring import training
from mulegraph.scoring.model import train_from_store
from mulegraph.scoring.persist import export_portable, load_model, save_model
from mulegraph.scoring.score import ScoreOptions, score_features, score_window
from mulegraph.scoring.seeds import SeedInputs, scoring_seeds
from mulegraph.synth import generate

TINY = ModelConfig(random_state=3, cv_folds=2, proximity_folds=2, max_leaf_nodes=(4,), max_iter=10, n_models=1,
                   importance_repeats=0)
CFG = Config(model=TINY)


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    """Store A trains the model; store C is another bank (its account ids collide with A's)."""
    root = tmp_path_factory.mktemp("blend")
    data = generate(600, 14, seed=31, mule_share=0.06)
    data.transfers.write_parquet(root / "a.parquet")
    ingest([root / "a.parquet"], root / "A", mapping="canonical")
    model, _ = train_from_store(root / "A", data.labels.sample(fraction=0.6, seed=4), config=CFG)
    save_model(model, root / "model", key=None)
    export_portable(root / "model", root / "portable")
    other = generate(600, 14, seed=77, mule_share=0.06)
    other.transfers.write_parquet(root / "c.parquet")
    ingest([root / "c.parquet"], root / "C", mapping="canonical")
    known = other.labels.filter(pl.col("is_mule")).sort("account_id").head(12).select("account_id")
    known.write_csv(root / "known.csv")
    return {"root": root, "other": other, "known": root / "known.csv"}


def test_parse_blend():
    assert B.parse_blend("auto") == "auto" and B.parse_blend(" OFF ") == "off"
    assert B.parse_blend("0.25") == 0.25 and B.parse_blend(1) == 1.0
    for bad in ("1.5", "-0.1", "half", True, None):
        with pytest.raises(InputError):
            B.parse_blend(bad)


def test_blend_of_ranks():
    rng = np.random.default_rng(0)
    m, n = rng.random(200), rng.random(200)
    for w, ref in ((1.0, n), (0.0, m)):
        assert np.array_equal(np.argsort(B.blend(m, n, w), kind="stable"), np.argsort(ref, kind="stable"))
    s = B.blend(m, n, 0.75)
    assert ((s > 0) & (s < 1)).all()
    # logits of ranks: the top account of the no-label ranking stays in the blend's top 5% though the
    # model ranks it last; an average of plain ranks (0.75 * 1 + 0.25 * 0) puts it far lower
    n2, m2 = n.copy(), m.copy()
    n2[7], m2[7] = 2.0, -1.0
    s2 = B.blend(m2, n2, 0.75)
    assert (s2 > s2[7]).sum() < 10
    plain = 0.75 * np.argsort(np.argsort(n2)) + 0.25 * np.argsort(np.argsort(m2))
    assert (plain > plain[7]).sum() > 20


def test_a_model_from_another_store_is_blended_with_the_no_label_score(banks):
    root = banks["root"]
    seeds_in = SeedInputs.load(banks["known"])
    for model_dir in (root / "model", root / "portable"):
        # by default the weight is chosen from the local seed mules (12 here)
        auto = score_window(root / "C", model_dir=model_dir, config=CFG, seeds=seeds_in, options=ScoreOptions(evidence_top=0))
        assert auto.seeds.elsewhere and auto.seeds.summary()["blend"]["setting"] == "auto"
        assert auto.seeds.summary()["blend"]["chosen"] == "local"
        r = score_window(root / "C", model_dir=model_dir, config=CFG, seeds=seeds_in, options=ScoreOptions(elsewhere_blend=B.DEFAULT_WEIGHT))
        how = r.seeds.summary()["blend"]
        assert how == {"setting": B.DEFAULT_WEIGHT, "weight": B.DEFAULT_WEIGHT, "chosen": "setting"}
        # the score is the blend of the model's own score and the no-label score, account by account
        wf = window_features(root / "C", config=CFG)
        model = load_model(model_dir)
        seeds = scoring_seeds(model, root / "C", wf.prepared.accounts["account_id"], inputs=seeds_in)
        own = score_features(wf.features, wf.prepared, model, seeds=seeds, options=ScoreOptions(elsewhere_blend="off"))
        assert seeds.blend == {}
        nolabel = score_features(wf.features, wf.prepared, None)
        frame = own.select("account_id", pl.col("score").alias("m")).join(nolabel.select("account_id", pl.col("score").alias("n")),
                                                                        on="account_id")
        want = frame.select("account_id", pl.Series("score", B.blend(frame["m"].to_numpy(), frame["n"].to_numpy(), B.DEFAULT_WEIGHT)))
        got = r.scores.select("account_id", "score").join(want, on="account_id", suffix="_want")
        assert got.height == r.scores.height == own.height
        assert np.allclose(got["score"].to_numpy(), got["score_want"].to_numpy(), rtol=0, atol=1e-12)
        assert r.scores["account_id"].to_list() != own["account_id"].to_list()  # the ranking moved


def test_the_model_on_its_own_store_never_blends(banks):
    root = banks["root"]
    r = score_window(root / "A", model_dir=root / "model", config=CFG)
    assert not r.seeds.elsewhere and r.seeds.summary()["blend"] is None
    off = score_window(root / "A", model_dir=root / "model", config=CFG, options=ScoreOptions(elsewhere_blend="off"))
    assert off.scores.equals(r.scores)


def test_auto_chooses_the_weight_from_the_local_mules_out_of_fold(banks):
    root = banks["root"]
    seeds_in = SeedInputs.load(banks["known"])
    r = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=seeds_in,
                     options=ScoreOptions(elsewhere_blend="auto", evidence_top=0))
    how = r.seeds.summary()["blend"]
    assert how["chosen"] == "local" and how["weight"] in B.WEIGHTS and how["seed_mules"] == 12
    assert set(how["auc"]) == {str(w) for w in B.WEIGHTS}
    # the weight chosen, given as a setting, gives the same scores: the model's seeds were restored
    fixed = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=seeds_in,
                         options=ScoreOptions(elsewhere_blend=how["weight"], evidence_top=0))
    assert fixed.scores.select("account_id", "score").equals(r.scores.select("account_id", "score"))
    # without enough seed mules: the default weight
    few = pl.read_csv(banks["known"]).head(B.MIN_SEED_MULES - 1)
    d = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=SeedInputs.load(few),
                     options=ScoreOptions(elsewhere_blend="auto", evidence_top=0))
    assert d.seeds.summary()["blend"]["weight"] == B.DEFAULT_WEIGHT and d.seeds.summary()["blend"]["chosen"] == "default"


def test_auto_on_a_large_window_reads_a_sample_and_fewer_splits(banks, monkeypatch):
    root = banks["root"]
    seeds_in = SeedInputs.load(banks["known"])
    full = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=seeds_in,
                        options=ScoreOptions(elsewhere_blend="auto", evidence_top=0))
    how = full.seeds.summary()["blend"]
    assert how["accounts_read"] == full.scores.height and how["splits"] == 2 * B.REPEATS  # 12 mules: 4 repeats
    # a window larger than AUTO_SAMPLE: the held-out mules are ranked among a sample of the others
    monkeypatch.setattr(B, "AUTO_SAMPLE", 200)
    monkeypatch.setattr(B, "AUTO_RANKINGS", 12)  # 12 seed mules rank 12 times per repeat: one repeat is enough
    r = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=seeds_in,
                     options=ScoreOptions(elsewhere_blend="auto", evidence_top=0))
    small = r.seeds.summary()["blend"]
    assert small["accounts_read"] == 12 + 200 and small["splits"] == 2 and small["weight"] in B.WEIGHTS
    # only the choice reads the sample: every account is scored, blended with the weight chosen
    assert r.scores.height == full.scores.height
    fixed = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=seeds_in,
                         options=ScoreOptions(elsewhere_blend=small["weight"], evidence_top=0))
    assert fixed.scores.select("account_id", "score").equals(r.scores.select("account_id", "score"))


def test_seed_sets_scored_on_one_held_closeness_graph_get_the_same_closeness(banks):
    # "auto" scores the window with 8 seed sets; within closeness_graph_held the label-free tables are built once
    from polars.testing import assert_frame_equal

    root = banks["root"]
    wf = window_features(root / "C", config=CFG)
    model = load_model(root / "portable").set_context(wf.prepared)
    known = pl.read_csv(banks["known"], schema={"account_id": pl.String}).with_columns(pl.lit(True).alias("is_mule"))
    sets = [known, known.head(5), known.tail(4)]
    plain = [model.set_seeds(s).closeness() for s in sets]
    assert not plain[1].equals(plain[2])
    with model.closeness_graph_held():
        for s, want in zip(sets, plain):
            assert_frame_equal(model.set_seeds(s).closeness(), want)
        held = model._graph
        assert held is not None and held.cache  # built once, its label-free tables kept for the next seed set
    assert model._graph is None  # released after the block


def test_cli_elsewhere_blend(banks):
    root = banks["root"]
    runner = CliRunner()
    out = root / "s.parquet"
    res = runner.invoke(app, ["score", "--store", str(root / "C"), "--model", str(root / "portable"), "--known", str(banks["known"]),
                              "--elsewhere-blend", "off", "--out", str(out), "--json", "--evidence-top", "0"])
    assert res.exit_code == 0, res.output
    assert '"blend": null' in res.output and '"elsewhere": true' in res.output
    res = runner.invoke(app, ["score", "--store", str(root / "C"), "--model", str(root / "portable"),
                              "--elsewhere-blend", "lots", "--out", str(out)])
    assert res.exit_code == 2 and "elsewhere blend" in res.output


@pytest.fixture(scope="module")
def few_model(banks):
    """A model of store A trained with labels that name about half of its mules (known_mule_share 0.5)."""
    root = banks["root"]
    data = generate(600, 14, seed=31, mule_share=0.06)
    cfg = Config(model=dataclasses.replace(TINY, known_mule_share=0.5))
    model, _ = train_from_store(root / "A", data.labels.sample(fraction=0.6, seed=4), config=cfg)
    save_model(model, root / "few", key=None)
    return root / "few"


def test_a_few_label_model_is_blended_with_the_no_label_score_on_its_own_store(banks, few_model):
    root = banks["root"]
    card = json.loads((few_model / "model_card.json").read_text())
    assert card["training"]["nolabel_blend"] == B.FEW_LABEL_WEIGHT == 0.5
    assert "not a probability" in (few_model / "model_card.md").read_text()
    r = score_window(root / "A", model_dir=few_model, config=CFG)
    assert not r.seeds.elsewhere
    assert r.seeds.summary()["blend"] == {"setting": "model", "weight": 0.5, "chosen": "the model's nolabel_blend"}
    wf = window_features(root / "A", config=CFG)
    model = load_model(few_model)
    assert model.nolabel_blend_ == 0.5
    seeds = scoring_seeds(model, root / "A", wf.prepared.accounts["account_id"])
    model.nolabel_blend_ = None  # the model's own score
    own = score_features(wf.features, wf.prepared, model, seeds=seeds)
    nolabel = score_features(wf.features, wf.prepared, None)
    frame = own.select("account_id", pl.col("score").alias("m")).join(nolabel.select("account_id", pl.col("score").alias("n")),
                                                                    on="account_id")
    want = frame.select("account_id", pl.Series("score", B.blend(frame["m"].to_numpy(), frame["n"].to_numpy(), 0.5)))
    got = r.scores.select("account_id", "score").join(want, on="account_id", suffix="_want")
    assert got.height == r.scores.height == own.height
    assert np.allclose(got["score"].to_numpy(), got["score_want"].to_numpy(), rtol=0, atol=1e-12)
    assert r.scores["account_id"].to_list() != own["account_id"].to_list()  # the ranking moved
    # from elsewhere it is blended once, with the elsewhere weight
    e = score_window(root / "C", model_dir=few_model, config=CFG, seeds=SeedInputs.load(banks["known"]),
                     options=ScoreOptions(evidence_top=0, elsewhere_blend=B.DEFAULT_WEIGHT))
    assert e.seeds.summary()["blend"] == {"setting": B.DEFAULT_WEIGHT, "weight": B.DEFAULT_WEIGHT, "chosen": "setting"}
    e = score_window(root / "C", model_dir=few_model, config=CFG, seeds=SeedInputs.load(banks["known"]),
                     options=ScoreOptions(evidence_top=0))  # the default: chosen from the local seeds, not the model's 0.5
    assert e.seeds.summary()["blend"]["setting"] == "auto" and e.seeds.summary()["blend"]["chosen"] == "local"


def test_nolabel_blend_setting(banks):
    assert B.few_label_weight("auto", 1.0) is None and B.few_label_weight("auto", 0.2) == B.FEW_LABEL_WEIGHT
    assert B.few_label_weight("off", 0.2) is None and B.few_label_weight(0.75, 1.0) == 0.75
    assert B.few_label_weight("0.25", 0.2) == 0.25
    # a model trained with every label known records no blend and scores as before
    card = json.loads((banks["root"] / "model" / "model_card.json").read_text())
    assert card["training"]["nolabel_blend"] is None and load_model(banks["root"] / "model").__dict__.get("nolabel_blend_") is None
    for bad in (1.5, "half", True):
        with pytest.raises(ModelError, match="nolabel_blend"):
            training.check_config(dataclasses.replace(TINY, nolabel_blend=bad))
    with pytest.raises(ConfigError, match="nolabel_blend"):
        load_config(data={"model": {"nolabel_blend": "sometimes"}})
    assert load_config(data={"model": {"nolabel_blend": 0.75}}).model.nolabel_blend == 0.75


def test_the_nightly_run_blends_a_model_from_elsewhere_as_told(banks, tmp_path):
    """``run --elsewhere-blend`` (``[run] elsewhere_blend``) scores as ``score`` does with the same
    setting; a bad setting fails before the run makes a folder."""
    root = banks["root"]
    runner = CliRunner()
    (tmp_path / "inbox").mkdir()
    seeds_in = SeedInputs.load(banks["known"])
    for setting in ("off", "0.5", None):
        runs = tmp_path / f"runs-{setting}"
        args = ["run", "--store", str(root / "C"), "--runs", str(runs), "--inbox", str(tmp_path / "inbox"), "--window", "all",
                "--model", str(root / "portable"), "--known", str(banks["known"]), "--json"]
        res = runner.invoke(app, args + ([] if setting is None else ["--elsewhere-blend", setting]))
        assert res.exit_code == 0, res.output
        got = pl.read_parquet(next(runs.glob("*/scores.parquet"))).select("account_id", "score", "rank")
        want = score_window(root / "C", model_dir=root / "portable", config=CFG, seeds=seeds_in,
                            options=ScoreOptions(elsewhere_blend="auto" if setting is None else B.parse_blend(setting)))
        assert got.equals(want.scores.select("account_id", "score", "rank"))
        blend = json.loads(res.output)["seeds"]["blend"]  # the manifest says how the run blended
        if setting == "off":
            assert blend is None
        else:
            assert blend["setting"] == ("auto" if setting is None else float(setting))
            assert blend["weight"] == (float(setting) if setting else want.seeds.summary()["blend"]["weight"])
    res = runner.invoke(app, ["run", "--store", str(root / "C"), "--runs", str(tmp_path / "bad"), "--inbox", str(tmp_path / "inbox"),
                              "--model", str(root / "portable"), "--elsewhere-blend", "lots"])
    assert res.exit_code == 2 and "elsewhere" in res.output and not (tmp_path / "bad").exists()
    from mulegraph.core.config import RunConfig
    from mulegraph.core.errors import InputError
    from mulegraph.pipeline import run

    bad = Config(run=RunConfig(elsewhere_blend=1.5))
    with pytest.raises(InputError, match=r"\[run\] elsewhere_blend"):
        run(bad, store=root / "C", runs_dir=tmp_path / "bad2", inbox=tmp_path / "inbox", model=root / "portable")
    assert not (tmp_path / "bad2").exists()


def test_the_report_says_which_seeds_a_run_read_and_how_it_blended(banks, tmp_path):
    """A compliance reader sees, in every report format, the known mules a model's run read by
    source and the weight of the local no-label score; a no-label run says nothing of seeds."""
    from mulegraph.io.runs import load_run
    from mulegraph.report.document import REPORT_JSON_SCHEMA, validate_json
    from mulegraph.report.html import render_html
    from mulegraph.report.text import render_json, render_markdown

    root = banks["root"]
    runner = CliRunner()
    (tmp_path / "inbox").mkdir()
    for name, extra in (("model", ["--model", str(root / "portable"), "--known", str(banks["known"])]), ("nolabel", [])):
        res = runner.invoke(app, ["run", "--store", str(root / "C"), "--runs", str(tmp_path / name), "--inbox", str(tmp_path / "inbox"),
                                  "--window", "all", "--quiet"] + extra)
        assert res.exit_code == 0, res.output
    run = load_run(next(p for p in (tmp_path / "model").iterdir() if p.is_dir() and p.name != "latest"))
    doc = json.loads(render_json(run))
    assert validate_json(doc, REPORT_JSON_SCHEMA) == []
    seeds = doc["run"]["seeds"]
    assert seeds["mules"] == 12 and seeds["by_source"]["known_file"]["mules"] == 12 and seeds["elsewhere"] is True
    weight = seeds["blend"]["weight"]
    assert seeds["blend"]["setting"] == "auto" and seeds["blend"]["chosen"] == "local" and weight in B.WEIGHTS
    line = f"12 known mules (12 from --known file); a model from elsewhere; scores blended with the local no-label score, weight {weight:.2f} (chosen from 12 local seed mules)"
    assert f"- Seeds: {line}" in render_markdown(run).replace("\\-", "-")
    assert line in render_html(run)
    plain = load_run(next(p for p in (tmp_path / "nolabel").iterdir() if p.is_dir() and p.name != "latest"))
    assert json.loads(render_json(plain))["run"]["seeds"] is None
    assert "Seeds" not in render_markdown(plain) and ">Seeds<" not in render_html(plain)
