"""Supervised model accuracy on an AMLGentex development set (protocol of issue 4).

Blank ``channel``; train on the labels of the ``train`` accounts of ``split.parquet`` only (all
settings are chosen by cross-validation on them inside ``MuleModel.fit``); score every account; report
PR-AUC, ROC-AUC, precision/recall at 0.5/1/2% and recall per typology on the ``test`` accounts.
``EXT_SOURCE`` / ``EXT_SINK`` are pseudo-accounts: configured as hubs, so they are never ranked.
Also prints permutation importance per feature family on the test accounts (for the report only;
nothing is chosen from it), timings and peak RSS.

    python benchmarks/bench_accuracy.py --data /work/shared/data/amlgentex-hard-dev
    python benchmarks/bench_accuracy.py --data /work/shared/data/amlgentex-dev --features-cache /tmp/dev_feats.parquet
    python benchmarks/bench_accuracy.py --synth 50000 --mule-share 0.012   # mulegraph's own generator
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

from mulegraph.scoring.threads import prefer_passive_openmp

prefer_passive_openmp()  # before scikit-learn loads its OpenMP runtime, as the mulegraph command does

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from mulegraph.core.config import FeatureConfig, ModelConfig  # noqa: E402
from mulegraph.scoring.evaluate import evaluate, format_table  # noqa: E402
from mulegraph.features import FAMILIES, compute_features, load_families, prepare  # noqa: E402
from mulegraph.features.structure import STRUCTURE_FEATURES, structure_features  # noqa: E402
from mulegraph.features import proximity  # noqa: E402
from mulegraph.features.registry import REGISTRY  # noqa: E402
from mulegraph.scoring.estimator import MuleModel  # noqa: E402
from mulegraph.scoring.training import average_precision, logit, to_matrix  # noqa: E402

PSEUDO = ("EXT_SOURCE", "EXT_SINK")


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _raw(model: MuleModel, X: np.ndarray) -> np.ndarray:
    """The model's uncalibrated score (mean log-odds of its ensembles)."""
    return np.mean([logit(est.predict_proba(X)[:, 1]) for est in model.estimators_], axis=0)


