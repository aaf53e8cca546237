"""The Dask engine gives the local engine's features and scores, bit for bit, on a real cluster.

One ``LocalCluster`` of 2 worker processes (each behind a nanny) serves the module. In CI (the
``dask`` extra is installed there) these tests must run: they are skipped only outside CI when
Dask is missing.
"""

from __future__ import annotations

import os
import signal

import polars as pl
import pytest
from typer.testing import CliRunner

if os.environ.get("CI"):
    import distributed
else:
    distributed = pytest.importorskip("distributed")

from mulegraph.cli import app
from mulegraph.core.config import DEFAULT_SHARD_ACCOUNTS, Config, EngineConfig, FeatureConfig, ModelConfig
from mulegraph.core.errors import ConfigError, InputError
from mulegraph.engine import engine_settings, make_engine, shard_layout
from mulegraph.engine.dask import DaskEngine
from mulegraph.features.build import window_features
from mulegraph.ingest import ingest
from mulegraph.io.store import Store
from mulegraph.scoring.model import save_model, train_from_store
from mulegraph.scoring.score import score
from mulegraph.synth import generate, write_export

FEATURES = FeatureConfig(hub_degree=150)  # a few hubs, so that hub handling is compared too


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    data = generate(2500, 20, seed=13, mule_share=0.05)
    files = write_export(data, root / "export")
    ingest([files["transfers"]], root / "store", mapping=str(files["mapping"]))
    return {"root": root, "store": root / "store", "data": data, "files": files}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as c:
        yield c


def local(**engine) -> Config:
    return Config(features=FEATURES, engine=EngineConfig(**engine))


def on_cluster(cluster, **engine) -> Config:
    return local(kind="dask", scheduler=cluster.scheduler_address, **engine)


