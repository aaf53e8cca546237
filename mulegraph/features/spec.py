"""What a feature is: :class:`FeatureSpec`, the declaration every family module makes of its columns.

A family module (:mod:`mulegraph.features.volume`, :mod:`~mulegraph.features.fan`, ...) lists its
features in a module-level ``SPECS`` tuple; :mod:`mulegraph.features.registry` collects those
tuples into the registry. This module imports nothing from the package, so that every family can
declare its specs without importing the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeatureSpec", "EVIDENCE_KINDS"]

#: How the transfers behind a reason on the feature are chosen (see :mod:`mulegraph.scoring.evidence`):
#:
#: * ``passthrough``: each outbound transfer with the latest inbound one before it within the horizon;
#: * ``busiest_in`` / ``busiest_out``: the inbound (outbound) transfers of the busiest window of the horizon;
#: * ``first_in`` / ``first_out``: the first transfer from (to) each counterparty;
#: * ``structuring``: the transfers just below a reporting threshold;
#: * ``cash``: cash-channel outbound transfers; ``night``: night-time transfers;
#: * ``pattern``: transfers with counterparties that show the pattern too;
#: * ``one_off``: the same, among transfers on one-off relationships only;
#: * ``inbound`` / ``outbound``: the largest inbound (outbound) transfers;
#: * ``largest``: the largest transfers of the account.
EVIDENCE_KINDS: tuple[str, ...] = (
    "passthrough",
    "busiest_in",
    "busiest_out",
    "first_in",
    "first_out",
    "structuring",
    "cash",
    "night",
    "pattern",
    "one_off",
    "inbound",
    "outbound",
    "largest",
)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column name and what a report or a reason needs to know about it.

    Parameters
    ----------
    name, family
        The column name and the family that computes it.
    description, unit
        A sentence for people and the unit (count, currency, ratio, share, hours, days, score, ...).
    direction
        Which way is suspicious: +1 higher, -1 lower, 0 neither.
    reason
        A template for a reason text, formatted with ``value`` (e.g. ``"{value:.0%} left again"``).
    version
        Bumped when the feature's definition changes; a model trained on another version is refused.
    evidence
        How the transfers behind a reason on this feature are chosen (one of :data:`EVIDENCE_KINDS`).
    horizon
        The time span the feature looks at (``"24h"``), when it has one; evidence that pairs or
        windows transfers uses it (72h when None).
    """

    name: str
    family: str
    description: str
    unit: str
    direction: int = 1
    reason: str | None = None
    version: int = 1
    evidence: str = "largest"
    horizon: str | None = None

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE_KINDS:
            raise ValueError(
                f"feature {self.name!r}: evidence must be one of {', '.join(EVIDENCE_KINDS)}. Got {self.evidence!r} instead."
            )
