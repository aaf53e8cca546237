"""One frozen configuration object, loaded from TOML; the only place environment variables are read.

A ``mulegraph.toml`` has one table per stage::

    [store]
    path = "store"

    [features]
    fan_windows = ["24h", "72h"]

    [model]
    ...

    [run]
    ...

    [report]
    ...

    [engine]
    kind = "local"          # or "dask"

Unknown keys are an error (a typo must not silently fall back to a default), and so is a number
outside its allowed range or a duration that is not one (:data:`LIMITS`, checked whenever a
:class:`Config` is built: from a file, a dict, or :meth:`Config.replace` with command-line values).
The resolved config is written next to every run's outputs (:meth:`Config.to_dict`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mulegraph.core.errors import ConfigError, InputError

__all__ = [
    "StoreConfig",
    "FeatureConfig",
    "ModelConfig",
    "RunConfig",
    "ReportConfig",
    "EngineConfig",
    "ENGINE_KINDS",
    "DEFAULT_SHARD_ACCOUNTS",
    "Config",
    "Limit",
    "LIMITS",
    "DEFAULT_CONFIG_FILE",
    "load_config",
    "discover_config",
]

#: the settings file a command reads from the working directory when no --config is given
DEFAULT_CONFIG_FILE = "mulegraph.toml"


@dataclass(frozen=True)
class StoreConfig:
    path: str = "store"
    mapping: str = "canonical"


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of the feature engine (see ``mulegraph.features``)."""

    #: sliding windows for "most distinct counterparties in any window"
    fan_windows: tuple[str, ...] = ("24h", "72h")
    #: horizons for "share of inbound value that leaves again within"
    passthrough_windows: tuple[str, ...] = ("24h", "72h")
    #: reporting thresholds T: an amount in [T*(1-structuring_margin), T) counts as structuring
    structuring_thresholds: tuple[float, ...] = (10000.0,)
    structuring_margin: float = 0.1
    #: an amount is "round" when it is a multiple of this (in major units)
    round_unit: float = 100.0
    #: time-respecting cycles: all hops within this window, at most this many accounts
    cycle_window: str = "7d"
    max_cycle_length: int = 5
    #: an account with more distinct counterparties than this is a hub (processor, settlement,
    #: external pseudo-account): it keeps its own per-account features but is not expanded in
    #: pattern search, components or 2-hop aggregates
    hub_degree: int = 1000
    #: accounts always treated as hubs (and never ranked), e.g. ["EXT_SOURCE", "EXT_SINK"]
    hub_accounts: tuple[str, ...] = ()
    #: night-time hours [start, end) in UTC for the night-time share
    night_hours: tuple[int, int] = (0, 6)
    #: channel values that mean a cash withdrawal
    cash_channels: tuple[str, ...] = ("CASH", "ATM", "CASH_OUT", "CASH-OUT")
    #: split signature: k outbound transfers after one inbound summing to [low, high] of it
    split_low: float = 0.9
    split_high: float = 1.0
    #: pattern search (``mulegraph.features.patterns``; uses ``cycle_window`` for every pattern):
    #: a hop is amount-consistent when it carries between ``pattern_keep_low`` and 1.0 times the
    #: previous hop's amount; layering chains follow hops that forward at least
    #: ``chain_keep_low`` of what arrived, counted up to ``chain_cap`` transfers on each side
    pattern_keep_low: float = 0.8
    chain_keep_low: float = 0.7
    chain_cap: int = 8
    #: an account through which more 2-hop paths would pass than this (estimated from counts
    #: before any join) is left out of pattern search like a hub, so one busy account cannot make
    #: the search quadratic
    pattern_max_paths: int = 200_000


