"""Benchmark the synthetic data generator: generate() and write_export() on a large log.

Default: about 5M transfers over 500k accounts and 60 days (the size the other benchmarks use)::

    python benchmarks/bench_synth.py --accounts 500000 --days 60

Prints rows, wall seconds and rows/s for generation and for writing the export, the export's size
and the peak RSS of the process (``ru_maxrss``). The export goes to a temporary folder that is
removed afterwards unless ``--out`` is given. ``--repeat-check`` generates a second time and checks
that the frames are identical (same seed, same data).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from mulegraph.synth import generate, write_export


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=500_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the export here (default: a temporary folder)")
    ap.add_argument("--repeat-check", action="store_true", help="generate twice and compare")
    args = ap.parse_args()

    t0 = time.perf_counter()
    data = generate(args.accounts, days=args.days, seed=args.seed)
    t_gen = time.perf_counter() - t0
    rows = data.transfers.height
    rss_gen = peak_rss_gb()
    print(f"generate: {rows:,} transfers, {args.accounts:,} accounts, {args.days} days, "
          f"{int(data.labels['is_mule'].sum()):,} mules, {int(data.txn_labels['is_laundering'].sum()):,} laundering transfers")
    print(f"generate: {t_gen:.1f} s, {rows / t_gen:,.0f} rows/s, peak RSS {rss_gen:.2f} GB")

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        t0 = time.perf_counter()
        paths = write_export(data, out)
        t_write = time.perf_counter() - t0
        size = paths["transfers"].stat().st_size
        print(f"write_export: {t_write:.1f} s, {rows / t_write:,.0f} rows/s, transfers.csv {size / 1e6:,.0f} MB")
        total = t_gen + t_write
        print(f"total: {total:.1f} s, {rows / total:,.0f} rows/s, peak RSS {peak_rss_gb():.2f} GB")
        if args.repeat_check:
            again = generate(args.accounts, days=args.days, seed=args.seed)
            same = again.transfers.equals(data.transfers) and again.labels.equals(data.labels)
            print(f"same seed, same data: {same}")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
