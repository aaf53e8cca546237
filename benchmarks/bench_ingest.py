"""Benchmark ingest against a bare Polars CSV -> Parquet pass over the same file.

Writes a random canonical CSV (numpy; Zipf-like account activity, ISO timestamps with a ``Z``,
two decimals, a few bad and duplicate rows), then runs, each in its own process so that each peak
RSS is its own:

1. ``bare``: ``pl.scan_csv(schema=...) -> sink_parquet`` (7 columns, schema given);
2. ``ingest``: ``mulegraph.ingest.ingest`` into a fresh store (validation, dedupe, day
   partitions, quarantine, atomic commit);
3. ``append``: a further export of a tenth of the size into that store (its txn_ids are
   looked up in the store's id index, see ``mulegraph.ingest.index``).

Usage::

    python benchmarks/bench_ingest.py                # 5M rows
    python benchmarks/bench_ingest.py --rows 1000000 --keep

Prints rows/s, seconds and peak RSS for both, and the ratio (target: ingest >= 60% of bare, peak
RSS <= 3 GB). Work files go to ``benchmarks/_work/`` (git-ignored) and are removed unless ``--keep``.

``--new-day`` measures incremental ingest (issue 11's row "ingest one new day into a 20M-transfer
store <= 3x ingesting that day into an empty store"): a random export of ``--rows`` transfers over
60 days is split into its first 59 days and its last day; the 59 days are ingested into a store,
then the last day is ingested, each in its own process, (1) into an empty store and (2) into that
store. With ``--without-index`` it also measures (3) the same append into a hard-linked copy of
the store whose id index was removed (a store written before the index existed: this first
append indexes it)::

    python benchmarks/bench_ingest.py --new-day                 # 20M rows (about 1.2 GB of CSV)
    python benchmarks/bench_ingest.py --new-day --rows 2000000 --without-index

``--amlgentex DIR`` instead ingests ``DIR/raw/tx_log.parquet`` with the built-in ``amlgentex``
mapping and checks it against the set's canonical ``DIR/transactions.parquet``: row counts, the
multiset of (ts, src, dst, amount, currency, channel), accounts, date range, and the laundering
count of the extracted labels against ``DIR/txn_labels.parquet``::

    python benchmarks/bench_ingest.py --amlgentex ../shared/data/amlgentex-dev
    python benchmarks/bench_ingest.py --amlgentex ../shared/data/amlgentex-hard-dev --base-date 2025-01-06
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

WORK = Path(__file__).parent / "_work"


def make_csv(path: Path, rows: int, seed: int = 0, prefix: str = "T") -> None:
    """A random canonical export: 7 columns, 0.1% bad rows, 0.1% exact duplicates."""
    rng = np.random.default_rng(seed)
    n_acc = max(1000, rows // 10)
    weights = 1.0 / np.arange(1, n_acc + 1) ** 1.1
    weights /= weights.sum()
    src = rng.choice(n_acc, rows, p=weights)
    dst = rng.choice(n_acc, rows, p=weights)
    dst = np.where(dst == src, (dst + 1) % n_acc, dst)
    secs = np.sort(rng.integers(0, 60 * 86400, rows))
    base = np.datetime64("2024-01-01T00:00:00", "s")
    frame = pl.DataFrame(
        {
            "txn_id": pl.int_range(0, rows, eager=True).cast(pl.String).str.zfill(10),
            "ts": pl.Series((base + secs.astype("timedelta64[s]")).astype("datetime64[us]")),
            "src_account": pl.Series(src).cast(pl.String),
            "dst_account": pl.Series(dst).cast(pl.String),
            "amount": np.round(rng.lognormal(4.0, 1.2, rows) + 0.01, 2),
            "currency": "EUR",
            "channel": pl.Series(rng.choice(["CARD", "SEPA", "INSTANT", "CASH"], rows)),
        }
    ).with_columns(
        (prefix + pl.col("txn_id")).alias("txn_id"),
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    bad = rng.choice(rows, rows // 1000, replace=False)
    frame = frame.with_columns(
        amount=pl.when(pl.int_range(0, rows).is_in(bad)).then(-1.0).otherwise(pl.col("amount"))
    )
    dup = frame.sample(rows // 1000, seed=seed)
    frame = pl.concat([frame.slice(0, rows - dup.height), dup])
    frame.write_csv(path)


def step_bare(csv: Path, out: Path) -> dict:
    schema = {
        "txn_id": pl.String, "ts": pl.String, "src_account": pl.String, "dst_account": pl.String,
        "amount": pl.Float64, "currency": pl.String, "channel": pl.String,
    }
    t0 = time.perf_counter()
    pl.scan_csv(csv, schema=schema).sink_parquet(out)
    secs = time.perf_counter() - t0
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
    return {"seconds": secs, "rows": rows}


def step_ingest(csv: Path, store: Path) -> dict:
    from mulegraph.ingest import ingest

    t0 = time.perf_counter()
    rep = ingest([csv], store).to_dict()
    secs = time.perf_counter() - t0
    return {"seconds": secs, "rows": rep["rows_read"], "accepted": rep["accepted"],
            "quarantined": rep["quarantined"], "duplicates": rep["duplicates"]}


def check_amlgentex(root: Path, base_date: str | None = None) -> None:
    """Ingest the AMLGentex raw log and compare with the set's canonical transactions."""
    import dataclasses
    from datetime import date

    from mulegraph.ingest import ingest
    from mulegraph.io.mapping import load_mapping
    from mulegraph.io.store import Store

    mapping = load_mapping("amlgentex")
    if base_date:  # another simulation start than the built-in's 2024-03-01
        mapping = dataclasses.replace(mapping, base_date=date.fromisoformat(base_date))

    store = WORK / "amlgentex_store"
    shutil.rmtree(store, ignore_errors=True)
    labels = WORK / "amlgentex_labels.parquet"
    t0 = time.perf_counter()
    rep = ingest([root / "raw" / "tx_log.parquet"], store, mapping=mapping, labels_out=labels).to_dict()
    secs = time.perf_counter() - t0
    got = Store.open(store).transfers()
    want = pl.read_parquet(root / "transactions.parquet")
    key = ["ts", "src_account", "dst_account", "amount", "currency", "channel"]
    same = got.select(key).sort(key).equals(want.select(key).sort(key))
    n_acc = lambda f: pl.concat([f["src_account"], f["dst_account"]]).n_unique()  # noqa: E731
    laundering = pl.read_parquet(labels)["is_laundering"].sum()
    want_laundering = pl.read_parquet(root / "txn_labels.parquet")["is_laundering"].sum()
    print(f"ingested {rep['rows_read']:,} rows in {secs:.1f} s: accepted {rep['accepted']:,}, "
          f"quarantined {rep['quarantined']:,}, duplicates {rep['duplicates']:,}")
    print(f"rows: store {got.height:,} / canonical {want.height:,}; accounts {n_acc(got):,} / {n_acc(want):,}")
    print(f"dates: {got['ts'].min()} .. {got['ts'].max()} / {want['ts'].min()} .. {want['ts'].max()}")
    print(f"identical (ts, src, dst, amount, currency, channel) multiset: {same}")
    print(f"laundering transactions in --labels-out: {laundering:,} / txn_labels: {want_laundering:,}")
    ok = same and got.height == want.height and laundering == want_laundering
    print("MATCH" if ok else "MISMATCH")
    shutil.rmtree(store, ignore_errors=True)
    labels.unlink(missing_ok=True)
    if not ok:
        sys.exit(1)


