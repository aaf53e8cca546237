"""What both scorers share: candidate reasons (:class:`Signal`), percentiles, and the unfitted error.

A **signal** is a feature that may explain an account's rank, under a reason code and with a
weight (the rule weight in the no-label mode, the feature importance for a supervised model).
How unusual an account is on a feature is read from its **percentile** among the ranked accounts
(hubs left out): the share of accounts with a strictly lower value, or with a strictly higher one
for features where lower is suspicious (:func:`directional`).

:mod:`mulegraph.scoring.nolabel` builds its rule strengths from these percentiles and
:mod:`mulegraph.scoring.explain` its reasons; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from mulegraph.core.errors import ModelError

__all__ = [
    "Signal",
    "Population",
    "NON_FEATURE_COLUMNS",
    "NotFittedModelError",
    "require_fitted",
    "feature_columns",
    "as_float_matrix",
    "percentiles",
    "share_beyond",
    "share_beyond_sorted",
    "present_sorted",
    "directional",
    "with_account_columns",
    "ranked_rows",
]

#: columns of a feature frame that are not features
NON_FEATURE_COLUMNS: frozenset[str] = frozenset({"idx", "account_id", "is_hub", "score", "rank"})


def with_account_columns(frame: pl.DataFrame, extra: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the columns of ``extra`` (``account_id`` plus columns) matched on ``account_id``.

    Only the account column is joined; the new columns are set beside the existing ones, which are
    not copied (at bank scale ``frame`` holds every account's features).
    """
    aligned = frame.select("account_id").join(extra, on="account_id", how="left", maintain_order="left")
    return frame.hstack(aligned.drop("account_id"))


def ranked_rows(features: pl.DataFrame) -> pl.DataFrame:
    """The rows of the accounts that are ranked: every one but the hubs (``is_hub`` true).

    ``features`` itself when there is no hub to leave out: a filter copies every column.
    """
    if "is_hub" not in features.columns or not features["is_hub"].any():
        return features
    return features.filter(~pl.col("is_hub").fill_null(False))


class NotFittedModelError(ModelError, NotFittedError):
    """A scorer was used before it was fitted.

    Both a :class:`~mulegraph.core.errors.ModelError` (the command line reports it in one line) and
    scikit-learn's :class:`~sklearn.exceptions.NotFittedError`.
    """


def require_fitted(estimator: object, hint: str) -> None:
    """Raise :class:`NotFittedModelError` (with ``hint``, what to do) unless ``estimator`` is fitted.

    Fitted means what :func:`sklearn.utils.validation.check_is_fitted` says.
    """
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise NotFittedModelError(f"this {type(estimator).__name__} is not fitted yet; {hint}.") from None


@dataclass(frozen=True)
class Signal:
    """A candidate reason: a feature, the reason code it is reported under and its weight."""

    code: str
    feature: str
    weight: float = 1.0


def feature_columns(features: pl.DataFrame) -> list[str]:
    """The numeric feature columns of a feature frame (identifiers and flags left out)."""
    return [
        c
        for c, dt in features.schema.items()
        if c not in NON_FEATURE_COLUMNS and (dt.is_numeric() or dt == pl.Boolean)
    ]


