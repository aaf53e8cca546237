"""Investigation speed on a synthetic store: summary, ego graph, trails, timeline, exports.

    python benchmarks/bench_investigate.py --accounts 200000 --days 30 [--store DIR] [--in-memory]

Generates a transfer log with :func:`mulegraph.synth.generate`, ingests it into a store (kept in
``--store`` when given, so that later runs reuse it), then times the investigation calls on the
highest-ranked planted mules. Prints seconds per call and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import polars as pl


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--suspects", type=int, default=5)
    ap.add_argument("--in-memory", action="store_true", help="load the store's transfers into memory once")
    args = ap.parse_args()

    from mulegraph.ingest import ingest
    from mulegraph.investigate import open_investigation, save_graph
    from mulegraph.io.store import Store
    from mulegraph.synth import generate

    work = Path(tempfile.mkdtemp(prefix="bench-inv-"))
    store_dir = args.store or work / "store"
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    labels_path = store_dir.parent / f"{store_dir.name}-labels.parquet"
    if not (store_dir / "manifest.json").exists():
        t = time.perf_counter()
        data = generate(args.accounts, args.days, seed=args.seed)
        export = work / "transfers.parquet"
        data.transfers.write_parquet(export)
        data.labels.write_parquet(labels_path)
        print(f"generated {data.transfers.height:,} transfers in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        Store.open(store_dir, create=True)
        ingest([export], store_dir)
        print(f"ingested in {time.perf_counter() - t:.1f} s")
    labels = pl.read_parquet(labels_path)
    t = time.perf_counter()
    inv = open_investigation(store_dir, in_memory=args.in_memory)
    print(f"opened the store{' (in memory)' if args.in_memory else ''} in {time.perf_counter() - t:.2f} s")
    rows = Store.open(store_dir).summary()["rows"]
    mules = labels.filter(pl.col("is_mule"))["account_id"].head(args.suspects).to_list()
    timings: dict[str, list[float]] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timings.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    sizes = []
    for acc in mules:
        timed("account_summary", lambda: inv.account_summary(acc))
        g = timed("ego_graph hops=2", lambda: inv.ego_graph(acc, hops=2, max_nodes=100_000))
        fwd = timed("trace forward fifo hops=4", lambda: inv.trace(acc, "forward", hops=4))
        timed("trace backward proportional hops=4", lambda: inv.trace(acc, "backward", hops=4, alloc="proportional"))
        timed("timeline", lambda: inv.timeline(acc))
        tg = fwd.to_graph()
        timed("draw trail png", lambda: save_graph(tg, work / "trail.png"))
        timed("draw trail html", lambda: save_graph(tg, work / "trail.html"))
        timed("export trail graphml", lambda: save_graph(tg, work / "trail.graphml"))
        sizes.append((g.number_of_nodes(), g.number_of_edges(), tg.number_of_nodes()))
    print(f"store: {rows:,} transfers; {len(mules)} planted mules")
    print(f"ego graph sizes (accounts, transfers): {[(a, b) for a, b, _ in sizes]}; trail accounts: {[c for _, _, c in sizes]}")
    for name, ts in timings.items():
        print(f"{name:40s} median {sorted(ts)[len(ts) // 2]:.3f} s  max {max(ts):.3f} s")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
