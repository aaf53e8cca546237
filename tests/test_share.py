"""Consortium lists: keyed hashes out, matches against every account of the window in, as seeds."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from datetime import datetime, timezone

import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import Config, ModelConfig
from mulegraph.core.errors import ConfigError, InputError
from mulegraph.core.keys import key_id
from mulegraph.ingest import ingest
from mulegraph.io.share import export_list, keyed_hashes, match_list, read_list
from mulegraph.io.store import Store
from mulegraph.pipeline import run
from mulegraph.scoring.model import train_from_store
from mulegraph.scoring.persist import save_model
from mulegraph.scoring.score import score_window
from mulegraph.scoring.seeds import SeedInputs
from mulegraph.synth import generate

TINY = ModelConfig(random_state=3, cv_folds=2, proximity_folds=2, max_leaf_nodes=(4,), max_iter=10, n_models=1,
                   importance_repeats=0)
CFG = Config(model=TINY)
KEY = b"consortium-key-0123456789-abcdefghij"  # 36 bytes
OTHER = b"another-consortium-key-0123456789abcdef"


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    data = generate(600, 12, seed=41, mule_share=0.06)
    data.transfers.write_parquet(root / "export.parquet")
    ingest([root / "export.parquet"], root / "store", mapping="canonical")
    model, _ = train_from_store(root / "store", data.labels.sample(fraction=0.3, seed=5), config=CFG)
    save_model(model, root / "model", key=None)
    (root / "consortium.key").write_bytes(KEY + b"\n")
    (root / "other.key").write_bytes(OTHER)
    return {"root": root, "store": root / "store", "data": data, "model": root / "model",
            "key": root / "consortium.key", "other_key": root / "other.key"}


@pytest.fixture(autouse=True)
def _no_model_key(monkeypatch):
    monkeypatch.delenv("MULEGRAPH_MODEL_KEY", raising=False)


def _window_ids(bank) -> set[str]:
    t = Store.open(bank["store"]).transfers()
    return set(t["src_account"].to_list()) | set(t["dst_account"].to_list())


@pytest.mark.parametrize("key", [KEY, b"\x00" * 32 + b"\xff" * 31, b"long-" * 30])  # shorter and longer than a block
def test_keyed_hashes_are_hmac_sha256_of_each_id(key):
    ids = pl.Series(["a", "NL01BANK0001", None, "a", "ü", ""])
    got = keyed_hashes(ids, key)
    want = [None if a is None else hmac.new(key, a.encode("utf-8"), hashlib.sha256).digest() for a in ids.to_list()]
    assert got.to_list() == want


def test_export_writes_confirmed_mules_as_sorted_hashes_and_no_id(bank, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(bank["store"], store)
    ids = sorted(_window_ids(bank))
    confirmed, cleared, relabelled = ids[:4], ids[4:6], ids[6]
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    Store.open(store).add_decisions(pl.DataFrame({
        "account_id": confirmed + cleared + [relabelled], "decision": ["confirmed"] * 4 + ["cleared"] * 3, "date": [when] * 7,
    }))
    labels = tmp_path / "labels.csv"
    labels.write_text(f"account_id,is_mule\n{ids[10]},1\n{ids[11]},0\n{relabelled},1\n")  # relabelled: cleared later
    out = tmp_path / "list.csv"
    res = export_list(out, KEY, store=store, labels=labels)
    frame = pl.read_csv(out)
    assert frame.columns == ["account_hash", "key_id"] and res.accounts == frame.height == 5
    expected = sorted(hmac.new(KEY, a.encode(), hashlib.sha256).hexdigest() for a in confirmed + [ids[10]])
    assert frame["account_hash"].to_list() == expected and set(frame["key_id"]) == {key_id(KEY)}
    raw = out.read_bytes()
    assert not [a for a in ids if a.encode() in raw]
    assert (res.from_decisions, res.from_labels) == (4, 1)
    with pytest.raises(InputError, match="nothing to share"):
        export_list(tmp_path / "x.csv", KEY, store=bank["store"])


def test_share_export_command_and_its_refusals(bank, tmp_path):
    labels = tmp_path / "labels.csv"
    bank["data"].labels.write_csv(labels)
    runner = CliRunner()
    res = runner.invoke(app, ["share", "export", "--key-file", str(bank["key"]), "--out", str(tmp_path / "l.parquet"),
                              "--store", str(bank["store"]), "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(tmp_path / "l.parquet").height == int(bank["data"].labels["is_mule"].sum())
    short = tmp_path / "short.key"
    short.write_text("only-16-bytes-ab\n")
    res = runner.invoke(app, ["share", "export", "--key-file", str(short), "--out", str(tmp_path / "s.csv"), "--labels", str(labels)])
    assert res.exit_code == 2 and "at least 32 bytes" in res.output and not (tmp_path / "s.csv").exists()
    res = runner.invoke(app, ["share", "export", "--key-file", str(bank["key"]), "--out", str(bank["store"] / "l.csv"),
                              "--labels", str(labels)])
    assert res.exit_code == 2  # never into a store


def test_lists_of_another_key_or_with_bad_hashes_are_refused(bank, tmp_path):
    labels = tmp_path / "labels.csv"
    bank["data"].labels.write_csv(labels)
    theirs = tmp_path / "theirs.csv"
    export_list(theirs, OTHER, labels=labels)
    with pytest.raises(InputError, match="made with another key"):
        read_list(theirs, KEY)
    bad = tmp_path / "bad.csv"
    bad.write_text("account_hash\nnot-a-hash\n")
    with pytest.raises(InputError, match="not 64 hex digits"):
        read_list(bad, KEY)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 31)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        SeedInputs.load(shared_lists=[theirs], key_file=short)
    with pytest.raises(InputError, match="needs --key-file"):
        SeedInputs.load(shared_lists=[theirs])


def test_matches_cover_every_account_of_the_window_and_seed_the_model(bank, tmp_path):
    ids = sorted(_window_ids(bank))
    payees_only = sorted(set(Store.open(bank["store"]).transfers()["dst_account"]) - set(Store.open(bank["store"]).transfers()["src_account"]))
    peer = ids[::50] + payees_only[:2] + ["XX99PEER0000000001", "XX99PEER0000000002"]  # two never seen here
    peer_labels = pl.DataFrame({"account_id": peer, "is_mule": [True] * len(peer)})
    lists = [tmp_path / "peer1.csv", tmp_path / "peer2.parquet"]
    export_list(lists[0], KEY, labels=peer_labels.head(5))
    export_list(lists[1], KEY, labels=peer_labels)
    shared = read_list(lists, KEY)
    assert shared.listed == len(set(peer))
    matched = match_list(shared, pl.Series(ids), KEY)
    assert matched.to_list() == sorted(set(peer) & set(ids))
    inputs = SeedInputs.load(shared_lists=lists, key_file=bank["key"])
    r = score_window(bank["store"], model_dir=bank["model"], config=CFG, seeds=inputs)
    s = r.seeds.summary()
    assert s["shared_list"] == {"listed": len(set(peer)), "matched": matched.len()}
    from_list = r.seeds.frame.filter(pl.col("source") == "shared_list")["account_id"].to_list()
    assert set(from_list) <= set(matched.to_list()) and s["by_source"]["shared_list"]["mules"] == len(from_list) > 0


def test_score_and_run_take_shared_lists(bank, tmp_path):
    peer = tmp_path / "peer.csv"
    export_list(peer, KEY, labels=pl.DataFrame({"account_id": sorted(_window_ids(bank))[:20], "is_mule": [True] * 20}))
    runner = CliRunner()
    base = ["score", "--store", str(bank["store"]), "--model", str(bank["model"]), "--out", str(tmp_path / "s.parquet")]
    res = runner.invoke(app, base + ["--shared-list", str(peer), "--key-file", str(bank["key"]), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["seeds"]["shared_list"] == {"listed": 20, "matched": 20}
    res = runner.invoke(app, base + ["--shared-list", str(peer)])
    assert res.exit_code == 2 and "needs --key-file" in res.output
    res = runner.invoke(app, base + ["--shared-list", str(peer), "--key-file", str(bank["other_key"])])
    assert res.exit_code == 2 and "another key" in res.output
    (tmp_path / "inbox").mkdir()
    result = run(CFG, store=bank["store"], runs_dir=tmp_path / "runs", inbox=tmp_path / "inbox", model=bank["model"],
                 window="all", shared_lists=[peer], key_file=bank["key"])
    assert result.manifest["seeds"]["shared_list"] == {"listed": 20, "matched": 20}
    assert KEY.decode() not in (result.run_dir / "manifest.json").read_text()
