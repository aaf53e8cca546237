"""Time ``mulegraph train`` and ``run --model`` against the no-label run on a synthetic bank (issue 11, rows 1-3).

    python benchmarks/bench_train.py --accounts 100000
    python benchmarks/bench_train.py --accounts 500000 --work /tmp/bench_train_500k --keep

Every step is the ``mulegraph`` command in a child process, as an operator runs it:

1. ``mulegraph synth --accounts N --days 60 --seed 7 --out synth``
2. ``mulegraph ingest synth/transfers.csv --store store --mapping synth/mapping.toml``
3. the no-label run: ``mulegraph run --store store --runs runs --window all --force`` with an
   existing empty ``inbox/`` (features, score, report of what the store holds)
4. ``mulegraph train --store store --labels synth/labels.csv --out model --window all`` (every
   account labelled)
5. the run with the model: step 3 plus ``--model model`` (into another runs folder)

``--reuse DIR`` takes the synthetic export and the store from an earlier ``--keep`` workspace
(``DIR/synth``, ``DIR/store``, linked, not copied) and skips steps 1-2.

For each step: wall seconds and the child's peak resident memory (``ru_maxrss`` from
:func:`os.wait4`, exact for that process), plus the largest resident memory of its process tree
seen by sampling with psutil every 0.2 s (the same unless the command starts processes of its own).
Then the training's stages from the model card (``training.seconds``), what it sampled and how far
each tree size boosted, and the ratios to the no-label run with issue 11's targets (train <= 4x the
no-label run, <= 4 GB; run with the model <= 1.5x, <= 4 GB). The machine's load average is printed before and after: on a shared
machine the times are pessimistic. ``--config`` passes a settings file to ``run`` and ``train``
(e.g. other ``[model]`` sampling settings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

#: issue 11's targets for training on every account of the synthetic bank
TARGET_RATIO = 4.0
TARGET_GB = 4.0
#: issue 11's target for the run with the model, against the no-label run
TARGET_MODEL_RATIO = 1.5


def run_step(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run ``python -m mulegraph *args`` in ``cwd``; wall seconds and peak RSS (GB) of the child."""
    cmd = [sys.executable, "-m", "mulegraph", *args]
    print(f"$ mulegraph {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched = psutil.Process(proc.pid)
    tree_peak = 0
    out_lines: list[str] = []
    reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            procs = [watched, *watched.children(recursive=True)]
            tree_peak = max(tree_peak, sum(p.memory_info().rss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=5)
    text = "".join(out_lines).rstrip()
    if text:
        print("  " + text.replace("\n", "\n  "))
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    peak = usage.ru_maxrss * 1024 / 1e9  # kilobytes on Linux
    tree = tree_peak / 1e9
    print(f"  -> {wall:.1f} s wall, peak RSS {peak:.2f} GB (process tree sampled: {tree:.2f} GB)", flush=True)
    return {"seconds": round(wall, 2), "peak_gb": round(peak, 3), "tree_peak_gb": round(tree, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, help="workspace (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (store, model, runs)")
    ap.add_argument("--config", type=Path, help="settings file for run and train")
    ap.add_argument("--skip-run", action="store_true", help="time training only (no ratio)")
    ap.add_argument("--json-out", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--reuse", type=Path, help="workspace of an earlier --keep run: reuse its synth/ and store/")
    args = ap.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="bench_train_"))).resolve()
    if work.exists():
        shutil.rmtree(work)
    (work / "inbox").mkdir(parents=True)
    env = dict(os.environ)
    cfg = ["--config", str(args.config.resolve())] if args.config else []
    print(f"workspace {work}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    steps: dict[str, dict[str, float]] = {}
    if args.reuse:
        for name in ("synth", "store"):
            (work / name).symlink_to((args.reuse / name).resolve(), target_is_directory=True)
    else:
        steps["synth"] = run_step("synth", ["synth", "--accounts", str(args.accounts), "--days", str(args.days),
                                            "--seed", str(args.seed), "--out", "synth"], work, env)
        steps["ingest"] = run_step("ingest", ["ingest", "synth/transfers.csv", "--store", "store",
                                              "--mapping", "synth/mapping.toml"], work, env)
    if not args.skip_run:
        steps["run"] = run_step("run", ["run", "--store", "store", "--runs", "runs", "--window", "all", "--force", *cfg],
                                work, env)
    steps["train"] = run_step("train", ["train", "--store", "store", "--labels", "synth/labels.csv", "--out", "model",
                                        "--window", "all", *cfg], work, env)
    if not args.skip_run:
        steps["run --model"] = run_step("run --model", ["run", "--store", "store", "--runs", "runs_model", "--window", "all",
                                                        "--force", "--model", "model", *cfg], work, env)
    card = json.loads((work / "model" / "model_card.json").read_text())
    training = card.get("training") or {}
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    print(f"training stages (s): {training.get('seconds')}; thread budget {training.get('threads')}")
    sm = training.get("sampling") or {}
    if sm:
        print(f"labelled {sm['labelled']:,} ({sm['mules']:,} mules); trees trained on {sm['rows']:,} rows "
              f"(non-mules kept {sm['kept_not_mules']:,}, {sm['share_not_mules']:.1%}; weights {sm['weight_not_mule_min']:.2f}-{sm['weight_not_mule_max']:.2f})")
    for size in training.get("search") or []:
        print(f"  tree size {size['max_leaf_nodes']}: boosted {size['rounds_boosted']} rounds, best {size['max_iter']} "
              f"(CV PR-AUC {size['cv_pr_auc']:.4f})")
    cv = card["cv_metrics"]
    print(f"chosen {card['estimator']['best_params']}; CV PR-AUC {cv['pr_auc']:.4f} ± {cv['pr_auc_std']:.4f}, pooled {cv['pr_auc_pooled']:.4f}")

    print("\n| step | wall s | peak RSS GB |\n|---|---|---|")
    for name, s in steps.items():
        print(f"| {name} | {s['seconds']:.1f} | {s['peak_gb']:.2f} |")
    result = {"accounts": args.accounts, "days": args.days, "seed": args.seed, "steps": steps, "training": training,
              "cv_metrics": cv, "best_params": card["estimator"]["best_params"]}
    if "run" in steps:
        ratio = steps["train"]["seconds"] / steps["run"]["seconds"]
        result["train_to_run"] = round(ratio, 2)
        ok_t = "meets" if ratio <= TARGET_RATIO else "misses"
        ok_m = "meets" if steps["train"]["peak_gb"] <= TARGET_GB else "misses"
        print(f"\ntrain / no-label run: {ratio:.2f}x ({ok_t} <= {TARGET_RATIO:g}x); train peak {steps['train']['peak_gb']:.2f} GB "
              f"({ok_m} <= {TARGET_GB:g} GB)")
        scored = steps["run --model"]
        mratio = scored["seconds"] / steps["run"]["seconds"]
        result["model_run_to_run"] = round(mratio, 2)
        ok_t = "meets" if mratio <= TARGET_MODEL_RATIO else "misses"
        ok_m = "meets" if scored["peak_gb"] <= TARGET_GB else "misses"
        print(f"run --model / no-label run: {mratio:.2f}x ({ok_t} <= {TARGET_MODEL_RATIO:g}x); peak {scored['peak_gb']:.2f} GB "
              f"({ok_m} <= {TARGET_GB:g} GB)")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