def assert_same_features(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns
    assert a["account_id"].to_list() == b["account_id"].to_list()
    differing = [c for c in a.columns if not a[c].equals(b[c])]
    assert not differing, f"columns differ between the local and the dask engine: {differing}"


def assert_same_scores(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns and a.height == b.height
    assert a["account_id"].to_list() == b["account_id"].to_list()
    assert a["rank"].to_list() == b["rank"].to_list()
    assert (a["score"] - b["score"]).abs().max() <= 1e-12
    assert a["reasons"].to_list() == b["reasons"].to_list()


@pytest.fixture(scope="module")
def whole(bank):
    return window_features(bank["store"], window="all", config=local())


def test_features_equal_the_local_engine(bank, cluster, whole):
    wf = window_features(bank["store"], window="all", config=on_cluster(cluster))
    assert_same_features(whole.features, wf.features)
    assert wf.engine == {"kind": "dask", "scheduler": cluster.scheduler_address, "workers": 2, "shards": 4,
                         "shard_accounts": DEFAULT_SHARD_ACCOUNTS}  # at least 2 shards per worker
    assert {"plan", "shards", "graph", "prepare"} <= set(wf.timings)
    assert whole.engine["kind"] == "local" and whole.engine["shards"] is None
    # the transfers and prepared transfers scoring reads are the window's, as with the local engine
    assert wf.transfers.equals(whole.transfers) and wf.prepared.accounts.equals(whole.prepared.accounts)


def test_many_shards_and_a_sub_window_equal_the_local_engine(bank, cluster):
    seen = []
    wf = window_features(bank["store"], window="10d", config=on_cluster(cluster, shard_accounts=150), progress=seen.append)
    ref = window_features(bank["store"], window="10d", config=local(shard_accounts=150))
    assert_same_features(window_features(bank["store"], window="10d", config=local()).features, wf.features)
    assert_same_features(ref.features, wf.features)
    n = wf.engine["shards"]
    assert n == ref.engine["shards"] > 8 and seen[-1] == f"shards {n}/{n}" and len(seen) == n


def test_nolabel_scores_equal_the_local_engine(bank, cluster):
    a = score(bank["store"], config=local())
    b = score(bank["store"], config=on_cluster(cluster))
    assert_same_scores(a, b)


def test_supervised_scores_equal_the_local_engine(bank, cluster, tmp_path):
    tiny = ModelConfig(random_state=3, cv_folds=2, proximity_folds=2, max_leaf_nodes=(4,), max_iter=10, n_models=1,
                       importance_repeats=0)  # training stays local; a small model keeps the test fast
    cfg = Config(features=FEATURES, model=tiny)
    model, _ = train_from_store(bank["store"], bank["data"].labels, config=cfg)
    save_model(model, tmp_path / "model")
    a = score(bank["store"], model_dir=tmp_path / "model", config=cfg)
    b = score(bank["store"], model_dir=tmp_path / "model", config=Config(features=FEATURES, model=tiny,
                                                                          engine=on_cluster(cluster).engine))
    assert a["model_version"][0] != "nolabel-3"
    assert_same_scores(a, b)


def test_a_killed_worker_costs_time_not_results(bank, cluster, whole):
    client = distributed.Client(cluster, set_as_default=False)
    pids_before = set(client.run(os.getpid).values())
    killed = []

    def kill_a_worker(done: int, total: int) -> None:
        if killed:
            return
        # the worker holding a finished shard: its result is lost and must be computed again
        holders = [w for key, ws in client.who_has().items() if "-shard-" in str(key) for w in ws]
        victim = holders[0] if holders else next(iter(client.nthreads()))
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        killed.append((done, total, pid))

    try:
        engine = DaskEngine(distributed.Client(cluster, set_as_default=False), progress=kill_a_worker)
        with engine:
            wf = window_features(bank["store"], window="all", config=local(shard_accounts=100), engine=engine)
        assert killed and killed[0][0] < killed[0][1]  # killed while shards were still to be done
        assert_same_features(whole.features, wf.features)
        client.wait_for_workers(2, timeout=60)  # the nanny started a new worker in its place
        assert killed[0][2] in pids_before and killed[0][2] not in set(client.run(os.getpid).values())
    finally:
        client.close()


def test_every_worker_killed_at_once_costs_time_not_results(bank, cluster, whole):
    # the plan, sent once to every worker, dies with them: it is sent again and the shards start over
    client = distributed.Client(cluster, set_as_default=False)
    killed = []

    def kill_every_worker(done: int, total: int) -> None:
        if not killed:
            killed.extend(client.run(os.getpid).values())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    try:
        engine = DaskEngine(distributed.Client(cluster, set_as_default=False), progress=kill_every_worker)
        with engine:
            wf = window_features(bank["store"], window="all", config=local(shard_accounts=300), engine=engine)
        assert len(killed) == 2
        assert_same_features(whole.features, wf.features)
        client.wait_for_workers(2, timeout=60)
    finally:
        client.close()


def test_local_cluster_sized_to_the_machine_bounds_worker_threads():
    from dask.system import CPU_COUNT

    before = {k: os.environ.get(k) for k in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS")}
    with make_engine(EngineConfig(kind="dask")) as engine:
        assert engine.kind == "dask" and engine.workers == CPU_COUNT
        threads = engine.client.run(lambda: (os.environ.get("POLARS_MAX_THREADS"), pl.thread_pool_size()))
        assert all(int(env) == size == 1 for env, size in threads.values())  # one core per worker
        assert shard_layout(EngineConfig(kind="dask"), engine) == (DEFAULT_SHARD_ACCOUNTS, 2 * engine.workers)
        assert shard_layout(EngineConfig(kind="dask", shard_accounts=10), engine) == (10, 1)
    # this process keeps its own thread settings
    assert {k: os.environ.get(k) for k in before} == before


def test_cli_features_and_run_on_the_cluster(bank, cluster, whole, tmp_path):
    runner = CliRunner()
    out = tmp_path / "features.parquet"
    res = runner.invoke(app, ["features", "--store", str(bank["store"]), "--out", str(out), "--config",
                              str(_toml(tmp_path, "hub_degree = 150")), "--scheduler", cluster.scheduler_address])
    assert res.exit_code == 0, res.output
    assert_same_features(whole.features, pl.read_parquet(out))
    runs = tmp_path / "runs"
    (tmp_path / "in").mkdir()  # an empty inbox: the run scores what the store holds
    res = runner.invoke(app, ["run", "--store", str(bank["store"]), "--runs", str(runs), "--inbox", str(tmp_path / "in"),
                              "--window", "all", "--engine", "dask", "--scheduler", cluster.scheduler_address, "--json"])
    assert res.exit_code == 0, res.output
    import json

    manifest = json.loads((runs / "latest" / "manifest.json").read_text())
    assert manifest["engine"]["kind"] == "dask" and manifest["engine"]["workers"] == 2
    assert manifest["engine"]["scheduler"] == cluster.scheduler_address
    assert {"plan", "shards", "graph"} <= set(manifest["feature_seconds"]) and "features" in manifest["seconds"]


def _toml(folder, features: str):
    path = folder / "mulegraph.toml"
    path.write_text(f"[features]\n{features}\n", encoding="utf-8")
    return path


def test_unreachable_scheduler_is_exit_2_naming_it(bank, tmp_path, monkeypatch):
    monkeypatch.setattr("mulegraph.engine.dask.CONNECT_TIMEOUT", 0.5)
    res = CliRunner().invoke(app, ["score", "--store", str(bank["store"]), "--out", str(tmp_path / "s.parquet"),
                                   "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in res.output
    with pytest.raises(InputError, match="tcp://127.0.0.1:9"):
        DaskEngine.connect("tcp://127.0.0.1:9", timeout=0.5)


def test_engine_settings_are_checked():
    with pytest.raises(ConfigError, match="kind must be one of local, dask"):
        EngineConfig(kind="spark")
    with pytest.raises(ConfigError, match="scheduler is set but kind is"):
        EngineConfig(scheduler="tcp://10.0.0.5:8786")
    with pytest.raises(ConfigError, match="shard_accounts must be a positive"):
        EngineConfig(shard_accounts=0)
    with pytest.raises(InputError, match="--scheduler needs the dask engine"):
        engine_settings(Config(), "local", "tcp://10.0.0.5:8786")
    cfg = engine_settings(Config(), None, "tcp://10.0.0.5:8786")
    assert cfg.engine.kind == "dask" and cfg.engine.scheduler == "tcp://10.0.0.5:8786"
    assert engine_settings(cfg, "local", None).engine == EngineConfig()


def test_frames_are_refused_on_the_dask_engine(bank, cluster):
    tx = Store.open(bank["store"]).transfers()
    with pytest.raises(InputError, match="reads the window from a store"):
        window_features(tx, config=on_cluster(cluster))
