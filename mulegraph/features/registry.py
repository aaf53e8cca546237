"""The feature registry: every feature has a name, family, description, unit and direction.

Reports and reason codes read the registry to explain a feature in words. ``direction`` says which
way is suspicious (+1 higher, -1 lower, 0 neither); ``reason`` is a template for a reason text,
formatted with ``value`` (the account's value) and may use ``{value:.0%}`` etc.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["FeatureSpec", "REGISTRY", "register", "specs", "families", "registry_frame"]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    family: str
    description: str
    unit: str  # count, currency, ratio, share, seconds, days, score, ...
    direction: int = 1
    reason: str | None = None
    version: int = 1


REGISTRY: dict[str, FeatureSpec] = {}


def register(*new: FeatureSpec) -> None:
    """Add specs to the registry; a name registered twice with a different spec is a bug."""
    for spec in new:
        old = REGISTRY.get(spec.name)
        if old is not None and old != spec:
            raise ValueError(f"feature {spec.name!r} registered twice with different specs")
        REGISTRY[spec.name] = spec


def specs(family: str | None = None) -> list[FeatureSpec]:
    return [s for s in REGISTRY.values() if family is None or s.family == family]


def families() -> list[str]:
    return sorted({s.family for s in REGISTRY.values()})


def registry_frame() -> pl.DataFrame:
    """The registry as a table (for docs and model cards)."""
    rows = [s.__dict__ for s in REGISTRY.values()]
    return pl.DataFrame(rows) if rows else pl.DataFrame()
