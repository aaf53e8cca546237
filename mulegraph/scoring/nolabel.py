"""The no-label mode: rank accounts by documented money-mule typology rules, without any labels.

A bank with no confirmed mules still gets a useful, explainable list. Every rule below encodes one
typology from the domain (see DESIGN.md, "what a money mule looks like") over the label-free
features of :mod:`mulegraph.features`. Nothing is fitted at scoring time: the weights are fixed,
documented powers of two (chosen once on the training accounts of two development sets, see
:data:`RULES`), and every feature enters only through its **percentile** among the ranked
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

Fitting is explicit: :meth:`NoLabelScorer.fit` reads the population the percentiles are taken
among (the ranked accounts of the window), :meth:`NoLabelScorer.score` scores rows against it, and
a scorer that was not fitted refuses to score
(:class:`~mulegraph.scoring.signals.NotFittedModelError`).

One-off relationships
---------------------
The strongest rules look for laundering structures among **one-off relationships**: pairs of
(non-hub) accounts that exchanged exactly one transfer, in either direction, in the scored window.
The ``structure`` features of :mod:`mulegraph.features.structure` (re-exported here) search the
laundering patterns among those transfers only; :func:`mulegraph.scoring.score.score_features`
adds these columns in the no-label mode.

Collection accounts
-------------------
``ONE_OFF_COLLECTION`` reads the ``collection`` features of :mod:`mulegraph.features.collection`
(re-exported here): many distinct one-off senders within 14 days, few payments of the account's
own and few everyday payments to hubs (the money leaves in a few lumps rather than being lived on).
They are no-label features only: :func:`mulegraph.scoring.score.score_features` adds them in the
no-label mode, and the supervised model never reads them.

The rules (code, weight, features) are listed in :data:`RULES`; ``mulegraph score --list-rules``
prints them as a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator

from mulegraph.core.errors import FeatureError
from mulegraph.features.collection import COLLECTION_FEATURES, collection_features
from mulegraph.features.prepare import Prepared
from mulegraph.features.registry import REGISTRY
from mulegraph.features.structure import (
    SQUARE_MAX_DEGREE,
    STRUCTURE_FEATURES,
    STRUCTURE_WINDOW,
    fresh_transfers,
    structure_features,
)
from mulegraph.scoring.signals import (
    Signal,
    as_float_matrix,
    directional,
    feature_columns,
    require_fitted,
    with_account_columns,
)

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
    "COLLECTION_FEATURES",
    "collection_features",
    "with_rule_columns",
]

def with_rule_columns(features: pl.DataFrame, prepared: Prepared | None) -> pl.DataFrame:
    """``features`` with the one-off structure and collection columns the rules read, computed
    from ``prepared`` (the window's transfers) where the frame lacks them; as it is without
    ``prepared``. The columns are set beside the others, which are not copied."""
    if prepared is None:
        return features
    missing = [f.name for f in STRUCTURE_FEATURES if f.name not in features.columns]
    if missing:
        features = with_account_columns(features, structure_features(prepared).select("account_id", *missing))
    missing = [f.name for f in COLLECTION_FEATURES if f.name not in features.columns]
    if missing:
        features = with_account_columns(features, collection_features(prepared).select("account_id", *missing))
    return features


#: version of the rule set; part of ``model_version`` in scores
NOLABEL_VERSION = "nolabel-3"


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


#: The typology rules. Weights are powers of two, chosen on the *training* accounts of both
#: AMLGentex development sets together (geometric mean of their PR-AUCs over a small grid of
#: group weights, keeping the planted-mule checks of mulegraph.synth data passing; the test
#: accounts were not used): 4.0 for collection accounts (many one-off payers within two weeks,
#: few payments of its own and little everyday spending: the fan-in typology's collecting end,
#: and the strongest single signal on the easy set; 8.0 lost on the hard set); 2.0 for closed
#: squares of one-off relationships (what every scatter-gather, bipartite and layered scheme
#: makes, and the strongest single signal on the hard set); 1.0 for time-respecting
#: scatter-gather over one-off transfers and the forwarding typologies (fan-in from first-time
#: payers then pass-through; rapid pass-through of matching amounts; layering chains); 0.5 for
#: dormancy then burst; 0.125 for the other one-off structures and for behaviours many
#: legitimate accounts show too (fan-in or fan-out alone, patterns over all relationships,
#: structuring, a fast-forwarding neighbourhood), which mostly add noise on data where every
#: account forwards its salary. benchmarks/RESULTS.md ("No-label mode" and "Few known mules")
#: records the grid, the variants compared and the figures (nolabel-2 before nolabel-3: no
#: collection rule, dormancy 1.0).
RULES: tuple[Rule, ...] = (
    Rule(
        "ONE_OFF_SQUARES",
        "scatter-gather / bipartite / layering",
        "Its one-off counterparties are linked to each other by one-off transfers too (closed squares)",
        2.0,
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
        "ONE_OFF_COLLECTION",
        "fan-in / collection account",
        "Paid by many one-off senders within two weeks, while making few payments of its own and few "
        "everyday payments to merchants and billers",
        4.0,
        ("oneoff_fanin_14d", "few_payments", "everyday_payments"),
    ),
    Rule(
        "ONE_OFF_GATHER_SCATTER",
        "gather-scatter",
        "Gathers from several one-off senders, then scatters to several one-off receivers",
        0.125,
        ("fresh_gs_count",),
    ),
    Rule(
        "ONE_OFF_FORWARDING",
        "stack / layering",
        "Forwards most of a one-off inbound transfer to a one-off payee",
        0.125,
        ("fresh_chain_hops",),
    ),
    Rule(
        "ONE_OFF_CYCLE",
        "cycle",
        "Money goes round a time-respecting cycle of one-off transfers through the account",
        0.125,
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
        0.125,
        ("cycle_count",),
    ),
    Rule(
        "SCATTER_GATHER",
        "scatter-gather",
        "Takes part in a scatter-gather structure (one source, several intermediaries, one target)",
        0.125,
        ("sg_role_count",),
    ),
    Rule(
        "GATHER_SCATTER",
        "gather-scatter",
        "Gathers from several senders and then scatters to several receivers",
        0.125,
        ("gs_count",),
    ),
    Rule("FAN_IN", "fan-in", "Unusually many distinct senders in a short window", 0.125, ("fanin_max_72h",)),
    Rule("FAN_OUT", "fan-out", "Unusually many distinct receivers in a short window", 0.125, ("fanout_max_72h",)),
    Rule("STRUCTURING", "structuring", "Many amounts just below a reporting threshold", 0.125, ("structuring_share",)),
    Rule(
        "DORMANT_BURST",
        "dormant then burst",
        "A long quiet period followed by a burst of activity",
        0.5,
        ("max_dormancy_d", "burst_ratio"),
    ),
    Rule(
        "MULE_NEIGHBOURHOOD",
        "network",
        "Its counterparties themselves pass money through quickly",
        0.125,
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


class NoLabelScorer(BaseEstimator):
    """Score accounts with the typology rules (plus an optional seeded IsolationForest).

    ``fit(features)`` reads the population of ranked accounts: it chooses the rules whose features
    are present (``rules_used_``) and fits the detector when ``detector_weight > 0``.
    ``score(features)`` returns ``account_id``, ``score`` and one ``rule_<CODE>`` strength column per
    rule used; percentiles are taken among the rows it is given, so score the whole population in
    one call. Both take a feature frame from :func:`mulegraph.features.compute_features` with hubs
    already removed. Scoring, :meth:`rule_strengths` and :meth:`signals` refuse an unfitted scorer
    with :class:`~mulegraph.scoring.signals.NotFittedModelError` (a scikit-learn ``NotFittedError``).

    Examples
    --------
    >>> scorer = NoLabelScorer().fit(ranked)  # doctest: +SKIP
    >>> scores = scorer.score(ranked)  # doctest: +SKIP
    """

    def __init__(
        self,
        rules: Sequence[Rule] = RULES,
        min_bits: float = MIN_BITS,
        detector_weight: float = 0.0,
        random_state: int = 0,
        n_estimators: int = 200,
    ) -> None:
        self.rules = rules
        self.min_bits = min_bits
        self.detector_weight = detector_weight
        self.random_state = random_state
        self.n_estimators = n_estimators

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "rules_used_")

    def _check_fitted(self) -> None:
        require_fitted(self, "call fit(features) with the ranked accounts of the window first")

    def fit(self, features: pl.DataFrame) -> "NoLabelScorer":
        """Choose the rules that have features in ``features``; fit the detector when asked."""
        if "account_id" not in features.columns:
            raise FeatureError("the feature frame has no account_id column; compute features first.")
        columns = feature_columns(features)
        self.columns_ = columns
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
        # set last: a scorer is fitted once this exists
        self.rules_used_ = [r for r in self.rules if any(f in features.columns for f in r.features)]
        return self

    def _log_matrix(self, features: pl.DataFrame) -> np.ndarray:
        x = as_float_matrix(features, self.columns_)
        return np.sign(x) * np.log1p(np.abs(x))

    def _detector_matrix(self, features: pl.DataFrame) -> np.ndarray:
        """Signed log1p of the features, centred on the fitted median and scaled by the IQR."""
        x = (self._log_matrix(features) - self.center_) / self.scale_
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def rule_strengths(self, features: pl.DataFrame) -> dict[str, np.ndarray]:
        """Rule code -> strength (0..1) per row of ``features``."""
        self._check_fitted()
        out: dict[str, np.ndarray] = {}
        for r in self.rules_used_:
            parts = []
            for i, f in enumerate(r.features):
                if f in features.columns:
                    x = as_float_matrix(features, [f])[:, 0]
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
        self._check_fitted()
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
        self._check_fitted()
        sigs = []
        for r in sorted(self.rules_used_, key=lambda r: -r.weight):
            for f in r.features:
                sigs.append(Signal(code=r.code, feature=f, weight=r.weight))
        return sigs