def split_last_day(csv: Path, history: Path, day: Path) -> str:
    """Write the rows of the export's last UTC day to ``day`` and the others to ``history``."""
    lf = pl.scan_csv(csv, infer_schema=False)
    last = lf.select(pl.col("ts").str.slice(0, 10).max()).collect().item()
    lf.filter(pl.col("ts").str.slice(0, 10) < last).sink_csv(history)
    lf.filter(pl.col("ts").str.slice(0, 10) == last).sink_csv(day)
    return last


def drop_index(store: Path) -> None:
    """Make ``store`` look like a store written before the id index existed."""
    man = store / "manifest.json"
    data = json.loads(man.read_text())
    data.pop("id_index", None)
    tmp = man.with_name(".manifest.json.bench")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, man)
    shutil.rmtree(store / "index", ignore_errors=True)


def bench_new_day(rows: int, without_index: bool, keep: bool) -> None:
    """Ingest one new day into an empty store and into a store holding the days before it."""
    csv = WORK / f"newday_{rows}.csv"
    history, day = WORK / f"newday_{rows}_history.csv", WORK / f"newday_{rows}_lastday.csv"
    if not (history.exists() and day.exists()):
        t0 = time.perf_counter()
        make_csv(csv, rows)
        last = split_last_day(csv, history, day)
        csv.unlink()
        print(f"generated {rows:,} rows in {time.perf_counter() - t0:.1f} s; last day {last}: "
              f"{day.stat().st_size / 1e6:.0f} MB, history {history.stat().st_size / 1e6:.0f} MB")
    big, empty, old = WORK / "newday_store", WORK / "newday_empty", WORK / "newday_noindex"
    for d in (big, empty, old):
        shutil.rmtree(d, ignore_errors=True)
    load0 = os.getloadavg()[0]
    hist = run_child("ingest", str(history), str(big))
    if without_index:  # hard links: an ingest only adds files and replaces the manifest by rename
        shutil.copytree(big, old, copy_function=os.link)
        drop_index(old)
    fresh = run_child("ingest", str(day), str(empty))
    append = run_child("ingest", str(day), str(big))
    results = [(f"history ({hist['rows']:,} rows)", hist), ("new day -> empty store", fresh),
               (f"new day -> store of {hist['accepted']:,}", append)]
    if without_index:
        results.append(("new day -> same, no index yet", run_child("ingest", str(day), str(old))))
    for name, r in results:
        print(f"{name:40s} {r['rows']:>10,} rows {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
              f"CPU {r['cpu_seconds']:6.1f} s  accepted {r['accepted']:,} dup {r['duplicates']:,} quar {r['quarantined']:,}")
    print(f"load average before: {load0:.1f}, after: {os.getloadavg()[0]:.1f}")
    print(f"new day into the store / into an empty store: {append['seconds'] / fresh['seconds']:.2f}x wall "
          f"(target <= 3x), peak RSS {append['peak_rss_mb'] / fresh['peak_rss_mb']:.2f}x")
    if not keep:
        for d in (big, empty, old):
            shutil.rmtree(d, ignore_errors=True)
        history.unlink(missing_ok=True)
        day.unlink(missing_ok=True)


