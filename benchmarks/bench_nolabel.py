"""No-label mode on the AMLGentex development sets: PR-AUC, P/R at 1%, per rule and per typology.

Protocol (issue 4): blank ``channel``; EXT_SOURCE / EXT_SINK are not ranked; metrics on the test
accounts of ``split.parquet``. The no-label mode uses no labels at all, so the train accounts are
simply not evaluated. Also prints the simple unsupervised references (distinct senders alone; an
IsolationForest over plain aggregates) and timings.

    python benchmarks/bench_nolabel.py --data /work/shared/data/amlgentex-hard-dev
    python benchmarks/bench_nolabel.py --data /work/shared/data/amlgentex-dev --features-cache /tmp/dev.parquet
    python benchmarks/bench_nolabel.py --choose-weights /work/shared/data/amlgentex-dev /work/shared/data/amlgentex-hard-dev

``--choose-weights DEV HARD`` repeats how the weights of ``mulegraph.scoring.nolabel.RULES`` were
chosen: a grid of powers of two over groups of rules, scored on the **train** accounts of both sets
(geometric mean of the two PR-AUCs; no test label is read), keeping only the weights under which
the planted-mule checks of ``tests/test_nolabel.py`` (mulegraph.synth data, seeds 0 and 1, hub
degree 1000 and 150) still pass. It prints the best settings and what leaving one set out would
have chosen.
"""

from __future__ import annotations

import argparse
import itertools
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score

from mulegraph.core.config import Config, FeatureConfig
from mulegraph.features import FAMILIES, compute_features, prepare
from mulegraph.features.collection import collection_features
from mulegraph.features.structure import structure_features
from mulegraph.scoring.nolabel import MIN_BITS, RULES, NoLabelScorer
from mulegraph.scoring.score import ScoreOptions, score_features


def at_budget(y: np.ndarray, s: np.ndarray, share: float = 0.01) -> tuple[float, float]:
    """Precision and recall among the top ``share`` of accounts (ties broken by position)."""
    k = max(1, int(round(share * len(y))))
    top = np.argsort(-s, kind="stable")[:k]
    hits = y[top].sum()
    return hits / k, hits / max(1, y.sum())