def family_importance(model: MuleModel, features: pl.DataFrame, p, test: pl.DataFrame, repeats: int, seed: int) -> dict[str, float]:
    """Drop in test PR-AUC when all columns of one family are shuffled together (mean of repeats)."""
    closeness = model.set_context(p).closeness()
    frame = test.select("account_id", "is_mule").join(features, on="account_id", how="left").join(closeness, on="account_id", how="left")
    X = to_matrix(frame, model.feature_names_)
    y = frame["is_mule"].to_numpy().astype(int)
    base = average_precision(y, _raw(model, X))
    fams: dict[str, list[int]] = {}
    for j, name in enumerate(model.feature_names_):
        spec = REGISTRY.get(name)
        fams.setdefault(spec.family if spec else "other", []).append(j)
    rng = np.random.default_rng(seed)
    out = {}
    for fam, cols in fams.items():
        drops = []
        for _ in range(repeats):
            Xp = X.copy()
            perm = rng.permutation(len(X))
            Xp[:, cols] = X[perm][:, cols]
            drops.append(base - average_precision(y, _raw(model, Xp)))
        out[fam] = float(np.mean(drops))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="folder with transactions.parquet, account_labels.parquet, split.parquet")
    ap.add_argument("--synth", type=int, metavar="ACCOUNTS", help="instead of --data: a mulegraph synth bank of this many accounts, stratified 60/40 split")
    ap.add_argument("--days", type=int, default=30, help="with --synth: days of transfers")
    ap.add_argument("--mule-share", type=float, default=0.012, help="with --synth: share of mule accounts")
    ap.add_argument("--seed", type=int, default=0, help="ModelConfig.random_state")
    ap.add_argument("--features-cache", type=Path, help="reuse/write the label-free features here")
    ap.add_argument("--families", nargs="*", help="label-free families to compute (default: all)")
    ap.add_argument("--no-proximity", action="store_true", help="leave out closeness to known mules (ablation)")
    ap.add_argument("--importance-repeats", type=int, default=3, help="repeats of the family importance on the test accounts (0 = skip)")
    ap.add_argument("--cv-only", action="store_true", help="stop after training: print cross-validated metrics only (for development; no test labels read)")
    ap.add_argument("--json-out", type=Path, help="write the metrics as JSON here")
    ap.add_argument("--set", nargs="*", default=[], help="ModelConfig overrides, e.g. n_models=1 max_iter=100")
    args = ap.parse_args(argv)

    t_all = time.perf_counter()
    if args.synth:
        from sklearn.model_selection import train_test_split

        from mulegraph.synth import generate

        syn = generate(args.synth, days=args.days, seed=args.seed, mule_share=args.mule_share)
        tx, labels = syn.transfers, syn.labels
        ids = labels["account_id"].to_numpy()
        tr, _ = train_test_split(ids, test_size=0.4, stratify=labels["is_mule"].to_numpy(), random_state=args.seed)
        split = labels.select("account_id", pl.when(pl.col("account_id").is_in(tr.tolist())).then(pl.lit("train")).otherwise(pl.lit("test")).alias("split"))
        args.data = Path(f"synth-{args.synth}")
        print(f"synth: {tx.height:,} transfers, {labels.height:,} accounts, {int(labels['is_mule'].sum())} mules")
        fcfg = FeatureConfig()
    elif args.data:
        tx = pl.read_parquet(args.data / "transactions.parquet").with_columns(pl.lit(None, dtype=pl.String).alias("channel"))
        labels = pl.read_parquet(args.data / "account_labels.parquet")
        split = pl.read_parquet(args.data / "split.parquet")
        fcfg = FeatureConfig(hub_accounts=PSEUDO)
    else:
        ap.error("give --data DIR or --synth ACCOUNTS")
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v  # plain text such as 7d
        if isinstance(overrides[k], list):
            overrides[k] = tuple(overrides[k])
    mcfg = dataclasses.replace(ModelConfig(random_state=args.seed, importance_repeats=0), **overrides)

    load_families()  # registers every feature (also when the features come from the cache)
    t0 = time.perf_counter()
    p = prepare(tx, fcfg)
    if args.features_cache and args.features_cache.exists():
        feats = pl.read_parquet(args.features_cache)
        t_feat = float("nan")
    else:
        names = args.families or list(FAMILIES)
        timings: dict[str, float] = {}
        feats = compute_features(p, fcfg, families=names, timings=timings)
        t_feat = time.perf_counter() - t0
        print("feature seconds per family:", {k: round(v, 1) for k, v in timings.items()})
        if args.features_cache:
            feats.write_parquet(args.features_cache)
    print(f"label-free features: {feats.width - 2} columns, {feats.height:,} accounts, {t_feat:.1f} s")
    if mcfg.structure_features:  # computed once here, read by the model from the frame (and by the family importance)
        t0 = time.perf_counter()
        feats = feats.join(structure_features(p), on="account_id", how="left")
        print(f"one-off structure features: {len(STRUCTURE_FEATURES)} columns, {time.perf_counter() - t0:.1f} s")

    train_labels = labels.join(split.filter(pl.col("split") == "train"), on="account_id").select("account_id", "is_mule")
    model = MuleModel(mcfg, fcfg)
    if args.no_proximity:
        import mulegraph.features.proximity as prox_mod

        orig = prox_mod.compute

        def zero(p_, known, labelled=None, **kw):
            out = orig(p_, known[:0], None, **kw)
            return out.with_columns([pl.lit(0.0).alias(s.name) for s in proximity.FEATURES])

        def zero_ppr(p_, known, groups, n_groups, **kw):
            return pl.DataFrame({"idx": pl.Series(np.arange(p_.n_accounts), dtype=pl.UInt32)}).with_columns(
                [pl.lit(0.0).alias(c) for c in proximity.PPR_FEATURES])

        prox_mod.compute = zero
        prox_mod.ppr_features = zero_ppr
    t0 = time.perf_counter()
    model.set_context(p).fit(feats, train_labels)
    t_train = time.perf_counter() - t0
    print(f"train: {t_train:.1f} s; settings {model.best_params_}; CV {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in model.cv_metrics_.items()})}")
    print(f"train seconds per stage: {model.fit_seconds_}; labelled {model.label_counts_}; peak RSS so far {_rss_gb():.2f} GB")
    sm = model.sampling_
    print(f"thread budget {model.threads_}; trees trained on {sm['rows']:,} of {sm['labelled']:,} labelled accounts"
          + (f" (non-mules sampled: {sm['kept_not_mules']:,} of {sm['not_mules']:,})" if sm["applied"] else " (no sampling)"))
    print("settings search:", "; ".join(f"{s['max_leaf_nodes']} leaves boosted {s['rounds_boosted']} rounds, best {s['max_iter']} "
                                        f"(CV PR-AUC {s['cv_pr_auc']:.4f})" for s in model.search_))

    if args.cv_only:
        print("top features (training permutation importance):" if model.importance_ else "", list(model.feature_importance.items())[:10] if model.importance_ else "")
        return 0
    t0 = time.perf_counter()
    scores = model.set_context(p).predict_scores(feats)
    t_pred = time.perf_counter() - t0
    test = labels.join(split.filter(pl.col("split") == "test"), on="account_id")
    res = evaluate(scores, labels, split, budgets=(0.005, 0.01, 0.02))
    print(f"\n== test accounts ({args.data.name}) ==")
    print(format_table(res))
    imp = family_importance(model, feats, p, test, args.importance_repeats, args.seed) if args.importance_repeats else {}
    if imp:
        print("\npermutation importance by family (test PR-AUC drop):")
        for k, v in imp.items():
            print(f"  {k:<12} {v:+.3f}")
    total = time.perf_counter() - t_all
    print(f"\nseconds: features {t_feat:.1f}, train {t_train:.1f}, predict {t_pred:.1f}, total {total:.1f}; peak RSS {_rss_gb():.2f} GB")
    if args.json_out:
        args.json_out.write_text(json.dumps({"data": str(args.data), "metrics": res, "cv": model.cv_metrics_, "best": model.best_params_,
                                             "family_importance": imp, "seconds": {"features": t_feat, "train": t_train, "predict": t_pred, "total": total},
                                             "fit_seconds": model.fit_seconds_, "search": model.search_, "sampling": model.sampling_, "threads": model.threads_}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
