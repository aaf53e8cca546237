"""Model folders: every file sealed by checksums.json, an optional keyed signature, the portable form."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mulegraph.cli import app
from mulegraph.core.config import Config, ModelConfig
from mulegraph.core.errors import ConfigError, InputError, ModelError
from mulegraph.core.keys import MIN_KEY_BYTES, key_id, read_key_file
from mulegraph.ingest import ingest
from mulegraph.scoring import integrity
from mulegraph.scoring.persist import TRUSTED_TYPES, export_portable, load_model, save_model, verify_model_dir
from mulegraph.scoring.model import train_from_store
from mulegraph.synth import generate, write_export
from mulegraph.scoring.training import PORTABLE_SEED_SHARE

TINY = ModelConfig(random_state=3, cv_folds=2, proximity_folds=2, max_leaf_nodes=(4,), max_iter=10, n_models=1,
                   importance_repeats=0)
KEY = b"k" * 20 + b"0123456789abcdef"  # 36 bytes
OTHER_KEY = b"o" * 40


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    data = generate(700, 15, seed=21, mule_share=0.06)
    files = write_export(data, root / "export")
    ingest([files["transfers"]], root / "store", mapping=str(files["mapping"]))
    cfg = Config(model=TINY)
    model, _ = train_from_store(root / "store", data.labels.sample(fraction=0.6, seed=2), config=cfg)
    save_model(model, root / "model", key=None)
    return {"root": root, "store": root / "store", "data": data, "model": model, "dir": root / "model", "cfg": cfg}


@pytest.fixture
def model_dir(bank, tmp_path, monkeypatch):
    monkeypatch.delenv("MULEGRAPH_MODEL_KEY", raising=False)
    d = tmp_path / "model"
    shutil.copytree(bank["dir"], d)
    return d


def _key_file(tmp_path: Path, key: bytes, name: str = "model.key") -> Path:
    f = tmp_path / name
    f.write_bytes(key + b"\n")
    return f


# -- the checksum manifest -------------------------------------------------------------------------
def test_every_file_the_card_included_is_listed_and_the_version_comes_from_the_manifest(model_dir):
    sums = json.loads((model_dir / "checksums.json").read_text())
    assert set(sums["files"]) == {"estimator.skops", "known.parquet", "model_card.json", "model_card.md"}
    assert set(sums["files"]) | {"checksums.json"} == {p.name for p in model_dir.iterdir()}
    model = load_model(model_dir)
    assert model.model_version == integrity.version_of((model_dir / "checksums.json").read_bytes())
    assert verify_model_dir(model_dir) == model.model_version


def test_the_version_changes_when_the_card_changes(model_dir):
    before = load_model(model_dir).model_version
    card = json.loads((model_dir / "model_card.json").read_text())
    card["cv_metrics"]["pr_auc"] = 0.123
    (model_dir / "model_card.json").write_text(json.dumps(card))
    integrity.seal(model_dir, list(json.loads((model_dir / "checksums.json").read_text())["files"]))  # no key: possible
    assert load_model(model_dir).model_version != before


def _flip_card_number(d: Path) -> None:
    card = json.loads((d / "model_card.json").read_text())
    card["calibration"]["slope"] = -card["calibration"]["slope"]  # inverts the ranking
    (d / "model_card.json").write_text(json.dumps(card, indent=2))


def _flip_known_label(d: Path) -> None:
    known = pl.read_parquet(d / "known.parquet")
    known = known.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(~pl.col("is_mule")).otherwise(pl.col("is_mule")).alias("is_mule"))
    known.write_parquet(d / "known.parquet")


def _flip_estimator_number(d: Path) -> None:
    import skops.io as sio

    obj = sio.loads((d / "estimator.skops").read_bytes(), trusted=list(TRUSTED_TYPES))
    obj["estimators"][0]._baseline_prediction = obj["estimators"][0]._baseline_prediction + 1.0
    (d / "estimator.skops").write_bytes(sio.dumps(obj))


@pytest.mark.parametrize(
    "edit, name",
    [(_flip_card_number, "model_card.json"), (_flip_known_label, "known.parquet"), (_flip_estimator_number, "estimator.skops")],
)
def test_one_changed_number_in_any_file_is_refused(model_dir, edit, name, bank, tmp_path):
    edit(model_dir)
    with pytest.raises(ModelError, match=f"model file {name} does not match its sha256 in checksums.json"):
        load_model(model_dir)
    res = CliRunner().invoke(app, ["score", "--store", str(bank["store"]), "--model", str(model_dir),
                                   "--out", str(tmp_path / "s.parquet"), "--show", "0"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and name in lines[0] and "refused" in lines[0]
    assert not (tmp_path / "s.parquet").exists()


def test_missing_extra_and_unsealed_folders_are_refused(model_dir):
    (model_dir / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match="notes.txt is not part of the model"):
        load_model(model_dir)
    (model_dir / "notes.txt").unlink()
    (model_dir / "sub").mkdir()
    with pytest.raises(ModelError, match="sub is not part of the model"):
        load_model(model_dir)
    (model_dir / "sub").rmdir()
    (model_dir / "model_card.md").unlink()
    with pytest.raises(ModelError, match="model file model_card.md is missing"):
        load_model(model_dir)
    (model_dir / "checksums.json").unlink()
    with pytest.raises(ModelError, match="has no checksums.json"):
        load_model(model_dir)


def test_a_manifest_that_omits_a_file_or_names_a_path_is_refused(model_dir):
    sums = json.loads((model_dir / "checksums.json").read_text())
    del sums["files"]["known.parquet"]
    (model_dir / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(ModelError, match="known.parquet is not listed in checksums.json"):
        load_model(model_dir)
    sums["files"]["../outside"] = "0" * 64
    (model_dir / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(ModelError, match="not a valid checksum manifest"):
        load_model(model_dir)


def test_saving_again_replaces_the_seal_and_refuses_foreign_files(bank, tmp_path):
    d = tmp_path / "m"
    save_model(bank["model"], d, key=None)
    first = verify_model_dir(d)
    save_model(bank["model"], d, portable=True, key=None)  # an earlier model's folder is replaced
    assert not (d / "known.parquet").exists() and verify_model_dir(d) != first
    (d / "README.txt").write_text("mine")
    with pytest.raises(ModelError, match="README.txt"):
        save_model(bank["model"], d, key=None)
    assert (d / "README.txt").read_text() == "mine"


# -- the keyed signature ---------------------------------------------------------------------------
def test_right_key_accepted_wrong_key_and_missing_signature_refused(bank, tmp_path):
    d = tmp_path / "signed"
    save_model(bank["model"], d, key=KEY)
    sig = json.loads((d / "signature.json").read_text())
    assert sig["key_id"] == key_id(KEY) and KEY.decode() not in (d / "signature.json").read_text()
    assert load_model(d, key=KEY).model_version == verify_model_dir(d, key=KEY)
    load_model(d)  # no key set: the checksums are still checked, the signature cannot be
    with pytest.raises(ModelError, match="signed with another key"):
        load_model(d, key=OTHER_KEY)
    unsigned = tmp_path / "unsigned"
    save_model(bank["model"], unsigned, key=None)
    assert not (unsigned / "signature.json").exists()
    with pytest.raises(ModelError, match="is not signed"):
        load_model(unsigned, key=KEY)


def test_a_forged_manifest_passes_without_a_key_but_not_with_one(bank, tmp_path):
    d = tmp_path / "signed"
    save_model(bank["model"], d, key=KEY)
    _flip_card_number(d)
    integrity.seal(d, list(json.loads((d / "checksums.json").read_text())["files"]))  # recomputed, no key
    load_model(d)  # without a key the seal catches accidents, not this
    with pytest.raises(ModelError, match="signature in signature.json does not match"):
        load_model(d, key=KEY)
    sig = json.loads((d / "signature.json").read_text())
    sig["mac"] = "0" * 64
    (d / "signature.json").write_text(json.dumps(sig))
    with pytest.raises(ModelError, match="does not match"):
        load_model(d, key=KEY)


def test_keys_must_be_long(tmp_path, bank, monkeypatch):
    with pytest.raises(ConfigError, match=f"at least {MIN_KEY_BYTES} bytes"):
        read_key_file(_key_file(tmp_path, b"short-key"))
    assert read_key_file(_key_file(tmp_path, KEY)) == KEY  # the line break is not part of the key
    with pytest.raises(InputError, match="does not exist"):
        read_key_file(tmp_path / "nope.key")
    monkeypatch.setenv("MULEGRAPH_MODEL_KEY", "too-short")
    with pytest.raises(ConfigError, match="MULEGRAPH_MODEL_KEY"):
        load_model(bank["dir"])


def test_train_signs_and_score_and_run_verify_with_the_configured_key(bank, tmp_path, monkeypatch):
    monkeypatch.delenv("MULEGRAPH_MODEL_KEY", raising=False)
    key = _key_file(tmp_path, KEY)
    cfg = tmp_path / "mulegraph.toml"
    cfg.write_text(
        "[model]\nrandom_state = 3\ncv_folds = 2\nproximity_folds = 2\nmax_leaf_nodes = [4]\nmax_iter = 10\n"
        f"n_models = 1\nimportance_repeats = 0\nsigning_key_file = \"{key}\"\n"
    )
    labels = tmp_path / "labels.csv"
    bank["data"].labels.write_csv(labels)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--store", str(bank["store"]), "--labels", str(labels), "--config", str(cfg),
                              "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert f"signed with key id {key_id(KEY)}" in res.output
    assert str(key) not in (tmp_path / "m" / "model_card.json").read_text()  # the key's place is not in the card
    res = runner.invoke(app, ["score", "--store", str(bank["store"]), "--model", str(tmp_path / "m"), "--config", str(cfg),
                              "--out", str(tmp_path / "s.parquet"), "--show", "0"])
    assert res.exit_code == 0, res.output
    # a key set in the environment that is not the signing key: score and run refuse, exit 2
    monkeypatch.setenv("MULEGRAPH_MODEL_KEY", OTHER_KEY.decode())
    res = runner.invoke(app, ["score", "--store", str(bank["store"]), "--model", str(tmp_path / "m"),
                              "--out", str(tmp_path / "s2.parquet"), "--show", "0"])
    assert res.exit_code == 2 and "signed with another key" in res.output
    res = runner.invoke(app, ["run", "--store", str(bank["store"]), "--runs", str(tmp_path / "runs"), "--model",
                              str(bank["dir"]), "--inbox", str(tmp_path), "--quiet"])
    assert res.exit_code == 2 and "is not signed" in res.output, res.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- the portable form -----------------------------------------------------------------------------
def _all_ids(bank) -> list[str]:
    t = bank["data"].transfers
    return sorted(set(t["src_account"].to_list()) | set(t["dst_account"].to_list()) | set(bank["data"].labels["account_id"].to_list()))


def test_a_portable_model_holds_no_account_id_of_the_training_store(bank, tmp_path):
    ids = _all_ids(bank)
    assert len(ids) > 500 and min(len(a) for a in ids) >= 8
    full = bank["dir"]
    blob = b"".join(p.read_bytes() for p in full.iterdir())
    assert any(a.encode() in blob for a in ids)  # the full model does carry them (known.parquet)
    port = tmp_path / "portable"
    export_portable(full, port)
    names = {p.name for p in port.iterdir()}
    assert names == {"estimator.skops", "model_card.json", "model_card.md", "checksums.json"}
    for p in port.iterdir():
        data = p.read_bytes()
        found = [a for a in ids if a.encode("utf-8") in data]
        assert not found, f"{p.name} holds {len(found)} account id(s)"
    card = json.loads((port / "model_card.json").read_text())
    assert card["portable"] is True and card["training_store"] is None and card["config"]["features"]["hub_accounts"] == []
    model = load_model(port)
    assert model.known_.height == 0 and model.portable_


def test_train_portable_and_model_export_from_the_command_line(bank, tmp_path, monkeypatch):
    monkeypatch.delenv("MULEGRAPH_MODEL_KEY", raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["model", "export", "--model", str(bank["dir"]), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "--portable" in res.output
    res = runner.invoke(app, ["model", "export", "--model", str(bank["dir"]), "--portable", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "portable" in res.output and not (tmp_path / "p" / "known.parquet").exists()
    # the bank's model learned closeness from every training mule: the export says what fits better
    assert "train --portable" in res.output
    labels = tmp_path / "labels.csv"
    bank["data"].labels.write_csv(labels)
    cfg = tmp_path / "mulegraph.toml"
    cfg.write_text("[model]\nrandom_state = 3\ncv_folds = 2\nproximity_folds = 2\nmax_leaf_nodes = [4]\nmax_iter = 10\n"
                   "n_models = 1\nimportance_repeats = 0\n")
    res = runner.invoke(app, ["train", "--store", str(bank["store"]), "--labels", str(labels), "--config", str(cfg),
                              "--portable", "--out", str(tmp_path / "tp")])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "tp" / "model_card.json").read_text())
    assert card["portable"] is True
    assert not (tmp_path / "tp" / "known.parquet").exists()
    # a portable model learns its closeness features from part of the mules ("auto"), recorded in its card
    assert card["config"]["model"]["closeness_seed_share"] == PORTABLE_SEED_SHARE < 1
    res = runner.invoke(app, ["model", "export", "--model", str(tmp_path / "tp"), "--portable", "--out", str(tmp_path / "tp2")])
    assert res.exit_code == 0, res.output
    assert "train --portable" not in res.output
