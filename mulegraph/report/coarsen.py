"""Coarsened reports: amounts rounded, times cut to dates, for sharing beyond the investigators.

A pseudonym hides an account id, but an exact amount or an exact time can still point at one
transfer, and so back at the account. With ``--coarsen`` (or ``[report] coarsen = true``) every
format of the report shows:

* **amounts** (values in and out, the values of flow pictures, and every number in a reason's
  ``value`` and text) rounded to :data:`SIGNIFICANT_FIGURES` significant figures: 12,345.67 becomes
  12,000 and 0.1234 becomes 0.12; percentages in reason texts ("97% of received value ...", "higher
  than 99.6% of accounts") are ranks, not amounts, and are kept;
* **timestamps** (an account's first and last transfer, the window's start and end) as dates
  ``YYYY-MM-DD`` without the time of day.

Scores, ranks, counts of transfers and counterparties, transfer ids and run metadata are kept.
"""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl

__all__ = ["SIGNIFICANT_FIGURES", "round_amount", "amount_expr", "coarse_date", "date_expr", "coarsen_text", "fmt_amount"]

#: significant figures kept of an amount in a coarsened report
SIGNIFICANT_FIGURES = 2

# a number in a text: digits with optional thousands separators and decimals; not part of a word,
# a date or a time, and not followed by '%' (a percentage)
_NUMBER = re.compile(r"(?<![\w.,:/-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w%:/-]|[.,]\d)")


def round_amount(value: Any) -> Any:
    """``value`` rounded to :data:`SIGNIFICANT_FIGURES` significant figures (non-numbers and
    non-finite numbers as they are).

    >>> round_amount(12345.67), round_amount(0.1234), round_amount(-987.0), round_amount(None)
    (12000.0, 0.12, -990.0, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{SIGNIFICANT_FIGURES}g}")


def amount_expr(column: str) -> pl.Expr:
    """The column rounded to :data:`SIGNIFICANT_FIGURES` significant figures (vectorised)."""
    return pl.col(column).cast(pl.Float64).round_sig_figs(SIGNIFICANT_FIGURES).alias(column)


def coarse_date(value: Any) -> Any:
    """A timestamp (a datetime or ISO 8601 text) as its date ``YYYY-MM-DD``; None stays None.

    >>> coarse_date("2025-01-31T14:05:00Z")
    '2025-01-31'
    """
    if value is None:
        return None
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    text = str(value)
    return text[:10] if re.match(r"\d{4}-\d{2}-\d{2}", text) else text


def date_expr(column: str) -> pl.Expr:
    """A datetime column as text ``YYYY-MM-DD`` (vectorised)."""
    return pl.col(column).dt.strftime("%Y-%m-%d").alias(column)


def _round_match(m: re.Match[str]) -> str:
    whole, frac = m.group(1), m.group(2) or ""
    value = round_amount(float(whole.replace(",", "") + frac))
    if not frac:  # a whole number stays whole
        return f"{value:,.0f}" if "," in whole or value >= 10_000 else f"{value:.0f}"
    return fmt_amount(value, thousands="," in whole or value >= 10_000)


def coarsen_text(text: str | None) -> str | None:
    """Every number in a reason text rounded to :data:`SIGNIFICANT_FIGURES` significant figures,
    percentages kept.

    >>> coarsen_text("received 12,345.67 from 123 senders; 97% left within 24h, higher than 99.6% of accounts")
    'received 12,000 from 120 senders; 97% left within 24h, higher than 99.6% of accounts'
    """
    if text is None:
        return None
    return _NUMBER.sub(_round_match, text)


def fmt_amount(value: Any, thousands: bool = True) -> str:
    """A coarsened amount for people: no more decimals than its significant figures need.

    >>> fmt_amount(12000.0), fmt_amount(0.12), fmt_amount(None)
    ('12,000', '0.12', '-')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if value == 0:
        return "0"
    decimals = max(0, SIGNIFICANT_FIGURES - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}" if thousands else f"{value:.{decimals}f}"
