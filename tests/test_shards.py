"""Account shards give the whole-window features, column by column and bit for bit."""

from __future__ import annotations

import polars as pl
import pytest

from mulegraph.core.config import FeatureConfig
from mulegraph.core.errors import FeatureError
from mulegraph.core.hashing import hash_text, shard_of
from mulegraph.features.build import window_features
from mulegraph.core.config import Config, EngineConfig
from mulegraph.features.shards import (
    FLOW_FAMILIES,
    GRAPH_FAMILIES,
    LocalEngine,
    ShardJob,
    combine_shards,
    compact_text,
    plan_shards,
    prepared_window,
    run_shard,
    shard_transfers,
    sharded_features,
)
from mulegraph.ingest import ingest
from mulegraph.io.store import Store
from mulegraph.synth import generate, write_export


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    data = generate(4000, 20, seed=11)
    files = write_export(data, root / "export")
    ingest([files["transfers"]], root / "store", mapping=str(files["mapping"]))
    return Store.open(root / "store")


def assert_same_features(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns
    assert a["account_id"].to_list() == b["account_id"].to_list()
    differing = [c for c in a.columns if not a[c].equals(b[c])]
    assert not differing, f"columns differ between whole window and shards: {differing}"


@pytest.mark.parametrize("shard_accounts", [450, 1300, 10**9])
def test_shards_equal_the_whole_window(synth_store, shard_accounts):
    cfg = FeatureConfig(hub_degree=150)
    whole = window_features(synth_store, window="all", config=cfg)
    done = []
    engine = LocalEngine(progress=lambda i, n: done.append((i, n)))
    sharded = sharded_features(synth_store, whole.window, cfg, shard_accounts=shard_accounts, engine=engine)
    assert_same_features(whole.features, sharded)
    n = done[-1][1]
    assert n == max(1, -(-whole.features.height // shard_accounts)) and len(done) == n


def test_shards_equal_a_window_with_listed_hubs(synth_store):
    busiest = (
        synth_store.transfers().group_by("dst_account").len().sort(["len", "dst_account"], descending=True)["dst_account"][:3]
    )
    cfg = FeatureConfig(hub_accounts=tuple(busiest.to_list()))
    whole = window_features(synth_store, window="10d", config=cfg)
    assert_same_features(whole.features, sharded_features(synth_store, whole.window, cfg, shard_accounts=700))


def test_the_graph_step_lets_go_of_the_shards_frames(synth_store):
    """combine_shards empties the list of shard frames it is given (at bank scale every account's
    flow features), and still gives every account's features."""
    cfg = FeatureConfig(hub_degree=150)
    plan = plan_shards(synth_store, synth_store.time_window("all"), cfg, 1300)
    job = ShardJob(store=synth_store, plan=plan, flow_families=FLOW_FAMILIES, graph_families=GRAPH_FAMILIES)
    parts = [run_shard(job, k) for k in range(plan.n_shards)]
    assert len(parts) == plan.n_shards > 1
    out = combine_shards(job, parts)
    assert parts == []
    whole = window_features(synth_store, window="all", config=cfg)
    assert_same_features(whole.features, out)


@pytest.mark.parametrize("window", ["all", "6d"])
def test_prepared_window_equals_prepare_of_the_read_window(synth_store, window):
    """Coding the account columns as the store is read gives exactly what prepare() gives."""
    from polars.testing import assert_frame_equal

    cfg = FeatureConfig(hub_degree=150)
    whole = window_features(synth_store, window=window, config=cfg)
    coded = prepared_window(synth_store, plan_shards(synth_store, whole.window, cfg, 900), cfg)
    held = [c for c in coded.tx.columns if coded.tx.schema[c] == pl.Categorical]
    assert {"currency", "channel"} <= set(held)  # the low-cardinality text is held as categories
    assert_frame_equal(whole.prepared.tx, coded.tx.with_columns(pl.col(held).cast(pl.String)))
    assert_frame_equal(whole.prepared.canonical(), coded.canonical())
    assert_frame_equal(whole.prepared.accounts, coded.accounts)
    assert coded.config == cfg


def test_window_features_by_shards_prepare_the_same_transfers(synth_store):
    cfg = FeatureConfig(hub_degree=150)
    whole = window_features(synth_store, window="all", config=cfg)
    sharded = window_features(synth_store, window="all", config=Config(features=cfg, engine=EngineConfig(shard_accounts=800)))
    assert sharded.engine["shards"] and sharded.engine["shards"] > 1
    assert_same_features(whole.features, sharded.features)
    assert whole.prepared.tx.equals(sharded.prepared.tx.with_columns(pl.col(pl.Categorical).cast(pl.String)))
    assert whole.prepared.accounts.equals(sharded.prepared.accounts)
    assert whole.transfers.equals(sharded.transfers)


def test_a_lean_window_gives_the_same_rows_and_reads_the_rest_when_asked(synth_store):
    """A lean window holds the columns scoring reads over every transfer; the full rows of some
    accounts, and the canonical transfers, come back equal to a full window's."""
    from polars.testing import assert_frame_equal

    from mulegraph.features.prepare import LEAN_COLUMNS

    cfg = FeatureConfig(hub_degree=150)
    plan = plan_shards(synth_store, synth_store.time_window("all"), cfg, 900)
    full = prepared_window(synth_store, plan, cfg)
    lean = prepared_window(synth_store, plan, cfg, lean=True)
    assert lean.lean and not full.lean and lean.tx.columns == list(LEAN_COLUMNS)
    assert_frame_equal(lean.tx, full.tx.select(LEAN_COLUMNS))
    busy = full.accounts.sort("degree", descending=True)["idx"].head(7)
    want = full.rows_touching(busy)
    got = lean.rows_touching(busy)
    assert want.height > 50 and got.columns == want.columns
    assert_frame_equal(got.drop("row"), want.drop("row"))  # rows are numbered within the accounts' transfers
    ids = full.accounts.filter(pl.col("idx").is_in(busy.implode()))["account_id"]
    assert_frame_equal(lean.canonical(ids), full.canonical(ids))
    assert_frame_equal(lean.canonical(), full.canonical())


def test_a_nightly_run_by_shards_on_a_lean_window_equals_the_whole_window_run(synth_store, tmp_path):
    """Scores, reasons with their evidence, alerts with their key figures and flows: equal whether
    the run holds the whole window or computes by shards on a lean one."""
    from mulegraph.pipeline import run

    (tmp_path / "in").mkdir()
    got = {}
    for name, engine in (("whole", EngineConfig()), ("shards", EngineConfig(shard_accounts=800))):
        cfg = Config(features=FeatureConfig(hub_degree=150), engine=engine)
        res = run(cfg, inbox=tmp_path / "in", store=synth_store.path, runs_dir=tmp_path / name, window="all")
        assert (res.manifest["engine"]["shards"] or 1) > 1 if name == "shards" else res.manifest["engine"]["shards"] is None
        got[name] = {f: pl.read_parquet(res.run_dir / f) for f in ("scores.parquet", "alerts.parquet", "flows.parquet")}
    for f, frame in got["whole"].items():
        assert frame.height > 0, f
        other = got["shards"][f]
        cols = [c for c in frame.columns if c != "run_id"]
        assert frame.select(cols).equals(other.select(cols)), f
    reasons = got["whole"]["scores.parquet"]["reasons"].head(20).explode().struct.field("txn_ids").explode().drop_nulls()
    assert reasons.len() > 0  # the evidence of the top accounts was compared too


def test_plan_puts_every_account_in_one_shard_and_lists_hubs(synth_store):
    win = synth_store.time_window("all")
    plan = plan_shards(synth_store, win, FeatureConfig(hub_degree=150), 500)
    acc = plan.accounts
    assert acc["account_id"].is_sorted() and acc["account_id"].n_unique() == acc.height
    assert acc["shard"].min() >= 0 and acc["shard"].max() < plan.n_shards
    assert set(plan.config.hub_accounts) == set(acc.filter(pl.col("degree") > 150)["account_id"].to_list())
    assert sum(plan.shard_accounts(k).len() for k in range(plan.n_shards)) == acc.height


def test_stable_hash_is_fixed():
    # fixed values: a shard must hold the same accounts on every machine and every release
    ids = pl.Series(["NL00SYNB0000000001", "", None, "é"])
    assert hash_text(ids).tolist() == hash_text(ids.clone()).tolist()
    assert len(set(hash_text(ids).tolist())) == 4
    assert shard_of(pl.Series(["a", "b", "c"]), 1).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="n_shards"):
        shard_of(ids, 0)


def test_bad_shard_size_is_refused(synth_store):
    with pytest.raises(FeatureError, match="shard_accounts must be a positive"):
        plan_shards(synth_store, synth_store.time_window("all"), FeatureConfig(), 0)


def test_local_engine_shards_a_large_window_on_its_own(synth_store, monkeypatch):
    import mulegraph.engine.factory as factory
    import mulegraph.features.build as build

    whole = window_features(synth_store, window="all", config=FeatureConfig())
    assert whole.engine["shards"] is None  # a small window: computed at once
    monkeypatch.setattr(build, "DEFAULT_SHARD_ACCOUNTS", 1000)  # now the window counts as large
    monkeypatch.setattr(factory, "DEFAULT_SHARD_ACCOUNTS", 1000)  # and shards hold 1000 accounts
    auto = window_features(synth_store, window="all", config=FeatureConfig())
    assert auto.engine["shards"] is not None and auto.engine["shards"] >= 2
    assert_same_features(whole.features, auto.features)
    # a window before every ingested transfer is small whatever the threshold
    from datetime import datetime, timedelta

    before = datetime.fromisoformat(synth_store.manifest()[0]["ts_min"]) - timedelta(days=2)
    assert not build._window_is_large(synth_store, "1d", before)


def test_the_local_engine_spills_frames_to_temporary_files_and_removes_them(tmp_path, monkeypatch):
    """Each item's frame is written as it is done and combine gets scans of them, equal to the
    frames; the files are gone once combine returns. Without spill, combine gets the frames."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = {k: pl.DataFrame({"k": [k] * 3, "x": [0.1 * k, None, float("nan")]}) for k in range(4)}
    seen = {}

    def combine(shared, parts):
        seen["kinds"] = [type(p).__name__ for p in parts]
        seen["files"] = sorted(p.name for d in tmp_path.iterdir() for p in d.iterdir())
        return pl.concat([p.lazy() for p in parts]).collect()

    out = LocalEngine().map_reduce(lambda shared, k: made[k], list(made), combine)
    assert seen["kinds"] == ["LazyFrame"] * 4 and len(seen["files"]) == 4
    assert out.equals(pl.concat(made.values()))
    assert list(tmp_path.iterdir()) == []
    out = LocalEngine(spill=False).map_reduce(lambda shared, k: made[k], list(made), combine)
    assert seen["kinds"] == ["DataFrame"] * 4 and out.equals(pl.concat(made.values()))


def _text_bytes(frame: pl.DataFrame) -> int:
    """Bytes of the buffers behind the frame's text columns (as Polars holds them: string views)."""
    total = 0
    for c, t in frame.schema.items():
        if t == pl.String:
            arr = frame[c].to_arrow(compat_level=pl.CompatLevel.newest())
            for chunk in getattr(arr, "chunks", [arr]):
                total += sum(b.size for b in chunk.buffers() if b is not None)
    return total


def test_a_shards_transfers_hold_their_own_text_not_the_windows(synth_store):
    """A filtered text column points into the buffers of every row read; the transfers of a shard
    are copied into buffers of their own, so what a shard holds does not grow with the window."""
    rows = pl.DataFrame({"a": [f"account-number-{i:08d}" for i in range(20_000)], "x": range(20_000)})
    few = rows.filter(pl.col("x") % 100 == 0)
    compact = compact_text(few)
    assert compact.equals(few) and compact.schema == few.schema
    assert _text_bytes(compact) * 20 < _text_bytes(few)
    assert compact_text(few.drop("a")).equals(few.drop("a"))
    store = synth_store
    plan = plan_shards(store, store.time_window("all"), FeatureConfig(), 100, min_shards=4)
    part = shard_transfers(store, plan, 0)
    whole = store.scan_window(plan.window).collect()
    ids = plan.shard_accounts(0).implode()
    assert part.equals(whole.filter(pl.col("src_account").is_in(ids) | pl.col("dst_account").is_in(ids)))
    assert _text_bytes(part) < _text_bytes(whole) / 2


def test_then_sees_every_feature_before_the_window_is_read_for_scoring(synth_store, monkeypatch):
    """``then`` gets every account's features before the window is read for scoring (so a
    nightly run never holds both), and the result holds what it returns."""
    import mulegraph.features.build as build_module

    cfg = Config(engine=EngineConfig(shard_accounts=1000))
    whole = window_features(synth_store, config=cfg, lean=True)
    events = []
    reader = build_module.prepared_window
    monkeypatch.setattr(build_module, "prepared_window", lambda *a, **k: (events.append("read"), reader(*a, **k))[1])

    def then(features):
        events.append("then")
        assert features.equals(whole.features)
        return features.select("account_id", "is_hub", "in_cp")

    got = window_features(synth_store, config=cfg, lean=True, then=then)
    assert events == ["then", "read"]
    assert got.features.equals(whole.features.select("account_id", "is_hub", "in_cp"))
    assert got.prepared.tx.equals(whole.prepared.tx)
    small = window_features(synth_store.scan_window(synth_store.time_window("all")).collect(), then=lambda f: f.head(3))
    assert small.features.height == 3


def test_scoring_lean_gives_the_same_scores_and_holds_only_what_it_reads(synth_store):
    """``score_window(lean=True)`` (the score command) by shards: the lean window and the columns
    scoring reads; the same scores, ranks, reasons (evidence included) and run id."""
    from mulegraph.scoring.score import columns_read, score_window

    cfg = Config(engine=EngineConfig(shard_accounts=1000))
    full = score_window(synth_store, config=cfg)
    lean = score_window(synth_store, config=cfg, lean=True)
    assert lean.scores.equals(full.scores)
    assert any(r["txn_ids"] for items in lean.scores["reasons"].head(20).to_list() for r in items)
    assert set(lean.features.columns) <= set(columns_read()) & set(full.features.columns)
    assert len(lean.features.columns) < len(full.features.columns) / 2
    assert lean.features.height == full.features.height
