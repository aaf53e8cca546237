"""Reason codes: why an account ranks where it does, in words, with the transfers behind it.

A reason names one feature, its value for the account and its **percentile**: the share of ranked
accounts (hubs left out) whose value is strictly lower. Reasons are chosen per account from a list
of :class:`Signal` objects (a feature, a reason code and a weight: the rule weight in the no-label
mode, the feature importance for a supervised model). How unusual an account is in the suspicious
direction of a feature is ``u``: its percentile for features where higher is suspicious, the share
of accounts with a strictly higher value for features where lower is suspicious. The strength of a
signal is its weight times ``u`` in bits of surprise: ``weight * -log2(1 - u + 1/n)``. The
strongest 3-5 with ``u >= 0.5`` become the account's reasons, ordered by strength (filled up to 3
with the next strongest when fewer qualify); at most one reason per feature.

Each reason is a JSON object::

    {"code": "RAPID_PASSTHROUGH", "feature": "passthrough_share_24h", "family": "passthrough",
     "text": "97% of received value left again within 24h; higher than 99.6% of accounts",
     "value": 0.97, "percentile": 0.996, "txn_ids": ["T1", "T9", ...]}

``txn_ids`` (the evidence) is filled for the best ``evidence_top`` accounts only, so that explaining a
large population stays cheap; for other accounts it is an empty list. Evidence always consists of
transfers of the account itself (it is the sender or the receiver), chosen by the kind of signal:

* pass-through (``passthrough_*``, ``dwell_*``, ``forward_ratio``, ``split_*``, ``amount_match_*``):
  each outbound transfer with the latest inbound transfer that arrived at or before it within the
  horizon (24h when the feature name says so, else 72h), leaving out pairs whose both
  counterparties are hubs;
* fan-in / fan-out (``fanin_*``, ``fanout_*``): the inbound (outbound) transfers of the busiest
  sliding window of that length;
* first-time payers (``first_time_*``), counterparty counts (``in_cp``/``out_cp``): the first
  transfer from (to) each counterparty;
* structuring: the transfers just below a reporting threshold; cash: cash-channel transfers;
  night-time share: night-time transfers;
* graph patterns (family ``patterns`` or ``network``): the account's transfers with counterparties
  that show the same pattern feature themselves (the other members of its cycles, chains and
  scatter-gather structures);
* one-off structures (family ``structure``, :mod:`mulegraph.nolabel`): the same, among the account's
  transfers on one-off relationships only;
* anything else: the account's largest transfers with counterparties that are not hubs.

Evidence lists are capped (``max_txn_ids``) and sorted by transfer id.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from mulegraph.core.config import FeatureConfig
from mulegraph.features.prepare import Prepared
from mulegraph.features.registry import REGISTRY
from mulegraph.core.window import parse_duration

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
]

#: columns of a feature frame that are not features
NON_FEATURE_COLUMNS: frozenset[str] = frozenset({"idx", "account_id", "is_hub", "score", "rank"})


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


def _as_float(features: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The columns as a float matrix (rows x columns) with NaN for missing values."""
    if not columns:
        return np.zeros((features.height, 0))
    mat = features.select(
        [pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in columns]
    ).to_numpy()
    return np.asarray(mat, dtype=np.float64).reshape(features.height, len(columns))


