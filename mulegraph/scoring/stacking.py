"""Neighbours' scores as model features: stacking over the graph (``[model] neighbour_scores``).

Mules pay mules: in a chain, ring or scatter-gather every member's counterparties include other
members. The closeness features (:mod:`mulegraph.features.proximity`) read that from the *known*
mules only; with neighbour scores the model reads it from every account's **predicted** score
too (collective classification, two stages):

1. a first-stage model (an ordinary :class:`~mulegraph.scoring.estimator.MuleModel`, the same
   settings without neighbour scores) scores every account of the window;
2. each account gets :data:`NEIGHBOUR_FEATURES`: aggregates of the first-stage scores of its
   counterparties (:func:`neighbour_features`), over its one-off relationships
   (:func:`mulegraph.features.structure.fresh_transfers`, where laundering structures are built)
   and over all its relationships between non-hub accounts;
3. the model trains and scores on its features plus these.

Label safety (:func:`out_of_fold`): an account's own label must not reach its own training
features through a neighbour's score, whose model trained on that label. The labelled accounts
are split into :data:`NEIGHBOUR_FOLDS` stratified folds; one first-stage model per fold trains
on the labels outside it (its closeness features read only those labels, too), and the accounts
of the fold take their neighbour features from that model's scores. Accounts without a label take
them from the first-stage model of all labels, which is also the one kept for scoring.

Cost: training fits :data:`NEIGHBOUR_FOLDS` + 1 first-stage models before the model itself
(about 6 times the training time), scoring scores the window once more with the first-stage model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import scipy.sparse as sps

from mulegraph.core.errors import ModelError
from mulegraph.features.prepare import Prepared
from mulegraph.features.structure import fresh_transfers

__all__ = ["NEIGHBOUR_FEATURES", "NEIGHBOUR_FOLDS", "TOP_SHARE", "neighbour_features", "out_of_fold", "stage_folds"]

#: the first-stage models of training: one per fold of the labelled accounts
NEIGHBOUR_FOLDS = 5
#: a counterparty counts as "top" when its first-stage score is among this share of the highest
#: scores of the window's non-hub accounts
TOP_SHARE = 0.05

#: name -> what it is (every value aggregates the first-stage scores of the account's counterparties)
NEIGHBOUR_FEATURES: dict[str, str] = {
    "nbr_oneoff_out_max": "highest score among the accounts it paid once (one-off relationships)",
    "nbr_oneoff_in_max": "highest score among the accounts that paid it once (one-off relationships)",
    "nbr_oneoff_sum": "sum of the scores of its one-off counterparties",
    "nbr_all_max": "highest score among all its non-hub counterparties",
    "nbr_all_sum": "sum of the scores of all its non-hub counterparties",
    "nbr_all_top": "non-hub counterparties whose score is in the window's top share",
    "nbr_oneoff_top": "one-off counterparties whose score is in the window's top share",
}


def _links(src: np.ndarray, dst: np.ndarray, n: int) -> sps.csr_matrix:
    """0/1 matrix of the directed pairs (self-pairs dropped)."""
    keep = src != dst
    m = sps.coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    m.data[:] = 1.0
    return m


def _graphs(p: Prepared) -> tuple[sps.csr_matrix, sps.csr_matrix, sps.csr_matrix, sps.csr_matrix]:
    """One-off out-links, one-off in-links, all undirected links, one-off undirected links (non-hub
    accounts only); kept in ``p.extra`` for the window."""
    key = ("neighbour_graphs", id(p.tx), id(p.accounts))
    if key not in p.extra:
        n = p.n_accounts
        hubs = p.hub_idx.implode()
        tx = p.tx.select("src", "dst").filter(~pl.col("src").is_in(hubs) & ~pl.col("dst").is_in(hubs))
        fresh = fresh_transfers(p).select("src", "dst")
        every = _links(tx["src"].to_numpy().astype(np.int64), tx["dst"].to_numpy().astype(np.int64), n)
        once = _links(fresh["src"].to_numpy().astype(np.int64), fresh["dst"].to_numpy().astype(np.int64), n)
        both = ((every + every.T) > 0).astype(np.float64).tocsr()
        once_both = ((once + once.T) > 0).astype(np.float64).tocsr()
        p.extra[key] = (once, once.T.tocsr(), both, once_both)
    return p.extra[key]


def _row_max(links: sps.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Per row: the highest ``values`` of its linked columns (0 without links; values are >= 0)."""
    out = np.zeros(links.shape[0])
    counts = np.diff(links.indptr)
    rows = np.flatnonzero(counts)
    if rows.size:
        picked = values[links.indices]
        out[rows] = np.maximum.reduceat(picked, links.indptr[rows])
    return out


