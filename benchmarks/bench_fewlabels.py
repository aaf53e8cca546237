"""Accuracy with few known mules, with a model from elsewhere, and with no labels (issue 13).

Protocol (each AMLGentex set of ``--data``; the protocol of ``bench_accuracy.py`` otherwise):

* ``channel`` blanked; ``EXT_SOURCE`` / ``EXT_SINK`` configured as hubs, so never ranked; metrics on
  the ``test`` accounts of ``split.parquet``: PR-AUC (average precision), precision and recall in the
  top 1% of test accounts (:func:`mulegraph.scoring.evaluate.evaluate`).
* **full**: every train-split label known (today's protocol, the figure of ``bench_accuracy.py``).
* **known share q** (``--shares``, default 0.2 and 0.05): for each seed s in ``--seeds`` (default
  0 1 2), ``numpy.random.default_rng(s)`` keeps ``max(1, round(q * m))`` of the ``m`` train-split
  mules (sorted by account id) as known mules. Every other train-split account, the other mules
  included, is labelled non-mule: that is what a bank's labels look like when it has found only
  some of its mules. The model is trained on those labels and scores every account; its closeness
  features at scoring time read the same labels (the kept mules are the only seeds). The mean over
  the seeds is reported next to each seed's figures.
* **elsewhere** (a model from elsewhere): the full-label model of one set scores the other set with
  ``q`` = 20% of the target's train-split mules (the same seeded choice) as its only seeds, no
  retraining and none of the source set's labels: account ids of the two sets collide, so the
  source's training labels must never seed. Seeds are given with ``MuleModel.set_seeds`` (the
  scoring-time seeds of issue 13); with ``--no-seeds`` the model scores with an empty known set.
  The scores are those of :func:`mulegraph.scoring.score.score_features` for a model from
  elsewhere (``Seeds.elsewhere``): blended with the local no-label score as ``--blend`` says
  (default: ``ScoreOptions.elsewhere_blend``; ``off``: the model's own score, the rows measured
  before the blend; :mod:`mulegraph.scoring.blend`). ``--blend`` takes several values, one row each.
  ``--same-kind`` adds each set's own model scoring that set in the same way (20% seeds, its
  training labels not seeding): a model of the same kind of data, as a bank scoring with a model
  trained on another bank's data of its kind. ``--portable`` trains the models that score elsewhere
  as ``mulegraph train --portable`` does (``ModelConfig.closeness_seed_share = "auto"`` read for a
  portable model: closeness learned from part of the training mules).
* **nolabel**: the no-label mode (:func:`mulegraph.scoring.score.score_features` without a model).
* ``--pu``: the models of the known-share scenario are trained with ``known_mule_share`` set to
  the share kept (positive-unlabelled training, :mod:`mulegraph.scoring.pu`); ``--set
  known_mule_share=x`` gives every fit the share x instead (e.g. a share other than the true one).
  With a share below 1 the model also trains on the no-label mode's rule score
  (``ModelConfig.nolabel_feature = "auto"``, the default) and its scores are blended with the
  no-label score (``ModelConfig.nolabel_blend = "auto"``: weight 0.5 with a share below 1; the
  scores are :func:`mulegraph.scoring.score.score_features`'s, as ``score`` and ``run`` compute
  them; ``--set nolabel_blend=off`` measures the model's own score, ``--set nolabel_blend=0.75``
  another weight); ``--set nolabel_feature=off`` measures
  positive-unlabelled training without it (the ``--pu`` figures before that setting existed).
* ``--validate``: the same scenarios inside the train split only, for choosing settings without
  reading the test split: the train accounts are split again, stratified by label
  (:data:`VALIDATE_SEED`), into a fitting part (60%, playing the train split) and a validation
  part (40%, playing the test split); the test split is left out altogether.

Training is the expensive part (a settings search per fit). ``--set`` passes ModelConfig overrides
to every fit, e.g. ``--set max_leaf_nodes=[7] n_models=1`` for a cheaper development loop; the
settings used are printed with the results, and only rows measured with the same settings compare.
The one-off structure features (:mod:`mulegraph.features.structure`) are among the model's features
by default (``ModelConfig.structure_features``); ``--set structure_features=false`` measures the
model without them (the rows "today" of RESULTS.md's first few-known-mules table). ``--structure``
is kept as an alias that changes nothing.

    python benchmarks/bench_fewlabels.py --data /work/shared/data/amlgentex-dev /work/shared/data/amlgentex-hard-dev
    python benchmarks/bench_fewlabels.py --data DEV HARD --scenarios nolabel
    python benchmarks/bench_fewlabels.py --data DEV HARD --scenarios full few elsewhere --shares 0.2 \\
        --cache-dir /tmp/fewlabels --json-out fewlabels.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench_accuracy import PSEUDO, _rss_gb
from mulegraph.core.config import FeatureConfig, ModelConfig
from mulegraph.features import FAMILIES, compute_features, load_families, prepare
from mulegraph.features.structure import structure_features
from mulegraph.scoring.estimator import MuleModel
from mulegraph.scoring.evaluate import evaluate
from mulegraph.scoring.blend import parse_blend
from mulegraph.scoring.score import ScoreOptions, score_features
from mulegraph.scoring.seeds import Seeds
from mulegraph.scoring.training import seed_share

SCENARIOS = ("full", "few", "elsewhere", "nolabel")
#: seed of the fitting / validation split of the train accounts (``--validate``)
VALIDATE_SEED = 100


@dataclasses.dataclass
class Dataset:
    """One AMLGentex set: prepared transfers, label-free features, labels and split."""

    name: str
    prepared: object
    features: pl.DataFrame
    labels: pl.DataFrame
    split: pl.DataFrame

    @property
    def train_mules(self) -> list[str]:
        train = self.split.filter(pl.col("split") == "train").select("account_id")
        return sorted(self.labels.join(train, on="account_id").filter(pl.col("is_mule"))["account_id"].to_list())

    def train_labels(self, known_mules: list[str] | None = None) -> pl.DataFrame:
        """Train-split labels; with ``known_mules`` only those accounts are mules, the rest not."""
        train = self.labels.join(self.split.filter(pl.col("split") == "train"), on="account_id").select("account_id", "is_mule")
        if known_mules is None:
            return train
        return train.with_columns(pl.col("account_id").is_in(known_mules).alias("is_mule"))


def validation_split(split: pl.DataFrame, labels: pl.DataFrame, share: float = 0.4) -> pl.DataFrame:
    """The train accounts of ``split`` split again: ``train`` (fitting) and ``test`` (validation,
    ``share`` of them, stratified by label, seeded by :data:`VALIDATE_SEED`); test accounts left out."""
    from sklearn.model_selection import train_test_split

    train = split.filter(pl.col("split") == "train").join(labels.select("account_id", "is_mule"), on="account_id").sort("account_id")
    fit, val = train_test_split(train["account_id"].to_numpy(), test_size=share, stratify=train["is_mule"].to_numpy(),
                                random_state=VALIDATE_SEED)
    return pl.DataFrame({"account_id": [*fit.tolist(), *val.tolist()], "split": ["train"] * len(fit) + ["test"] * len(val)})


def load(folder: Path, fcfg: FeatureConfig, cache_dir: Path | None, validate: bool = False) -> Dataset:
    """Read a set with ``channel`` blanked, prepare it and compute (or read cached) features.

    The one-off structure features (:func:`mulegraph.features.structure.structure_features`) are
    computed once here and joined: every model of the run reads them from the frame instead of
    computing them from the transfers again; a model trained with ``structure_features=false``
    leaves them out. ``validate``: the split of :func:`validation_split` instead of ``split.parquet``.
    """
    tx = pl.read_parquet(folder / "transactions.parquet").with_columns(pl.lit(None, dtype=pl.String).alias("channel"))
    p = prepare(tx, fcfg)
    cache = cache_dir / f"{folder.name}-features.parquet" if cache_dir else None
    if cache is not None and cache.exists():
        feats = pl.read_parquet(cache)
    else:
        t0 = time.perf_counter()
        feats = compute_features(p, fcfg, families=list(FAMILIES))
        print(f"{folder.name}: features {time.perf_counter() - t0:.1f} s", flush=True)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            feats.write_parquet(cache)
    feats = feats.join(structure_features(p), on="account_id", how="left")
    labels, split = pl.read_parquet(folder / "account_labels.parquet"), pl.read_parquet(folder / "split.parquet")
    if validate:
        split = validation_split(split, labels)
    return Dataset(folder.name, p, feats, labels, split)


def keep_share(mules: list[str], share: float, seed: int) -> list[str]:
    """The seeded random ``share`` of ``mules`` kept as known (at least one)."""
    k = max(1, int(round(share * len(mules))))
    rng = np.random.default_rng(seed)
    return sorted(np.asarray(mules)[rng.choice(len(mules), size=k, replace=False)].tolist())


def metrics(scores: pl.DataFrame, data: Dataset) -> dict[str, float]:
    """PR-AUC and precision/recall in the top 1% of the test accounts."""
    res = evaluate(scores, data.labels.select("account_id", "is_mule"), data.split, budgets=(0.01,))
    b = res["budgets"][0]
    return {"pr_auc": res["pr_auc"], "p_at_1": b["precision"], "r_at_1": b["recall"], "k": b["k"]}


def train(data: Dataset, labels: pl.DataFrame, mcfg: ModelConfig, fcfg: FeatureConfig) -> tuple[MuleModel, float]:
    t0 = time.perf_counter()
    model = MuleModel(mcfg, fcfg)
    model.set_context(data.prepared).fit(data.features, labels)
    return model, time.perf_counter() - t0


def score_with_seeds(model: MuleModel, data: Dataset, seeds: pl.DataFrame | None) -> pl.DataFrame:
    """Scores of ``data`` by ``model`` with ``seeds`` as its known set (None: its training labels)."""
    model.set_context(data.prepared)
    if seeds is not None:
        if hasattr(model, "set_seeds"):
            model.set_seeds(seeds)
        else:  # before scoring-time seeds existed: the known set is the training labels
            model.known_ = seeds
            model._closeness = None
    return model.predict_scores(data.features)


def score_elsewhere(model: MuleModel, data: Dataset, seeds: pl.DataFrame, setting: str | float) -> tuple[pl.DataFrame, dict]:
    """Scores of ``data`` by a model from elsewhere with ``seeds`` (``account_id, is_mule``), as
    ``score`` computes them (blended with the no-label score as ``setting`` says); and the blend."""
    used = Seeds(frame=seeds.with_columns(pl.lit("known_file").alias("source")), model_labels="not used: another data set",
                 elsewhere=True)
    scores = score_features(data.features, data.prepared, model, run_id="bench", seeds=used,
                            options=ScoreOptions(evidence_top=0, elsewhere_blend=setting))
    return scores.select("account_id", "score"), dict(used.blend)


def run(args: argparse.Namespace) -> list[dict]:
    fcfg = FeatureConfig(hub_accounts=PSEUDO)
    mcfg = dataclasses.replace(ModelConfig(random_state=0, importance_repeats=0), **args.overrides)
    load_families()
    sets = [load(folder, fcfg, args.cache_dir, args.validate) for folder in args.data]
    rows: list[dict] = []

    def emit(row: dict) -> None:
        row["rss_gb"] = round(_rss_gb(), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.jsonl:
            with args.jsonl.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    full_models: dict[str, MuleModel] = {}
    away_models: dict[str, MuleModel] = {}  # the models that score elsewhere
    for data in sets:
        if "nolabel" in args.scenarios:
            t0 = time.perf_counter()
            scores = score_features(data.features, data.prepared, None, run_id="bench")
            emit({"scenario": "nolabel", "set": data.name, "share": 0.0, "seed": None, **metrics(scores, data), "seconds": time.perf_counter() - t0})
        away = "elsewhere" in args.scenarios
        if "full" in args.scenarios or (away and not args.portable):
            model, secs = train(data, data.train_labels(), mcfg, fcfg)
            full_models[data.name] = model
            if "full" in args.scenarios:
                emit({"scenario": "full", "set": data.name, "share": 1.0, "seed": None, **metrics(score_with_seeds(model, data, None), data), "seconds": secs})
        if away:  # a portable model is trained as 'train --portable' trains it
            away_cfg = dataclasses.replace(mcfg, closeness_seed_share=seed_share(mcfg.closeness_seed_share, portable=True))
            away_models[data.name] = train(data, data.train_labels(), away_cfg, fcfg)[0] if args.portable else full_models[data.name]
        if "few" in args.scenarios:
            mules = data.train_mules
            for share in args.shares:
                for seed in args.seeds:
                    kept = keep_share(mules, share, seed)
                    fit_cfg = dataclasses.replace(mcfg, known_mule_share=share) if args.pu else mcfg
                    model, secs = train(data, data.train_labels(kept), fit_cfg, fcfg)
                    scores = score_features(data.features, data.prepared, model, run_id="bench", options=ScoreOptions(evidence_top=0))
                    emit({"scenario": "few", "set": data.name, "share": share, "seed": seed, "known": len(kept),
                          "blend": None if model.nolabel_blend_ is None else str(model.nolabel_blend_), **metrics(scores, data), "seconds": secs})
    if "elsewhere" in args.scenarios:
        for source in sets:
            for target in sets:
                if source is target and not args.same_kind:
                    continue
                mules = target.train_mules
                for seed in args.seeds:
                    kept = [] if args.no_seeds else keep_share(mules, args.elsewhere_share, seed)
                    seeds = pl.DataFrame({"account_id": kept, "is_mule": [True] * len(kept)}, schema={"account_id": pl.String, "is_mule": pl.Boolean})
                    for setting in args.blend:
                        t0 = time.perf_counter()
                        scores, how = score_elsewhere(away_models[source.name], target, seeds, setting)
                        emit({"scenario": "elsewhere", "set": target.name, "source": source.name, "share": 0.0 if args.no_seeds else args.elsewhere_share,
                              "seed": seed, "known": len(kept), "blend": str(setting), "weight": how.get("weight"),
                              **({"auc": how["auc"]} if "auc" in how else {}), **metrics(scores, target),
                              "seconds": time.perf_counter() - t0})
    return rows


def summary(rows: list[dict]) -> pl.DataFrame:
    """Mean (and spread) over seeds per scenario, set and share."""
    frame = pl.DataFrame(rows, infer_schema_length=None)
    for col in ("source", "blend"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    return (
        frame.group_by("scenario", "set", "source", "share", "blend", maintain_order=True)
        .agg(
            pl.len().alias("runs"),
            pl.col("pr_auc").mean().round(3).alias("pr_auc"),
            pl.col("pr_auc").min().round(3).alias("pr_auc_min"),
            pl.col("pr_auc").max().round(3).alias("pr_auc_max"),
            pl.col("p_at_1").mean().round(3).alias("p_at_1"),
            pl.col("r_at_1").mean().round(3).alias("r_at_1"),
            pl.col("seconds").mean().round(1).alias("seconds"),
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="AMLGentex set folders (elsewhere needs two)")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    ap.add_argument("--shares", type=float, nargs="+", default=[0.2, 0.05], help="shares of train-split mules kept as known")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the kept-mule choice")
    ap.add_argument("--elsewhere-share", type=float, default=0.2, help="share of the target's train-split mules given as seeds")
    ap.add_argument("--same-kind", action="store_true",
                    help="elsewhere: each set's own full-label model scores that set too, seeded like a model from elsewhere "
                         "(its training labels not seeding): the case of a model trained on data of the same kind")
    ap.add_argument("--portable", action="store_true",
                    help="elsewhere: the scoring models are trained as 'train --portable' trains them (closeness_seed_share "
                         "'auto' read for a portable model: closeness learned from part of the mules)")
    ap.add_argument("--no-seeds", action="store_true", help="elsewhere: score with no seeds at all")
    ap.add_argument("--blend", nargs="+", type=parse_blend, default=[ScoreOptions().elsewhere_blend],
                    help="elsewhere: weight(s) of the no-label score in the blend, 'auto' or 'off' (one row each)")
    ap.add_argument("--structure", action="store_true",
                    help="no effect: the one-off structure features are model features by default (--set structure_features=false leaves them out)")
    ap.add_argument("--pu", action="store_true",
                    help="few: train with known_mule_share set to the share kept (positive-unlabelled training)")
    ap.add_argument("--validate", action="store_true",
                    help="measure on a validation part of the train split (choosing settings), never reading the test split")
    ap.add_argument("--cache-dir", type=Path, help="reuse/write each set's label-free features here")
    ap.add_argument("--set", dest="overrides_", nargs="*", default=[], help="ModelConfig overrides, e.g. max_leaf_nodes=[7] n_models=1")
    ap.add_argument("--jsonl", type=Path, help="append every row here as soon as it is measured")
    ap.add_argument("--json-out", type=Path, help="write the rows and the summary as JSON here")
    args = ap.parse_args(argv)
    args.overrides = {}
    for kv in args.overrides_:
        k, v = kv.split("=", 1)
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        args.overrides[k] = tuple(val) if isinstance(val, list) else val
    if "elsewhere" in args.scenarios and len(args.data) < 2:
        ap.error("the elsewhere scenario needs two --data sets")

    t0 = time.perf_counter()
    rows = run(args)
    table = summary(rows)
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200):
        structure = args.overrides.get("structure_features", ModelConfig().structure_features)
        print(f"\nModelConfig overrides: {args.overrides or 'none (defaults)'}; structure features: {structure}; seeds {args.seeds}"
              + ("; VALIDATION part of the train split (not the test split)" if args.validate else ""))
        print(table)
    print(f"total {time.perf_counter() - t0:.0f} s; peak RSS {_rss_gb():.2f} GB")
    if args.json_out:
        args.json_out.write_text(json.dumps({"structure": structure, "validate": args.validate, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in args.overrides.items()},
                                             "rows": rows, "summary": table.to_dicts()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
