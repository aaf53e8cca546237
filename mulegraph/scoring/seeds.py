"""Seeds: the accounts known at scoring time, from which the closeness features are computed.

A supervised model's closeness features (:mod:`mulegraph.features.proximity`) measure how close
an account is to *known* mules. At scoring time "known" is everything the bank knows then, without
retraining. The sources, in order of precedence (a later source overrides an earlier one for the
same account):

1. ``model``: the model's training labels (``known.parquet``; mules and non-mules), **only when
   scoring the store the model was trained on** (:func:`same_store`). Account ids of another store
   (another bank, another data set) can collide with local ones and never seed. A portable model
   carries none.
2. ``shared_list``: accounts of the window (customers and counterparties alike) whose keyed hash
   is on a consortium list (:mod:`mulegraph.io.share`): mules confirmed by a member bank.
3. ``decisions``: the investigator decisions recorded in the store, each account's latest one
   (``confirmed``: a mule; ``cleared``: known not to be one): the bank's freshest knowledge. A
   scoring ``--as-of`` a past date (a backtest) reads only the decisions dated by then.
4. ``known_file``: a ``--known`` file (CSV or Parquet, ``account_id`` and optionally ``is_mule``;
   without ``is_mule`` every listed account is a mule; :func:`mulegraph.io.labels.read_known`): the
   operator's explicit word for this scoring.

**The same store.** A store gets a random ``store_id`` when it is created
(:meth:`mulegraph.io.store.Store.identity`); a model trained on a store records that id, how many
files had been ingested and the sha256 of their list (:func:`store_fingerprint`). A store is the
same when its id is equal and its first ingests are those files in the same order: a store that
has grown by later ingests is the same store; a new store built from the same exports is not (its
labels must then be given again, e.g. with ``--known``). A model trained on frames rather than a
store has no store identity: its labels seed only when the caller says so
(``model_labels=True``).

:class:`Seeds` holds the combined table (``account_id, is_mule, source``) and a summary of how
many seeds of each source were used (the run manifest's ``seeds``). ``Seeds.elsewhere`` says the
model scores data it was not trained on (a portable model, or a model of another store,
:func:`is_elsewhere`): its score is then blended with the local no-label score
(:mod:`mulegraph.scoring.blend`), and the summary's ``blend`` says how.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from mulegraph.core.atomic import file_sha256
from mulegraph.core.errors import InputError
from mulegraph.core.window import parse_instant
from mulegraph.core.keys import key_id, read_key_file
from mulegraph.io.labels import read_known
from mulegraph.io.share import SharedList, match_list, read_list

__all__ = [
    "SOURCES",
    "SEEDS_SCHEMA",
    "SeedInputs",
    "Seeds",
    "store_fingerprint",
    "same_store",
    "decision_seeds",
    "scoring_seeds",
    "describe_seeds",
    "is_elsewhere",
]

#: the seed sources, lowest precedence first
SOURCES: tuple[str, ...] = ("model", "shared_list", "decisions", "known_file")
#: the combined seed table
SEEDS_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String(), "is_mule": pl.Boolean(), "source": pl.String()}


def _store_of(source: Any):
    """The :class:`~mulegraph.io.store.Store` behind ``source`` (a Store or a folder), else None (a frame)."""
    from mulegraph.io.store import Store

    if isinstance(source, Store):
        return source
    if isinstance(source, (str, os.PathLike)):
        return Store.open(source)
    return None


def _ingests_hash(ingests: list[str]) -> str:
    return hashlib.sha256("\n".join(ingests).encode("utf-8")).hexdigest()


def store_fingerprint(source: Any) -> dict[str, Any] | None:
    """What a model card records about the store it was trained on: ``store_id``, ``ingests`` (how
    many files were ingested) and ``ingests_sha256`` (of their sha256 list); None for a frame."""
    store = _store_of(source)
    if store is None:
        return None
    ident = store.identity()
    return {"store_id": ident["store_id"], "ingests": len(ident["ingests"]), "ingests_sha256": _ingests_hash(ident["ingests"])}


def same_store(recorded: dict[str, Any] | None, source: Any) -> bool:
    """True when ``source`` (a store) is the store ``recorded`` (:func:`store_fingerprint`) describes,
    possibly grown by later ingests; False for a frame or a missing record."""
    store = _store_of(source)
    if store is None or not isinstance(recorded, dict):
        return False
    ident = store.identity()
    n = recorded.get("ingests")
    if recorded.get("store_id") != ident["store_id"] or not isinstance(n, int) or n > len(ident["ingests"]):
        return False
    return recorded.get("ingests_sha256") == _ingests_hash(ident["ingests"][:n])


def decision_seeds(decisions: pl.DataFrame | None, decided_by: datetime | None = None) -> pl.DataFrame:
    """Each account's latest investigator decision as ``account_id, is_mule`` (confirmed = True).

    ``decided_by``: only decisions dated at or before it count (a backtest ``--as-of`` must not
    read what investigators decided later).
    """
    if decisions is not None and decided_by is not None:
        decisions = decisions.filter(pl.col("date") <= parse_instant(decided_by, name="decided_by"))
    if decisions is None or decisions.height == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "is_mule": pl.Boolean})
    latest = decisions.with_row_index("_order").sort("date", "_order").group_by("account_id").agg(pl.col("decision").last())
    return latest.select("account_id", (pl.col("decision") == "confirmed").alias("is_mule")).sort("account_id")


@dataclass(frozen=True)
class SeedInputs:
    """The seed sources given for one scoring, read and checked before any work (:meth:`load`)."""

    #: ``account_id, is_mule`` of the ``--known`` file
    known: pl.DataFrame | None = None
    #: the consortium lists, and the key to match them with
    shared: SharedList | None = None
    key: bytes | None = field(default=None, repr=False)
    #: ``path`` and ``sha256`` of the ``--known`` file
    known_file: dict[str, str] | None = None

    @classmethod
    def load(
        cls,
        known: str | os.PathLike | pl.DataFrame | None = None,
        shared_lists: list[str | os.PathLike] | None = None,
        key_file: str | os.PathLike | None = None,
    ) -> "SeedInputs":
        """Read ``--known``, ``--shared-list`` (one or more) and ``--key-file``; refuse a bad file,
        a short key, a list made with another key, or a list without a key (exit code 2)."""
        shared_lists = list(shared_lists or [])
        if shared_lists and key_file is None:
            raise InputError("--shared-list ([run] shared_lists) needs --key-file ([run] key_file): the consortium key "
                             "the list's hashes were made with.")
        if key_file is not None and not shared_lists:
            raise InputError("--key-file ([run] key_file) is only used with --shared-list ([run] shared_lists); give the "
                             "list too, or leave the key out.")
        key = read_key_file(key_file, "consortium key file (--key-file)") if key_file is not None else None
        shared = read_list(shared_lists, key) if shared_lists else None
        frame = read_known(known) if known is not None else None
        info = None
        if known is not None and not isinstance(known, pl.DataFrame):
            info = {"path": str(known), "sha256": file_sha256(Path(known))}
        return cls(known=frame, shared=shared, key=key, known_file=info)

    @property
    def given(self) -> bool:
        """True when a known file or a shared list was given."""
        return self.known is not None or self.shared is not None

    def fingerprint(self) -> dict[str, Any] | None:
        """What decides their seeds, for a run's input fingerprint (file hashes, the key's id); None when none given."""
        if not self.given:
            return None
        known = self.known_file["sha256"] if self.known_file else (None if self.known is None else "frame")
        shared = None
        if self.shared is not None and self.key is not None:
            shared = {"files": sorted(f["sha256"] for f in self.shared.files), "key_id": key_id(self.key)}
        return {"known": known, "shared": shared}


@dataclass(frozen=True)
class Seeds:
    """The seeds of one scoring: ``frame`` (:data:`SEEDS_SCHEMA`) and what :meth:`summary` reports."""

    frame: pl.DataFrame
    #: why the model's training labels were or were not used
    model_labels: str
    #: accounts on the shared lists, and how many of them were seen in the window (None: no list)
    shared: dict[str, int] | None = None
    #: seeds that are accounts of the scored window: ``mules``, ``not_mules``
    in_window: dict[str, int] = field(default_factory=dict)
    #: the model scores data it was not trained on: a portable model, or one trained on another
    #: store (its score is then blended with the no-label score: :mod:`mulegraph.scoring.blend`)
    elsewhere: bool = False
    #: how the score was blended (filled in by scoring: the setting, the weight, what chose it);
    #: empty when it was not
    blend: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """How many seeds of each source were used (an account counts for the source that decided it)."""
        by = {s: {"mules": 0, "not_mules": 0} for s in SOURCES}
        for src, mule, n in self.frame.group_by("source", "is_mule").len().iter_rows():
            by[src]["mules" if mule else "not_mules"] += int(n)
        return {
            "mules": int(self.frame["is_mule"].sum()),
            "not_mules": int((~self.frame["is_mule"]).sum()),
            "in_window": dict(self.in_window),
            "by_source": by,
            "model_labels": self.model_labels,
            "shared_list": dict(self.shared) if self.shared is not None else None,
            "elsewhere": self.elsewhere,
            "blend": dict(self.blend) or None,
        }


def is_elsewhere(model: Any, source: Any) -> bool:
    """True when ``model`` scores data it was not trained on: a portable model, or a model whose
    card names a store other than ``source`` (a store). A model trained on frames, or a store
    model scoring frames, is not known to be elsewhere (False)."""
    if getattr(model, "portable_", False):
        return True
    recorded = getattr(model, "training_store_", None)
    return isinstance(recorded, dict) and _store_of(source) is not None and not same_store(recorded, source)


def _model_labels(model: Any, source: Any, model_labels: bool | None) -> tuple[pl.DataFrame, str]:
    empty = pl.DataFrame(schema={"account_id": pl.String, "is_mule": pl.Boolean})
    known = getattr(model, "known_", None)
    if getattr(model, "portable_", False):
        return empty, "portable model (carries no account ids)"
    if known is None:
        return empty, "the model carries no training labels"
    if model_labels is False:
        return empty, "not used (model_labels=False)"
    if model_labels is True:
        return known.select("account_id", "is_mule"), "used (model_labels=True)"
    recorded = getattr(model, "training_store_", None)
    if recorded is None:
        return empty, "not used: the model was not trained on a store"
    if _store_of(source) is None:
        return empty, "not used: the transfers scored are a frame, not the store the model was trained on"
    if not same_store(recorded, source):
        return empty, "not used: the model was trained on another store"
    return known.select("account_id", "is_mule"), "used: the model was trained on this store"


def scoring_seeds(
    model: Any,
    source: Any,
    accounts: pl.Series,
    *,
    decisions: pl.DataFrame | None = None,
    inputs: SeedInputs | None = None,
    model_labels: bool | None = None,
    decided_by: datetime | None = None,
) -> Seeds:
    """Combine every seed source for scoring ``source`` (a store, or frames) with ``model``.

    ``accounts``: every account id of the scored window (the shared lists are matched against
    them). ``decisions``: the store's decisions (read from ``source`` when None and it is a
    store). ``inputs``: the ``--known`` file and shared lists. ``model_labels``: None uses the
    model's training labels only in the store it was trained on; True or False forces the choice.
    ``decided_by``: only the decisions dated at or before it count (the end of a window scored
    ``--as-of`` a past date; None for every decision).
    """
    inputs = inputs or SeedInputs()
    parts = []
    labels, why = _model_labels(model, source, model_labels)
    parts.append(labels.with_columns(pl.lit("model").alias("source")))
    shared = None
    if inputs.shared is not None and inputs.key is not None:
        matched = match_list(inputs.shared, accounts, inputs.key)
        parts.append(pl.DataFrame({"account_id": matched, "is_mule": True, "source": "shared_list"}))
        shared = {"listed": inputs.shared.listed, "matched": matched.len()}
    if decisions is None:
        store = _store_of(source)
        decisions = store.decisions() if store is not None else None
    parts.append(decision_seeds(decisions, decided_by).with_columns(pl.lit("decisions").alias("source")))
    if inputs.known is not None:
        parts.append(inputs.known.with_columns(pl.lit("known_file").alias("source")))
    rank = {s: i for i, s in enumerate(SOURCES)}
    frame = (
        pl.concat([p.select(list(SEEDS_SCHEMA)).cast(SEEDS_SCHEMA) for p in parts])
        .with_columns(pl.col("source").replace_strict(rank, return_dtype=pl.Int32).alias("_rank"))
        .sort("account_id", "_rank")
        .unique("account_id", keep="last", maintain_order=True)
        .drop("_rank")
    )
    seen = frame.filter(pl.col("account_id").is_in(accounts.cast(pl.String).implode()))
    in_window = {"mules": int(seen["is_mule"].sum()), "not_mules": int((~seen["is_mule"]).sum())}
    return Seeds(frame=frame, model_labels=why, shared=shared, in_window=in_window,
                 elsewhere=model_labels is not True and is_elsewhere(model, source))


def describe_seeds(summary: dict[str, Any]) -> str:
    """One line saying how many seeds of each source a scoring used (from :meth:`Seeds.summary`)."""
    by = summary["by_source"]
    names = {"model": "training labels", "shared_list": "shared lists", "decisions": "decisions", "known_file": "--known"}
    parts = [f"{names[s]} {by[s]['mules']:,}/{by[s]['not_mules']:,}" for s in SOURCES]
    line = (f"seeds: {summary['mules']:,} mules and {summary['not_mules']:,} known non-mules "
            f"({summary['in_window']['mules']:,} and {summary['in_window']['not_mules']:,} in the window); "
            f"mules/non-mules by source: {', '.join(parts)}")
    shared = summary.get("shared_list")
    if shared:
        line += f"; {shared['matched']:,} of {shared['listed']:,} shared-list account(s) seen in the window"
    line += f"; training labels {summary['model_labels']}"
    blend = summary.get("blend")
    if blend:
        who = "a few-label model" if blend.get("setting") == "model" else "a model from elsewhere"
        line += f"; {who}: blended with the no-label score, weight {blend['weight']:g} ({blend['chosen']})"
    return line