@dataclass(frozen=True)
class ModelConfig:
    """Settings of training and scoring (see ``mulegraph.model``)."""

    random_state: int = 0
    #: folds for the settings search and calibration
    cv_folds: int = 5
    #: gradient boosting: candidate tree sizes (chosen by cross-validation) and fixed settings
    max_leaf_nodes: tuple[int, ...] = (4, 7, 15)
    learning_rate: float = 0.05
    #: most boosting rounds; the number used is chosen by cross-validation (checked every 10)
    max_iter: int = 400
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    #: share of features each split may look at (below 1 adds randomness from random_state)
    max_features: float = 0.7
    #: class weighting: "none" or "balanced" (balanced makes scikit-learn bin with weights: about 10x slower)
    class_weight: str = "none"
    #: models averaged, each with its own seed derived from random_state
    n_models: int = 3
    #: folds for the out-of-fold closeness features of training accounts (more folds: training
    #: features closer to scoring time, when every training label is known)
    proximity_folds: int = 10
    #: share of the training mules that seed the training accounts' closeness features (each
    #: account still reads only the seeds outside its own fold): below 1 the trees learn closeness
    #: as it looks when only some mules are known at scoring, as at a bank that scores with a model
    #: from elsewhere and a few confirmed mules of its own. "auto" = 1 (every training mule seeds),
    #: and 0.5 for a portable model (train --portable); a number above 0 and at most 1 forces it
    closeness_seed_share: str | float = "auto"
    #: closeness to known mules: hop cap, PageRank continuation, self-exclusion groups
    max_hops: int = 4
    ppr_alpha: float = 0.85
    ppr_groups: int = 10
    #: a one-off transfer with a known mule counts as "synced" when that mule made one-off
    #: transfers with other known mules within this time of it; the relay features read a
    #: counterparty's one-off transfers within this time of the account's own
    sync_window: str = "7d"
    #: train on the one-off structure features too (mulegraph.features.structure: laundering
    #: patterns and closed squares among one-off relationships), computed from the training window;
    #: a model scores with the feature columns it was trained on, whatever this says
    structure_features: bool = True
    #: train on the label-free features of these families only (registered feature families, e.g.
    #: ["structure"] for a model of who pays whom alone); empty (the default): every family. The
    #: closeness to known mules is always among the features, the structure features only when
    #: "structure" is named (and structure_features is on). A model scores with the columns it was
    #: trained on, whatever this says
    families: tuple[str, ...] = ()
    #: the share of the mules among the labelled accounts that the labels are believed to name;
    #: below 1 the labels are read as positive and unlabelled (mulegraph.scoring.pu): a labelled
    #: non-mule that looks like the labelled mules counts partly as a mule. 1: every mule is labelled
    known_mule_share: float = 1.0
    #: positive-unlabelled training (known_mule_share below 1): rounds of estimating the hidden
    #: mules; each round after the first re-estimates them from the previous round's held-out
    #: scores and runs the settings search once more (one more search per round)
    pu_rounds: int = 1
    #: train on the no-label mode's score too (one more column, "nolabel_rule_score": the typology
    #: rules of mulegraph.scoring.nolabel, percentiles read among the window's non-hub accounts;
    #: recomputed at scoring, and a model refuses to score under another rule version): "auto" =
    #: only with known_mule_share below 1 (few labels, where the rules' fixed weights carry what a
    #: few dozen mules cannot teach the trees), "on", "off"
    nolabel_feature: str = "auto"
    #: score as a blend with the no-label mode's score (mulegraph.scoring.blend: sigmoid(w * logit(rank
    #: no-label) + (1 - w) * logit(rank model)), w recorded in the model card and applied wherever the
    #: model scores): "auto" = 0.5 only with known_mule_share below 1, a number from 0 to 1 forces w,
    #: "off". A blended score is a rank share among the scored accounts, not a probability
    nolabel_blend: str | float = "auto"
    #: train on the neighbours' scores too (mulegraph.scoring.stacking: a first-stage model scores
    #: every account, the model reads the highest, summed and top-share scores of each account's
    #: one-off and other counterparties; out-of-fold in training, so about 6 times the training
    #: time, and scoring scores the window twice); off by default for that cost
    neighbour_scores: bool = False
    #: permutation-importance repeats stored in the model card (0 = skip)
    importance_repeats: int = 3
    #: up to this many labelled accounts, every one trains the trees; above it every mule is kept
    #: and the non-mules are sampled (per CV fold, seeded by random_state), each kept non-mule
    #: weighted by the inverse of its fold's sampling rate in the held-out scores and calibration
    sample_above: int = 20_000
    #: non-mules kept per mule when sampling (never fewer than sample_above accounts in all)
    negatives_per_mule: float = 5.0
    #: early stopping: a tree size stops boosting when the mean held-out average precision has not
    #: improved by more than early_stopping_tol for this many evaluations (one every 10 rounds);
    #: 0 fits every size to max_iter
    n_iter_no_change: int = 10
    early_stopping_tol: float = 0.0001
    #: the settings search tries the tree sizes in the order given and stops at the first that does
    #: not beat the best so far by more than this much mean held-out average precision
    search_tol: float = 0.001
    #: threads for boosting (OpenMP) and linear algebra while training and scoring; None: the
    #: cores this process may use (never more)
    threads: int | None = None
    #: a file holding the key that signs model folders and is checked when they are loaded
    #: (HMAC-SHA256, at least 32 bytes; see mulegraph.core.keys); when not set, the key itself may
    #: come from the MULEGRAPH_MODEL_KEY environment variable. Never written into a model card.
    signing_key_file: str | None = None

    def signing_key_source(self) -> tuple[str, str] | None:
        """Where the model signing key comes from: ``("file", path)`` for ``signing_key_file``, else
        ``("env", key)`` when ``MULEGRAPH_MODEL_KEY`` is set, else None (read by mulegraph.core.keys)."""
        if self.signing_key_file:
            return ("file", self.signing_key_file)
        key = os.environ.get("MULEGRAPH_MODEL_KEY")
        return ("env", key) if key else None


