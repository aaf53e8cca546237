"""Time the nightly run end to end on a synthetic export.

    python benchmarks/bench_run.py --accounts 20000 --days 30

Three runs in a fresh workspace: the first night (everything new), a second night with one more
day of exports, and a third call with nothing new (exit code 3 path). Prints seconds per stage,
transfers per second, the size of the report and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl

from mulegraph.core.config import load_config
from mulegraph.core.errors import NothingNewError
from mulegraph.pipeline import run
from mulegraph.synth import generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=20000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", default="30d")
    ap.add_argument("--work", type=Path, default=None, help="workspace (default: a temporary folder)")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_run_"))
    shutil.rmtree(work, ignore_errors=True)
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    t = time.perf_counter()
    tx = generate(args.accounts, args.days, seed=args.seed).transfers.sort("ts")
    print(f"synth: {tx.height:,} transfers, {args.accounts:,} accounts in {time.perf_counter() - t:.1f} s")
    last_day = tx["ts"].max() - timedelta(days=1)
    tx.filter(pl.col("ts") <= last_day).write_parquet(inbox / "night-1.parquet")
    cfg = load_config(data={"run": {"window": args.window}})
    kw = {"inbox": inbox, "store": work / "store", "runs_dir": work / "runs"}

    def timed(label: str) -> None:
        t0 = time.perf_counter()
        try:
            res = run(cfg, **kw)
        except NothingNewError:
            print(f"{label}: nothing new (exit 3) in {time.perf_counter() - t0:.2f} s")
            return
        wall = time.perf_counter() - t0
        c = res.counts
        stages = ", ".join(f"{k} {v:.2f}" for k, v in res.seconds.items())
        size = (res.run_dir / "report.html").stat().st_size / 1e6
        print(f"{label}: {wall:.1f} s wall, {c['transfers_in_window']:,} transfers in window "
              f"({c['transfers_in_window'] / wall:,.0f}/s), {c['scored']:,} ranked, {c['alerts']} alerts; "
              f"stages: {stages} (score: {res.manifest['score_seconds']}); report.html {size:.2f} MB")

    timed("night 1")
    tx.filter(pl.col("ts") > last_day).write_parquet(inbox / "night-2.parquet")
    timed("night 2")
    timed("night 3")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:,.0f} MB")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
