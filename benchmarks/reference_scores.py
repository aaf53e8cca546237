"""Reference scores: record what the ``mulegraph`` CLI scores today, and check later code against it.

Every case runs the CLI only (``ingest``, ``train``, ``score`` as subprocesses), never the Python
API, so the recorded scores stay comparable across refactors of the package layout.

    python benchmarks/reference_scores.py record --out benchmarks/reference
    python benchmarks/reference_scores.py check --ref benchmarks/reference
    python benchmarks/reference_scores.py check --ref benchmarks/reference --only sample-nolabel sample-supervised

Cases:

* ``sample-nolabel``: ``sample_data/transfers.csv`` ingested with ``sample_data/mapping.toml``, scored
  in the no-label mode with ``sample_data/mulegraph.toml`` over the ``[run] window`` of that config
  (30d), as ``mulegraph run`` does.
* ``sample-supervised``: a store made the same way; ``mulegraph train`` with ``sample_data/labels.csv`` (same
  config and window), then ``mulegraph score --model``.
* ``dev-nolabel`` / ``hard-nolabel`` / ``dev-supervised`` / ``hard-supervised``: the AMLGentex sets
  ``amlgentex-dev`` / ``amlgentex-hard-dev`` under ``--data`` (default ``../shared/data`` from the
  repository root), following their README protocol as ``bench_nolabel.py`` / ``bench_accuracy.py``
  do: ``transactions.parquet`` with ``channel`` blanked (all null) is written as a canonical export
  and ingested with ``--mapping canonical``; ``EXT_SOURCE`` / ``EXT_SINK`` are hubs
  (``[features] hub_accounts``), so they are not ranked; the whole store is scored (``--window all``);
  the supervised cases train on the labels of the ``split == train`` accounts only (``account_id,
  is_mule``), with ``[model] importance_repeats = 0`` as in ``bench_accuracy.py``.

``record`` writes ``<case>.parquet`` (``account_id, score, rank, reasons``; zstd) and ``meta.json``
(commands, git commit, library versions, input checksums, seconds per case). ``reasons`` is stored
normalised: a JSON text, with sorted keys, of the list of reason objects, whether the scores file
holds it as a JSON string or as a ``List(Struct)`` column.

``check`` recomputes the cases and compares them with the reference: the same account ids, the same
rank for every account, scores within 1e-12, identical reasons. Exit code 0 when all are equal, 1 on
any difference (or a failed case), 2 on bad usage.

The CLI runs with ``POLARS_MAX_THREADS`` and ``OMP_NUM_THREADS`` set to ``--threads`` (default 2) and
``OMP_WAIT_POLICY=PASSIVE``, for record and check alike. The ``model_version`` column is left out on
purpose: it holds a hash of the training matrix, which is not bit-identical from run to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
DEFAULT_DATA = REPO / ".." / "shared" / "data"
SCORE_TOL = 1e-12
COLUMNS = ("account_id", "score", "rank", "reasons")
#: config of the AMLGentex cases: the settings bench_nolabel.py / bench_accuracy.py use
DEV_CONFIG = """\
# Written by benchmarks/reference_scores.py: the AMLGentex protocol settings of
# bench_nolabel.py / bench_accuracy.py.
[features]
hub_accounts = ["EXT_SOURCE", "EXT_SINK"]