def percentiles(features: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Percentile of each account's value: the share of the given accounts with a strictly lower value.

    ``features`` holds the ranked accounts only (leave hubs out before calling). Missing and NaN
    values get a null percentile and are not counted in the denominator. Returns ``account_id``
    (when present) plus one column per feature with the same name.
    """
    columns = feature_columns(features) if columns is None else list(columns)
    mat = _as_float(features, columns)
    out = {}
    for j, c in enumerate(columns):
        out[c] = _share_beyond(mat[:, j])
    frame = pl.DataFrame(out, schema={c: pl.Float64 for c in columns}) if columns else pl.DataFrame()
    if "account_id" in features.columns:
        frame = frame.with_columns(features["account_id"]) if columns else features.select("account_id")
        frame = frame.select("account_id", *columns)
    return frame


def _share_beyond(x: np.ndarray, *, higher: bool = False) -> np.ndarray:
    """Per value, the share of the non-NaN values strictly below it (strictly above with ``higher``)."""
    ok = ~np.isnan(x)
    vals = np.sort(x[ok])
    res = np.full(x.shape, np.nan)
    if vals.size:
        if higher:
            res[ok] = (vals.size - np.searchsorted(vals, x[ok], side="right")) / vals.size
        else:
            res[ok] = np.searchsorted(vals, x[ok], side="left") / vals.size
    return res


def directional(x: np.ndarray, direction: int) -> np.ndarray:
    """How unusual each value is in the suspicious direction, 0..1 (NaN stays NaN).

    ``direction`` +1 (higher is suspicious): the share of accounts with a strictly lower value.
    ``direction`` -1: the share with a strictly higher value. 0: zeros (never suspicious on its own).
    """
    if direction > 0:
        return _share_beyond(x)
    if direction < 0:
        return _share_beyond(x, higher=True)
    return np.where(np.isnan(x), np.nan, 0.0)


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


# ----------------------------------------------------------------------------------------------
# evidence


def _horizon_seconds(feature: str, default: str = "72h") -> int:
    m = re.search(r"_(\d+[smhdw])(?:_|$)", feature)
    text = m.group(1) if m else default
    return int(parse_duration(text).total_seconds())


def _evidence_kind(feature: str) -> str:
    spec = REGISTRY.get(feature)
    family = spec.family if spec else ""
    if feature.startswith(("passthrough", "dwell", "split", "amount_match", "forward_ratio", "retained")) or (
        family == "passthrough"
    ):
        return "passthrough"
    if feature.startswith("fanin"):
        return "fanin"
    if feature.startswith("fanout"):
        return "fanout"
    if feature.startswith("first_time") or feature == "in_cp":
        return "first_in"
    if feature == "out_cp":
        return "first_out"
    if feature.startswith("structuring"):
        return "structuring"
    if feature.startswith("cash"):
        return "cash"
    if feature.startswith("night"):
        return "night"
    if family == "structure" or feature.startswith("fresh_"):
        return "structure"
    if family in ("patterns", "network") or feature.startswith("nbr_"):
        return "pattern"
    if feature.startswith("in_"):
        return "inbound"
    if feature.startswith("out_"):
        return "outbound"
    return "largest"


def _account_tx(p: Prepared, idx: pl.Series, tx: pl.DataFrame | None = None) -> pl.DataFrame:
    """Transfers touching the accounts, one row per (account, transfer) with its side."""
    hubs = p.hub_idx.implode()
    tx = p.tx if tx is None else tx
    ins = tx.filter(pl.col("dst").is_in(idx.implode())).select(
        pl.col("dst").alias("acc"), pl.col("src").alias("cp"), "t", "txn_id", "amount", "channel", pl.lit("in").alias("side")
    )
    outs = tx.filter(pl.col("src").is_in(idx.implode())).select(
        pl.col("src").alias("acc"), pl.col("dst").alias("cp"), "t", "txn_id", "amount", "channel", pl.lit("out").alias("side")
    )
    both = pl.concat([ins, outs])
    return both.with_columns(pl.col("cp").is_in(hubs).alias("cp_hub"))


def _cap(frame: pl.DataFrame, max_txn_ids: int, order: str = "amount") -> pl.DataFrame:
    """acc -> sorted list of at most ``max_txn_ids`` distinct txn ids (largest ``order`` first)."""
    if frame.is_empty():
        return pl.DataFrame(schema={"acc": pl.UInt32, "txn_ids": pl.List(pl.String)})
    return (
        frame.unique(["acc", "txn_id"])
        .sort(["acc", order, "txn_id"], descending=[False, True, False])
        .group_by("acc", maintain_order=True)
        .agg(pl.col("txn_id").head(max_txn_ids).sort().alias("txn_ids"))
    )


def _ev_passthrough(at: pl.DataFrame, horizon: int, max_txn_ids: int) -> pl.DataFrame:
    ins = at.filter(pl.col("side") == "in").select(
        "acc", "t", pl.col("txn_id").alias("in_id"), pl.col("amount").alias("in_amt"), pl.col("cp_hub").alias("in_hub")
    ).sort("t")
    outs = at.filter(pl.col("side") == "out").select("acc", "t", "txn_id", "amount", "cp_hub").sort("t")
    if ins.is_empty() or outs.is_empty():
        return _cap(at.head(0), max_txn_ids)
    pairs = outs.join_asof(
        ins, on="t", by="acc", strategy="backward", tolerance=horizon, check_sortedness=False
    ).drop_nulls("in_id")
    # an outbound forwards the inbound when it does not exceed what arrived (allowing some rounding);
    # money that only passes from one hub to another (salary in, card spending out) is not shown
    pairs = pairs.filter((pl.col("amount") <= pl.col("in_amt") * 1.05) & ~(pl.col("cp_hub") & pl.col("in_hub")))
    long = pl.concat(
        [
            pairs.select("acc", "txn_id", pl.col("amount").alias("w")),
            pairs.select("acc", pl.col("in_id").alias("txn_id"), pl.col("in_amt").alias("w")),
        ]
    )
    return _cap(long, max_txn_ids, "w")


def _ev_busiest(at: pl.DataFrame, side: str, horizon: int, max_txn_ids: int) -> pl.DataFrame:
    sub = at.filter((pl.col("side") == side) & ~pl.col("cp_hub")).sort(["acc", "t"])
    if sub.is_empty():
        return _cap(sub, max_txn_ids)
    # distinct counterparties in each window (end - horizon, end] ending at a transfer of the account
    counts = (
        sub.rolling(index_column="t", period=f"{horizon}i", group_by="acc")
        .agg(pl.col("cp").n_unique().alias("n"))
        .rename({"t": "end"})
    )
    best = counts.sort(["acc", "n", "end"], descending=[False, True, False]).group_by("acc", maintain_order=True).first()
    win = sub.join(best.select("acc", "end"), on="acc").filter(
        (pl.col("t") <= pl.col("end")) & (pl.col("t") > pl.col("end") - horizon)
    )
    return _cap(win, max_txn_ids, "amount")


def _ev_first(at: pl.DataFrame, side: str, max_txn_ids: int) -> pl.DataFrame:
    sub = at.filter((pl.col("side") == side) & ~pl.col("cp_hub")).sort(["acc", "t", "txn_id"])
    first = sub.group_by("acc", "cp", maintain_order=True).first()
    return _cap(first, max_txn_ids, "amount")


def _ev_pattern(at: pl.DataFrame, feature: str, feats: pl.DataFrame, max_txn_ids: int) -> pl.DataFrame:
    sub = at.filter(~pl.col("cp_hub"))
    if feature in feats.columns:
        members = feats.filter(pl.col(feature).cast(pl.Float64).fill_nan(None).fill_null(0) > 0).select(pl.col("idx").alias("cp"))
        involved = sub.join(members, on="cp", how="semi")
        # fall back to all non-hub transfers for accounts whose counterparties show no such value
        missing = sub.join(involved.select("acc").unique(), on="acc", how="anti")
        sub = pl.concat([involved, missing])
    return _cap(sub, max_txn_ids, "amount")


def evidence(
    p: Prepared,
    accounts: Sequence[str],
    feature: str,
    *,
    features: pl.DataFrame | None = None,
    max_txn_ids: int = 25,
    config: FeatureConfig | None = None,
) -> dict[str, list[str]]:
    """The transfer ids behind ``feature`` for each of ``accounts`` (see the module docstring).

    ``features`` (a feature frame with ``account_id``) lets pattern evidence pick the counterparties
    that show the pattern too. Returns account id -> sorted txn ids (possibly empty).
    """
    return _evidence_many(p, accounts, [feature], features=features, max_txn_ids=max_txn_ids, config=config).get(feature, {})


def _evidence_many(
    p: Prepared,
    accounts: Sequence[str],
    feature_names: Sequence[str],
    *,
    features: pl.DataFrame | None,
    max_txn_ids: int,
    config: FeatureConfig | None,
) -> dict[str, dict[str, list[str]]]:
    cfg = config or p.config
    idmap = p.accounts.select("idx", "account_id")
    sel = idmap.filter(pl.col("account_id").is_in(list(accounts)))
    at = _account_tx(p, sel["idx"])
    feats = None
    if features is not None:
        feats = features.join(idmap, on="account_id", how="inner")
    out: dict[str, dict[str, list[str]]] = {}
    at_fresh = None
    for feature in dict.fromkeys(feature_names):
        kind = _evidence_kind(feature)
        if kind == "passthrough":
            ev = _ev_passthrough(at, _horizon_seconds(feature, "72h"), max_txn_ids)
        elif kind == "fanin":
            ev = _ev_busiest(at, "in", _horizon_seconds(feature), max_txn_ids)
        elif kind == "fanout":
            ev = _ev_busiest(at, "out", _horizon_seconds(feature), max_txn_ids)
        elif kind == "first_in":
            ev = _ev_first(at, "in", max_txn_ids)
        elif kind == "first_out":
            ev = _ev_first(at, "out", max_txn_ids)
        elif kind == "structuring":
            band = pl.lit(False)
            for thr in cfg.structuring_thresholds:
                band = band | ((pl.col("amount") >= thr * (1 - cfg.structuring_margin)) & (pl.col("amount") < thr))
            ev = _cap(at.filter(band), max_txn_ids)
        elif kind == "cash":
            ev = _cap(at.filter((pl.col("side") == "out") & pl.col("channel").str.to_uppercase().is_in(list(cfg.cash_channels))), max_txn_ids)
        elif kind == "night":
            lo, hi = cfg.night_hours
            hour = (pl.col("t") % 86400) // 3600
            ev = _cap(at.filter((hour >= lo) & (hour < hi)), max_txn_ids)
        elif kind == "pattern":
            ev = _ev_pattern(at, feature, feats if feats is not None else pl.DataFrame({"idx": []}), max_txn_ids)
        elif kind == "structure":
            if at_fresh is None:
                from mulegraph.scoring.nolabel import fresh_transfers

                at_fresh = _account_tx(p, sel["idx"], fresh_transfers(p))
            ev = _ev_pattern(at_fresh, feature, feats if feats is not None else pl.DataFrame({"idx": []}), max_txn_ids)
        elif kind in ("inbound", "outbound"):
            side = "in" if kind == "inbound" else "out"
            ev = _cap(at.filter((pl.col("side") == side) & ~pl.col("cp_hub")), max_txn_ids)
        else:
            ev = _cap(at.filter(~pl.col("cp_hub")), max_txn_ids)
        named = ev.join(idmap.rename({"idx": "acc"}), on="acc", how="inner")
        out[feature] = dict(zip(named["account_id"].to_list(), named["txn_ids"].to_list()))
    return out


def _texts(feature: str, values: np.ndarray, unusual: np.ndarray) -> list[str]:
    """:func:`reason_text` for many values of one feature (the template is looked up once).

    Templates are formatted with ``value`` only; one that needs more falls back to the description.
    """
    spec = REGISTRY.get(feature)
    word = "lower" if spec is not None and spec.direction < 0 else "higher"
    template = spec.reason if spec is not None else None
    desc = spec.description if spec is not None else feature.replace("_", " ")
    unit = spec.unit if spec is not None else ""
    out = []
    for v, u in zip(values.tolist(), unusual.tolist()):
        head = None
        if template is not None and math.isfinite(v):
            try:
                head = template.format(value=v)
            except (KeyError, ValueError, IndexError, TypeError):
                head = None
        if head is None:
            head = f"{desc}: {_fmt_value(v if math.isfinite(v) else None, unit)}"
        if math.isfinite(u):
            head = f"{head}; {word} than {_floor_pct(u)} of accounts"
        out.append(head)
    return out


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
) -> pl.Series:
    """Reasons for every account of ``features`` (ranked accounts only), as JSON strings.

    ``signals`` lists the candidate reasons; signals naming a feature that is not a column are
    ignored, and a feature named by several signals keeps the first. ``order`` lists account ids
    best first; evidence is gathered for its first ``evidence_top`` accounts when ``prepared`` is
    given. Returns a String series aligned with the rows of ``features``.
    """
    seen: dict[str, Signal] = {}
    for s in signals:
        if s.feature in features.columns and s.feature not in seen:
            seen[s.feature] = s
    sigs = list(seen.values())
    cols = [s.feature for s in sigs]
    n = features.height
    raw = _as_float(features, cols)
    pct = np.column_stack([_share_beyond(raw[:, j]) for j in range(len(cols))]) if cols else raw
    unusual = np.column_stack([directional(raw[:, j], _direction(c)) for j, c in enumerate(cols)]) if cols else raw
    weights = np.array([s.weight for s in sigs], dtype=np.float64)
    # strength = weight x bits of surprise, as in the no-label score: the top 0.1% counts far more
    # than the top 30%
    eps = 1.0 / max(n, 2)
    strength = weights[None, :] * -np.log2(1.0 - unusual + eps) if cols else unusual
    rows, sig = _choose_long(strength, unusual, n_reasons, min_reasons, 0.5)

    texts = np.empty(rows.size, dtype=object)
    for j, c in enumerate(cols):
        m = sig == j
        if m.any():
            r = rows[m]
            texts[m] = _texts(c, raw[r, j], unusual[r, j])

    ids = features["account_id"]
    long = pl.DataFrame(
        {
            "row": rows,
            "code": [sigs[j].code for j in sig.tolist()],
            "feature": [cols[j] for j in sig.tolist()],
            "text": texts.tolist(),
            "value": raw[rows, sig] if rows.size else np.zeros(0),
            "percentile": pct[rows, sig] if rows.size else np.zeros(0),
        },
        schema={"row": pl.Int64, "code": pl.String, "feature": pl.String, "text": pl.String, "value": pl.Float64, "percentile": pl.Float64},
    )
    family = pl.DataFrame(
        {"feature": cols, "family": [REGISTRY[c].family if c in REGISTRY else None for c in cols]},
        schema={"feature": pl.String, "family": pl.String},
    )
    long = long.with_row_index("_pos").join(family, on="feature", how="left")

    ev_frame = pl.DataFrame(schema={"row": pl.Int64, "feature": pl.String, "txn_ids": pl.List(pl.String)})
    if prepared is not None and evidence_top > 0 and order is not None and rows.size:
        top = list(order)[:evidence_top]
        pos = pl.DataFrame({"account_id": ids}).with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        top_rows = pos.filter(pl.col("account_id").is_in(top))
        wanted = long.join(top_rows.select("row"), on="row", how="semi")
        needed = sorted(set(wanted["feature"].to_list()))
        if needed:
            ev = _evidence_many(prepared, top, needed, features=features, max_txn_ids=max_txn_ids, config=prepared.config)
            parts = [
                pl.DataFrame(
                    {"account_id": list(m.keys()), "feature": [f] * len(m), "txn_ids": list(m.values())},
                    schema={"account_id": pl.String, "feature": pl.String, "txn_ids": pl.List(pl.String)},
                )
                for f, m in ev.items()
                if m
            ]
            if parts:
                ev_frame = pl.concat(parts).join(top_rows, on="account_id").select("row", "feature", "txn_ids")
    long = long.join(ev_frame, on=["row", "feature"], how="left").with_columns(
        pl.col("txn_ids").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    encoded = (
        long.sort("_pos")
        .select(
            "row",
            pl.struct(
                "code", "feature", "family", "text",
                pl.col("value").fill_nan(None).round_sig_figs(6),
                pl.col("percentile").fill_nan(None).round_sig_figs(6),
                "txn_ids",
            ).struct.json_encode().alias("j"),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("j").str.join(","))
    )
    out = (
        pl.DataFrame({"row": np.arange(n, dtype=np.int64)})
        .join(encoded, on="row", how="left")
        .sort("row")
        .select(pl.concat_str(pl.lit("["), pl.col("j").fill_null(""), pl.lit("]")).alias("reasons"))
    )
    return out["reasons"]