def neighbour_features(p: Prepared, scores: pl.DataFrame) -> pl.DataFrame:
    """:data:`NEIGHBOUR_FEATURES` of every account of ``p`` from first-stage ``scores``.

    ``scores``: ``account_id, score`` (0..1); accounts without a score, and hubs, count 0.
    Returns ``account_id`` and one column per feature; hubs get null.
    """
    acc = p.accounts.select("idx", "account_id", "is_hub").sort("idx")
    s = acc.join(scores.select("account_id", pl.col("score").cast(pl.Float64)), on="account_id", how="left")["score"]
    s = np.clip(np.nan_to_num(s.fill_null(0.0).to_numpy().astype(np.float64)), 0.0, 1.0)
    hub = acc["is_hub"].to_numpy()
    s[hub] = 0.0
    ranked = s[~hub]
    top = np.zeros_like(s)
    if ranked.size:
        top[s >= np.quantile(ranked, 1.0 - TOP_SHARE)] = 1.0
        top[hub] = 0.0
    out_once, in_once, both, once_both = _graphs(p)
    values = {
        "nbr_oneoff_out_max": _row_max(out_once, s),
        "nbr_oneoff_in_max": _row_max(in_once, s),
        "nbr_oneoff_sum": once_both @ s,
        "nbr_all_max": _row_max(both, s),
        "nbr_all_sum": both @ s,
        "nbr_all_top": both @ top,
        "nbr_oneoff_top": once_both @ top,
    }
    frame = pl.DataFrame({"idx": acc["idx"], **{k: values[k] for k in NEIGHBOUR_FEATURES}})
    return acc.join(frame, on="idx", how="left").select(
        "account_id", *[pl.when(pl.col("is_hub")).then(None).otherwise(pl.col(c)).alias(c) for c in NEIGHBOUR_FEATURES]
    )


def stage_folds(labels: pl.DataFrame, random_state: int, n_folds: int = NEIGHBOUR_FOLDS) -> pl.DataFrame:
    """``account_id, is_mule, fold``: stratified folds of the labelled accounts (sorted by id)."""
    from sklearn.model_selection import StratifiedKFold

    lab = labels.select("account_id", "is_mule").unique("account_id", keep="last").sort("account_id")
    y = lab["is_mule"].to_numpy().astype(np.int64)
    n = min(n_folds, int(y.sum()), int(len(y) - y.sum()))
    if n < 2:
        raise ModelError("model.neighbour_scores needs at least 2 mules and 2 non-mules among the labels; "
                         "add labels or train with model.neighbour_scores = false.")
    fold = np.empty(len(y), dtype=np.int64)
    for k, (_, test) in enumerate(StratifiedKFold(n_splits=n, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y)):
        fold[test] = k
    return lab.with_columns(pl.Series("fold", fold))


def out_of_fold(
    p: Prepared,
    labels: pl.DataFrame,
    score: Callable[[pl.DataFrame], pl.DataFrame],
    random_state: int,
    n_folds: int = NEIGHBOUR_FOLDS,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training-time neighbour features, out-of-fold; and the first-stage scores of all labels.

    ``score(labels)`` trains a first-stage model on ``labels`` (``account_id, is_mule``) and
    returns its scores of every account (``account_id, score``). The labelled accounts are split
    by :func:`stage_folds`; those of fold k get :func:`neighbour_features` from the scores of the
    model trained without fold k, so their own labels never reach them. Every other account gets
    them from the model of all labels. Returns (``account_id`` + :data:`NEIGHBOUR_FEATURES`, the
    scores of the model of all labels).
    """
    lab = stage_folds(labels, random_state, n_folds)
    parts = []
    for k in range(int(lab["fold"].max()) + 1):
        feats = neighbour_features(p, score(lab.filter(pl.col("fold") != k).select("account_id", "is_mule")))
        parts.append(feats.join(lab.filter(pl.col("fold") == k).select("account_id"), on="account_id", how="semi"))
    full_scores = score(lab.select("account_id", "is_mule"))
    oof = pl.concat(parts)
    rest = neighbour_features(p, full_scores).join(oof.select("account_id"), on="account_id", how="anti")
    return pl.concat([oof, rest]), full_scores