[model]
random_state = 0
importance_repeats = 0
"""
ENV_FIXED = {"OMP_WAIT_POLICY": "PASSIVE"}
LIBRARIES = ("mulegraph", "polars", "polars-runtime-32", "pyarrow", "numpy", "scipy", "scikit-learn", "networkx", "skops", "typer")


class Case(NamedTuple):  # not a dataclass: the tests load this file by path, outside sys.modules
    name: str
    dataset: str | None  # None: sample_data/; else a folder under --data
    supervised: bool


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("sample-nolabel", None, False),
        Case("sample-supervised", None, True),
        Case("dev-nolabel", "amlgentex-dev", False),
        Case("hard-nolabel", "amlgentex-hard-dev", False),
        Case("dev-supervised", "amlgentex-dev", True),
        Case("hard-supervised", "amlgentex-hard-dev", True),
    )
}


class CaseError(RuntimeError):
    """A command of a case failed (or its inputs are missing)."""


# -- normalising and comparing ---------------------------------------------------------------------
def _reason_text(value: Any) -> str:
    """One account's reasons as canonical JSON text (sorted keys, no spaces); null means no reasons."""
    if value is None:
        obj: Any = []
    elif isinstance(value, str):
        obj = json.loads(value) if value.strip() else []
    elif isinstance(value, pl.Series):
        obj = value.to_list()
    else:
        obj = value
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def normalise_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """``account_id, score, rank, reasons`` of a scores frame, reasons as canonical JSON text.

    Accepts ``reasons`` as a JSON string column (the current output) or as a ``List(Struct)``
    column; rows are sorted by rank, then account id.
    """
    missing = [c for c in COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {', '.join(missing)}; have {', '.join(scores.columns)}")
    reasons = scores["reasons"]
    if not (reasons.dtype == pl.String or isinstance(reasons.dtype, (pl.List, pl.Null))):
        raise ValueError(f"reasons has dtype {reasons.dtype}; expected String (JSON) or List(Struct)")
    texts = [_reason_text(v) for v in reasons.to_list()]
    return pl.DataFrame(
        {
            "account_id": scores["account_id"].cast(pl.String),
            "score": scores["score"].cast(pl.Float64),
            "rank": scores["rank"].cast(pl.Int64),
            "reasons": pl.Series("reasons", texts, dtype=pl.String),
        }
    ).sort("rank", "account_id")


def _first_diff(a: str, b: str, width: int = 60) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 20)
    return f"at char {i}: ref …{a[lo:lo + width]!r}… new …{b[lo:lo + width]!r}…"


def compare(ref: pl.DataFrame, new: pl.DataFrame, tol: float = SCORE_TOL, examples: int = 5) -> dict[str, Any]:
    """Compare two normalised score frames (see :func:`normalise_scores`).

    Returns counts (``accounts_ref``, ``accounts_new``, ``missing``, ``extra``, ``duplicates``,
    ``score_mismatches``, ``rank_mismatches``, ``reason_mismatches``), ``max_score_diff`` over the
    common accounts, up to ``examples`` described differences per kind in ``examples``, and
    ``equal`` (True when nothing differs).
    """
    ref, new = normalise_scores(ref), normalise_scores(new)
    out: dict[str, Any] = {"accounts_ref": ref.height, "accounts_new": new.height, "examples": []}
    ex: list[str] = out["examples"]
    dup = {name: int(f.height - f["account_id"].n_unique()) for name, f in (("ref", ref), ("new", new))}
    out["duplicates"] = dup["ref"] + dup["new"]
    if out["duplicates"]:
        ex.append(f"duplicate account ids: {dup['ref']} in the reference, {dup['new']} in the new scores")
    ref_ids, new_ids = set(ref["account_id"].to_list()), set(new["account_id"].to_list())
    missing, extra = sorted(ref_ids - new_ids), sorted(new_ids - ref_ids)
    out["missing"], out["extra"] = len(missing), len(extra)
    if missing:
        ex.append(f"{len(missing)} account(s) missing from the new scores, e.g. {missing[:examples]}")
    if extra:
        ex.append(f"{len(extra)} account(s) not in the reference, e.g. {extra[:examples]}")

    j = ref.unique("account_id", keep="first", maintain_order=True).join(
        new.unique("account_id", keep="first", maintain_order=True), on="account_id", how="inner", suffix="_new"
    )  # in reference rank order
    a, b = j["score"].to_numpy().astype(float), j["score_new"].to_numpy().astype(float)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    both_nan = np.isnan(a) & np.isnan(b)
    d[both_nan] = 0.0
    d[np.isnan(d)] = math.inf  # NaN on one side only; also inf - inf
    d[(a == b) & ~np.isnan(a)] = 0.0  # equal infinities
    bad_score = d > tol
    out["max_score_diff"] = float(d.max()) if len(d) else 0.0
    out["score_mismatches"] = int(bad_score.sum())
    bad_rank = (j["rank"] != j["rank_new"]).to_numpy()
    bad_reason = (j["reasons"] != j["reasons_new"]).to_numpy()
    out["rank_mismatches"], out["reason_mismatches"] = int(bad_rank.sum()), int(bad_reason.sum())
    ids, ranks, ranks_new = j["account_id"].to_list(), j["rank"].to_list(), j["rank_new"].to_list()
    for i in np.flatnonzero(bad_score)[:examples]:
        ex.append(f"score {ids[i]} (rank {ranks[i]}): ref {float(a[i])!r} new {float(b[i])!r} (diff {d[i]:.3g})")
    for i in np.flatnonzero(bad_rank)[:examples]:
        ex.append(f"rank {ids[i]}: ref {ranks[i]} new {ranks_new[i]}")
    rs, rs_new = j["reasons"].to_list(), j["reasons_new"].to_list()
    for i in np.flatnonzero(bad_reason)[:examples]:
        ex.append(f"reasons {ids[i]} (rank {ranks[i]}): {_first_diff(rs[i], rs_new[i])}")
    out["equal"] = not (
        out["duplicates"] or missing or extra or out["score_mismatches"] or out["rank_mismatches"] or out["reason_mismatches"]
    )
    return out