def run_child(step: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--step", step, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=None, help="rows of the export (default 5M; 20M with --new-day)")
    ap.add_argument("--keep", action="store_true", help="keep the work files")
    ap.add_argument("--repeat", type=int, default=1, help="alternate bare and ingest this many times")
    ap.add_argument("--amlgentex", type=Path, help="check the AMLGentex raw log ingest against its canonical files")
    ap.add_argument("--base-date", help="AMLGentex simulation start (YYYY-MM-DD) when not 2024-03-01")
    ap.add_argument("--new-day", action="store_true", help="ingest one new day into a store of --rows vs an empty one")
    ap.add_argument("--without-index", action="store_true", help="with --new-day: also into a store without id index")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.step:
        res = step_bare(Path(a.args[0]), Path(a.args[1])) if a.step == "bare" else step_ingest(Path(a.args[0]), Path(a.args[1]))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        res["peak_rss_mb"] = ru.ru_maxrss / 1024
        res["cpu_seconds"] = ru.ru_utime + ru.ru_stime
        print(json.dumps(res))
        return
    WORK.mkdir(exist_ok=True)
    if a.amlgentex:
        check_amlgentex(a.amlgentex, a.base_date)
        return
    if a.new_day:
        bench_new_day(a.rows or 20_000_000, a.without_index, a.keep)
        return
    a.rows = a.rows or 5_000_000
    csv = WORK / f"ingest_{a.rows}.csv"
    if not csv.exists():
        t0 = time.perf_counter()
        make_csv(csv, a.rows)
        print(f"generated {a.rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    bare_out = WORK / "bare.parquet"
    store = WORK / "store"
    shutil.rmtree(store, ignore_errors=True)
    extra = WORK / f"ingest_{a.rows}_append.csv"
    if not extra.exists():
        make_csv(extra, max(1, a.rows // 10), seed=1, prefix="U")
    load0 = os.getloadavg()[0]
    ratios, cpu_ratios = [], []
    for _ in range(a.repeat):  # alternate the two, so that both see the same load swings
        shutil.rmtree(store, ignore_errors=True)
        bare = run_child("bare", str(csv), str(bare_out))
        ing = run_child("ingest", str(csv), str(store))
        ratios.append(bare["seconds"] / ing["seconds"])
        cpu_ratios.append(bare["cpu_seconds"] / ing["cpu_seconds"])
    app = run_child("ingest", str(extra), str(store))
    for name, r in (("bare scan_csv->sink_parquet", bare), ("mulegraph ingest", ing), ("ingest append (1/10)", app)):
        print(f"{name:30s} {r['rows']:>10,} rows {r['seconds']:7.2f} s {r['rows'] / r['seconds'] / 1e6:6.3f} M rows/s "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  CPU {r['cpu_seconds']:6.1f} s (whole process)")
    print(f"ingest accepted {ing['accepted']:,}, quarantined {ing['quarantined']:,}, duplicates {ing['duplicates']:,}")
    print(f"load average before: {load0:.1f}, after: {os.getloadavg()[0]:.1f} (2 cores)")
    if a.repeat > 1:
        print(f"rate ratios over {a.repeat} alternating runs: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {float(np.median(ratios)):.2f}; CPU-time ratios median {float(np.median(cpu_ratios)):.2f}")
    print(f"ratio ingest/bare rate (last run): {bare['seconds'] / ing['seconds']:.2f} (target >= 0.60); "
          f"ingest peak RSS {ing['peak_rss_mb'] / 1024:.2f} GB (target <= 3 GB)")
    if not a.keep:
        shutil.rmtree(WORK / "store", ignore_errors=True)
        bare_out.unlink(missing_ok=True)
        csv.unlink(missing_ok=True)
        extra.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
