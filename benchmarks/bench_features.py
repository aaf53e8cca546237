"""Benchmark the feature engine: wall time per family and peak memory.

Synthetic log (default 5M transfers over 500k accounts, 60 days, from ``mulegraph.synth``)::

    python benchmarks/bench_features.py synth --accounts 500000 --days 60

A transfer file (e.g. the AMLGentex development set, with its two external pseudo-accounts)::

    python benchmarks/bench_features.py file ../shared/data/amlgentex-hard-dev/transactions.parquet

Prints rows, wall seconds, seconds per family, rows/s and peak RSS (``ru_maxrss``). ``--families``
restricts the run (e.g. ``patterns,network`` to profile the graph families alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import polars as pl

from mulegraph.core.config import FeatureConfig
from mulegraph.features import compute_features


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run(transfers: pl.DataFrame, label: str, families: list[str] | None, config: FeatureConfig) -> None:
    timings: dict[str, float] = {}
    rss0 = peak_rss_gb()
    t0 = time.perf_counter()
    out = compute_features(transfers, config, families=families, timings=timings,
                           progress=lambda name: print(f"  .. {name}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    n = transfers.height
    print(f"## {label}")
    print(f"transfers {n:,}  accounts {out.height:,}  feature columns {out.width - 2}")
    print(f"wall {wall:.1f} s  ({n / wall:,.0f} transfers/s)  peak RSS {peak_rss_gb():.2f} GB (before features {rss0:.2f} GB)")
    print("| family | seconds |")
    print("|---|---|")
    for name, sec in timings.items():
        print(f"| {name} | {sec:.1f} |")
    hubs = int(out["is_hub"].sum())
    print(f"hubs: {hubs}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--accounts", type=int, default=500_000)
    s.add_argument("--days", type=int, default=60)
    s.add_argument("--activity", type=float, default=None, help="transfers per account per day")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cache", type=Path, default=None, help="parquet file to reuse the generated log")
    f = sub.add_parser("file")
    f.add_argument("path", type=Path)
    f.add_argument("--hubs", default="EXT_SOURCE,EXT_SINK", help="comma-separated hub accounts")
    for p in (s, f):
        p.add_argument("--families", default=None, help="comma-separated families (default all)")
        p.add_argument("--cycle-window", default=None, help="pattern window (FeatureConfig.cycle_window)")
    args = ap.parse_args(argv)
    families = args.families.split(",") if args.families else None
    config = FeatureConfig()
    if args.cmd == "synth":
        if args.cache is not None and args.cache.exists():
            tx = pl.read_parquet(args.cache)
        else:
            from mulegraph.synth import generate

            knobs = {} if args.activity is None else {"activity": args.activity}
            t0 = time.perf_counter()
            tx = generate(args.accounts, days=args.days, seed=args.seed, **knobs).transfers
            print(f"generated {tx.height:,} transfers in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            if args.cache is not None:
                tmp = args.cache.with_suffix(".tmp")
                tx.write_parquet(tmp)
                os.replace(tmp, args.cache)
        label = f"synth: {args.accounts:,} accounts, {args.days} days"
    else:
        tx = pl.read_parquet(args.path)
        config = FeatureConfig(hub_accounts=tuple(h for h in args.hubs.split(",") if h))
        label = f"file: {args.path.name}"
    if args.cycle_window:
        config = dataclasses.replace(config, cycle_window=args.cycle_window)
        label += f", cycle_window {args.cycle_window}"
    run(tx, label, families, config)


if __name__ == "__main__":
    main()