# -- running the cases -----------------------------------------------------------------------------
def default_cli() -> list[str]:
    """The mulegraph CLI of the running interpreter."""
    return [sys.executable, "-m", "mulegraph"]


def cli_env(threads: int) -> dict[str, str]:
    """The CLI's environment: fixed thread counts, and OpenMP threads that sleep while they wait.

    OMP_WAIT_POLICY does not change any result; without it, scikit-learn's OpenMP threads spin
    while waiting and training slows down tenfold or more on a machine that other jobs share.
    """
    env = dict(os.environ)
    env.update(ENV_FIXED)
    env["POLARS_MAX_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop("MULEGRAPH_DEBUG", None)
    return env


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _show(argv: list[str], subst: dict[str, str]) -> str:
    text = shlex.join(argv)
    for value, name in sorted(subst.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, name)
    return text


def case_inputs(case: Case, data: Path) -> dict[str, Path]:
    """The input files a case reads (checksummed into meta.json)."""
    if case.dataset is None:
        names = ["transfers.csv", "mapping.toml", "mulegraph.toml"] + (["labels.csv"] if case.supervised else [])
        files = {f"sample_data/{n}": SAMPLE / n for n in names}
    else:
        names = ["transactions.parquet"] + (["account_labels.parquet", "split.parquet"] if case.supervised else [])
        files = {f"{case.dataset}/{n}": data / case.dataset / n for n in names}
    lost = [str(p) for p in files.values() if not p.is_file()]
    if lost:
        raise CaseError(f"{case.name}: input file(s) missing: {', '.join(lost)} (give --data DIR with the AMLGentex sets)")
    return files


def run_case(name: str, work: Path, data: Path = DEFAULT_DATA, cli: list[str] | None = None, threads: int = 2) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Run one case in the empty folder ``work``; return its normalised scores and what was run."""
    case = CASES[name]
    cli = cli or default_cli()
    env = cli_env(threads)
    data = data.resolve()
    inputs = case_inputs(case, data)
    subst = {str(work): "$WORK", str(REPO): "$REPO", str(data): "$DATA", shlex.join(cli): "mulegraph"}
    store, model, out = work / "store", work / "model", work / "scores.parquet"
    t_case = time.perf_counter()
    if case.dataset is None:
        config = SAMPLE / "mulegraph.toml"
        with open(config, "rb") as fh:
            window = tomllib.load(fh).get("run", {}).get("window", "30d")  # what `mulegraph run` scores
        prepare = []
        commands = [["ingest", str(SAMPLE / "transfers.csv"), "--store", str(store), "--mapping", str(SAMPLE / "mapping.toml")]]
        if case.supervised:
            commands.append(
                ["train", "--store", str(store), "--labels", str(SAMPLE / "labels.csv"), "--config", str(config),
                 "--window", window, "--out", str(model)]
            )
    else:
        src = data / case.dataset
        config, window = work / "mulegraph.toml", "all"
        config.write_text(DEV_CONFIG, encoding="utf-8")
        export = work / "transactions.parquet"
        # README protocol: blank channel (CASH gives the label away on amlgentex-dev)
        pl.read_parquet(src / "transactions.parquet").with_columns(pl.lit(None, dtype=pl.String).alias("channel")).write_parquet(export)
        prepare = [
            "$WORK/mulegraph.toml: " + "; ".join(x for x in DEV_CONFIG.splitlines() if x and not x.startswith("#")),
            f"$WORK/transactions.parquet: $DATA/{case.dataset}/transactions.parquet with channel = null (String)",
        ]
        commands = [["ingest", str(export), "--store", str(store), "--mapping", "canonical"]]
        if case.supervised:
            labels = work / "train_labels.parquet"
            split = pl.read_parquet(src / "split.parquet").filter(pl.col("split") == "train")
            (
                pl.read_parquet(src / "account_labels.parquet")
                .join(split, on="account_id", how="inner")
                .select("account_id", "is_mule")
                .sort("account_id")
                .write_parquet(labels)
            )
            prepare.append(
                f"$WORK/train_labels.parquet: account_id, is_mule of $DATA/{case.dataset}/account_labels.parquet "
                "for the accounts with split == 'train' in split.parquet"
            )
            commands.append(
                ["train", "--store", str(store), "--labels", str(labels), "--config", str(config), "--window", window, "--out", str(model)]
            )
    score = ["score", "--store", str(store), "--config", str(config), "--window", window, "--out", str(out), "--show", "0"]
    if case.supervised:
        score[1:1] = ["--model", str(model)]
    commands.append(score)

    shown, seconds = [], []
    for cmd in commands:
        argv = cli + cmd
        shown.append(_show(argv, subst))
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
        seconds.append(round(time.perf_counter() - t0, 2))
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-3000:]
            raise CaseError(f"{name}: `{shown[-1]}` exited {proc.returncode}:\n{tail}")
    scores = normalise_scores(pl.read_parquet(out))
    info = {
        "prepare": prepare,
        "commands": shown,
        "command_seconds": seconds,
        "seconds": round(time.perf_counter() - t_case, 2),
        "accounts": scores.height,
        "inputs": {k: _sha256(p) for k, p in inputs.items()},
    }
    return scores, info


def run_cases(names: list[str], data: Path, cli: list[str], threads: int, keep: bool):
    """Yield (name, scores or None, info or error text) per case, each in a fresh temp folder."""
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"refscores-{name}-"))
        try:
            scores, info = run_case(name, work, data, cli, threads)
            yield name, scores, info
        except CaseError as err:
            yield name, None, str(err)
        finally:
            if keep:
                print(f"[{name}] work folder kept: {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)


# -- meta ------------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(cli: list[str], threads: int) -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    proc = subprocess.run(cli + ["--version"], capture_output=True, text=True, env=cli_env(threads))
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "cli": shlex.join(cli),
        "cli_version": proc.stdout.strip(),
        "versions": versions,
        "platform": platform.platform(),
        "env": {"POLARS_MAX_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), **ENV_FIXED},
        "score_tolerance": SCORE_TOL,
    }


# -- commands --------------------------------------------------------------------------------------
def record(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    cases = dict(meta.get("cases", {}))
    meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **environment(args.cli, args.threads)}
    if args.only is None:  # a full record replaces every case
        cases = {}
    failed = 0
    for name, scores, info in run_cases(args.names, args.data, args.cli, args.threads, args.keep_temp):
        if scores is None:
            print(f"FAILED {info}", file=sys.stderr)
            failed += 1
            continue
        path = out / f"{name}.parquet"
        # one data page per column: zstd then sees the whole column (about 17% smaller than the default pages)
        scores.write_parquet(path, compression="zstd", compression_level=22, statistics=False, data_page_size=1 << 24)
        info["file"], info["bytes"] = path.name, path.stat().st_size
        cases[name] = info
        print(f"{name:<18} {info['accounts']:>7,} accounts  {info['seconds']:>7.1f} s  {info['bytes']:>9,} bytes  -> {path}")
    meta["cases"] = {k: cases[k] for k in CASES if k in cases}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    total = sum((out / c["file"]).stat().st_size for c in meta["cases"].values())
    print(f"meta -> {meta_path}; reference parquet files {total:,} bytes in all")
    return 1 if failed else 0


def check(args: argparse.Namespace) -> int:
    ref: Path = args.ref
    meta_path = ref / "meta.json"
    if not meta_path.is_file():
        print(f"no {meta_path}; record a reference first", file=sys.stderr)
        return 2
    meta = json.loads(meta_path.read_text())
    recorded = meta.get("cases", {})
    names = args.names if args.only is not None else [n for n in CASES if n in recorded]
    lost = [n for n in names if n not in recorded or not (ref / f"{n}.parquet").is_file()]
    if lost:
        print(f"the reference in {ref} has no case(s) {', '.join(lost)}", file=sys.stderr)
        return 2
    env_now = environment(args.cli, args.threads)
    for key in ("git_commit", "versions", "env"):
        if meta.get(key) != env_now.get(key):
            print(f"note: {key} differs from the reference: {meta.get(key)} -> {env_now.get(key)}")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    rows, all_equal = [], True
    for name, scores, info in run_cases(names, args.data, args.cli, args.threads, args.keep_temp):
        if scores is None:
            print(f"\n[{name}] FAILED\n{info}")
            rows.append((name, "-", "-", "-", "-", "FAILED", "-", recorded[name].get("seconds")))
            all_equal = False
            continue
        if args.save:
            scores.write_parquet(args.save / f"{name}.parquet", compression="zstd")
        changed = [k for k, v in info["inputs"].items() if recorded[name].get("inputs", {}).get(k) != v]
        res = compare(pl.read_parquet(ref / f"{name}.parquet"), scores)
        all_equal &= res["equal"]
        print(f"\n[{name}] {'EQUAL' if res['equal'] else 'DIFFERENT'}: {res['accounts_new']:,} accounts "
              f"(reference {res['accounts_ref']:,}); missing {res['missing']}, extra {res['extra']}, "
              f"scores > {SCORE_TOL:g} apart {res['score_mismatches']}, ranks {res['rank_mismatches']}, "
              f"reasons {res['reason_mismatches']}")
        if changed:
            print(f"  note: input file(s) changed since the reference: {', '.join(changed)}")
        for line in res["examples"]:
            print(f"  {line}")
        ids = f"{res['accounts_new']:,}" + ("" if not (res["missing"] or res["extra"]) else f" (-{res['missing']} +{res['extra']})")
        rows.append((name, ids, f"{res['max_score_diff']:.3g}", str(res["rank_mismatches"]), str(res["reason_mismatches"]),
                     "equal" if res["equal"] else "DIFFERENT", f"{info['seconds']:.1f}", recorded[name].get("seconds")))
    head = ("case", "accounts", "max score diff", "rank mismatches", "reason mismatches", "result", "seconds", "ref seconds")
    rows = [head] + [tuple("" if v is None else str(v) for v in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print()
    for k, r in enumerate(rows):
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print("\nALL EQUAL" if all_equal else "\nDIFFERENCES FOUND")
    return 0 if all_equal else 1


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with amlgentex-dev/ and amlgentex-hard-dev/ (default: ../shared/data from the repository root)")
    common.add_argument("--only", nargs="+", choices=list(CASES), metavar="NAME", help=f"cases to run (default: all): {', '.join(CASES)}")
    common.add_argument("--threads", type=int, default=2, help="POLARS_MAX_THREADS and OMP_NUM_THREADS for the CLI (default 2)")
    common.add_argument("--cli", type=shlex.split, default=None, help="how to call mulegraph (default: this interpreter's `python -m mulegraph`)")
    common.add_argument("--keep-temp", action="store_true", help="keep each case's work folder (store, model, scores)")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", parents=[common], help="run the cases and write the reference")
    rec.add_argument("--out", type=Path, required=True, help="reference folder to write")
    chk = sub.add_parser("check", parents=[common], help="run the cases and compare with a reference")
    chk.add_argument("--ref", type=Path, required=True, help="reference folder written by record")
    chk.add_argument("--save", type=Path, help="also write the recomputed (normalised) scores here")
    args = ap.parse_args(argv)
    args.cli = args.cli or default_cli()
    args.names = list(dict.fromkeys(args.only)) if args.only else list(CASES)
    return record(args) if args.command == "record" else check(args)


if __name__ == "__main__":
    sys.exit(main())
