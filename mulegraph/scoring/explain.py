"""Reason codes: why an account ranks where it does, in words, with the transfers behind it.

A reason names one feature, its value for the account and its **percentile**: the share of ranked
accounts (hubs left out) whose value is strictly lower. Reasons are chosen per account from a list
of :class:`~mulegraph.scoring.signals.Signal` objects (a feature, a reason code and a weight: the
rule weight in the no-label mode, the feature importance for a supervised model). How unusual an
account is in the suspicious direction of a feature is ``u``: its percentile for features where
higher is suspicious, the share of accounts with a strictly higher value for features where lower
is suspicious. The strength of a signal is its weight times ``u`` in bits of surprise:
``weight * -log2(1 - u + 1/n)``. The strongest 3-5 with ``u >= 0.5`` become the account's reasons,
ordered by strength (filled up to 3 with the next strongest when fewer qualify); at most one reason
per feature.

Each reason is a struct of :data:`~mulegraph.core.schema.REASON_STRUCT` (the ``reasons`` column of
scores is a list of them, :data:`~mulegraph.core.schema.REASONS_DTYPE`); as JSON, the wire format of
CSV and JSON outputs (:func:`~mulegraph.core.schema.reasons_to_json`)::

    {"code": "RAPID_PASSTHROUGH", "feature": "passthrough_share_24h", "family": "passthrough",
     "text": "97% of received value left again within 24h; higher than 99.6% of accounts",
     "value": 0.97, "percentile": 0.996, "txn_ids": ["T1", "T9", ...]}

``value`` and ``percentile`` are rounded to 6 significant digits. ``txn_ids`` (the evidence, see
:mod:`mulegraph.scoring.evidence`) is filled for the best ``evidence_top`` accounts only, so that
explaining a large population stays cheap; for other accounts it is an empty list. Reasons are
built :data:`CHUNK_ROWS` accounts at a time against the sorted values of the whole population, so
the memory explaining takes does not grow with the number of accounts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from mulegraph.core.schema import REASONS_DTYPE
from mulegraph.features.prepare import Prepared
from mulegraph.features.registry import REGISTRY
from mulegraph.scoring.evidence import evidence, evidence_many
from mulegraph.scoring.signals import (
    NON_FEATURE_COLUMNS,
    Population,
    Signal,
    as_float_matrix,
    directional,
    feature_columns,
    percentiles,
)

__all__ = [
    "Signal",
    "NON_FEATURE_COLUMNS",
    "feature_columns",
    "percentiles",
    "directional",
    "choose_reasons",
    "reason_text",
    "evidence",
    "explain",
    "explain_chunks",
    "CHUNK_ROWS",
]


def _direction(feature: str) -> int:
    spec = REGISTRY.get(feature)
    return 1 if spec is None else int(spec.direction)


def _choose_long(
    strength: np.ndarray, unusual: np.ndarray, n_reasons: int, min_reasons: int, min_unusual: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised reason choice: (row, signal) index pairs, rows ascending, strongest first."""
    n, k = strength.shape
    if k == 0 or n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    s = np.where(np.isnan(strength), -np.inf, strength)
    order = np.argsort(-s, axis=1, kind="stable")
    rows = np.arange(n)[:, None]
    has = np.isfinite(s[rows, order])
    good = has & (np.nan_to_num(unusual[rows, order], nan=-1.0) >= min_unusual)
    take_good = good & (np.cumsum(good, axis=1) <= n_reasons)
    n_good = take_good.sum(axis=1)
    need = np.maximum(min_reasons - n_good, 0)
    filler = has & ~good
    take_fill = filler & (np.cumsum(filler, axis=1) <= need[:, None])
    r, pos = np.nonzero(take_good | take_fill)
    return r.astype(np.int64), order[r, pos].astype(np.int64)


def choose_reasons(
    strength: np.ndarray, unusual: np.ndarray, *, n_reasons: int = 5, min_reasons: int = 3, min_unusual: float = 0.5
) -> list[list[int]]:
    """Per row, the indices of the signals to report, strongest first.

    A signal qualifies when its directional percentile is at least ``min_unusual``; up to
    ``n_reasons`` qualifying ones are taken, and when fewer than ``min_reasons`` qualify the list is
    filled up with the next strongest signals that have a value.
    """
    rows, sig = _choose_long(strength, unusual, n_reasons, min_reasons, min_unusual)
    out: list[list[int]] = [[] for _ in range(strength.shape[0])]
    for r, j in zip(rows.tolist(), sig.tolist()):
        out[r].append(j)
    return out