@dataclass(frozen=True)
class RunConfig:
    """Settings of the nightly run (see ``mulegraph.pipeline``)."""

    #: folder where new exports land (CSV / Parquet); each run ingests the ones not seen before
    inbox: str = "inbox"
    #: where run folders ``<run_id>/`` and the ``latest`` pointer live
    runs_dir: str = "runs"
    #: features and scores cover this window ending at the newest transfer
    window: str = "30d"
    #: model folder (``mulegraph train``); None scores in the no-label mode
    model: str | None = None
    #: at most this many alerts per run (the daily alert budget)
    alert_budget: int = 50
    #: only accounts scoring at least this are alerted (None: the budget alone decides)
    alert_threshold: float | None = None
    #: an account an investigator cleared is alerted again only when its score rose by more than
    #: this since the last run before the clearing decision
    cleared_margin: float = 0.1
    #: accounts for which the run keeps the counterparty flows drawn in the report
    flow_accounts: int = 10
    #: a file of known accounts (CSV or Parquet: ``account_id``, optionally ``is_mule``) whose
    #: mules seed the model's closeness features every run, as ``--known`` does; needs a model
    known: str | None = None
    #: consortium lists of keyed hashes (``mulegraph share export``) matched every run, as
    #: ``--shared-list`` does; need ``key_file`` and a model
    shared_lists: tuple[str, ...] = ()
    #: the file holding the consortium key the shared lists were made with (``--key-file``)
    key_file: str | None = None
    #: a model scoring a store it was not trained on (a portable model) is blended with the local
    #: no-label score: this weight of the no-label score (0-1), "auto" (chosen from the seeds'
    #: mules; 0.75 with fewer than 4 of them) or "off", as ``score --elsewhere-blend`` does
    elsewhere_blend: str | float = "auto"


@dataclass(frozen=True)
class ReportConfig:
    """Settings of reports (see ``mulegraph.report``)."""

    top: int = 50
    #: pseudonymise account ids in reports with a keyed hash; the key comes from the
    #: MULEGRAPH_PSEUDONYM_KEY environment variable when not set here
    pseudonymise: bool = False
    pseudonym_key: str | None = None
    #: coarsen reports: amounts to 2 significant figures, timestamps to dates (see mulegraph.report.coarsen)
    coarsen: bool = False
    #: feature drift (PSI against the previous run) above this is flagged in reports
    psi_warning: float = 0.25
    #: counterparties drawn per side in a flow picture (the rest are summed into one node)
    flow_counterparties: int = 8

    def resolved_key(self) -> str | None:
        """The pseudonym key: this section's ``pseudonym_key``, else ``MULEGRAPH_PSEUDONYM_KEY``."""
        return self.pseudonym_key or os.environ.get("MULEGRAPH_PSEUDONYM_KEY") or None


