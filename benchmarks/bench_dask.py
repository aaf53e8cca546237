"""Benchmark the engines: a window's features locally, and on a Dask cluster of 1 and 2 workers.

The issue's size (about 20M transfers; the synthetic store is kept in ``--work`` for later runs)::

    python benchmarks/bench_dask.py --accounts 2000000 --days 60 --work benchmarks/_work/dask-20m

A quick look at a small size::

    python benchmarks/bench_dask.py --accounts 100000 --days 30 --work benchmarks/_work/dask-100k

Each engine runs in a process of its own, so that every peak memory figure is its own:

* ``local``: the whole window at once in one process (the default engine);
* ``local-shards``: the local engine one shard after another (``--shard-accounts``, default
  ``[engine]``'s default);
* ``dask-1``, ``dask-2``: a ``LocalCluster`` of 1 and 2 worker processes (one thread each, the
  machine's cores shared between them), shards of the default layout (at least 2 per worker).

Measured is :func:`mulegraph.features.build.window_features`, what ``mulegraph features`` and the
nightly run call: the window's transfers and prepared transfers are read in the calling process
(scoring needs them) and the features are computed by the engine. Printed: the wall seconds of
the cluster's start and of the features, the seconds per step, the peak RSS of the calling process
and of each worker (``ru_maxrss`` of the worker process, read on the worker), and whether the
features are identical to the local engine's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MODES = ("local", "local-shards", "dask-1", "dask-2")


def _peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_store(work: Path, accounts: int, days: int, seed: int) -> Path:
    """A synthetic store in ``work/store`` (kept: a second run reuses it)."""
    from mulegraph.ingest import ingest
    from mulegraph.synth import generate

    store = work / "store"
    if (store / "manifest.json").is_file():
        return store
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tx = generate(accounts, days, seed=seed).transfers
    export = work / "transfers.parquet"
    tx.write_parquet(export)
    print(f"synth: {tx.height:,} transfers, {accounts:,} accounts, {days} days in {time.perf_counter() - t:.1f} s",
          file=sys.stderr)
    del tx
    t = time.perf_counter()
    ingest([export], store)
    export.unlink()
    print(f"ingest: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return store


def one(mode: str, store: Path, out: Path, shard_accounts: int | None, memory_limit: str) -> dict:
    """Features of the whole store with one engine; what it cost."""
    from mulegraph.core.config import DEFAULT_SHARD_ACCOUNTS, Config, EngineConfig
    from mulegraph.features.build import window_features

    row: dict = {"mode": mode, "startup_s": 0.0, "worker_peak_gb": []}
    if mode.startswith("dask"):
        from mulegraph.engine.dask import DaskEngine

        t0 = time.perf_counter()
        engine = DaskEngine.local(int(mode.split("-")[1]), memory_limit=memory_limit)
        row["startup_s"] = time.perf_counter() - t0
        with engine:
            t0 = time.perf_counter()
            wf = window_features(store, window="all", config=Config(engine=EngineConfig(shard_accounts=shard_accounts)),
                                 engine=engine)
            row["features_s"] = time.perf_counter() - t0
            peaks = engine.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
            row["worker_peak_gb"] = sorted(peaks.values(), reverse=True)
    else:
        size = (shard_accounts or DEFAULT_SHARD_ACCOUNTS) if mode == "local-shards" else None
        t0 = time.perf_counter()
        wf = window_features(store, window="all", config=Config(engine=EngineConfig(shard_accounts=size)))
        row["features_s"] = time.perf_counter() - t0
    row.update(transfers=wf.transfers.height, accounts=wf.features.height, shards=wf.engine.get("shards"),
               workers=wf.engine.get("workers"), timings=wf.timings, client_peak_gb=_peak_rss_gb())
    wf.features.write_parquet(out)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/_work/dask"))
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--shard-accounts", type=int, default=None, help="accounts per shard (default: [engine]'s)")
    ap.add_argument("--memory-limit", default="auto", help="per Dask worker (LocalCluster's memory_limit); 0: none")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one mode in this process
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    store = args.work.resolve() / "store"
    if args.one:
        print(json.dumps(one(args.one, store, args.out, args.shard_accounts, args.memory_limit)))
        return 0

    make_store(args.work.resolve(), args.accounts, args.days, args.seed)
    rows = []
    for mode in args.modes.split(","):
        out = args.work.resolve() / f"features-{mode}.parquet"
        cmd = [sys.executable, __file__, "--work", str(args.work), "--one", mode, "--out", str(out),
               "--memory-limit", args.memory_limit]
        if args.shard_accounts:
            cmd += ["--shard-accounts", str(args.shard_accounts)]
        print(f".. {mode}", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"path": out})
    _print(rows)
    return 0


def _print(rows: list[dict]) -> None:
    import polars as pl

    ref = pl.read_parquet(rows[0]["path"])
    first = rows[0]
    print(f"## engines: {first['transfers']:,} transfers, {first['accounts']:,} accounts")
    print("| engine | workers | shards | cluster start s | features s | steps (s) | calling process peak GB "
          "| worker peak GB | identical to first row |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items() if k in ("prepare", "plan", "shards", "graph"))
        if r["shards"] is None:
            steps = f"prepare {r['timings']['prepare']:.1f}, families {sum(r['timings'].values()) - r['timings']['prepare']:.1f}"
        workers = ", ".join(f"{g:.2f}" for g in r["worker_peak_gb"]) or "-"
        same = "yes" if pl.read_parquet(r["path"]).equals(ref) else "NO"
        print(f"| {r['mode']} | {r['workers']} | {r['shards'] or '-'} | {r['startup_s']:.1f} | {r['features_s']:.1f} "
              f"| {steps} | {r['client_peak_gb']:.2f} | {workers} | {same} |")
    by = {r["mode"]: r for r in rows}
    if "dask-1" in by and "dask-2" in by:
        print(f"\ndask 2 workers / 1 worker, features wall: {by['dask-2']['features_s'] / by['dask-1']['features_s']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
