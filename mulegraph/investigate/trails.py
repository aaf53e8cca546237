"""Money trails: one account's ledger as links, and the hop-by-hop trail built from them.

:func:`ledger_links` reads one account's transfers as a ledger under an allocation model (``fifo``
or ``proportional``) and says how much of each inbound transfer left through each outbound one,
and after how long. :func:`trace_transfers` follows the money from an account forwards or
backwards in time through those links, reading the ledgers of the few accounts the money reaches
at each hop; :class:`Trail` holds the result. The allocation model, with a worked example, is
described in :mod:`mulegraph.investigate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import networkx as nx
import numpy as np
import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.schema import LEDGER_LINKS_SCHEMA, TRAIL_LINKS_SCHEMA
from mulegraph.core.window import TimeWindow, parse_duration

__all__ = ["ALLOCATIONS", "DIRECTIONS", "Trail", "ledger_links", "trace_transfers", "trail_accounts"]

#: how an outbound transfer draws on the money that came in (see :mod:`mulegraph.investigate`)
ALLOCATIONS = ("fifo", "proportional")
#: which way a trail follows the money in time
DIRECTIONS = ("forward", "backward")

_EPS = 1e-9
#: transfer columns a trail carries
_TX = ["txn_id", "ts", "src_account", "dst_account", "amount"]
_US = 1_000_000


def ledger_links(events: pl.DataFrame, within: str | timedelta, alloc: str = "fifo") -> pl.DataFrame:
    """How one account's inbound money left through its outbound transfers.

    ``events`` holds one account's transfers: ``txn_id``, ``t`` (epoch microseconds), ``amount`` and
    ``is_in`` (True for inbound). Returns ``in_txn, out_txn, value, dwell_s``: ``value`` of inbound
    ``in_txn`` left through ``out_txn`` after ``dwell_s`` seconds, under the allocation model of
    :mod:`mulegraph.investigate` (``fifo`` or ``proportional``; lots eligible for ``within`` after arrival, equal
    timestamps count as possibly before). The loop runs over this one account's transfers only.
    """
    if alloc not in ALLOCATIONS:
        raise InputError(f"the allocation must be one of {', '.join(ALLOCATIONS)}. Got '{alloc}' instead.")
    w_us = int(parse_duration(within, name="within").total_seconds() * _US)
    ev = events.sort(["t", "is_in", "txn_id"], descending=[False, True, False])
    ts = ev["t"].to_list()
    ids = ev["txn_id"].to_list()
    amounts = ev["amount"].to_list()
    is_in = ev["is_in"].to_list()
    if alloc == "proportional":
        return _proportional_links(ts, ids, amounts, is_in, w_us)
    lots: list[list] = []  # [t, txn_id, remaining]
    head = 0
    out_in: list[str] = []
    out_out: list[str] = []
    out_val: list[float] = []
    out_dw: list[float] = []
    for t, txn, amt, inbound in zip(ts, ids, amounts, is_in):
        if inbound:
            lots.append([t, txn, float(amt)])
            continue
        lo = t - w_us
        while head < len(lots) and (lots[head][0] < lo or lots[head][2] <= _EPS):
            head += 1
        need = float(amt)
        i = head
        while need > _EPS and i < len(lots):
            lot = lots[i]
            if lot[0] >= lo and lot[2] > _EPS:
                take = min(lot[2], need)
                lot[2] -= take
                need -= take
                out_in.append(lot[1])
                out_out.append(txn)
                out_val.append(take)
                out_dw.append((t - lot[0]) / _US)
            i += 1
    return pl.DataFrame({"in_txn": out_in, "out_txn": out_out, "value": out_val, "dwell_s": out_dw}, schema=LEDGER_LINKS_SCHEMA)


def _proportional_links(ts: list, ids: list, amounts: list, is_in: list, w_us: int) -> pl.DataFrame:
    """The proportional ledger with numpy: each outbound transfer takes the same share of every
    eligible lot (one vector operation per outbound transfer)."""
    t = np.asarray(ts, dtype=np.int64)
    amt = np.asarray(amounts, dtype=np.float64)
    inb = np.asarray(is_in, dtype=bool)
    txn = np.asarray(ids, dtype=object)
    lot_t = t[inb]
    rem = amt[inb].copy()
    lot_id = txn[inb]
    arrived = np.cumsum(inb)  # lots that arrived up to each event (inbound sort first at ties)
    parts_lot: list[np.ndarray] = []
    parts_out: list[np.ndarray] = []
    parts_val: list[np.ndarray] = []
    for k in np.flatnonzero(~inb):
        hi = int(arrived[k])
        lo = int(np.searchsorted(lot_t[:hi], t[k] - w_us, side="left"))
        seg = rem[lo:hi]
        total = float(seg.sum())
        if total <= _EPS:
            continue
        take = seg * (min(float(amt[k]), total) / total)
        rem[lo:hi] = seg - take
        nz = np.flatnonzero(take > 0)
        parts_lot.append(nz + lo)
        parts_out.append(np.full(nz.size, k))
        parts_val.append(take[nz])
    if not parts_lot:
        return pl.DataFrame(schema=LEDGER_LINKS_SCHEMA)
    li = np.concatenate(parts_lot)
    oi = np.concatenate(parts_out)
    return pl.DataFrame(
        {"in_txn": lot_id[li].tolist(), "out_txn": txn[oi].tolist(), "value": np.concatenate(parts_val),
         "dwell_s": (t[oi] - lot_t[li]) / _US},
        schema=LEDGER_LINKS_SCHEMA,
    )


@dataclass
class Trail:
    """A time-respecting money trail from one account (see :mod:`mulegraph.investigate` for the model).

    ``transfers``: one row per (hop, transfer): ``hop`` (0 = the seed transfers), ``txn_id``, ``ts``,
    ``src_account``, ``dst_account``, ``amount``, ``traced`` (the traced value it carries),
    ``dwell_s`` (traced-value weighted time the money waited at the account it left; null at hop 1).
    ``links``: the transfers behind each hop from 2 on: ``hop``, ``from_txn`` (hop - 1), ``to_txn`` (hop),
    ``value``, ``dwell_s``. ``accounts``: ``account_id``, ``hop`` (first reached), ``traced_in``,
    ``traced_out``, ``is_hub``, ``expanded``, ``focus``, ``score``.
    """

    account: str
    direction: str
    alloc: str
    within: timedelta
    hops: int
    transfers: pl.DataFrame
    links: pl.DataFrame
    accounts: pl.DataFrame
    window: TimeWindow | None = None

    def to_frame(self) -> pl.DataFrame:
        """One row per (hop, transfer), sorted by hop then time."""
        return self.transfers.sort(["hop", "ts", "txn_id"])

    def summary(self) -> pl.DataFrame:
        """Per hop: transfers, accounts reached, traced value, median and max dwell in hours."""
        reached = "dst_account" if self.direction == "forward" else "src_account"
        return (
            self.transfers.group_by("hop")
            .agg(
                pl.len().alias("transfers"),
                pl.col(reached).n_unique().alias("accounts"),
                pl.col("traced").sum().alias("traced"),
                (pl.col("dwell_s").median() / 3600).alias("dwell_median_h"),
                (pl.col("dwell_s").max() / 3600).alias("dwell_max_h"),
            )
            .sort("hop")
        )

    def traced_by_hop(self) -> dict[int, float]:
        """Traced value per hop."""
        s = self.summary()
        return dict(zip(s["hop"].to_list(), s["traced"].to_list()))

    def to_graph(self) -> nx.MultiDiGraph:
        """The trail as a MultiDiGraph: accounts as nodes, one edge per transfer (key = txn_id).

        Edge attributes: ``txn_id``, ``ts``, ``amount``, ``traced`` (summed over hops when a cycle
        brings money back through the same transfer), ``hop`` (first hop), ``dwell_s``.
        """
        g = nx.MultiDiGraph(kind="trail", focus=self.account, direction=self.direction, alloc=self.alloc,
                            within_h=self.within.total_seconds() / 3600, hops=self.hops)
        acc = self.accounts
        g.add_nodes_from(
            (r["account_id"], {k: v for k, v in r.items() if k != "account_id"}) for r in acc.to_dicts()
        )
        edges = (
            self.transfers.group_by("txn_id")
            .agg(
                pl.col("src_account").first(), pl.col("dst_account").first(), pl.col("ts").first(),
                pl.col("amount").first(), pl.col("traced").sum(), pl.col("hop").min(),
                pl.col("dwell_s").drop_nulls().first(),
            )
            .sort(["hop", "ts", "txn_id"])
        )
        g.add_edges_from(
            (r["src_account"], r["dst_account"], r["txn_id"],
             {"txn_id": r["txn_id"], "ts": r["ts"], "amount": r["amount"], "traced": r["traced"],
              "hop": r["hop"], "dwell_s": r["dwell_s"]})
            for r in edges.to_dicts()
        )
        return g


def trace_transfers(
    lf: pl.LazyFrame,
    account: str,
    *,
    forward: bool,
    hops: int,
    within: timedelta,
    alloc: str,
    is_hub: Callable[[list[str]], dict[str, bool]],
    txn_ids: Iterable[str] | None = None,
    expand_hubs: bool = False,
    min_value: float = 0.01,
) -> tuple[pl.DataFrame, pl.DataFrame, set[str]]:
    """Follow the money from ``account`` through the transfers of ``lf``, hop by hop.

    ``lf`` holds the window's transfers (``amount`` already the value to trace); ``is_hub`` says which
    of a list of accounts are hubs (not expanded unless ``expand_hubs``; ``account`` always is).
    Returns the trail's transfers (``hop``, transfer columns, ``traced``, ``dwell_s``), its links
    (:data:`~mulegraph.core.schema.TRAIL_LINKS_SCHEMA`) and the accounts whose ledgers were read.
    See :meth:`mulegraph.investigate.Investigation.trace` for the parameters.
    """
    w_us = int(within.total_seconds() * _US)
    near, far = ("dst_account", "src_account") if forward else ("src_account", "dst_account")
    # near: the account the money is at before the next hop (forward: receiver; backward: sender)
    if txn_ids is not None:
        ids = list(txn_ids)
        seeds = lf.filter(pl.col("txn_id").is_in(ids) & (pl.col(far) == account))
    else:
        seeds = lf.filter(pl.col(far) == account)
    prev = (
        seeds.select(_TX).collect()
        .with_columns(pl.col("ts").dt.epoch("us").alias("t"), pl.col("amount").alias("traced"),
                      pl.lit(None, pl.Float64).alias("dwell_s"))
        .unique("txn_id", keep="first", maintain_order=True)
    )
    if txn_ids is not None and prev.height < len(set(ids)):
        side, other = ("outbound", "backward for inbound") if forward else ("inbound", "forward for outbound")
        raise InputError(
            f"{len(set(ids)) - prev.height} of the {len(set(ids))} given transfer id(s) are not {side} transfers "
            f"of the account in the window; check the ids (or trace {other} ones)."
        )
    rows = [prev.with_columns(pl.lit(1, pl.Int32).alias("hop"))]
    link_rows: list[pl.DataFrame] = []
    cache: dict[str, tuple[int, pl.DataFrame]] = {}
    seen: list[pl.DataFrame] = []  # the transfers read for the ledgers; the next hop's come from here
    expanded: set[str] = {account}
    for k in range(2, hops + 1):
        if prev.height == 0:
            break
        # where the traced money sits, and up to when its ledger matters
        at = prev.group_by(near).agg(pl.col("t").max().alias("tmax")).rename({near: "acc"})
        accs = at["acc"].to_list()
        hub = is_hub(accs)
        keep = [a for a in accs if a == account or expand_hubs or not hub[a]]
        if not keep:
            break
        at = at.filter(pl.col("acc").is_in(keep)).with_columns(
            (pl.col("tmax") + w_us) if forward else pl.col("tmax")
        ).rename({"tmax": "bound"})
        expanded.update(keep)
        links = _account_links(lf, at, within, alloc, cache, seen)
        if forward:
            step = prev.select(pl.col("txn_id").alias("in_txn"), (pl.col("traced") / pl.col("amount")).alias("f")).join(
                links, on="in_txn", how="inner")
            tgt, src_key = "out_txn", "in_txn"
        else:
            step = prev.select(pl.col("txn_id").alias("out_txn"), (pl.col("traced") / pl.col("amount")).alias("f")).join(
                links, on="out_txn", how="inner")
            tgt, src_key = "in_txn", "out_txn"
        step = step.with_columns((pl.col("value") * pl.col("f")).alias("v")).filter(pl.col("v") > 0)
        agg = step.group_by(tgt).agg(
            pl.col("v").sum().alias("traced"),
            ((pl.col("v") * pl.col("dwell_s")).sum() / pl.col("v").sum()).alias("dwell_s"),
        ).filter(pl.col("traced") >= max(min_value, _EPS))
        if agg.height == 0:
            break
        tids = agg[tgt].to_list()
        tx = pl.concat(seen).filter(pl.col("txn_id").is_in(tids)).select(_TX).unique("txn_id", keep="first")
        nxt = tx.join(agg.rename({tgt: "txn_id"}), on="txn_id", how="inner").with_columns(
            pl.col("ts").dt.epoch("us").alias("t")
        )
        rows.append(nxt.with_columns(pl.lit(k, pl.Int32).alias("hop")))
        link_rows.append(
            step.filter(pl.col(tgt).is_in(tids)).select(
                pl.lit(k, pl.Int32).alias("hop"), pl.col(src_key).alias("from_txn"), pl.col(tgt).alias("to_txn"),
                pl.col("v").alias("value"), "dwell_s",
            )
        )
        prev = nxt
    transfers = pl.concat([r.select("hop", *_TX, "traced", "dwell_s") for r in rows], how="vertical_relaxed")
    links_df = pl.concat(link_rows) if link_rows else pl.DataFrame(schema=TRAIL_LINKS_SCHEMA)
    return transfers.sort(["hop", "ts", "txn_id"]), links_df, expanded


def _account_links(lf: pl.LazyFrame, at: pl.DataFrame, within: timedelta, alloc: str,
                   cache: dict[str, tuple[int, pl.DataFrame]], seen: list[pl.DataFrame]) -> pl.DataFrame:
    """Ledger links of the accounts in ``at`` (``acc``, ``bound``), from the window start to
    their bound (epoch us), reusing cached ledgers that already reach far enough."""
    todo = [
        (a, b) for a, b in zip(at["acc"].to_list(), at["bound"].to_list()) if not (a in cache and cache[a][0] >= b)
    ]
    need = pl.DataFrame(todo, schema={"acc": pl.String, "bound": pl.Int64}, orient="row")
    if need.height:
        accs = need["acc"].to_list()
        top = need["bound"].max()
        sel = lf.filter(
            (pl.col("src_account").is_in(accs) | pl.col("dst_account").is_in(accs))
            & (pl.col("ts") <= pl.lit(top, pl.Int64).cast(pl.Datetime("us", "UTC")))
        ).select(*_TX, pl.col("ts").dt.epoch("us").alias("t")).collect()
        seen.append(sel.select(_TX))
        ev = pl.concat([
            sel.select(pl.col("dst_account").alias("acc"), "txn_id", "t", "amount", pl.lit(True).alias("is_in")),
            sel.select(pl.col("src_account").alias("acc"), "txn_id", "t", "amount", pl.lit(False).alias("is_in")),
        ]).join(need, on="acc", how="inner").filter(pl.col("t") <= pl.col("bound"))
        bounds = dict(zip(need["acc"].to_list(), need["bound"].to_list()))
        groups = ev.partition_by("acc", as_dict=True, maintain_order=False) if ev.height else {}
        for a in accs:
            g = groups.get((a,))
            links = ledger_links(g, within, alloc) if g is not None else pl.DataFrame(schema=LEDGER_LINKS_SCHEMA)
            cache[a] = (bounds[a], links)
    frames = [cache[a][1] for a in at["acc"].to_list()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=LEDGER_LINKS_SCHEMA)


def trail_accounts(focus: str, transfers: pl.DataFrame, *, forward: bool, expanded: set[str],
                   is_hub: Callable[[list[str]], dict[str, bool]],
                   score_map: Callable[[list[str]], dict[str, tuple[float | None, int | None]]]) -> pl.DataFrame:
    """The accounts of a trail (``Trail.accounts``): the hop each is first reached at, the traced
    value in and out, and whether it is a hub, was expanded, is the focus, and its score."""
    recv = transfers.group_by("dst_account").agg(pl.col("traced").sum().alias("traced_in"), pl.col("hop").min().alias("h_in")).rename({"dst_account": "account_id"})
    sent = transfers.group_by("src_account").agg(pl.col("traced").sum().alias("traced_out"), pl.col("hop").min().alias("h_out")).rename({"src_account": "account_id"})
    acc = recv.join(sent, on="account_id", how="full", coalesce=True)
    if acc.height == 0:
        acc = pl.DataFrame({"account_id": [focus], "traced_in": [0.0], "h_in": [0], "traced_out": [0.0], "h_out": [0]},
                           schema={"account_id": pl.String, "traced_in": pl.Float64, "h_in": pl.Int32, "traced_out": pl.Float64, "h_out": pl.Int32})
    # hop at which the account is first reached: forward the receiver of a hop-k transfer,
    # backward its sender (the focus is hop 0)
    if forward:
        hop = pl.when(pl.col("h_in").is_not_null()).then(pl.col("h_in")).otherwise(pl.col("h_out") - 1)
    else:
        hop = pl.when(pl.col("h_out").is_not_null()).then(pl.col("h_out")).otherwise(pl.col("h_in") - 1)
    acc = acc.with_columns(
        pl.when(pl.col("account_id") == focus).then(0).otherwise(hop).cast(pl.Int32).alias("hop"),
        pl.col("traced_in").fill_null(0.0), pl.col("traced_out").fill_null(0.0),
    ).drop("h_in", "h_out")
    ids = acc["account_id"].to_list()
    hub = is_hub(ids)
    smap = score_map(ids)
    acc = acc.with_columns(
        pl.Series("is_hub", [hub[a] for a in ids], dtype=pl.Boolean),
        pl.Series("expanded", [a in expanded for a in ids], dtype=pl.Boolean),
        (pl.col("account_id") == focus).alias("focus"),
        pl.Series("score", [smap.get(a, (None, None))[0] for a in ids], dtype=pl.Float64),
    )
    return acc.sort(["hop", "account_id"])
