"""The synthetic bank's vocabulary and the building blocks its generators share.

The vocabulary: planted typologies (:data:`TYPOLOGIES`), account roles (:data:`ROLES`), payment
channels (:data:`CHANNELS`, with their integer codes :data:`TRANSFER` ... :data:`SALARY`), the
structuring threshold and the units of time (seconds). The building blocks: random times with a
day/night profile, Zipf popularity, lognormal amounts in cents, and :class:`Rows`, the collector of
integer-coded transfers that :mod:`~mulegraph.synth.background` fills block by block.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TYPOLOGIES",
    "ROLES",
    "CHANNELS",
    "STRUCTURING_THRESHOLD",
    "TRANSFER",
    "INSTANT",
    "CARD",
    "DEBIT",
    "CASH",
    "SALARY",
    "DAY",
    "HOUR",
    "HOUR_P",
    "Rows",
    "random_times",
    "zipf_p",
    "lognormal_cents",
]

#: Planted typologies, in the order they are planted round-robin.
TYPOLOGIES: tuple[str, ...] = (
    "fan_in",
    "pass_through",
    "stack",
    "fan_out",
    "scatter_gather",
    "gather_scatter",
    "cycle",
    "structuring",
    "dormant_burst",
)

#: Account roles (``SynthData.accounts['role']``).
ROLES: tuple[str, ...] = (
    "person",
    "employer",
    "merchant",
    "biller",
    "landlord",
    "processor",
    "atm",
    "foreign",
    "origin",
)

#: Channel values used in the ``channel`` column.
CHANNELS: tuple[str, ...] = ("TRANSFER", "INSTANT", "CARD", "DIRECT_DEBIT", "CASH", "SALARY")
#: Integer codes of the channels, in the order of :data:`CHANNELS`.
TRANSFER, INSTANT, CARD, DEBIT, CASH, SALARY = range(len(CHANNELS))

#: Structuring plants amounts in ``[0.9 * threshold, threshold)``.
STRUCTURING_THRESHOLD = 10_000.0

#: Seconds in a day and in an hour: generators count time in seconds from the period's start.
DAY = 86_400
HOUR = 3_600
# Share of each hour of the day in personal activity (UTC), quiet at night.
HOUR_PROFILE = np.array(
    [1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.0, 5.0, 5.5, 6.0, 6.5, 6.0, 5.5, 5.5, 6.0, 6.5, 6.5, 6.0,
     5.0, 4.0, 3.0, 2.0]
)
#: The default hour-of-day distribution of personal activity.
HOUR_P = HOUR_PROFILE / HOUR_PROFILE.sum()


class Rows:
    """Columns of integer-coded transfers collected block by block."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, src, dst, t, cents, channel, currency=0, pattern=-1, typology=-1) -> None:
        """Add a block of transfers: ``src`` is an array; the other columns arrays or scalars."""
        src = np.asarray(src, dtype=np.int64)
        n = src.shape[0]
        if n == 0:
            return

        def full(v, dtype):
            a = np.asarray(v, dtype=dtype)
            return np.full(n, a, dtype=dtype) if a.ndim == 0 else a

        self.blocks.append(
            {
                "src": src,
                "dst": full(dst, np.int64),
                "t": full(t, np.int64),
                "cents": full(cents, np.int64),
                "channel": full(channel, np.int8),
                "currency": full(currency, np.int8),
                "pattern": full(pattern, np.int64),
                "typology": full(typology, np.int8),
            }
        )

    def concat(self) -> dict[str, np.ndarray]:
        """All blocks, column by column, in the order they were added."""
        keys = ("src", "dst", "t", "cents", "channel", "currency", "pattern", "typology")
        if not self.blocks:
            return {k: np.zeros(0, dtype=np.int64) for k in keys}
        return {k: np.concatenate([b[k] for b in self.blocks]) for k in keys}


def random_times(rng: np.random.Generator, n: int, t_end: int, hour_p: np.ndarray) -> np.ndarray:
    """``n`` timestamps (seconds from the start) in ``[0, t_end)``: uniform day, profiled hour."""
    day = rng.integers(0, max(1, t_end // DAY), size=n)
    t = day * DAY + rng.choice(24, size=n, p=hour_p) * HOUR + rng.integers(0, HOUR, size=n)
    return np.minimum(t, t_end - 1)


def zipf_p(n: int, a: float = 1.1) -> np.ndarray:
    """Probabilities of ``n`` items ranked by popularity: Zipf's law with exponent ``a``."""
    w = 1.0 / np.arange(1, n + 1, dtype=float) ** a
    return w / w.sum()


def lognormal_cents(rng: np.random.Generator, median: float, sigma: float, size, lo: float = 1.0) -> np.ndarray:
    """Amounts in cents, lognormal around ``median`` (major units), at least ``lo``."""
    x = np.exp(np.log(median) + sigma * rng.standard_normal(size))
    return np.maximum(np.round(x * 100.0), lo * 100.0).astype(np.int64)
