"""Evidence: the transfers behind a reason, chosen by the kind of feature the reason names.

Evidence always consists of transfers of the account itself (it is the sender or the receiver),
chosen by the feature's ``evidence`` kind and ``horizon`` as declared in its
:class:`~mulegraph.features.spec.FeatureSpec` (see :data:`~mulegraph.features.spec.EVIDENCE_KINDS`):

* ``passthrough``: each outbound transfer with the latest inbound transfer that arrived at or
  before it within the horizon (72h when the feature has none), leaving out pairs whose both
  counterparties are hubs;
* ``busiest_in`` / ``busiest_out``: the inbound (outbound) transfers of the busiest sliding window
  of the horizon;
* ``first_in`` / ``first_out``: the first transfer from (to) each counterparty;
* ``structuring``: the transfers just below a reporting threshold; ``cash``: cash-channel
  transfers; ``night``: night-time transfers;
* ``pattern``: the account's transfers with counterparties that show the same pattern feature
  themselves (the other members of its cycles, chains and scatter-gather structures);
* ``one_off``: the same, among the account's transfers on one-off relationships only
  (:func:`mulegraph.features.structure.fresh_transfers`);
* ``inbound`` / ``outbound``: the largest inbound (outbound) transfers with non-hub counterparties;
* ``largest`` (and any feature not in the registry): the account's largest transfers with
  counterparties that are not hubs.

Evidence lists are capped (``max_txn_ids``) and sorted by transfer id.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from mulegraph.core.config import FeatureConfig
from mulegraph.core.window import parse_duration
from mulegraph.features.prepare import Prepared
from mulegraph.features.registry import REGISTRY
from mulegraph.features.structure import fresh_transfers

__all__ = ["evidence", "evidence_many", "DEFAULT_HORIZON"]

#: the horizon of evidence for a feature that declares none
DEFAULT_HORIZON = "72h"


def _kind_and_horizon(feature: str) -> tuple[str, int]:
    """The feature's evidence kind and horizon in seconds, from its spec (``largest`` when unknown)."""
    spec = REGISTRY.get(feature)
    kind = spec.evidence if spec is not None else "largest"
    horizon = (spec.horizon if spec is not None else None) or DEFAULT_HORIZON
    return kind, int(parse_duration(horizon, name=f"the horizon of {feature}").total_seconds())


def _account_tx(p: Prepared, idx: pl.Series, tx: pl.DataFrame) -> pl.DataFrame:
    """The transfers of ``tx`` touching the accounts, one row per (account, transfer) with its side."""
    hubs = p.hub_idx.implode()
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
    return evidence_many(p, accounts, [feature], features=features, max_txn_ids=max_txn_ids, config=config).get(feature, {})


def evidence_many(
    p: Prepared,
    accounts: Sequence[str],
    feature_names: Sequence[str],
    *,
    features: pl.DataFrame | None,
    max_txn_ids: int,
    config: FeatureConfig | None,
) -> dict[str, dict[str, list[str]]]:
    """:func:`evidence` for several features at once: feature -> account id -> sorted txn ids.

    The transfers of ``accounts`` are gathered once and shared by every feature.
    """
    cfg = config or p.config
    idmap = p.accounts.select("idx", "account_id")
    sel = idmap.filter(pl.col("account_id").is_in(list(accounts)))
    rows = p.rows_touching(sel["idx"])  # read once (from the store, for a lean window)
    at = _account_tx(p, sel["idx"], rows)
    feats = None
    if features is not None:
        # pattern evidence reads the named features of the counterparties only (and their idx)
        keep = [c for c in features.columns if c != "account_id" and (c == "idx" or c in feature_names)]
        feats = features.select("account_id", *keep).join(idmap, on="account_id", how="inner")
    out: dict[str, dict[str, list[str]]] = {}
    at_fresh = None
    for feature in dict.fromkeys(feature_names):
        kind, horizon = _kind_and_horizon(feature)
        if kind == "passthrough":
            ev = _ev_passthrough(at, horizon, max_txn_ids)
        elif kind == "busiest_in":
            ev = _ev_busiest(at, "in", horizon, max_txn_ids)
        elif kind == "busiest_out":
            ev = _ev_busiest(at, "out", horizon, max_txn_ids)
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
            ev = _cap(at.filter((pl.col("side") == "out") & pl.col("channel").cast(pl.String).str.to_uppercase().is_in(list(cfg.cash_channels))), max_txn_ids)
        elif kind == "night":
            lo, hi = cfg.night_hours
            hour = (pl.col("t") % 86400) // 3600
            ev = _cap(at.filter((hour >= lo) & (hour < hi)), max_txn_ids)
        elif kind == "pattern":
            ev = _ev_pattern(at, feature, feats if feats is not None else pl.DataFrame({"idx": []}), max_txn_ids)
        elif kind == "one_off":
            if at_fresh is None:
                # every transfer of a relationship touches both its accounts: the transfers touching
                # the accounts judge their relationships as the whole window does
                near = Prepared(tx=rows, accounts=p.accounts, config=p.config)
                at_fresh = _account_tx(p, sel["idx"], fresh_transfers(near, touching=sel["idx"]))
            ev = _ev_pattern(at_fresh, feature, feats if feats is not None else pl.DataFrame({"idx": []}), max_txn_ids)
        elif kind in ("inbound", "outbound"):
            side = "in" if kind == "inbound" else "out"
            ev = _cap(at.filter((pl.col("side") == side) & ~pl.col("cp_hub")), max_txn_ids)
        else:
            ev = _cap(at.filter(~pl.col("cp_hub")), max_txn_ids)
        named = ev.join(idmap.rename({"idx": "acc"}), on="acc", how="inner")
        out[feature] = dict(zip(named["account_id"].to_list(), named["txn_ids"].to_list()))
    return out


