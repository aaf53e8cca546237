"""Durations and time windows: the ``--as-of`` / ``--window`` options shared by every stage.

``window`` is a positive duration such as ``"30d"``, ``"72h"``, ``"90m"``, ``"45s"`` or ``"2w"``,
or ``"all"`` for the whole store. ``as_of`` is an instant (ISO 8601; naive means UTC); by default
the newest transfer. The window is the half-open interval ``(as_of - window, as_of]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import polars as pl

from mulegraph.core.errors import InputError

__all__ = ["parse_duration", "parse_instant", "TimeWindow", "resolve_window", "filter_window"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
#: the longest duration accepted: 100 years (36500d); longer ones are typing errors
MAX_DURATION = timedelta(days=36_500)


def parse_duration(text: str | timedelta, *, name: str = "window") -> timedelta:
    """Parse ``"72h"``-style text into a positive :class:`~datetime.timedelta`.

    >>> parse_duration("72h")
    datetime.timedelta(days=3)
    """
    too_long = (
        f"The '{name}' must be a positive duration of at most {MAX_DURATION.days}d (100 years). Got '{text}' instead."
    )
    if isinstance(text, timedelta):
        if text <= timedelta(0):
            raise InputError(f"The '{name}' must be a positive duration. Got '{text}' instead.")
        if text > MAX_DURATION:
            raise InputError(too_long)
        return text
    m = _DURATION.match(str(text))
    if not m:
        raise InputError(
            f"The '{name}' must be a positive duration such as 24h, 72h, 30d or 2w. Got '{text}' instead."
        )
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise InputError(f"The '{name}' must be a positive duration. Got '{text}' instead.")
    if value > MAX_DURATION.total_seconds():  # also keeps timedelta() from overflowing
        raise InputError(too_long)
    return timedelta(seconds=value)


def parse_instant(text: str | datetime, *, name: str = "as-of") -> datetime:
    """Parse an ISO 8601 date or date-time; naive values are taken as UTC."""
    if isinstance(text, datetime):
        dt = text
    else:
        try:
            dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"The '{name}' must be an ISO 8601 date or time such as 2024-05-31 or "
                f"2024-05-31T23:59:59Z. Got '{text}' instead."
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@dataclass(frozen=True)
class TimeWindow:
    """A resolved window ``(start, end]``; ``start`` is None for the whole history."""

    start: datetime | None
    end: datetime

    def describe(self) -> str:
        s = "beginning" if self.start is None else self.start.isoformat()
        return f"({s}, {self.end.isoformat()}]"


def resolve_window(
    window: str | timedelta | None, as_of: str | datetime | None, newest: datetime | None
) -> TimeWindow:
    """Resolve ``--window`` and ``--as-of`` against the newest timestamp in the data."""
    if as_of is None:
        if newest is None:
            raise InputError("There are no transfers to compute a window over; ingest exports first.")
        end = parse_instant(newest)
    else:
        end = parse_instant(as_of)
    if window is None or (isinstance(window, str) and window.strip().lower() == "all"):
        return TimeWindow(None, end)
    length = parse_duration(window)
    try:
        return TimeWindow(end - length, end)
    except OverflowError:  # before year 1
        raise InputError(
            f"The window of {length.days}d before {end.date().isoformat()} starts before year 1; "
            "give a later as-of or a shorter window."
        ) from None


def filter_window(frame: pl.LazyFrame | pl.DataFrame, win: TimeWindow, column: str = "ts"):
    """Keep the rows whose ``column`` lies in ``win``."""
    cond = pl.col(column) <= pl.lit(win.end, dtype=pl.Datetime("us", "UTC"))
    if win.start is not None:
        cond = cond & (pl.col(column) > pl.lit(win.start, dtype=pl.Datetime("us", "UTC")))
    return frame.filter(cond)