def as_float_matrix(features: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The columns as a float matrix (rows x columns) with NaN for missing values."""
    if not columns:
        return np.zeros((features.height, 0))
    mat = features.select(
        [pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in columns]
    ).to_numpy()
    return np.asarray(mat, dtype=np.float64).reshape(features.height, len(columns))


def present_sorted(x: np.ndarray) -> np.ndarray:
    """The non-NaN values of ``x``, sorted: the population :func:`share_beyond_sorted` compares with."""
    return np.sort(x[~np.isnan(x)])


def share_beyond_sorted(population: np.ndarray, x: np.ndarray, *, higher: bool = False) -> np.ndarray:
    """Per value of ``x``, the share of ``population`` (sorted, no NaN) strictly below it (above with ``higher``).

    NaN stays NaN. With the population of :func:`present_sorted` this is :func:`share_beyond`, for
    any part of the values: percentiles of a large population can be taken a slice of rows at a time.
    """
    ok = ~np.isnan(x)
    res = np.full(x.shape, np.nan)
    if population.size:
        if higher:
            res[ok] = (population.size - np.searchsorted(population, x[ok], side="right")) / population.size
        else:
            res[ok] = np.searchsorted(population, x[ok], side="left") / population.size
    return res


@dataclass(frozen=True)
class Population:
    """The values of a column (NaN left out), held as their distinct values and counts.

    :meth:`share_beyond` gives what :func:`share_beyond_sorted` gives against the sorted values,
    bit for bit, with one value and one count per distinct value instead of one per account: most
    feature columns are counts and shares with few distinct values among millions of accounts.
    """

    #: the distinct values, ascending
    values: np.ndarray
    #: ``below[i]``: how many values are lower than ``values[i]``; ``below[-1]``: how many there are
    below: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> "Population":
        """The population of the non-NaN values of ``x``."""
        values, counts = np.unique(x[~np.isnan(x)], return_counts=True)
        below = np.zeros(values.size + 1, dtype=np.int64)
        np.cumsum(counts, out=below[1:])
        return cls(values=values, below=below)

    @property
    def size(self) -> int:
        return int(self.below[-1])

    def share_beyond(self, x: np.ndarray, *, higher: bool = False) -> np.ndarray:
        """Per value of ``x``, the share of the population strictly below it (above with ``higher``); NaN stays NaN."""
        ok = ~np.isnan(x)
        res = np.full(x.shape, np.nan)
        n = self.size
        if n:
            if higher:
                res[ok] = (n - self.below[np.searchsorted(self.values, x[ok], side="right")]) / n
            else:
                res[ok] = self.below[np.searchsorted(self.values, x[ok], side="left")] / n
        return res

    def directional(self, x: np.ndarray, direction: int) -> np.ndarray:
        """:func:`directional` against this population."""
        if direction == 0:
            return np.where(np.isnan(x), np.nan, 0.0)
        return self.share_beyond(x, higher=direction < 0)


def share_beyond(x: np.ndarray, *, higher: bool = False) -> np.ndarray:
    """Per value, the share of the non-NaN values strictly below it (strictly above with ``higher``)."""
    return share_beyond_sorted(present_sorted(x), x, higher=higher)


def percentiles(features: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Percentile of each account's value: the share of the given accounts with a strictly lower value.

    ``features`` holds the ranked accounts only (leave hubs out before calling). Missing and NaN
    values get a null percentile and are not counted in the denominator. Returns ``account_id``
    (when present) plus one column per feature with the same name.
    """
    columns = feature_columns(features) if columns is None else list(columns)
    mat = as_float_matrix(features, columns)
    out = {}
    for j, c in enumerate(columns):
        out[c] = share_beyond(mat[:, j])
    frame = pl.DataFrame(out, schema={c: pl.Float64 for c in columns}) if columns else pl.DataFrame()
    if "account_id" in features.columns:
        frame = frame.with_columns(features["account_id"]) if columns else features.select("account_id")
        frame = frame.select("account_id", *columns)
    return frame


def directional(x: np.ndarray, direction: int, population: np.ndarray | None = None) -> np.ndarray:
    """How unusual each value is in the suspicious direction, 0..1 (NaN stays NaN).

    ``direction`` +1 (higher is suspicious): the share of accounts with a strictly lower value.
    ``direction`` -1: the share with a strictly higher value. 0: zeros (never suspicious on its own).
    ``population``: the sorted values the shares are taken among (:func:`present_sorted`); by
    default the values of ``x`` themselves.
    """
    if direction == 0:
        return np.where(np.isnan(x), np.nan, 0.0)
    if population is None:
        population = present_sorted(x)
    return share_beyond_sorted(population, x, higher=direction < 0)
