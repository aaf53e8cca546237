"""Feature drift between two runs: the population stability index (PSI).

For one feature, the previous run's values define the bins (deciles by default, taken as observed
values and merged where they coincide, so a feature with few distinct values gets fewer bins); missing values form a
bin of their own. With ``e_i`` and ``a_i`` the shares of the previous and the current population in
bin ``i`` (floored at ``eps`` so that an empty bin does not give an infinite value)::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

A common reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a large shift worth a
look before trusting the scores (:data:`PSI_WARNING`).
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["PSI_WARNING", "psi", "feature_psi"]

#: PSI above this is reported as a large shift
PSI_WARNING = 0.25


def _bin_edges(expected: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges: the distinct inner quantiles of the finite expected values.

    The ``i``-th quantile is the sorted value at position ``i * (n - 1) // bins`` (integer
    arithmetic, so edges are observed values and never depend on floating-point rounding).
    """
    finite = np.sort(expected[np.isfinite(expected)])
    if finite.size == 0:
        return np.empty(0)
    pos = (np.arange(1, bins, dtype=np.int64) * (finite.size - 1)) // bins
    return np.unique(finite[pos])


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` per bin: ``len(edges) + 1`` value bins, then one bin for missing values."""
    finite = np.isfinite(values)
    idx = np.searchsorted(edges, values[finite], side="right")
    counts = np.bincount(idx, minlength=edges.size + 1).astype(float)
    counts = np.append(counts, float((~finite).sum()))
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi(expected, actual, *, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected`` (both 1-d, NaN = missing).

    Bins are the distinct inner quantiles of ``expected``; a value equal to an edge falls in the
    bin above it. Returns 0.0 for identical samples and NaN when either side is empty.

    >>> round(psi([1, 2, 3, 4], [1, 2, 3, 4]), 6)
    0.0
    """
    e = np.asarray(expected, dtype=float).ravel()
    a = np.asarray(actual, dtype=float).ravel()
    if e.size == 0 or a.size == 0:
        return float("nan")
    edges = _bin_edges(e, bins)
    pe = np.maximum(_shares(e, edges), eps)
    pa = np.maximum(_shares(a, edges), eps)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def _column(frame: pl.DataFrame | pl.LazyFrame, name: str) -> np.ndarray:
    """One column as floats, nulls as NaN (read alone from a lazy frame)."""
    one = frame.select(name).collect() if isinstance(frame, pl.LazyFrame) else frame
    return one.get_column(name).cast(pl.Float64).fill_null(float("nan")).to_numpy()


def feature_psi(
    previous: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    *,
    features: list[str] | None = None,
    bins: int = 10,
    warn_above: float = PSI_WARNING,
) -> pl.DataFrame:
    """PSI per numeric feature present in both frames.

    Returns ``feature, psi, n_previous, n_current, warning`` sorted by PSI (largest first); the
    ``warning`` flag is true when PSI exceeds ``warn_above``. Boolean features count as 0/1;
    identifier and non-numeric columns are skipped. Either frame may be lazy (a scan of a run's
    ``features.parquet``): it is then read a column at a time, never whole.
    """
    before, after = previous.collect_schema(), current.collect_schema()
    if features is None:
        features = [
            c
            for c in after.names()
            if c in before
            and c not in ("account_id", "idx", "is_hub")
            and (after[c].is_numeric() or after[c] == pl.Boolean)
            and (before[c].is_numeric() or before[c] == pl.Boolean)
        ]
    rows = []
    for name in features:
        e = _column(previous, name)
        a = _column(current, name)
        value = psi(e, a, bins=bins)
        rows.append((name, value, e.size, a.size, bool(value > warn_above)))
    out = pl.DataFrame(
        rows,
        schema={"feature": pl.String, "psi": pl.Float64, "n_previous": pl.Int64, "n_current": pl.Int64, "warning": pl.Boolean},
        orient="row",
    )
    return out.sort(["psi", "feature"], descending=[True, False], nulls_last=True)