_PLAIN = {
    "count": "{value:,.0f}",
    "currency": "{value:,.0f}",
    "share": "{value:.0%}",
    "ratio": "{value:.2f}",
}


def _fmt_value(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    pattern = _PLAIN.get(unit)
    if pattern is None:
        return f"{value:,.0f}" if abs(value - round(value)) < 1e-9 and abs(value) < 1e15 else f"{value:,.3g}"
    return pattern.format(value=value)


def _floor_pct(p: float) -> str:
    v = math.floor(p * 1000.0) / 10.0
    return f"{v:.1f}%"


def reason_text(feature: str, value: float | None, unusual: float | None, context: Mapping[str, float] | None = None) -> str:
    """One sentence for a reason: the feature in words with its value, and how unusual it is.

    The feature's registry ``reason`` template is formatted with ``value`` (and the account's other
    feature values by name, when the template refers to them); without a template the description and
    the value are used.
    """
    spec = REGISTRY.get(feature)
    direction = 1 if spec is None else spec.direction
    head = None
    if spec is not None and spec.reason and value is not None and math.isfinite(value):
        try:
            head = spec.reason.format(value=value, **dict(context or {}))
        except (KeyError, ValueError, IndexError, TypeError):
            head = None
    if head is None:
        desc = spec.description if spec is not None else feature.replace("_", " ")
        head = f"{desc}: {_fmt_value(value, spec.unit if spec else '')}"
    if unusual is None or not math.isfinite(unusual):
        return head
    word = "lower" if direction < 0 else "higher"
    return f"{head}; {word} than {_floor_pct(unusual)} of accounts"


def _texts(feature: str, values: np.ndarray, unusual: np.ndarray) -> list[str]:
    """:func:`reason_text` for many values of one feature (the template is looked up once).

    Templates are formatted with ``value`` only; one that needs more falls back to the description.
    Many accounts share a value and a percentile (counts, shares): each distinct pair, told apart by
    its bits (so ``-0.0`` and ``0.0`` stay apart), is formatted once.
    """
    spec = REGISTRY.get(feature)
    word = "lower" if spec is not None and spec.direction < 0 else "higher"
    template = spec.reason if spec is not None else None
    desc = spec.description if spec is not None else feature.replace("_", " ")
    unit = spec.unit if spec is not None else ""
    values = np.ascontiguousarray(values, dtype=np.float64)
    unusual = np.ascontiguousarray(unusual, dtype=np.float64)
    keys = zip(values.view(np.int64).tolist(), unusual.view(np.int64).tolist())
    done: dict[tuple[int, int], str] = {}
    out = []
    for key, v, u in zip(keys, values.tolist(), unusual.tolist()):
        head = done.get(key)
        if head is not None:
            out.append(head)
            continue
        if template is not None and math.isfinite(v):
            try:
                head = template.format(value=v)
            except (KeyError, ValueError, IndexError, TypeError):
                head = None
        if head is None:
            head = f"{desc}: {_fmt_value(v if math.isfinite(v) else None, unit)}"
        if math.isfinite(u):
            head = f"{head}; {word} than {_floor_pct(u)} of accounts"
        done[key] = head
        out.append(head)
    return out


#: accounts explained at a time: the memory explaining takes grows with this, not with the population
CHUNK_ROWS = 50_000

_LONG_SCHEMA = {
    "row": pl.Int64, "code": pl.String, "feature": pl.String, "text": pl.String, "value": pl.Float64, "percentile": pl.Float64,
}
_EVIDENCE_SCHEMA = {"row": pl.Int64, "feature": pl.String, "txn_ids": pl.List(pl.String)}


@dataclass(frozen=True)
class _Candidates:
    """The signals that have a column, and the population their percentiles are read against."""

    signals: list[Signal]
    columns: list[str]
    directions: list[int]
    weights: np.ndarray
    #: per column, its non-NaN values over all accounts (distinct values and counts)
    populations: list[Population]
    #: 1 / n: keeps the bits of surprise of the most unusual account finite
    eps: float

    @classmethod
    def of(cls, features: pl.DataFrame, signals: Sequence[Signal]) -> "_Candidates":
        seen: dict[str, Signal] = {}
        for s in signals:
            if s.feature in features.columns and s.feature not in seen:
                seen[s.feature] = s
        sigs = list(seen.values())
        cols = [s.feature for s in sigs]
        return cls(
            signals=sigs,
            columns=cols,
            directions=[_direction(c) for c in cols],
            weights=np.array([s.weight for s in sigs], dtype=np.float64),
            populations=[Population.of(as_float_matrix(features, [c])[:, 0]) for c in cols],
            eps=1.0 / max(features.height, 2),
        )

    def choose(
        self, part: pl.DataFrame, n_reasons: int, min_reasons: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The reasons of the rows of ``part``: (row, signal, value, percentile, unusual), rows ascending.

        Every row is explained on its own against the whole population, so explaining the rows a
        slice at a time gives what explaining them all at once gives.
        """
        raw = as_float_matrix(part, self.columns)
        pct = np.column_stack([pop.share_beyond(raw[:, j]) for j, pop in enumerate(self.populations)])
        unusual = np.column_stack(
            [pct[:, j] if d > 0 else pop.directional(raw[:, j], d) for j, (d, pop) in enumerate(zip(self.directions, self.populations))]
        )
        # strength = weight x bits of surprise, as in the no-label score: the top 0.1% counts far
        # more than the top 30%
        strength = self.weights[None, :] * -np.log2(1.0 - unusual + self.eps)
        rows, sig = _choose_long(strength, unusual, n_reasons, min_reasons, 0.5)
        return rows, sig, raw[rows, sig], pct[rows, sig], unusual[rows, sig]


def _evidence_frame(
    features: pl.DataFrame,
    cand: _Candidates,
    prepared: Prepared,
    order: Iterable[str],
    evidence_top: int,
    n_reasons: int,
    min_reasons: int,
    max_txn_ids: int,
    take: pl.Series | None = None,
) -> pl.DataFrame:
    """``row, feature, txn_ids``: the transfers behind the reasons of the best ``evidence_top`` accounts.

    ``row`` counts the rows in the order they are explained: those of ``features``, or ``take``'s.
    """
    empty = pl.DataFrame(schema=_EVIDENCE_SCHEMA)
    top = list(itertools.islice(order, evidence_top))
    ids = features["account_id"] if take is None else features["account_id"].gather(take)
    top_rows = (
        ids.to_frame("account_id")
        .with_row_index("row")
        .with_columns(pl.col("row").cast(pl.Int64))
        .filter(pl.col("account_id").is_in(top))
    )
    del ids
    if top_rows.is_empty():
        return empty
    at = top_rows["row"] if take is None else take.gather(top_rows["row"])
    sub = features[at.to_numpy()]
    _, sig, _, _, _ = cand.choose(sub, n_reasons, min_reasons)
    needed = sorted({cand.columns[j] for j in sig.tolist()})
    if not needed:
        return empty
    ev = evidence_many(prepared, top, needed, features=features, max_txn_ids=max_txn_ids, config=prepared.config)
    parts = [
        pl.DataFrame(
            {"account_id": list(m.keys()), "feature": [f] * len(m), "txn_ids": list(m.values())},
            schema={"account_id": pl.String, "feature": pl.String, "txn_ids": pl.List(pl.String)},
        )
        for f, m in ev.items()
        if m
    ]
    if not parts:
        return empty
    return pl.concat(parts).join(top_rows, on="account_id").select("row", "feature", "txn_ids")


def _reasons_of_chunk(
    part: pl.DataFrame,
    offset: int,
    cand: _Candidates,
    family: pl.DataFrame,
    ev_frame: pl.DataFrame,
    n_reasons: int,
    min_reasons: int,
) -> pl.Series:
    """The reasons column for the rows ``offset .. offset + part.height`` of the explained frame."""
    rows, sig, value, pct, unusual = cand.choose(part, n_reasons, min_reasons)
    texts = np.empty(rows.size, dtype=object)
    for j, c in enumerate(cand.columns):
        m = sig == j
        if m.any():
            texts[m] = _texts(c, value[m], unusual[m])
    del unusual
    long = pl.DataFrame(
        {
            "row": rows + offset,
            "code": [cand.signals[j].code for j in sig.tolist()],
            "feature": [cand.columns[j] for j in sig.tolist()],
            "text": texts.tolist(),
            "value": value,
            "percentile": pct,
        },
        schema=_LONG_SCHEMA,
    )
    del texts
    long = long.with_row_index("_pos").join(family, on="feature", how="left")
    long = long.join(ev_frame, on=["row", "feature"], how="left").with_columns(
        pl.col("txn_ids").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    # values are rounded to 6 significant digits, so that the JSON wire format stays short
    per_row = (
        long.sort("_pos")
        .select(
            "row",
            pl.struct(
                "code", "feature", "family", "text",
                pl.col("value").fill_nan(None).round_sig_figs(6),
                pl.col("percentile").fill_nan(None).round_sig_figs(6),
                "txn_ids",
            ).alias("reasons"),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("reasons"))
    )
    out = (
        pl.DataFrame({"row": np.arange(offset, offset + part.height, dtype=np.int64)})
        .join(per_row, on="row", how="left")
        .sort("row")
        .select(pl.col("reasons").cast(REASONS_DTYPE).fill_null(pl.lit([], dtype=REASONS_DTYPE)))
    )
    return out["reasons"]


def explain(
    features: pl.DataFrame,
    signals: Sequence[Signal],
    *,
    prepared: Prepared | None = None,
    order: Sequence[str] | None = None,
    n_reasons: int = 5,
    min_reasons: int = 3,
    evidence_top: int = 100,
    max_txn_ids: int = 25,
    chunk_rows: int | None = None,
) -> pl.Series:
    """Reasons for every account of ``features`` (ranked accounts only), strongest first.

    ``signals`` lists the candidate reasons; signals naming a feature that is not a column are
    ignored, and a feature named by several signals keeps the first. ``order`` lists account ids
    best first; evidence is gathered for its first ``evidence_top`` accounts when ``prepared`` is
    given. Returns a series of :data:`~mulegraph.core.schema.REASONS_DTYPE` aligned with the rows of
    ``features`` (an empty list for an account without reasons).

    The percentiles are read against all rows of ``features``; the reasons are built
    ``chunk_rows`` (default :data:`CHUNK_ROWS`) accounts at a time, so that memory stays bounded for
    a large population (the result does not depend on ``chunk_rows``).
    """
    chunks = list(explain_chunks(features, signals, prepared=prepared, order=order, n_reasons=n_reasons,
                                 min_reasons=min_reasons, evidence_top=evidence_top, max_txn_ids=max_txn_ids,
                                 chunk_rows=chunk_rows))
    if not chunks:
        return pl.Series("reasons", [], dtype=REASONS_DTYPE)
    return pl.concat(chunks).alias("reasons")


def explain_chunks(
    features: pl.DataFrame,
    signals: Sequence[Signal],
    *,
    prepared: Prepared | None = None,
    order: Sequence[str] | None = None,
    n_reasons: int = 5,
    min_reasons: int = 3,
    evidence_top: int = 100,
    max_txn_ids: int = 25,
    chunk_rows: int | None = None,
    take: pl.Series | None = None,
) -> Iterator[pl.Series]:
    """:func:`explain`, ``chunk_rows`` rows of ``features`` at a time: the reasons of rows
    ``0 .. chunk_rows``, then the next ones, so that a caller can write them as they come without
    holding every account's reasons (at bank scale the largest column of a run).

    ``take``: the positions of the rows of ``features`` in the order to explain them (each chunk's
    rows are gathered as it is built): what explaining ``features[take]`` gives, without a second
    copy of the features in that order. The percentiles are read among all rows of ``features``.
    """
    chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}.")
    n = features.height if take is None else take.len()
    cand = _Candidates.of(features, signals)
    if not cand.columns:
        for a in range(0, n, chunk_rows):
            yield pl.Series("reasons", [[] for _ in range(min(chunk_rows, n - a))], dtype=REASONS_DTYPE)
        return
    family = pl.DataFrame(
        {"feature": cand.columns, "family": [REGISTRY[c].family if c in REGISTRY else None for c in cand.columns]},
        schema={"feature": pl.String, "family": pl.String},
    )
    ev_frame = pl.DataFrame(schema=_EVIDENCE_SCHEMA)
    if prepared is not None and evidence_top > 0 and order is not None:
        ev_frame = _evidence_frame(features, cand, prepared, order, evidence_top, n_reasons, min_reasons, max_txn_ids,
                                   take)
    for a in range(0, n, chunk_rows):
        part = features.slice(a, chunk_rows) if take is None else features[take.slice(a, chunk_rows).to_numpy()]
        yield _reasons_of_chunk(part, a, cand, family, ev_frame, n_reasons, min_reasons).alias("reasons")
