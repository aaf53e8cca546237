"""How far can known mules reach? Upper bounds for the few-known-mules protocol (issue 13).

With a share of the train-split mules known, a seed-driven method (closeness features, PageRank,
a model trained on them) can only find the test mules that the known mules lead to. This script
measures, on each AMLGentex set of ``--data``, with the seeded choice of ``bench_fewlabels.py``
(``keep_share``: ``numpy.random.default_rng(seed)``, seeds 0 1 2; "full" = every train-split mule):

* **in a known pattern**: the share of the test mules that take part in a laundering pattern
  (``txn_labels.pattern_id``) with at least one known mule;
* **direct**: the share of the test mules with a laundering transfer to or from a known mule;
* two **oracle bounds** (PR-AUC on the test accounts): every test mule of the first (second) kind
  ranked first, perfectly, and every other test account ranked by the no-label score
  (``mulegraph score`` without a model). A method that finds exactly the pattern-mates
  (laundering neighbours) of the known mules, and knows nothing better than the no-label mode
  about the rest, scores this.

The laundering labels (``txn_labels.parquet``) are read **here only**, to measure what the known
mules could reach; mulegraph never reads them. The bounds are not hard limits: a label-free
signal stronger than the no-label mode would lift the part of the ranking outside the oracle.

    python benchmarks/bench_ceiling.py --data /work/shared/data/amlgentex-hard-dev /work/shared/data/amlgentex-dev
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from bench_accuracy import PSEUDO
from bench_fewlabels import keep_share, load
from mulegraph.core.config import FeatureConfig
from mulegraph.features import load_families
from mulegraph.scoring.score import score_features
from mulegraph.scoring.training import average_precision


def pattern_members(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(``account_id, pattern_id`` of every laundering transfer's two ends; ``src, dst`` of the laundering transfers)."""
    tx = pl.read_parquet(folder / "transactions.parquet", columns=["src_account", "dst_account"])
    lab = pl.read_parquet(folder / "txn_labels.parquet", columns=["is_laundering", "pattern_id"])
    laundering = pl.concat([tx, lab], how="horizontal").filter(pl.col("is_laundering"))
    members = pl.concat([
        laundering.select(pl.col("src_account").alias("account_id"), "pattern_id"),
        laundering.select(pl.col("dst_account").alias("account_id"), "pattern_id"),
    ]).unique()
    return members, laundering.select(pl.col("src_account").alias("src"), pl.col("dst_account").alias("dst"))


def bounds(folder: Path, shares: list[float], seeds: list[int]) -> list[dict]:
    data = load(folder, FeatureConfig(hub_accounts=PSEUDO), None)
    nolabel = score_features(data.features, data.prepared, None, run_id="ceiling").select("account_id", "score")
    members, laundering = pattern_members(folder)
    test = (
        data.split.filter(pl.col("split") == "test")
        .join(data.labels.select("account_id", "is_mule"), on="account_id")
        .join(nolabel, on="account_id", how="left")
        .with_columns(pl.col("score").fill_null(0.0))
    )
    y = test["is_mule"].to_numpy().astype(int)
    rows = [{"set": folder.name, "share": 0.0, "seed": None, "known": 0, "in_known_pattern": 0.0, "direct": 0.0,
             "bound_pattern": average_precision(y, test["score"].to_numpy()), "bound_direct": average_precision(y, test["score"].to_numpy())}]
    for share in shares:
        for seed in ([None] if share >= 1.0 else seeds):
            known = data.train_mules if share >= 1.0 else keep_share(data.train_mules, share, seed)
            patterns = members.filter(pl.col("account_id").is_in(known))["pattern_id"].unique().implode()
            mates = members.filter(pl.col("pattern_id").is_in(patterns))["account_id"].unique().implode()
            direct = pl.concat([laundering.filter(pl.col("src").is_in(known))["dst"],
                                laundering.filter(pl.col("dst").is_in(known))["src"]]).unique().implode()
            t = test.with_columns(pl.col("account_id").is_in(mates).alias("mate"), pl.col("account_id").is_in(direct).alias("direct"))
            mules = t.filter(pl.col("is_mule"))
            rows.append({
                "set": folder.name, "share": share, "seed": seed, "known": len(known),
                "in_known_pattern": float(mules["mate"].mean()), "direct": float(mules["direct"].mean()),
                # 2 + score puts the oracle's accounts above every other (scores are in 0..1)
                "bound_pattern": average_precision(y, (t["mate"].cast(pl.Float64) * 2 + t["score"]).to_numpy()),
                "bound_direct": average_precision(y, (t["direct"].cast(pl.Float64) * 2 + t["score"]).to_numpy()),
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="AMLGentex set folders (with txn_labels.parquet)")
    ap.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.2, 0.05], help="shares of the train-split mules known (1 = all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    load_families()
    rows = [r for folder in args.data for r in bounds(folder, args.shares, args.seeds)]
    frame = pl.DataFrame(rows)
    with pl.Config(tbl_rows=100, tbl_cols=20, float_precision=3):
        print("per seed (share 0: the no-label mode alone)")
        print(frame)
        print("mean over seeds")
        print(frame.group_by("set", "share", maintain_order=True).agg(pl.len().alias("seeds"), pl.col("in_known_pattern", "direct", "bound_pattern", "bound_direct").mean()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