def speed(n_accounts: int, days: int) -> int:
    """Seconds per stage of the no-label mode on synthetic data (features are timed separately)."""
    from mulegraph.synth import generate

    t = time.perf_counter()
    data = generate(n_accounts, days, 1)
    print(f"synth: {data.transfers.height:,} transfers, {n_accounts:,} accounts, {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    p = prepare(data.transfers)
    feats = compute_features(p)
    print(f"features (all families): {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    extra = structure_features(p)
    t_struct = time.perf_counter() - t
    t = time.perf_counter()
    scores = score_features(feats.join(extra, on="account_id", how="left"), p, None, run_id="bench")
    t_score = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"one-off structures: {t_struct:.1f}s; rules + ranking + reasons for {scores.height:,} accounts "
          f"(evidence for the top 100): {t_score:.1f}s ({scores.height / max(t_score, 1e-9):,.0f} accounts/s)")
    print(f"peak RSS {rss:.0f} MB")
    return 0


#: rule groups of the weight grid (every rule not named here is in "rest")
GROUPS: dict[str, tuple[str, ...]] = {
    "squares": ("ONE_OFF_SQUARES",),
    "oneoff_sg": ("ONE_OFF_SCATTER_GATHER",),
    "oneoff_other": ("ONE_OFF_GATHER_SCATTER", "ONE_OFF_FORWARDING", "ONE_OFF_CYCLE"),
    "forwarding": ("FANIN_FORWARD", "RAPID_PASSTHROUGH", "LAYERING_CHAIN"),
    "dormant": ("DORMANT_BURST",),
    "collection": ("ONE_OFF_COLLECTION",),
}
GRID: dict[str, tuple[float, ...]] = {
    "squares": (1.0, 2.0, 4.0),
    "oneoff_sg": (0.5, 1.0, 2.0),
    "oneoff_other": (0.125, 0.25, 0.5),
    "forwarding": (0.125, 0.25, 0.5, 1.0),
    "dormant": (0.125, 0.25, 0.5, 1.0),
    "collection": (0.5, 1.0, 2.0, 4.0),
    "rest": (0.125, 0.25),
}


def _rule_bits(ranked: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per rule, the evidence above the floor that ``NoLabelScorer.score`` sums (weight 1)."""
    scorer = NoLabelScorer().fit(ranked)
    n = ranked.height
    eps = 1.0 / max(n, 2)
    cap = math.log2(1.0 / eps)
    floor = min(MIN_BITS, cap / 2.0)
    return {c: np.clip(-np.log2(1.0 - s + eps) - floor, 0.0, cap - floor) for c, s in scorer.rule_strengths(ranked).items()}


def choose_weights(dev: Path, hard: Path) -> int:
    """Grid over rule-group weights on the train accounts of two sets, planted-mule checks kept."""
    from mulegraph.synth import generate

    cases: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for folder in (dev, hard):
        fcfg = Config().replace("features", hub_accounts=("EXT_SOURCE", "EXT_SINK")).features
        tx = pl.read_parquet(folder / "transactions.parquet").with_columns(pl.lit(None, dtype=pl.String).alias("channel"))
        p = prepare(tx, fcfg)
        ranked = compute_features(p, fcfg).filter(~pl.col("is_hub")).join(structure_features(p), on="account_id", how="left").join(collection_features(p), on="account_id", how="left")
        train = pl.read_parquet(folder / "split.parquet").filter(pl.col("split") == "train")
        keep = ranked.select("account_id").join(train, on="account_id", how="left")["split"].is_not_null().to_numpy()
        y = ranked.select("account_id").join(pl.read_parquet(folder / "account_labels.parquet"), on="account_id", how="left")["is_mule"].fill_null(False).to_numpy()
        bits = _rule_bits(ranked)
        cases[folder.name] = ({c: b[keep] for c, b in bits.items()}, y[keep])
    planted = {}
    for seed, hub_degree in itertools.product((0, 1), (1000, 150)):
        data = generate(1200, 30, seed)
        fcfg = Config().replace("features", hub_degree=hub_degree).features
        p = prepare(data.transfers, fcfg)
        ranked = compute_features(p, fcfg).filter(~pl.col("is_hub")).join(structure_features(p), on="account_id", how="left").join(collection_features(p), on="account_id", how="left")
        y = ranked.select("account_id").join(data.labels, on="account_id", how="left")["is_mule"].fill_null(False).to_numpy()
        planted[(seed, hub_degree)] = (_rule_bits(ranked), y)
    group_of = {c: g for g, codes in GROUPS.items() for c in codes}

    def total(bits: dict[str, np.ndarray], w: dict[str, float]) -> np.ndarray:
        return sum(w[group_of.get(c, "rest")] * b for c, b in bits.items())

    rows = []
    for values in itertools.product(*GRID.values()):
        w = dict(zip(GRID, values))
        ok = True
        for (seed, hub_degree), (bits, y) in planted.items():
            s = total(bits, w)
            ap = average_precision_score(y, s)
            top50 = y[np.argsort(-s, kind="stable")[:50]].sum() / y.sum()
            ok &= (ap > 8 * y.mean() and top50 >= 0.45) if hub_degree == 1000 else (ap > 0.35 and top50 >= 0.6)
        aps = {name: average_precision_score(y, total(bits, w)) for name, (bits, y) in cases.items()}
        rows.append((math.sqrt(math.prod(aps.values())), aps, ok, w))
    passing = sorted((r for r in rows if r[2]), key=lambda r: -r[0])
    print(f"{len(rows)} weight settings, {len(passing)} keep the planted-mule checks; best by geometric mean of train PR-AUC:")
    for geo, aps, _, w in passing[:5]:
        print(f"  {geo:.3f}  " + "  ".join(f"{k} {v:.3f}" for k, v in aps.items()) + f"  {w}")
    for name in cases:
        geo, aps, _, w = max(passing, key=lambda r: r[1][name])
        print(f"chosen on {name} alone: {w} -> " + ", ".join(f"{k} {v:.3f}" for k, v in aps.items()))
    print("weights in RULES now:", {r.code: r.weight for r in RULES})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="an AMLGentex set folder (accuracy run)")
    ap.add_argument("--synth", type=int, help="instead: time the no-label mode on mulegraph.synth data of this many accounts")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--features-cache", type=Path, help="reuse/write computed features here")
    ap.add_argument("--detector-weight", type=float, default=0.0)
    ap.add_argument("--families", default=None, help="comma-separated families (default: all)")
    ap.add_argument("--choose-weights", type=Path, nargs=2, metavar=("DEV", "HARD"), help="instead: the weight grid on both sets' train accounts")
    ap.add_argument("--eval-split", default="test", choices=["train", "test"], help="accounts to evaluate on (develop on train)")
    args = ap.parse_args(argv)
    if args.synth:
        return speed(args.synth, args.days)
    if args.choose_weights:
        return choose_weights(*args.choose_weights)
    if args.data is None:
        ap.error("give --data DIR or --synth N")

    cfg = Config().replace("features", hub_accounts=("EXT_SOURCE", "EXT_SINK"))
    fcfg: FeatureConfig = cfg.features
    t0 = time.perf_counter()
    tx = pl.read_parquet(args.data / "transactions.parquet").with_columns(pl.lit(None, dtype=pl.String).alias("channel"))
    labels = pl.read_parquet(args.data / "account_labels.parquet")
    split = pl.read_parquet(args.data / "split.parquet")
    t_read = time.perf_counter() - t0

    t1 = time.perf_counter()
    p = prepare(tx, fcfg)
    timings: dict[str, float] = {}
    if args.features_cache and args.features_cache.exists():
        feats = pl.read_parquet(args.features_cache)
        print(f"features from cache {args.features_cache}")
    else:
        fams = args.families.split(",") if args.families else list(FAMILIES)
        feats = compute_features(p, fcfg, families=fams, timings=timings)
        if args.features_cache:
            feats.write_parquet(args.features_cache)
    t_feat = time.perf_counter() - t1
    print(f"transfers {tx.height:,}; accounts {feats.height:,}; read {t_read:.1f}s; features {t_feat:.1f}s")
    if timings:
        print("  per family: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))

    t2 = time.perf_counter()
    scores = score_features(feats, p, None, run_id="bench", options=ScoreOptions(detector_weight=args.detector_weight))
    t_score = time.perf_counter() - t2
    ranked = feats.filter(~pl.col("is_hub")).join(structure_features(p), on="account_id", how="left").join(collection_features(p), on="account_id", how="left")
    scorer = NoLabelScorer(detector_weight=args.detector_weight).fit(ranked)
    detail = scorer.score(ranked).drop("score").join(scores.select("account_id", "score"), on="account_id", how="left")

    test = (
        split.filter(pl.col("split") == args.eval_split)
        .join(labels.select("account_id", "is_mule", "typology"), on="account_id")
        .join(detail, on="account_id", how="left")
        .join(ranked.select("account_id", *[c for c in ("in_cp",) if c in ranked.columns]), on="account_id", how="left")
        .fill_null(0.0)
    )
    y = test["is_mule"].to_numpy().astype(int)
    s = test["score"].to_numpy()
    prev = y.mean()
    pr = average_precision_score(y, s)
    p1, r1 = at_budget(y, s)
    print(f"\n{args.data.name}: {args.eval_split} accounts {len(y):,}, mules {y.sum()} (prevalence {prev:.3f})")
    print(f"no-label mode (detector_weight={args.detector_weight}): PR-AUC {pr:.3f}, P@1% {p1:.2f}, R@1% {r1:.2f}")
    print(f"score+explain time {t_score:.1f}s for {scores.height:,} accounts")

    if "in_cp" in test.columns:
        print(f"reference: distinct senders alone PR-AUC {average_precision_score(y, test['in_cp'].to_numpy()):.3f}")

    print("\nper rule alone (PR-AUC, P@1%, R@1%):")
    for c in [c for c in detail.columns if c.startswith("rule_")]:
        v = test[c].to_numpy()
        a = average_precision_score(y, v)
        pp, rr = at_budget(y, v)
        print(f"  {c[5:]:<20} {a:.3f}  {pp:.2f}  {rr:.2f}")

    print("\nper typology (mules of that typology vs all non-mules; PR-AUC, R@1% of all test accounts):")
    k = max(1, int(round(0.01 * len(y))))
    top = set(np.argsort(-s, kind="stable")[:k].tolist())
    typ = test["typology"].to_list()
    for t in sorted({x for v in typ if v for x in v.split("|")}):
        member = np.array([bool(v) and t in v.split("|") for v in typ])
        keep = member | (y == 0)
        a = average_precision_score(member[keep].astype(int), s[keep])
        rec = sum(1 for i in np.flatnonzero(member) if i in top) / max(1, member.sum())
        print(f"  {t:<16} n={member.sum():>3}  PR-AUC {a:.3f}  R@1% {rec:.2f}")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
