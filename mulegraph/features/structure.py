"""One-off structures: the laundering patterns, searched among one-off relationships only.

Legitimate money mostly moves along standing relationships (salary, rent, family, regular
merchants), while a laundering scheme wires accounts together that have nothing else to do with
each other. A **one-off relationship** is a pair of (non-hub) accounts that exchanged exactly one
transfer, in either direction, in the scored window (:func:`fresh_transfers`).
:func:`structure_features` runs the pattern search of :mod:`mulegraph.features.patterns` on those
transfers only, with a pattern window of :data:`STRUCTURE_WINDOW` (14 days: schemes play out over
days to weeks), and counts the squares (4-cycles of the undirected one-off graph: two accounts that
share two one-off counterparties), which every scatter-gather, bipartite and layered scheme closes
while unrelated one-off payments rarely do.

These ``structure`` features are not part of the default feature run: the no-label mode
(:mod:`mulegraph.scoring.nolabel`) adds them to the features it scores, and the supervised model
trains and scores on them (``[model] structure_features``, on by default), computed once per
scored window from its prepared transfers. Like the pattern family, they need the 2-hop
neighbourhood of an account.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import scipy.sparse as sps

from mulegraph.core.window import parse_duration
from mulegraph.features.patterns import compute as pattern_features
from mulegraph.features.prepare import Prepared
from mulegraph.features.spec import FeatureSpec

__all__ = [
    "FAMILY",
    "SPECS",
    "STRUCTURE_FEATURES",
    "STRUCTURE_WINDOW",
    "SQUARE_MAX_DEGREE",
    "fresh_transfers",
    "structure_features",
]

FAMILY = "structure"

#: how long a laundering structure may take to play out (first to last hop)
STRUCTURE_WINDOW = "14d"

#: an account with more one-off counterparties than this (a biller, a marketplace seller, a
#: processor below the hub degree) does not count as the corner of a one-off square; it also keeps
#: the square computation linear in the number of one-off links
SQUARE_MAX_DEGREE = 100

#: the square computation builds the 2-hop paths of about this many accounts' worth at a time
#: (16 bytes each, twice): memory stays bounded whatever the size of the window
SQUARE_BLOCK_PATHS = 4_000_000

#: the structure signals: the laundering patterns, searched among one-off relationships only
STRUCTURE_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("fresh_cycle_count", FAMILY,
                "time-respecting cycles through the account made only of one-off relationships", "count", 1,
                "part of {value:.0f} cycles of one-off transfers between otherwise unrelated accounts",
                evidence="one_off"),
    FeatureSpec("fresh_sg_role_count", FAMILY,
                "scatter-gather structures (any role) made only of one-off relationships", "count", 1,
                "takes part in {value:.0f} scatter-gather structures of one-off transfers", evidence="one_off"),
    FeatureSpec("fresh_gs_count", FAMILY,
                "gather-scatter sender-receiver pairs through the account over one-off relationships", "count", 1,
                "gathers from and scatters to one-off counterparties ({value:.0f} pairs)", evidence="one_off"),
    FeatureSpec("fresh_chain_hops", FAMILY,
                "pass-through hops forwarding most of an inbound, over one-off relationships", "count", 1,
                "forwards most of a one-off inbound to a one-off payee {value:.0f} times", evidence="one_off"),
    FeatureSpec("fresh_square_share", FAMILY,
                "squares closed by one-off relationships (two accounts sharing two one-off counterparties), "
                "per one-off counterparty", "ratio", 1,
                "its one-off counterparties are linked to each other ({value:.2f} squares per counterparty)",
                evidence="one_off"),
)
SPECS: tuple[FeatureSpec, ...] = STRUCTURE_FEATURES


def fresh_transfers(
    p: Prepared, window: str = STRUCTURE_WINDOW, max_transfers: int = 1, *, touching: pl.Series | None = None
) -> pl.DataFrame:
    """Transfers on short-lived relationships between two non-hub accounts.

    A relationship (an unordered pair of accounts) is short-lived when it has at most
    ``max_transfers`` transfers in the scored window, all within ``window`` of its first one.
    Legitimate payments mostly follow standing relationships (salary, rent, family, regular
    merchants); laundering structures are built from new links between accounts that otherwise
    have nothing to do with each other. Same columns as ``p.tx``.

    ``touching`` (account indices): only the transfers of these accounts, as they are among all
    short-lived transfers (every transfer of a relationship touches both its accounts, so the
    relationships are judged on all their transfers all the same).

    The rows kept for the whole window are remembered in ``p.extra`` (a few bytes a transfer kept),
    so that the structure and the collection features, which both read them, judge the
    relationships once.
    """
    w = int(parse_duration(window, name="structure window").total_seconds())
    key = ("fresh_rows", w, max_transfers, id(p.tx), id(p.accounts))
    if touching is None and key in p.extra:
        return p.tx.filter(pl.col("row").is_in(p.extra[key].implode()))
    hubs = p.hub_idx.implode()
    # the relationships are judged on four integer columns only; the wide rows (text columns
    # included) are gathered at the end for the few transfers kept
    nt = p.tx.lazy().select("row", "src", "dst", "t").filter(~pl.col("src").is_in(hubs) & ~pl.col("dst").is_in(hubs))
    if touching is not None:
        nt = nt.filter(pl.col("src").is_in(touching.implode()) | pl.col("dst").is_in(touching.implode()))
    keyed = nt.with_columns(pl.min_horizontal("src", "dst").alias("_lo"), pl.max_horizontal("src", "dst").alias("_hi"))
    short = (
        keyed.group_by("_lo", "_hi")
        .agg(pl.len().alias("_n"), (pl.col("t").max() - pl.col("t").min()).alias("_span"))
        .filter((pl.col("_n") <= max_transfers) & (pl.col("_span") <= w))
    )
    rows = keyed.join(short.select("_lo", "_hi"), on=["_lo", "_hi"], how="semi").select("row").collect()["row"]
    if touching is None:
        p.extra[key] = rows
    return p.tx.filter(pl.col("row").is_in(rows.implode()))


def _pair_sums(s1: sps.csr_matrix, s2: sps.csr_matrix, start: int) -> np.ndarray:
    """Per row of a block (row ``r`` is account ``start + r``): the sum over the other accounts of
    ``s1 ** 2 - s2`` ((sum of weights)^2 - sum of squared weights, over common neighbours).

    What ``s1.setdiag(0, k=start); s2.setdiag(0, k=start); (s1.multiply(s1) - s2).sum(axis=1)``
    gives, to the bit, without scipy's general element-wise passes (a dense row scatter per row)
    and diagonal insertion: ``s1`` and ``s2`` come from products of matrices with one sparsity
    pattern, so they hold the same entries in the same order; scipy keeps that order through the
    element-wise product and difference (off the diagonal, zero results dropped), and sums each
    row's entries in it with ``np.add.reduceat``, as here. When the two patterns differ, scipy does it.
    """
    n = s1.shape[0]
    if not (np.array_equal(s1.indptr, s2.indptr) and np.array_equal(s1.indices, s2.indices)):
        s1, s2 = s1.copy(), s2.copy()
        s1.setdiag(0, k=start)
        s2.setdiag(0, k=start)
        return np.asarray((s1.multiply(s1) - s2).sum(axis=1)).ravel()
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(s1.indptr))
    value = s1.data * s1.data - s2.data
    keep = (s1.indices.astype(np.int64) != row + start) & (value != 0)
    value, row = value[keep], row[keep]
    counts = np.bincount(row, minlength=n)
    out = np.zeros(n)
    full = np.flatnonzero(counts)
    if full.size:
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        out[full] = np.add.reduceat(value, offsets[full])
    return out


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
    del a, b
    u = ((u + u.T) > 0).astype(np.float64).tocsr()
    u.setdiag(0)
    u.eliminate_zeros()
    deg = np.asarray(u.sum(axis=1)).ravel()
    wgt = np.where((deg > 1) & (deg <= SQUARE_MAX_DEGREE), 1.0 / np.sqrt(np.maximum(deg - 1.0, 1.0)), 0.0)
    # the weights and their squares as one complex diagonal: one product gives both s1 (real part)
    # and s2 (imaginary part), to the bit as two real products would (every product is by 1 + 0j
    # or (1 + 0j) times a weight, and sums add the parts apart), with one entry pattern and order
    d12 = sps.diags(wgt + 1j * (wgt * wgt))
    # the 2-hop matrices are built a block of rows at a time (each row of a product depends on that
    # row alone), blocks of about SQUARE_BLOCK_PATHS paths, so that memory does not grow with the window
    paths = np.cumsum(u @ np.where(wgt > 0, deg, 0.0))
    squares = np.zeros(n_accounts)
    start = 0
    while start < n_accounts:
        done = paths[start - 1] if start else 0.0
        stop = max(int(np.searchsorted(paths, done + SQUARE_BLOCK_PATHS, side="right")), start + 1)
        rows = u[start:stop]
        s12 = (rows @ d12 @ u).tocsr()
        s1 = sps.csr_matrix((s12.data.real.copy(), s12.indices, s12.indptr), shape=s12.shape)
        s2 = sps.csr_matrix((s12.data.imag.copy(), s12.indices, s12.indptr), shape=s12.shape)
        del s12
        squares[start:stop] = _pair_sums(s1, s2, start) / 2.0
        del rows, s1, s2
        start = stop
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
    fresh = fresh_transfers(p, window)
    cfg = dataclasses.replace(p.config, cycle_window=window)
    found = pattern_features(Prepared(tx=fresh, accounts=p.accounts, config=cfg))
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
