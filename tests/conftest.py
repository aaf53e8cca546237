"""Shared fixtures. Tests never need ../shared: they use sample_data/ and data they generate."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def canonical_transfers(rows, base: datetime) -> pl.DataFrame:
    """Canonical transfers from (src, dst, seconds after ``base``[, amount]) tuples (amount 100 when left out)."""
    return pl.DataFrame(
        {
            "txn_id": [f"T{i:05d}" for i in range(len(rows))],
            "ts": [base + timedelta(seconds=r[2]) for r in rows],
            "src_account": [str(r[0]) for r in rows],
            "dst_account": [str(r[1]) for r in rows],
            "amount": [float(r[3]) if len(r) > 3 else 100.0 for r in rows],
            "currency": ["EUR"] * len(rows),
            "channel": [None] * len(rows),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "channel": pl.String},
    )


def half_labelled_bank(n_accounts: int, *, seed: int, mule_share: float, label_seed: int, fcfg=None) -> dict:
    """A synthetic bank (``mulegraph.synth``) with planted mules, its features, and the labels of a
    seeded random half of its accounts: ``p`` (prepared), ``features``, ``labels``, ``fcfg``."""
    import numpy as np

    from mulegraph.core.config import FeatureConfig
    from mulegraph.features import compute_features, prepare
    from mulegraph.synth import generate

    syn = generate(n_accounts, days=30, seed=seed, mule_share=mule_share)
    fcfg = fcfg or FeatureConfig()
    p = prepare(syn.transfers, fcfg)
    ids = syn.labels["account_id"].to_numpy()
    train = np.random.default_rng(label_seed).choice(ids, size=len(ids) // 2, replace=False).tolist()
    labels = syn.labels.select("account_id", "is_mule").filter(pl.col("account_id").is_in(train))
    return {"p": p, "features": compute_features(p, fcfg), "labels": labels, "fcfg": fcfg}


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


# ---------------------------------------------------------------------------------------------
# fault injection for the nightly run


class InjectedFailure(RuntimeError):
    """Raised by :func:`fail_at_stage` at the end of a stage of the nightly run."""


def inject_at_stage(stage: str, action=None, setattr=setattr) -> list[Path]:
    """Make ``stage`` of the nightly run call ``action(work_dir)`` at the end of its work, then fail.

    The stage's function (``mulegraph.pipeline.nightly._stage_<stage>``) is wrapped: it does its
    work, the hidden work folder is appended to the returned list, ``action`` (if given) is called
    with it (e.g. to kill the process), and :class:`InjectedFailure` is raised. ``setattr`` is the
    function that replaces the stage (``monkeypatch.setattr`` in tests, so it is undone after the
    test; the builtin in a child process).
    """
    from mulegraph.pipeline import STAGES, nightly

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    name = f"_stage_{stage}"
    original = getattr(nightly, name)
    seen: list[Path] = []

    def failing(state):
        original(state)
        seen.append(state.work)
        if action is not None:
            action(state.work)
        raise InjectedFailure(f"failure injected at the end of stage {stage}")

    setattr(nightly, name, failing)
    return seen


@pytest.fixture
def fail_at_stage(monkeypatch):
    """``with fail_at_stage(stage, action=None) as seen:`` the nightly run fails at the end of ``stage``.

    Inside the block, every run fails with :class:`InjectedFailure` once ``stage`` has done its
    work (after calling ``action(work_dir)`` when given); ``seen`` receives the run's hidden work
    folder. Leaving the block restores the stage::

        with fail_at_stage("score") as seen, pytest.raises(InjectedFailure):
            run(config, ...)
    """

    @contextlib.contextmanager
    def arm(stage: str, action=None):
        with monkeypatch.context() as mp:
            yield inject_at_stage(stage, action, mp.setattr)

    return arm
