"""Evaluation metrics against plain-Python references; the evaluate command."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.errors import InputError
from mulegraph.scoring.evaluate import evaluate, format_table, read_scores


def _ref_average_precision(y: list[bool], s: list[float]) -> float:
    """Average precision for distinct scores: mean over mules of the precision at each mule's rank."""
    order = sorted(range(len(y)), key=lambda i: -s[i])
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if y[i]:
            hits += 1
            total += hits / rank
    return total / hits


def _ref_roc_auc(y: list[bool], s: list[float]) -> float:
    pos = [s[i] for i in range(len(y)) if y[i]]
    neg = [s[i] for i in range(len(y)) if not y[i]]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _frames(y, s, typ=None):
    ids = [f"acc{i:03d}" for i in range(len(y))]
    labels = pl.DataFrame({"account_id": ids, "is_mule": y, **({"typology": typ} if typ is not None else {})})
    scores = pl.DataFrame({"account_id": ids, "score": s})
    return labels, scores


@given(
    data=st.lists(st.tuples(st.booleans(), st.sampled_from([None, "fan_in", "cycle", "fan_in|cycle"])), min_size=2, max_size=60),
    seed=st.integers(0, 10_000),
)
def test_metrics_agree_with_plain_python(data, seed):
    y = [b for b, _ in data]
    if all(y) or not any(y):
        y[0] = not y[0]
    typ = [t if yi else None for yi, (_, t) in zip(y, data)]
    s = list(np.random.default_rng(seed).permutation(len(y)) / len(y))  # distinct scores
    labels, scores = _frames(y, s, typ)
    res = evaluate(scores, labels, budgets=(0.05, 0.1, 0.5))
    assert res["pr_auc"] == pytest.approx(_ref_average_precision(y, s))
    assert res["roc_auc"] == pytest.approx(_ref_roc_auc(y, s))
    order = sorted(range(len(y)), key=lambda i: -s[i])
    for b in res["budgets"]:
        k = max(1, math.ceil(b["budget"] * len(y)))
        tp = sum(y[i] for i in order[:k])
        assert (b["k"], b["tp"]) == (k, tp)
        assert b["precision"] == pytest.approx(tp / k)
        assert b["recall"] == pytest.approx(tp / sum(y))
    for name, e in res["typologies"].items():
        members = [i for i in range(len(y)) if typ[i] and name in typ[i].split("|")]
        assert e["mules"] == len(members)
        for b in res["budgets"]:
            k = max(1, math.ceil(b["budget"] * len(y)))
            assert e["recall"][str(b["budget"])] == pytest.approx(len(set(order[:k]) & set(members)) / len(members))


def test_split_unscored_and_ties():
    labels = pl.DataFrame({"account_id": ["a", "b", "c", "d", "e"], "is_mule": [True, False, True, False, False]})
    scores = pl.DataFrame({"account_id": ["a", "b", "c", "x"], "score": [0.9, 0.9, 0.1, 1.0]})
    split = pl.DataFrame({"account_id": ["a", "b", "c", "d", "e"], "split": ["test", "test", "test", "test", "train"]})
    res = evaluate(scores, labels, split, budgets=(0.25, 0.5))
    assert res["n"] == 4 and res["mules"] == 2 and res["unscored"] == 1  # 'd' has no score, 'x' no label
    # tie between a and b broken by account id: a (mule) first
    assert [b["tp"] for b in res["budgets"]] == [1, 1]
    assert "PR-AUC" in format_table(res)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scores": pl.DataFrame({"account_id": ["a"]})}, "lack column"),
        ({"labels": pl.DataFrame({"account_id": ["a"], "is_mule": [1]})}, "boolean"),
        ({"budgets": (0.0,)}, "fractions"),
        ({"split": pl.DataFrame({"account_id": ["a"], "split": ["train"]})}, "no 'test'"),
        ({"labels": pl.DataFrame({"account_id": ["z"], "is_mule": [True]}), "split": pl.DataFrame({"account_id": ["a"], "split": ["test"]})}, "no labelled account"),
        ({"scores": pl.DataFrame({"account_id": ["a", "a"], "score": [0.1, 0.2]})}, "duplicate"),
    ],
)
def test_wrong_inputs(kwargs, match):
    args = {
        "scores": pl.DataFrame({"account_id": ["a", "b"], "score": [0.1, 0.2]}),
        "labels": pl.DataFrame({"account_id": ["a", "b"], "is_mule": [True, False]}),
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        evaluate(**args)


def test_cli_table_and_json(tmp_path):
    labels, scores = _frames([True, False, False, True], [0.9, 0.8, 0.1, 0.2], ["stack", None, None, "cycle"])
    labels.write_csv(tmp_path / "labels.csv")
    scores.write_csv(tmp_path / "scores.csv")
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--scores", str(tmp_path / "scores.csv"), "--labels", str(tmp_path / "labels.csv")])
    assert res.exit_code == 0, res.output
    assert "PR-AUC" in res.output and "stack" in res.output
    res = runner.invoke(app, ["evaluate", "--scores", str(tmp_path / "scores.csv"), "--labels", str(tmp_path / "labels.csv"), "--json", "--budget", "0.5"])
    out = json.loads(res.output)
    assert out["budgets"][0]["tp"] == 1 and out["typologies"]["cycle"]["recall"]["0.5"] == 0.0
    res = runner.invoke(app, ["evaluate", "--scores", str(tmp_path / "nope.csv"), "--labels", str(tmp_path / "labels.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_read_scores_rejects_non_numeric(tmp_path):
    (tmp_path / "s.csv").write_text("account_id,score\na,high\n")
    with pytest.raises(InputError, match="numeric"):
        read_scores(tmp_path / "s.csv")


def test_read_scores_of_a_run_folder_or_runs_folder(tmp_path):
    from mulegraph.scoring.evaluate import scores_file

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    pl.DataFrame({"account_id": ["a", "b"], "score": [0.9, 0.1]}).write_parquet(run / "scores.parquet")
    assert scores_file(run) == run / "scores.parquet"
    assert read_scores(run)["account_id"].to_list() == ["a", "b"]
    (run / "scores.parquet").unlink()
    with pytest.raises(InputError, match="has no scores.parquet"):
        read_scores(run)
    with pytest.raises(InputError, match="neither a run folder"):
        read_scores(tmp_path)
    assert scores_file(tmp_path / "s.csv") == tmp_path / "s.csv"  # a file is taken as it is
