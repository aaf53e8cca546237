"""Durations, windows and the config loader."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from mulegraph.core.config import Config, FeatureConfig, discover_config, load_config
from mulegraph.core.errors import ConfigError, InputError
from mulegraph.core.window import filter_window, parse_duration, parse_instant, resolve_window


@pytest.mark.parametrize(
    "text,expected",
    [("72h", timedelta(hours=72)), ("30d", timedelta(days=30)), ("2w", timedelta(days=14)),
     ("90m", timedelta(minutes=90)), ("45s", timedelta(seconds=45)), ("1.5h", timedelta(minutes=90))],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "-3h", "0h", "3", "h", "3 days", "3y"])
def test_parse_duration_rejects(bad):
    with pytest.raises(InputError, match="positive duration"):
        parse_duration(bad)


def test_parse_instant_naive_is_utc():
    assert parse_instant("2024-05-31") == datetime(2024, 5, 31, tzinfo=timezone.utc)
    assert parse_instant("2024-05-31T02:00:00+02:00") == datetime(2024, 5, 31, tzinfo=timezone.utc)
    with pytest.raises(InputError, match="ISO 8601"):
        parse_instant("yesterday")


def test_window_is_half_open():
    ts = [datetime(2024, 1, d, tzinfo=timezone.utc) for d in range(1, 11)]
    df = pl.DataFrame({"ts": ts}).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    win = resolve_window("3d", None, ts[-1])
    kept = filter_window(df, win)["ts"].to_list()
    assert kept == ts[-3:]  # (Jan 7, Jan 10]
    assert filter_window(df, resolve_window("all", "2024-01-04", None)).height == 4
    with pytest.raises(InputError, match="no transfers"):
        resolve_window("3d", None, None)


def test_config_defaults_and_overrides(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[features]\nfan_windows = ["12h"]\nhub_degree = 50\n[run]\nalert_budget = 7\n')
    cfg = load_config(p)
    assert cfg.features.fan_windows == ("12h",)
    assert cfg.features.hub_degree == 50
    assert cfg.run.alert_budget == 7
    assert cfg.model == Config().model
    assert cfg.replace("features", hub_degree=None).features.hub_degree == 50
    assert cfg.replace("features", hub_degree=9).features.hub_degree == 9
    assert isinstance(cfg.features, FeatureConfig)


def test_discover_config_is_the_option_else_the_working_directory_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert discover_config(None) == Config()
    (tmp_path / "mulegraph.toml").write_text("[run]\nalert_budget = 7\n")
    assert discover_config(None).run.alert_budget == 7
    other = tmp_path / "other.toml"
    other.write_text("[run]\nalert_budget = 9\n")
    assert discover_config(other).run.alert_budget == 9
    with pytest.raises(ConfigError, match="does not exist"):
        discover_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "text,match",
    [("[featurez]\n", "unknown section"), ("[features]\nfan_window = 1\n", "unknown key"), ("[features\n", "not valid TOML")],
)
def test_config_errors(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_pseudonym_key_from_environment_is_masked(monkeypatch):
    monkeypatch.setenv("MULEGRAPH_PSEUDONYM_KEY", "s3cret")
    cfg = load_config(data={"report": {"pseudonymise": True}})
    assert cfg.report.pseudonym_key == "s3cret"
    assert cfg.to_dict()["report"]["pseudonym_key"] == "***"
