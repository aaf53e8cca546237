"""The feature engine: one row per account from canonical transfers.

Each family lives in its own module with a ``compute(p: Prepared) -> pl.DataFrame`` function that
returns ``idx`` plus its feature columns, and declares them in a ``SPECS`` tuple, which
:mod:`mulegraph.features.registry` collects. :func:`compute_features` runs the families in order
and joins their outputs on the account index.

Label-based features (closeness to known mules) live in :mod:`mulegraph.features.proximity`; they
need training labels and are computed out-of-fold by the model, never here.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable

import polars as pl

from mulegraph.core.config import FeatureConfig
from mulegraph.core.errors import FeatureError
from mulegraph.features.prepare import Prepared, prepare
from mulegraph.features.registry import REGISTRY, FeatureSpec, families, register_windows, registry_frame, specs

__all__ = [
    "FAMILIES",
    "compute_features",
    "prepare",
    "Prepared",
    "FeatureSpec",
    "REGISTRY",
    "specs",
    "families",
    "registry_frame",
    "load_families",
]

#: family name -> module (in this package) that computes it, in the order they run
FAMILIES: dict[str, str] = {
    "volume": "volume",
    "fan": "fan",
    "passthrough": "passthrough",
    "temporal": "temporal",
    "amounts": "amounts",
    "channel": "channel",
    "patterns": "patterns",
    "network": "network",
}


def load_families(names: Iterable[str] | None = None) -> dict[str, object]:
    """The family modules that compute ``names`` (every family of the default run when None)."""
    names = list(FAMILIES) if names is None else list(names)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise FeatureError(f"unknown feature family {', '.join(unknown)}; known: {', '.join(FAMILIES)}.")
    return {n: importlib.import_module(f".{FAMILIES[n]}", __name__) for n in names}


def compute_features(
    transfers: pl.DataFrame | pl.LazyFrame | Prepared,
    config: FeatureConfig | None = None,
    *,
    families: Iterable[str] | None = None,
    accounts: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    timings: dict[str, float] | None = None,
) -> pl.DataFrame:
    """Compute every registered feature for every account in ``transfers``.

    Returns one row per account: ``account_id``, ``is_hub`` and the feature columns. ``accounts``
    restricts the output to a shard of accounts (pass all transfers touching them); per-account
    families give the same values as a whole-store run. ``timings`` (if given) receives seconds per
    family.
    """
    t0 = time.perf_counter()
    if isinstance(transfers, Prepared):
        p = transfers
    else:
        p = prepare(transfers, config, accounts)
        if timings is not None:
            timings["prepare"] = time.perf_counter() - t0
    register_windows(p.config)  # the specs of windowed features of non-default windows
    out = p.accounts.select("idx", "account_id", "is_hub")
    for name, mod in load_families(families).items():
        if progress:
            progress(name)
        t1 = time.perf_counter()
        p.extra["so_far"] = out  # earlier families' columns, for families that aggregate them
        part = mod.compute(p)
        if "idx" not in part.columns:
            raise FeatureError(f"feature family {name} returned no idx column")
        out = out.join(part, on="idx", how="left")
        if timings is not None:
            timings[name] = time.perf_counter() - t1
    if p.targets is not None:
        out = out.filter(pl.col("idx").is_in(p.targets.implode()))
    return out.sort("account_id").drop("idx")