#: the engines that can compute a window's features (see ``mulegraph.engine``)
ENGINE_KINDS: tuple[str, ...] = ("local", "dask")
#: accounts per shard when ``[engine] shard_accounts`` is not set: a shard of a 5M-transfer window
#: (about 500k accounts) then holds about a quarter of its transfers. The local engine computes a
#: window whose ingested files hold more accounts than this by shards, a smaller one at once.
DEFAULT_SHARD_ACCOUNTS = 125_000
_SCHEDULER = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss|inproc)://)?\S+")


@dataclass(frozen=True)
class EngineConfig:
    """Where a window's features are computed (see ``mulegraph.engine``).

    ``kind = "local"`` computes in this process: one shard of accounts after another when
    ``shard_accounts`` is set or the window is large (more than ``DEFAULT_SHARD_ACCOUNTS``
    accounts), else the whole window at once. ``kind = "dask"`` runs the shards as
    tasks on a Dask cluster: the one whose scheduler listens at ``scheduler`` (e.g.
    ``"tcp://10.0.0.5:8786"``), or, when ``scheduler`` is empty, a local cluster sized to the
    machine. Both give identical features.
    """

    kind: str = "local"
    scheduler: str = ""
    #: accounts per shard (memory per task is set by it); unset: ``DEFAULT_SHARD_ACCOUNTS``, and
    #: with the dask engine at least two shards per worker
    shard_accounts: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENGINE_KINDS:
            raise ConfigError(
                f"[engine] kind must be one of {', '.join(ENGINE_KINDS)}, e.g. kind = \"dask\". Got {self.kind!r} instead."
            )
        if self.scheduler and not _SCHEDULER.fullmatch(self.scheduler):
            raise ConfigError(
                f"[engine] scheduler must be a Dask scheduler address such as \"tcp://10.0.0.5:8786\". "
                f"Got {self.scheduler!r} instead."
            )
        if self.scheduler and self.kind != "dask":
            raise ConfigError(
                "[engine] scheduler is set but kind is \"local\"; set kind = \"dask\" to use the cluster, "
                "or leave scheduler out."
            )
        if self.shard_accounts is not None and (isinstance(self.shard_accounts, bool) or self.shard_accounts < 1):
            raise ConfigError(
                f"[engine] shard_accounts must be a positive number of accounts, e.g. shard_accounts = "
                f"{DEFAULT_SHARD_ACCOUNTS}. Got {self.shard_accounts!r} instead."
            )


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        for section, limits in LIMITS.items():
            values = getattr(self, section)
            for name, limit in limits.items():
                limit.check(getattr(values, name), section, name)
        f = self.features
        if _is_number(f.split_low) and _is_number(f.split_high) and f.split_low > f.split_high:
            raise ConfigError(
                f"[features] split_low ({f.split_low}) must not be above split_high ({f.split_high}); fix the config."
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["report"].get("pseudonym_key"):
            d["report"]["pseudonym_key"] = "***"
        return d

    def replace(self, section: str, **changes: Any) -> "Config":
        """A copy with some fields of one section changed (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: the longest duration any setting or option accepts (see :func:`mulegraph.core.window.parse_duration`)
MAX_DURATION_DAYS = 36_500


@dataclass(frozen=True)
class Limit:
    """The values one setting allows: a number in ``[lo, hi]`` (each end open when ``*_open``), a
    duration (``duration=True``; ``"all"`` too when ``all_ok``), or one of ``choices``.

    A tuple setting is checked value by value (and has ``size`` values when given). ``option`` is
    the command-line option that sets it, named in the message.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    duration: bool = False
    all_ok: bool = False
    choices: tuple[str, ...] = ()
    size: int | None = None
    option: str | None = None

    def describe(self) -> str:
        """The allowed values in words, e.g. ``a number from 0 to 1``."""
        if self.duration:
            text = f"a positive duration such as 24h, 72h, 30d or 2w, at most {MAX_DURATION_DAYS}d (100 years)"
            return text + (", or 'all'" if self.all_ok else "")
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        whole = float(self.lo).is_integer() and float(self.hi).is_integer() and not (self.lo_open or self.hi_open)
        lo, hi = (f"{int(b)}" if float(b).is_integer() else f"{b}" for b in (self.lo, self.hi))
        if whole:
            return f"between {lo} and {hi}"
        return f"{'above' if self.lo_open else 'at least'} {lo} and {'below' if self.hi_open else 'at most'} {hi}"

    def allows(self, v: Any) -> bool:
        """True when ``v`` is allowed (values of another type pass: the type is checked elsewhere)."""
        if self.duration:
            if not isinstance(v, str):
                return True
            if self.all_ok and v.strip().lower() == "all":
                return True
            from mulegraph.core.window import parse_duration  # polars is not needed to read a config

            try:
                parse_duration(v)
            except InputError:
                return False
            return True
        if self.choices:
            return not isinstance(v, str) or v in self.choices
        if not _is_number(v):
            return True
        if v != v:  # NaN
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def check(self, value: Any, section: str, name: str) -> None:
        """Raise :class:`ConfigError` naming the setting and the allowed values when ``value`` is not allowed."""
        where = f"[{section}] {name}" + (f" ({self.option})" if self.option else "")
        if isinstance(value, (tuple, list)):
            if self.size is not None and len(value) != self.size:
                raise ConfigError(f"{where} must hold {self.size} values, each {self.describe()}; got {list(value)!r}.")
            bad = [v for v in value if not self.allows(v)]
            if bad:
                raise ConfigError(f"every value of {where} must be {self.describe()}; got {bad[0]!r}.")
        elif value is not None and not self.allows(value):
            raise ConfigError(f"{where} must be {self.describe()}; got {value!r}.")


def _n(lo: float, hi: float, **kw: Any) -> Limit:
    return Limit(lo=lo, hi=hi, **kw)


_DURATION = Limit(duration=True)

#: The allowed values of every setting that has a range, by section: numbers, durations and
#: choices. Commands give their options the same bounds.
LIMITS: dict[str, dict[str, Limit]] = {
    "features": {
        "fan_windows": _DURATION,
        "passthrough_windows": _DURATION,
        "structuring_thresholds": _n(0, 1e15, lo_open=True),
        "structuring_margin": _n(0, 1, hi_open=True),
        "round_unit": _n(0, 1e12, lo_open=True),
        "cycle_window": _DURATION,
        "max_cycle_length": _n(2, 5),
        "hub_degree": _n(1, 1_000_000_000),
        "night_hours": _n(0, 24, size=2),
        "split_low": _n(0, 10, lo_open=True),
        "split_high": _n(0, 10, lo_open=True),
        "pattern_keep_low": _n(0, 1, lo_open=True),
        "chain_keep_low": _n(0, 1, lo_open=True),
        "chain_cap": _n(1, 100),
        "pattern_max_paths": _n(1, 1_000_000_000_000),
    },
    "model": {
        "random_state": _n(0, 2**32 - 1),
        "cv_folds": _n(2, 100),
        "max_leaf_nodes": _n(2, 100_000),
        "learning_rate": _n(0, 10, lo_open=True),
        "max_iter": _n(10, 100_000),
        "min_samples_leaf": _n(1, 10_000_000),
        "l2_regularization": _n(0, 1_000_000),
        "max_features": _n(0, 1, lo_open=True),
        "class_weight": Limit(choices=("none", "balanced")),
        "n_models": _n(1, 100),
        "proximity_folds": _n(2, 100),
        "closeness_seed_share": Limit(choices=("auto",)),  # or a share: checked by scoring.training.check_config
        "max_hops": _n(1, 12),
        "ppr_alpha": _n(0, 1, lo_open=True, hi_open=True),
        "ppr_groups": _n(2, 1000),
        "sync_window": _DURATION,
        "known_mule_share": _n(0, 1, lo_open=True),
        "pu_rounds": _n(1, 10),
        "nolabel_feature": Limit(choices=("auto", "on", "off")),
        "nolabel_blend": Limit(choices=("auto", "off")),  # or a weight: checked by scoring.training.check_config
        "importance_repeats": _n(0, 100),
        "sample_above": _n(0, 1_000_000_000_000),
        "negatives_per_mule": _n(0, 1_000_000, lo_open=True),
        "n_iter_no_change": _n(0, 10_000),
        "early_stopping_tol": _n(0, 1),
        "search_tol": _n(0, 1),
        "threads": _n(1, 4096),
    },
    "run": {
        "window": Limit(duration=True, all_ok=True, option="--window"),
        "alert_budget": _n(0, 1_000_000, option="--alert-budget"),
        "alert_threshold": _n(0, 1, option="--alert-threshold"),
        "cleared_margin": _n(-1, 1),  # negative: any score counts as a rise
        "elsewhere_blend": Limit(choices=("auto", "off"), option="--elsewhere-blend"),  # or a weight: checked by the run
        "flow_accounts": _n(0, 10_000),
    },
    "report": {
        "top": _n(0, 1_000_000, option="--top"),
        "psi_warning": _n(0, 100, lo_open=True),
        "flow_counterparties": _n(1, 1000),
    },
}


_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
_KIND_WORDS = {"str": "text in quotes", "int": "a whole number", "float": "a number", "bool": "true or false"}


def _kind_ok(kind: str, v: Any) -> bool:
    if isinstance(v, bool) and kind != "bool":
        return False
    return isinstance(v, _KINDS[kind])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def _check_type(f: dataclasses.Field, v: Any, where: str) -> None:
    """Refuse a value of the wrong TOML type with a message naming the key and the type expected.

    Without this, ``alert_budget = "ten"`` crashed deep inside a run and ``fan_windows = "24h"``
    (a text instead of a list) was read one character at a time.
    """
    ann = str(f.type).replace(" | None", "").strip()
    default = f.default
    if ann.startswith("tuple["):
        kind = ann[len("tuple["):].split(",")[0].rstrip("]").strip()
        if not isinstance(v, (list, tuple)) or (kind in _KINDS and not all(_kind_ok(kind, x) for x in v)):
            example = _toml_value(default) if default else '["..."]'
            raise ConfigError(
                f"[{where}] {f.name} must be a list of {_KIND_WORDS.get(kind, kind)}, e.g. {f.name} = {example}; "
                "fix the config file."
            )
    elif ann in _KINDS and not _kind_ok(ann, v):
        example = f", e.g. {f.name} = {_toml_value(default)}" if default is not None else ""
        raise ConfigError(f"[{where}] {f.name} must be {_KIND_WORDS[ann]}{example}; fix the config file.")


def _build(cls, data: dict[str, Any], where: str):
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [{where}]; allowed: {', '.join(names)}.")
    kwargs = {}
    for k, v in data.items():
        _check_type(names[k], v, where)
        default = names[k].default
        if isinstance(default, tuple) and isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"invalid [{where}] section: {err}") from None


