"""The no-label mode: rank accounts by documented money-mule typology rules, without any labels.

A bank with no confirmed mules still gets a useful, explainable list. Every rule below encodes one
typology from the domain (see DESIGN.md, "what a money mule looks like") over the label-free
features of :mod:`mulegraph.features`. Nothing here is fitted to a data set: the weights are fixed,
documented numbers, and every feature enters only through its **percentile** among the ranked
accounts (hubs left out), so the rules adapt to the scale of each bank's data by themselves.

How a score is built
--------------------
1. For each feature a rule uses, the account's directional percentile ``u`` (0..1): the share of
   ranked accounts with a strictly lower value (a strictly higher one for features where lower is
   suspicious). An account at the most common value of a zero-inflated feature (no cycles, say)
   gets ``u`` close to 0, so a rule never fires on "nothing".
2. A rule's strength ``s`` combines the percentiles of its features: ``all`` rules take the
   geometric mean (every part of the typology must be present: fan-in *and* first-time payers *and*
   forwarding), ``any`` rules the maximum (alternative views of the same pattern).
3. The strength becomes evidence in "bits of surprise": ``e = -log2(1 - s + 1/n)`` (``n`` ranked
   accounts), so that being in the top 0.1% counts much more than being in the top 30%, and a
   single very unusual typology outweighs many mildly unusual ones. Only evidence above
   :data:`MIN_BITS` (2 bits: the top quarter) counts: ``e' = max(0, e - 2)``.
4. The rule score is ``sum(weight * e') / sum(weight * (log2(n) - 2))``, in 0..1.
5. Optionally (``detector_weight`` w > 0), an IsolationForest over robust-scaled log features
   (seeded with ``random_state``) joins in: the final score is the convex combination
   ``(1 - w) * rule_score + w * p``, ``p`` the percentile of the account's anomaly score.

Rules whose features are all missing from the frame are skipped (``NoLabelScorer.rules_used_``
lists the ones used), so the mode works with any subset of feature families.

One-off relationships
---------------------
The strongest rules look for laundering structures among **one-off relationships**: pairs of
(non-hub) accounts that exchanged exactly one transfer, in either direction, in the scored window
(:func:`fresh_transfers`). Legitimate money mostly moves along standing relationships (salary, rent,
family, regular merchants), while a laundering scheme wires accounts together that have nothing
else to do with each other. :func:`structure_features` runs the pattern search of
:mod:`mulegraph.features.patterns` on those transfers only, with a pattern window of
:data:`STRUCTURE_WINDOW` (14 days: schemes play out over days to weeks), and counts the squares
(4-cycles of the undirected one-off graph: two accounts that share two one-off counterparties),
which every scatter-gather, bipartite and layered scheme closes while unrelated one-off payments
rarely do. :func:`mulegraph.scoring.score_features` adds these columns in the no-label mode.

The rules (code, weight, features) are listed in :data:`RULES`; ``mulegraph score --list-rules``
prints them as a table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sps

from mulegraph.core.errors import FeatureError
from mulegraph.scoring.explain import Signal, _as_float, directional, feature_columns
from mulegraph.features.prepare import Prepared
from mulegraph.features.registry import REGISTRY, FeatureSpec, register
from mulegraph.core.window import parse_duration

__all__ = [
    "Rule",
    "RULES",
    "NoLabelScorer",
    "rules_frame",
    "NOLABEL_VERSION",
    "STRUCTURE_WINDOW",
    "SQUARE_MAX_DEGREE",
    "STRUCTURE_FEATURES",
    "fresh_transfers",
    "structure_features",
]

#: how long a laundering structure may take to play out (first to last hop)
STRUCTURE_WINDOW = "14d"

#: an account with more one-off counterparties than this (a biller, a marketplace seller, a
#: processor below the hub degree) does not count as the corner of a one-off square; it also keeps
#: the square computation linear in the number of one-off links
SQUARE_MAX_DEGREE = 100

#: no-label structure signals: the laundering patterns, searched among one-off relationships only
STRUCTURE_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("fresh_cycle_count", "structure",
                "time-respecting cycles through the account made only of one-off relationships", "count", 1,
                "part of {value:.0f} cycles of one-off transfers between otherwise unrelated accounts"),
    FeatureSpec("fresh_sg_role_count", "structure",
                "scatter-gather structures (any role) made only of one-off relationships", "count", 1,
                "takes part in {value:.0f} scatter-gather structures of one-off transfers"),
    FeatureSpec("fresh_gs_count", "structure",
                "gather-scatter sender-receiver pairs through the account over one-off relationships", "count", 1,
                "gathers from and scatters to one-off counterparties ({value:.0f} pairs)"),
    FeatureSpec("fresh_chain_hops", "structure",
                "pass-through hops forwarding most of an inbound, over one-off relationships", "count", 1,
                "forwards most of a one-off inbound to a one-off payee {value:.0f} times"),
    FeatureSpec("fresh_square_share", "structure",
                "squares closed by one-off relationships (two accounts sharing two one-off counterparties), "
                "per one-off counterparty", "ratio", 1,
                "its one-off counterparties are linked to each other ({value:.2f} squares per counterparty)"),
)
register(*STRUCTURE_FEATURES)

#: version of the rule set; part of ``model_version`` in scores
NOLABEL_VERSION = "nolabel-1"


def fresh_transfers(p: Prepared, window: str = STRUCTURE_WINDOW, max_transfers: int = 1) -> pl.DataFrame:
    """Transfers on short-lived relationships between two non-hub accounts.

    A relationship (an unordered pair of accounts) is short-lived when it has at most
    ``max_transfers`` transfers in the scored window, all within ``window`` of its first one.
    Legitimate payments mostly follow standing relationships (salary, rent, family, regular
    merchants); laundering structures are built from new links between accounts that otherwise
    have nothing to do with each other. Same columns as ``p.tx``.
    """
    w = int(parse_duration(window, name="structure window").total_seconds())
    hubs = p.hub_idx.implode()
    nt = p.tx.filter(~pl.col("src").is_in(hubs) & ~pl.col("dst").is_in(hubs))
    keyed = nt.with_columns(pl.min_horizontal("src", "dst").alias("_lo"), pl.max_horizontal("src", "dst").alias("_hi"))
    short = (
        keyed.group_by("_lo", "_hi")
        .agg(pl.len().alias("_n"), (pl.col("t").max() - pl.col("t").min()).alias("_span"))
        .filter((pl.col("_n") <= max_transfers) & (pl.col("_span") <= w))
    )
    return keyed.join(short.select("_lo", "_hi"), on=["_lo", "_hi"], how="semi").drop("_lo", "_hi")


def _square_share(fresh: pl.DataFrame, n_accounts: int) -> pl.DataFrame:
    """Per account: degree-discounted squares of the undirected short-lived graph, per counterparty.

    A square ``u - w1 - v - w2 - u`` counts ``1 / sqrt((d(w1) - 1) * (d(w2) - 1))`` (``d`` = degree
    in that graph): two customers who both paid the same two busy merchants once close a square of
    little weight, while two accounts linked through two otherwise unconnected intermediaries close
    one of weight 1. (The square root keeps intermediaries that are busy mule hubs visible; a full
    1/degree discount hid them.) Corners ``w`` with more than :data:`SQUARE_MAX_DEGREE` one-off
    counterparties count 0. The sum over squares through ``u`` is divided by ``d(u)``.
    """
    schema = {"idx": pl.UInt32, "fresh_square_share": pl.Float64}
    if fresh.is_empty():
        return pl.DataFrame(schema=schema)
    a = fresh["src"].to_numpy().astype(np.int64)
    b = fresh["dst"].to_numpy().astype(np.int64)
    u = sps.coo_matrix((np.ones(a.size), (a, b)), shape=(n_accounts, n_accounts)).tocsr()
    u = ((u + u.T) > 0).astype(np.float64).tocsr()
    u.setdiag(0)
    u.eliminate_zeros()
    deg = np.asarray(u.sum(axis=1)).ravel()
    wgt = np.where((deg > 1) & (deg <= SQUARE_MAX_DEGREE), 1.0 / np.sqrt(np.maximum(deg - 1.0, 1.0)), 0.0)
    s1 = (u @ sps.diags(wgt) @ u).tocsr()
    s2 = (u @ sps.diags(wgt * wgt) @ u).tocsr()
    s1.setdiag(0)
    s2.setdiag(0)
    pair = s1.multiply(s1) - s2  # (sum of weights)^2 - sum of squared weights, over common neighbours
    squares = np.asarray(pair.sum(axis=1)).ravel() / 2.0
    idx = np.flatnonzero(deg > 0)
    return pl.DataFrame(
        {"idx": idx.astype(np.uint32), "fresh_square_share": np.maximum(squares[idx], 0.0) / deg[idx]},
        schema=schema,
    )


def structure_features(p: Prepared, window: str = STRUCTURE_WINDOW) -> pl.DataFrame:
    """The ``structure`` signals (:data:`STRUCTURE_FEATURES`) for every account of ``p``.

    The pattern search of :mod:`mulegraph.features.patterns` (cycles, scatter-gather,
    gather-scatter, pass-through hops), run on :func:`fresh_transfers` only with ``window`` as the
    pattern window, plus the square share. Returns ``account_id`` and the features; hubs get null.
    """
    from mulegraph.features import patterns

    fresh = fresh_transfers(p, window)
    cfg = dataclasses.replace(p.config, cycle_window=window)
    found = patterns.compute(Prepared(tx=fresh, accounts=p.accounts, config=cfg))
    names = {"cycle_count": "fresh_cycle_count", "sg_role_count": "fresh_sg_role_count",
             "gs_count": "fresh_gs_count", "chain_hops": "fresh_chain_hops"}
    out = (
        p.accounts.select("idx", "account_id", "is_hub")
        .join(found.select("idx", *names).rename(names), on="idx", how="left")
        .join(_square_share(fresh, p.n_accounts), on="idx", how="left")
    )
    cols = [s.name for s in STRUCTURE_FEATURES]
    return out.select(
        "account_id",
        *[pl.when(pl.col("is_hub")).then(None).otherwise(pl.col(c).cast(pl.Float64).fill_null(0.0)).alias(c) for c in cols],
    )


@dataclass(frozen=True)
class Rule:
    """One typology rule: features combined into a strength, with a fixed weight.

    ``features``: the feature names; ``directions``: +1/-1 per feature (default: the registry's
    direction, +1 when unknown); ``combine``: ``"all"`` (geometric mean) or ``"any"`` (maximum).
    """

    code: str
    typology: str
    description: str
    weight: float
    features: tuple[str, ...]
    combine: str = "all"
    directions: tuple[int, ...] | None = None

    def direction_of(self, i: int) -> int:
        if self.directions is not None:
            return self.directions[i]
        spec = REGISTRY.get(self.features[i])
        return 1 if spec is None or spec.direction == 0 else int(spec.direction)


#: The typology rules. Weights follow one domain ordering and are round numbers, not fitted:
#: 1.0 for the defining mule typologies -- multi-party structures of one-off relationships (closed
#: squares, which every scatter-gather, bipartite and layered scheme makes; time-respecting
#: scatter-gather), collecting and forwarding (fan-in from first-time payers then pass-through;
#: rapid pass-through of matching amounts; layering chains); 0.5 for the other one-off structures
#: (gather-scatter, forwarding hops, cycles); 0.25 for behaviours that many legitimate accounts show
#: too (fan-in or fan-out alone, patterns over all relationships, structuring, dormancy then burst,
#: a fast-forwarding neighbourhood). benchmarks/RESULTS.md records the variants that were compared.
RULES: tuple[Rule, ...] = (
    Rule(
        "ONE_OFF_SQUARES",
        "scatter-gather / bipartite / layering",
        "Its one-off counterparties are linked to each other by one-off transfers too (closed squares)",
        1.0,
        ("fresh_square_share",),
    ),
    Rule(
        "ONE_OFF_SCATTER_GATHER",
        "scatter-gather",
        "Source, intermediary or target of a time-respecting scatter-gather over one-off transfers",
        1.0,
        ("fresh_sg_role_count",),
    ),
    Rule(
        "ONE_OFF_GATHER_SCATTER",
        "gather-scatter",
        "Gathers from several one-off senders, then scatters to several one-off receivers",
        0.5,
        ("fresh_gs_count",),
    ),
    Rule(
        "ONE_OFF_FORWARDING",
        "stack / layering",
        "Forwards most of a one-off inbound transfer to a one-off payee",
        0.5,
        ("fresh_chain_hops",),
    ),
    Rule(
        "ONE_OFF_CYCLE",
        "cycle",
        "Money goes round a time-respecting cycle of one-off transfers through the account",
        0.5,
        ("fresh_cycle_count",),
    ),
    Rule(
        "FANIN_FORWARD",
        "fan-in + pass-through",
        "Many senders, mostly first-time payers, in a short window, and the money leaves again soon",
        1.0,
        ("fanin_max_72h", "first_time_in_share", "passthrough_share_72h"),
    ),
    Rule(
        "RAPID_PASSTHROUGH",
        "pass-through",
        "Forwards most of what it receives within a day, in amounts matching what came in",
        1.0,
        ("passthrough_share_24h", "amount_match_share"),
    ),
    Rule(
        "LAYERING_CHAIN",
        "stack / layering",
        "Sits on a time-respecting chain of accounts that each forward most of what they receive",
        1.0,
        ("chain_depth",),
    ),
    Rule(
        "CYCLE",
        "cycle",
        "Money leaves the account and comes back through other accounts within the cycle window",
        0.25,
        ("cycle_count",),
    ),
    Rule(
        "SCATTER_GATHER",
        "scatter-gather",
        "Takes part in a scatter-gather structure (one source, several intermediaries, one target)",
        0.25,
        ("sg_role_count",),
    ),
    Rule(
        "GATHER_SCATTER",
        "gather-scatter",
        "Gathers from several senders and then scatters to several receivers",
        0.25,
        ("gs_count",),
    ),
    Rule("FAN_IN", "fan-in", "Unusually many distinct senders in a short window", 0.25, ("fanin_max_72h",)),
    Rule("FAN_OUT", "fan-out", "Unusually many distinct receivers in a short window", 0.25, ("fanout_max_72h",)),
    Rule("STRUCTURING", "structuring", "Many amounts just below a reporting threshold", 0.25, ("structuring_share",)),
    Rule(
        "DORMANT_BURST",
        "dormant then burst",
        "A long quiet period followed by a burst of activity",
        0.25,
        ("max_dormancy_d", "burst_ratio"),
    ),
    Rule(
        "MULE_NEIGHBOURHOOD",
        "network",
        "Its counterparties themselves pass money through quickly",
        0.25,
        ("nbr_max_passthrough_24h", "nbr_mean_passthrough_24h"),
        combine="any",
    ),
)

#: evidence below this many bits (the top 25% of accounts) does not count, so that many mildly
#: unusual rules cannot add up to a high score
MIN_BITS = 2.0


def rules_frame(rules: Sequence[Rule] = RULES) -> pl.DataFrame:
    """The rules as a table: code, typology, weight, combine, features, description."""
    return pl.DataFrame(
        {
            "code": [r.code for r in rules],
            "typology": [r.typology for r in rules],
            "weight": [r.weight for r in rules],
            "combine": [r.combine for r in rules],
            "features": [", ".join(r.features) for r in rules],
            "description": [r.description for r in rules],
        }
    )


@dataclass
class NoLabelScorer:
    """Score accounts with the typology rules (plus an optional seeded IsolationForest).

    ``fit(features)`` reads the population of ranked accounts (percentiles, the detector);
    ``score(features)`` returns ``account_id``, ``score`` and one ``rule_<CODE>`` strength column per
    rule used. Both take a feature frame from :func:`mulegraph.features.compute_features` with hubs
    already removed.
    """

    rules: Sequence[Rule] = RULES
    min_bits: float = MIN_BITS
    detector_weight: float = 0.0
    random_state: int = 0
    n_estimators: int = 200
    rules_used_: list[Rule] = field(default_factory=list, init=False)

    def fit(self, features: pl.DataFrame) -> "NoLabelScorer":
        """Choose the rules that have features in ``features``; fit the detector when asked."""
        if "account_id" not in features.columns:
            raise FeatureError("the feature frame has no account_id column; compute features first.")
        self.rules_used_ = [r for r in self.rules if any(f in features.columns for f in r.features)]
        self.columns_ = feature_columns(features)
        self.detector_ = None
        if self.detector_weight > 0 and self.columns_ and features.height >= 10:
            from sklearn.ensemble import IsolationForest

            logs = self._log_matrix(features)
            with np.errstate(all="ignore"):
                self.center_ = np.nan_to_num(np.nanmedian(logs, axis=0))
                iqr = np.nanpercentile(logs, 75, axis=0) - np.nanpercentile(logs, 25, axis=0)
            self.scale_ = np.where(np.nan_to_num(iqr) > 0, np.nan_to_num(iqr), 1.0)
            x = self._detector_matrix(features)
            self.detector_ = IsolationForest(
                n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=1
            ).fit(x)
        return self

    def _log_matrix(self, features: pl.DataFrame) -> np.ndarray:
        x = _as_float(features, self.columns_)
        return np.sign(x) * np.log1p(np.abs(x))

    def _detector_matrix(self, features: pl.DataFrame) -> np.ndarray:
        """Signed log1p of the features, centred on the fitted median and scaled by the IQR."""
        x = (self._log_matrix(features) - self.center_) / self.scale_
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def rule_strengths(self, features: pl.DataFrame) -> dict[str, np.ndarray]:
        """Rule code -> strength (0..1) per row of ``features``."""
        out: dict[str, np.ndarray] = {}
        for r in self.rules_used_:
            parts = []
            for i, f in enumerate(r.features):
                if f in features.columns:
                    x = _as_float(features, [f])[:, 0]
                    parts.append(np.nan_to_num(directional(x, r.direction_of(i)), nan=0.0))
            if not parts:
                continue
            m = np.column_stack(parts)
            if r.combine == "any":
                s = m.max(axis=1)
            else:
                s = np.exp(np.mean(np.log(np.clip(m, 1e-12, 1.0)), axis=1))
                s = np.where(m.min(axis=1) <= 0, 0.0, s)
            out[r.code] = s
        return out

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """``account_id``, ``score`` (0..1) and ``rule_<CODE>`` strengths for each row."""
        if not hasattr(self, "columns_"):
            self.fit(features)
        n = features.height
        strengths = self.rule_strengths(features)
        eps = 1.0 / max(n, 2)
        cap = math.log2(1.0 / eps)
        floor = min(self.min_bits, cap / 2.0)
        total = np.zeros(n)
        wsum = 0.0
        for r in self.rules_used_:
            if r.code in strengths:
                e = -np.log2(1.0 - strengths[r.code] + eps)
                total += r.weight * np.clip(e - floor, 0.0, cap - floor)
                wsum += r.weight * (cap - floor)
        rule_score = total / wsum if wsum > 0 else np.zeros(n)
        score = rule_score
        if self.detector_ is not None:
            anomaly = -self.detector_.score_samples(self._detector_matrix(features))
            pa = directional(anomaly, 1)
            score = (1.0 - self.detector_weight) * rule_score + self.detector_weight * pa
        cols = {"account_id": features["account_id"], "score": np.clip(score, 0.0, 1.0)}
        for code, s in strengths.items():
            cols[f"rule_{code}"] = s
        return pl.DataFrame(cols)

    def signals(self) -> list[Signal]:
        """Candidate reasons: each feature of each rule used, under the rule's code, by weight."""
        sigs = []
        for r in sorted(self.rules_used_, key=lambda r: -r.weight):
            for f in r.features:
                sigs.append(Signal(code=r.code, feature=f, weight=r.weight))
        return sigs
