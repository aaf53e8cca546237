"""The feature registry: every feature's :class:`~mulegraph.features.spec.FeatureSpec`, by name.

Reports and reason codes read the registry to explain a feature in words: its family, unit,
which way is suspicious, a reason template, how the transfers behind a reason are chosen
(``evidence``) and over which span (``horizon``).

The registry is filled explicitly, in one place: :func:`build_registry` collects the ``SPECS``
tuple of every module in :data:`FAMILY_MODULES` (the families of the default run, the label-based
proximity family, the one-off structure family and the no-label mode's collection family).
Nothing registers itself on import. A name declared twice with different specs is a
:class:`~mulegraph.core.errors.FeatureError`, and a family module that cannot be imported fails
the import of this module: a broken registry is never silently smaller.

Two things add to the registry after it is built, both explicitly: :func:`register_windows` adds
the windowed fan and pass-through features of a config's ``fan_windows`` and ``passthrough_windows``
(:func:`mulegraph.features.compute_features` calls it; so does loading a model), and
:func:`register` adds specs of features computed outside mulegraph.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

import polars as pl

import mulegraph.features.amounts as amounts
import mulegraph.features.channel as channel
import mulegraph.features.collection as collection
import mulegraph.features.fan as fan
import mulegraph.features.network as network
import mulegraph.features.passthrough as passthrough
import mulegraph.features.patterns as patterns
import mulegraph.features.proximity as proximity
import mulegraph.features.structure as structure
import mulegraph.features.temporal as temporal
import mulegraph.features.volume as volume
from mulegraph.core.config import FeatureConfig
from mulegraph.core.errors import FeatureError
from mulegraph.features.spec import EVIDENCE_KINDS, FeatureSpec

__all__ = [
    "FeatureSpec",
    "EVIDENCE_KINDS",
    "FAMILY_MODULES",
    "REGISTRY",
    "build_registry",
    "register",
    "register_windows",
    "specs",
    "families",
    "registry_frame",
]

#: every module that declares features, in run order (``SPECS`` in each)
FAMILY_MODULES: tuple[ModuleType, ...] = (
    volume,
    fan,
    passthrough,
    temporal,
    amounts,
    channel,
    patterns,
    network,
    proximity,
    structure,
    collection,
)


def _add(registry: dict[str, FeatureSpec], new: Iterable[FeatureSpec], source: str) -> None:
    for spec in new:
        if not isinstance(spec, FeatureSpec):
            raise FeatureError(f"{source} declares {spec!r}, which is not a FeatureSpec.")
        old = registry.get(spec.name)
        if old is not None and old != spec:
            raise FeatureError(
                f"feature {spec.name!r} is declared twice with different specs ({old.family} and {spec.family}, "
                f"the second by {source}); give one of them another name."
            )
        registry[spec.name] = spec


def build_registry(modules: Iterable[ModuleType] = FAMILY_MODULES) -> dict[str, FeatureSpec]:
    """Name -> spec for the ``SPECS`` of every module in ``modules``, in order.

    Raises :class:`~mulegraph.core.errors.FeatureError` when a module declares no ``SPECS`` or a
    name is declared twice with different specs.
    """
    registry: dict[str, FeatureSpec] = {}
    for module in modules:
        declared = getattr(module, "SPECS", None)
        if declared is None:
            raise FeatureError(f"the feature module {module.__name__} declares no SPECS; list its features there.")
        _add(registry, declared, module.__name__)
    return registry


#: every known feature, by name
REGISTRY: dict[str, FeatureSpec] = build_registry()


def register(*new: FeatureSpec) -> None:
    """Add specs to :data:`REGISTRY` (features computed outside mulegraph's families).

    A name registered again with the same spec is a no-op; with a different spec it is a
    :class:`~mulegraph.core.errors.FeatureError`.
    """
    _add(REGISTRY, new, "register()")


def register_windows(config: FeatureConfig) -> None:
    """Register the windowed fan and pass-through features of ``config``'s windows.

    The defaults (24h and 72h) are always registered; a config with other ``fan_windows`` or
    ``passthrough_windows`` computes features such as ``fanin_max_48h``, whose specs this adds.
    """
    register(*fan.window_specs(config.fan_windows), *passthrough.window_specs(config.passthrough_windows))


def specs(family: str | None = None) -> list[FeatureSpec]:
    """The registered specs (of one family when given), in registration order."""
    return [s for s in REGISTRY.values() if family is None or s.family == family]


def families() -> list[str]:
    """The names of the registered families, sorted."""
    return sorted({s.family for s in REGISTRY.values()})


def registry_frame() -> pl.DataFrame:
    """The registry as a table (for docs and model cards)."""
    rows = [s.__dict__ for s in REGISTRY.values()]
    return pl.DataFrame(rows) if rows else pl.DataFrame()