def load_config(path: str | os.PathLike | None = None, data: dict[str, Any] | None = None) -> Config:
    """Load a :class:`Config` from a TOML file (or a dict); missing sections take defaults."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist; create it or leave out --config.")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file '{p}' is not valid TOML: {err}") from None
    data = dict(data or {})
    sections = {f.name: f.type for f in fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}; allowed: {', '.join(sections)}.")
    classes = {"store": StoreConfig, "features": FeatureConfig, "model": ModelConfig, "run": RunConfig, "report": ReportConfig,
               "engine": EngineConfig}
    built = {name: _build(cls, data.get(name, {}) or {}, name) for name, cls in classes.items()}
    cfg = Config(**built)
    if cfg.report.pseudonymise and not cfg.report.pseudonym_key:
        key = os.environ.get("MULEGRAPH_PSEUDONYM_KEY")
        if key:
            cfg = cfg.replace("report", pseudonym_key=key)
    return cfg


def discover_config(path: str | os.PathLike | None = None) -> Config:
    """The settings every command uses: the file ``path`` (``--config``) when given, else
    ``./mulegraph.toml`` when it exists in the working directory, else the defaults.

    Relative paths inside the file are read from the working directory, not the file's folder.
    """
    if path is not None:
        return load_config(path)
    if Path(DEFAULT_CONFIG_FILE).is_file():
        return load_config(DEFAULT_CONFIG_FILE)
    return Config()
