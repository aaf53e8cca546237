"""Investigating one account: summary, flow subgraph, money trails, timeline and reasons.

Open a store (and optionally a run's scores) with :func:`open_investigation`, then ask about one
account at a time::

    inv = open_investigation("store", run="runs/latest")
    inv.account_summary("ACC123")
    g = inv.ego_graph("ACC123", hops=2, window="30d")      # nx.MultiDiGraph, one edge per transfer
    trail = inv.trace("ACC123", direction="forward", hops=4, within="72h", alloc="fifo")
    trail.summary(); trail.to_frame(); trail.to_graph()
    inv.timeline("ACC123")                                 # running balance of observed transfers
    inv.explain("ACC123")                                  # reason codes with the transfers behind them

Selections are Polars filters over the store (one lazy query per hop); Python loops only run over
hops and over the few transfers of the accounts on a small frontier.

Hubs
----
An account with more distinct counterparties than ``FeatureConfig.hub_degree`` in the chosen window,
or listed in ``FeatureConfig.hub_accounts``, is a hub (payment processor, settlement or external
pseudo-account). Hubs are shown in subgraphs and trails but not expanded unless ``expand_hubs=True``;
the account under investigation itself is always expanded.

Money trails: the allocation model
----------------------------------
Each account's observed transfers are read as a ledger, starting empty at the start of the chosen
window (money held before that, or moved outside the export, is unknown). Every inbound transfer is a
*lot* of money; every outbound transfer draws on the lots that are *eligible* at its time ``t``:
those that arrived in ``[t - within, t]``. An equal timestamp counts as possibly before the outbound
transfer (exports may carry whole days only), so inbound transfers at the same instant are eligible;
ties are ordered by ``txn_id``. Lots older than ``within`` drop out of the pool (for the trail the
money stayed in the account). Money that arrived after an outbound transfer is never drawn by it.
What an outbound transfer cannot draw from eligible lots comes from unobserved money and is untraced.

* ``alloc="fifo"``: an outbound transfer consumes the eligible lots in arrival order, oldest first;
  traced and untraced money alike queue, so money that was already waiting leaves first.
* ``alloc="proportional"``: an outbound transfer of amount ``a`` takes ``min(a, P)`` from the eligible
  pool of total ``P`` pro rata, so it carries the traced share of the pool at that moment, and every
  eligible lot shrinks by the same factor.

Either way the account's ledger becomes *links* ``(inbound txn, outbound txn, value, dwell)``: how much
of each inbound transfer left through each outbound transfer, and after how long. Tracing then is
linear: forward, an outbound transfer carries ``sum(value * traced_in / amount_in)`` over its links;
backward, an inbound transfer is behind ``sum(value * traced_out / amount_out)``.

Worked example, tracing forward from ``A`` (``within="72h"``; amounts in one currency)::

    09:00  A -> M   800   hop 1: A's outgoing money, traced in full
    07:00  Y -> M   400   untraced money already at M
    10:00  M -> B   500   hop 2: fifo 100 (Y's 400 leaves first, then 100 of A's), dwell 1h
                                 proportional 500 * 800/1200 = 333.33
    11:00  M -> C   600   hop 2: fifo 600 (from A's 800), dwell 2h
                                 proportional pool Y 233.33 + A 466.67 -> 600 * 466.67/700 = 400
    12:00  A -> M   200   hop 1: 200 (arrives after M -> B and M -> C: never traced through them)
    13:00  M -> D   150   hop 2: fifo 100 left of A's 800 + 50 of A's 200 = 150
                                 proportional pool Y 33.33 + A 66.67 + A 200 -> 150 * 266.67/300 = 133.33

With two hops, FIFO traces 1000 at hop 1 and 850 at hop 2 (B 100, C 600, D 150); proportional
traces 1000 and 866.67 (B 333.33, C 400, D 133.33). Backward from an account the same links are
followed against the flow: hop 1 are the account's inbound transfers, hop 2 the inbound transfers of
their senders that those were drawn from, and so on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

import networkx as nx
import numpy as np
import polars as pl

from mulegraph.core.config import Config, FeatureConfig
from mulegraph.core.errors import InputError, StoreError
from mulegraph.core.window import TimeWindow, filter_window, parse_duration, resolve_window

__all__ = [
    "ALLOCATIONS",
    "DIRECTIONS",
    "AccountSummary",
    "Investigation",
    "Trail",
    "ledger_links",
    "load_scores",
    "open_investigation",
]

ALLOCATIONS = ("fifo", "proportional")
DIRECTIONS = ("forward", "backward")

_EPS = 1e-9
_TX = ["txn_id", "ts", "src_account", "dst_account", "amount"]
_US = 1_000_000
_LINKS_SCHEMA = {"in_txn": pl.String(), "out_txn": pl.String(), "value": pl.Float64(), "dwell_s": pl.Float64()}


# --------------------------------------------------------------------------------------------- scores


def load_scores(run: str | os.PathLike | pl.DataFrame) -> pl.DataFrame:
    """Read a run's scores: a run folder (``scores.parquet`` inside), a ``runs/latest`` pointer, or a
    scores file (``.parquet``, ``.csv`` or ``.json``). A DataFrame is returned as it is."""
    if isinstance(run, pl.DataFrame):
        return run
    p = Path(run)
    if p.is_file() and p.suffix == "" and p.stat().st_size < 4096:
        # a pointer file such as runs/latest holding a run id or a path
        target = p.read_text(encoding="utf-8").strip()
        cand = Path(target) if Path(target).is_absolute() else p.parent / target
        if cand.exists():
            p = cand
    if p.is_dir():
        if (p / "scores.parquet").is_file():
            p = p / "scores.parquet"
        elif (p / "latest").exists():
            return load_scores(p / "latest")
        else:
            raise InputError("the run folder has no scores.parquet; pass a run folder from 'mulegraph run' or a scores file.")
    if not p.is_file():
        raise InputError("the run or scores file does not exist; pass a run folder or a scores file.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(p)
        elif suffix == ".csv":
            df = pl.read_csv(p, schema_overrides={"account_id": pl.String})
        elif suffix == ".json":
            df = pl.read_json(p)
        else:
            raise InputError("scores must be a .parquet, .csv or .json file, or a run folder.")
    except (pl.exceptions.PolarsError, OSError, ValueError):
        raise InputError("the scores file cannot be read; pass the scores.parquet of a run.") from None
    if "account_id" not in df.columns or "score" not in df.columns:
        raise InputError("the scores file lacks the account_id and score columns; pass the scores of a run.")
    return df.with_columns(pl.col("account_id").cast(pl.String))


# -------------------------------------------------------------------------------------- the ledger


def ledger_links(events: pl.DataFrame, within: str | timedelta, alloc: str = "fifo") -> pl.DataFrame:
    """How one account's inbound money left through its outbound transfers.

    ``events`` holds one account's transfers: ``txn_id``, ``t`` (epoch microseconds), ``amount`` and
    ``is_in`` (True for inbound). Returns ``in_txn, out_txn, value, dwell_s``: ``value`` of inbound
    ``in_txn`` left through ``out_txn`` after ``dwell_s`` seconds, under the allocation model of this
    module's docstring (``fifo`` or ``proportional``; lots eligible for ``within`` after arrival, equal
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
    return pl.DataFrame({"in_txn": out_in, "out_txn": out_out, "value": out_val, "dwell_s": out_dw}, schema=_LINKS_SCHEMA)


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
        return pl.DataFrame(schema=_LINKS_SCHEMA)
    li = np.concatenate(parts_lot)
    oi = np.concatenate(parts_out)
    return pl.DataFrame(
        {"in_txn": lot_id[li].tolist(), "out_txn": txn[oi].tolist(), "value": np.concatenate(parts_val),
         "dwell_s": (t[oi] - lot_t[li]) / _US},
        schema=_LINKS_SCHEMA,
    )


# ------------------------------------------------------------------------------------------ results


@dataclass
class AccountSummary:
    """What the store (and the run, if open) says about one account."""

    account_id: str
    first_seen: datetime | None
    last_seen: datetime | None
    n_in: int
    n_out: int
    total_in: float
    total_out: float
    senders: int
    recipients: int
    counterparties: int
    currencies: list[str]
    channels: list[str]
    is_hub: bool
    score: float | None = None
    rank: int | None = None
    decision: str | None = None
    decision_date: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain dict."""
        return asdict(self)


@dataclass
class Trail:
    """A time-respecting money trail from one account (see the module docstring for the model).

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


# ------------------------------------------------------------------------------------ investigation


class Investigation:
    """Questions about single accounts, answered from a store's transfers (and a run's scores).

    ``transfers`` is a canonical transfer frame (eager or lazy); ``scores`` a frame with the
    :data:`~mulegraph.schema.SCORE_SCHEMA` columns; ``store`` the :class:`mulegraph.store.Store` the
    transfers come from (needed to read and record decisions).
    """

    def __init__(
        self,
        transfers: pl.DataFrame | pl.LazyFrame,
        *,
        scores: pl.DataFrame | None = None,
        store: Any = None,
        config: FeatureConfig | Config | None = None,
    ) -> None:
        lf = transfers.lazy() if isinstance(transfers, pl.DataFrame) else transfers
        names = lf.collect_schema().names()
        missing = [c for c in _TX if c not in names]
        if missing:
            raise InputError(f"transfers lack column(s) {', '.join(missing)}; they must follow the canonical schema.")
        self._lf = lf
        self._names = names
        self.scores = scores
        self.store = store
        if isinstance(config, Config):
            config = config.features
        self.config = config or FeatureConfig()
        self._newest: datetime | None = None
        self._hub_cache: dict[tuple, dict[str, bool]] = {}

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        store: Any,
        run: str | os.PathLike | pl.DataFrame | None = None,
        *,
        config: FeatureConfig | Config | None = None,
        in_memory: bool = False,
    ) -> "Investigation":
        """Open a store (a path or a ``Store``) and optionally a run folder or scores file.

        Each question scans the store's Parquet files with a filter; ``in_memory=True`` reads the
        transfers once instead (faster for many questions, at the cost of the memory they take).
        """
        if isinstance(store, (str, os.PathLike)):
            from mulegraph.io.store import Store  # imported here: the store module is optional for frame-only use

            store = Store.open(store)
        if hasattr(store, "scan"):
            lf = store.scan()
            if in_memory:
                keep = [c for c in (*_TX, "currency", "channel", "amount_base") if c in lf.collect_schema().names()]
                lf = lf.select(keep).collect().lazy()
        elif hasattr(store, "transfers"):
            lf = store.transfers().lazy()
        else:
            raise StoreError("expected a store path or a Store object.")
        scores = load_scores(run) if run is not None else None
        return cls(lf, scores=scores, store=store, config=config)

    # ---------------------------------------------------------------- helpers
    def _window(self, window: str | timedelta | TimeWindow | None, as_of: str | datetime | None) -> TimeWindow:
        if isinstance(window, TimeWindow):
            return window
        if as_of is None and self._newest is None:
            if self.store is not None and hasattr(self.store, "newest_ts"):
                self._newest = self.store.newest_ts()
            if self._newest is None:
                self._newest = self._lf.select(pl.col("ts").max()).collect().item()
        return resolve_window(window, as_of, self._newest)

    def _in_window(self, win: TimeWindow) -> pl.LazyFrame:
        return filter_window(self._lf, win)

    def _require(self, account: str, lf: pl.LazyFrame) -> None:
        n = lf.filter((pl.col("src_account") == account) | (pl.col("dst_account") == account)).select(pl.len()).collect().item()
        if n == 0:
            raise InputError("the account has no transfers in the store within the chosen window; check the id or widen the window.")

    def _score_map(self, accounts: Iterable[str]) -> dict[str, tuple[float | None, int | None]]:
        if self.scores is None:
            return {}
        cols = ["account_id", "score"] + (["rank"] if "rank" in self.scores.columns else [])
        sub = self.scores.select(cols).filter(pl.col("account_id").is_in(list(accounts)))
        out = {}
        for r in sub.to_dicts():
            out[r["account_id"]] = (r["score"], r.get("rank"))
        return out

    def hubs(self, accounts: Iterable[str], window: str | TimeWindow | None = "all", as_of=None) -> dict[str, bool]:
        """Whether each account is a hub in the window (more distinct counterparties than
        ``hub_degree``, or listed in ``hub_accounts``)."""
        win = self._window(window, as_of)
        key = (win.start, win.end)
        cache = self._hub_cache.setdefault(key, {})
        want = [a for a in dict.fromkeys(accounts) if a not in cache]
        if want:
            lf = self._in_window(win)
            pairs = pl.concat([
                lf.filter(pl.col("src_account").is_in(want)).select(a=pl.col("src_account"), b=pl.col("dst_account")),
                lf.filter(pl.col("dst_account").is_in(want)).select(a=pl.col("dst_account"), b=pl.col("src_account")),
            ])
            deg = pairs.unique().group_by("a").agg(pl.len().alias("n")).collect()
            dmap = dict(zip(deg["a"].to_list(), deg["n"].to_list()))
            listed = set(self.config.hub_accounts)
            for a in want:
                cache[a] = a in listed or dmap.get(a, 0) > self.config.hub_degree
        return {a: cache[a] for a in accounts}

    # ---------------------------------------------------------------- summary
    def account_summary(self, account: str, *, window: str | TimeWindow | None = "all", as_of=None) -> AccountSummary:
        """Counts, totals, counterparties, first and last activity, hub flag, score and decision."""
        win = self._window(window, as_of)
        lf = self._in_window(win)
        has_cur = "currency" in self._names
        has_ch = "channel" in self._names
        mine = lf.filter((pl.col("src_account") == account) | (pl.col("dst_account") == account))
        sel = mine.select(
            "ts", "src_account", "dst_account", "amount",
            (pl.col("currency") if has_cur else pl.lit(None, pl.String).alias("currency")),
            (pl.col("channel") if has_ch else pl.lit(None, pl.String).alias("channel")),
        ).collect()
        if sel.height == 0:
            raise InputError("the account has no transfers in the store within the chosen window; check the id or widen the window.")
        inb = pl.col("dst_account") == account
        outb = pl.col("src_account") == account
        agg = sel.select(
            pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"),
            inb.sum().alias("n_in"), outb.sum().alias("n_out"),
            pl.col("amount").filter(inb).sum().alias("total_in"),
            pl.col("amount").filter(outb).sum().alias("total_out"),
            pl.col("src_account").filter(inb).n_unique().alias("senders"),
            pl.col("dst_account").filter(outb).n_unique().alias("recipients"),
        ).row(0, named=True)
        cps = pl.concat([sel.filter(inb)["src_account"], sel.filter(outb)["dst_account"]]).n_unique()
        smap = self._score_map([account])
        score, rank = smap.get(account, (None, None))
        decision = decision_date = None
        if self.store is not None and hasattr(self.store, "decisions"):
            dec = self.store.decisions()
            if dec.height:
                mine_dec = dec.filter(pl.col("account_id") == account).sort("date")
                if mine_dec.height:
                    last = mine_dec.row(-1, named=True)
                    decision, decision_date = last["decision"], last["date"]
        return AccountSummary(
            account_id=account,
            first_seen=agg["first"],
            last_seen=agg["last"],
            n_in=int(agg["n_in"]),
            n_out=int(agg["n_out"]),
            total_in=float(agg["total_in"] or 0.0),
            total_out=float(agg["total_out"] or 0.0),
            senders=int(agg["senders"]),
            recipients=int(agg["recipients"]),
            counterparties=int(cps),
            currencies=sorted(c for c in sel["currency"].unique().to_list() if c is not None),
            channels=sorted(c for c in sel["channel"].unique().to_list() if c is not None),
            is_hub=self.hubs([account], win)[account],
            score=score,
            rank=rank,
            decision=decision,
            decision_date=decision_date,
        )

    # ---------------------------------------------------------------- ego graph
    def ego_graph(
        self,
        account: str,
        hops: int = 2,
        *,
        window: str | TimeWindow | None = "all",
        as_of=None,
        expand_hubs: bool = False,
        max_nodes: int = 2000,
    ) -> nx.MultiDiGraph:
        """The accounts within ``hops`` transfers of ``account`` (either direction) and every transfer
        between them in the window, as a MultiDiGraph with one edge per transfer (key = txn_id;
        attributes ``txn_id``, ``ts``, ``amount`` and ``channel``/``currency`` when present).

        Nodes carry ``hop`` (distance), ``is_hub``, ``focus`` and, with a run open, ``score`` and
        ``rank``. Hubs are included but their other counterparties are not added unless
        ``expand_hubs``. More than ``max_nodes`` accounts raise :class:`InputError`.
        """
        if hops < 0:
            raise InputError(f"hops must be 0 or more. Got '{hops}' instead.")
        win = self._window(window, as_of)
        lf = self._in_window(win)
        self._require(account, lf)
        dist = {account: 0}
        frontier = [account]
        for h in range(1, hops + 1):
            hub = self.hubs(frontier, win)
            grow = [a for a in frontier if a == account or expand_hubs or not hub[a]]
            if not grow:
                break
            nb = lf.filter(pl.col("src_account").is_in(grow) | pl.col("dst_account").is_in(grow)).select(
                "src_account", "dst_account"
            ).collect()
            new = pl.concat([nb["src_account"], nb["dst_account"]]).unique().to_list()
            frontier = [a for a in new if a not in dist]
            for a in frontier:
                dist[a] = h
            if len(dist) > max_nodes:
                raise InputError(
                    f"the subgraph would hold more than {max_nodes} accounts; use fewer hops, a shorter window or a larger max_nodes."
                )
        nodes = list(dist)
        extra = [c for c in ("currency", "channel") if c in self._names]
        tx = lf.filter(pl.col("src_account").is_in(nodes) & pl.col("dst_account").is_in(nodes)).select(
            _TX + extra
        ).collect().sort(["ts", "txn_id"])
        return self._graph(nodes, dist, tx, account, win, kind="ego")

    def _graph(self, nodes: list[str], dist: dict[str, int], tx: pl.DataFrame, focus: str, win: TimeWindow, kind: str) -> nx.MultiDiGraph:
        g = nx.MultiDiGraph(kind=kind, focus=focus, window=win.describe())
        hub = self.hubs(nodes, win)
        smap = self._score_map(nodes)
        for a in nodes:
            attrs = {"hop": dist[a], "is_hub": hub[a], "focus": a == focus}
            if a in smap:
                attrs["score"], attrs["rank"] = smap[a]
            g.add_node(a, **attrs)
        cols = tx.columns
        g.add_edges_from(
            (r["src_account"], r["dst_account"], r["txn_id"], {c: r[c] for c in cols if c not in ("src_account", "dst_account")})
            for r in tx.to_dicts()
        )
        return g

    # ---------------------------------------------------------------- timeline
    def timeline(self, account: str, *, window: str | TimeWindow | None = "all", as_of=None, last: int | None = None) -> pl.DataFrame:
        """The account's transfers in time order with a running balance.

        Columns: ``ts``, ``txn_id``, ``direction`` (in/out), ``counterparty``, ``amount``, ``flow``
        (+amount in, -amount out), ``balance`` (running sum of ``flow`` from 0 at the window start:
        the observed balance change, not the bank balance), ``channel`` when present. At equal
        timestamps inbound transfers come first. ``last`` keeps only the newest rows.
        """
        win = self._window(window, as_of)
        lf = self._in_window(win)
        ch = [pl.col("channel")] if "channel" in self._names else [pl.lit(None, pl.String).alias("channel")]
        base = ["ts", "txn_id"]
        inb = lf.filter(pl.col("dst_account") == account).select(
            *base, pl.lit("in").alias("direction"), pl.col("src_account").alias("counterparty"), "amount",
            pl.col("amount").alias("flow"), *ch,
        )
        outb = lf.filter(pl.col("src_account") == account).select(
            *base, pl.lit("out").alias("direction"), pl.col("dst_account").alias("counterparty"), "amount",
            (-pl.col("amount")).alias("flow"), *ch,
        )
        tl = pl.concat([inb, outb]).collect()
        if tl.height == 0:
            raise InputError("the account has no transfers in the store within the chosen window; check the id or widen the window.")
        tl = tl.sort(["ts", "direction", "txn_id"]).with_columns(pl.col("flow").cum_sum().alias("balance"))
        tl = tl.select("ts", "txn_id", "direction", "counterparty", "amount", "flow", "balance", "channel")
        return tl.tail(last) if last else tl

    # ---------------------------------------------------------------- explain
    def explain(self, account: str) -> pl.DataFrame:
        """The run's reasons for the account, each with its evidence.

        Columns: ``reason`` (1 = strongest), ``code``, ``feature``, ``family``, ``text``, ``value``,
        ``percentile``, ``txn_ids`` (list), ``n_transfers`` and ``evidence_total`` (count and sum of
        the evidence transfers found in the store), ``score`` and ``rank``. A code can appear more
        than once (two features behind the same typology). :meth:`evidence` returns the transfers.
        """
        if self.scores is None:
            raise InputError("no run is open; open the investigation with a run folder or scores to see reasons.")
        row = self.scores.filter(pl.col("account_id") == account)
        if row.height == 0:
            raise InputError("the account is not in the run's scores (hubs and inactive accounts are not ranked).")
        r = row.row(0, named=True)
        reasons = _parse_reasons(r.get("reasons"))
        if not reasons:
            return pl.DataFrame(schema={"reason": pl.UInt32, "code": pl.String, "feature": pl.String, "family": pl.String, "text": pl.String,
                                        "value": pl.Float64, "percentile": pl.Float64, "txn_ids": pl.List(pl.String),
                                        "n_transfers": pl.UInt32, "evidence_total": pl.Float64, "score": pl.Float64,
                                        "rank": pl.Int64})
        frame = pl.DataFrame(
            {
                "code": [str(x.get("code", "")) for x in reasons],
                "feature": [x.get("feature") for x in reasons],
                "family": [x.get("family") for x in reasons],
                "text": [x.get("text") for x in reasons],
                "value": [_num(x.get("value")) for x in reasons],
                "percentile": [_num(x.get("percentile")) for x in reasons],
                "txn_ids": [[str(t) for t in (x.get("txn_ids") or [])] for x in reasons],
            },
            schema={"code": pl.String, "feature": pl.String, "family": pl.String, "text": pl.String,
                    "value": pl.Float64, "percentile": pl.Float64, "txn_ids": pl.List(pl.String)},
        ).with_row_index("reason", offset=1)
        ev = self.evidence(account, frame=frame)
        stats = ev.group_by("reason").agg(pl.len().cast(pl.UInt32).alias("n_transfers"), pl.col("amount").sum().alias("evidence_total"))
        out = frame.join(stats, on="reason", how="left").with_columns(
            pl.col("n_transfers").fill_null(0), pl.col("evidence_total").fill_null(0.0),
            pl.lit(r.get("score"), pl.Float64).alias("score"), pl.lit(r.get("rank"), pl.Int64).alias("rank"),
        )
        return out.sort("reason")

    def evidence(self, account: str, code: str | None = None, *, reason: int | None = None,
                 frame: pl.DataFrame | None = None) -> pl.DataFrame:
        """The transfers behind the account's reasons (all, one ``code`` or one ``reason`` number).

        Columns: ``reason``, ``code``, ``txn_id``, ``ts``, ``src_account``, ``dst_account``,
        ``amount`` and ``direction`` (``in``/``out`` for the account, ``other`` for a transfer of the
        pattern around it). Ids that are not in the store are left out.
        """
        if frame is None:
            frame = self.explain(account)
        pairs = frame.select("reason", "code", "txn_ids").explode("txn_ids").rename({"txn_ids": "txn_id"}).drop_nulls("txn_id")
        if code is not None:
            pairs = pairs.filter(pl.col("code") == code)
        if reason is not None:
            pairs = pairs.filter(pl.col("reason") == reason)
        ids = pairs["txn_id"].unique().to_list()
        tx = self._lf.filter(pl.col("txn_id").is_in(ids)).select(_TX).collect().unique("txn_id", keep="first")
        out = pairs.join(tx, on="txn_id", how="inner").with_columns(
            pl.when(pl.col("dst_account") == account).then(pl.lit("in"))
            .when(pl.col("src_account") == account).then(pl.lit("out"))
            .otherwise(pl.lit("other")).alias("direction")
        )
        return out.sort(["reason", "ts", "txn_id"])

    # ---------------------------------------------------------------- decisions
    def record_decision(self, account: str, decision: Literal["confirmed", "cleared"], note: str = "", date: datetime | None = None) -> pl.DataFrame:
        """Record an investigator's decision in the store (training reads it as a label)."""
        if decision not in ("confirmed", "cleared"):
            raise InputError(f"the decision must be 'confirmed' or 'cleared'. Got '{decision}' instead.")
        if self.store is None or not hasattr(self.store, "add_decisions"):
            raise StoreError("no store is open; open the investigation from a store to record decisions.")
        date = date or datetime.now(timezone.utc)
        if date.tzinfo is None:
            date = date.replace(tzinfo=timezone.utc)
        frame = pl.DataFrame(
            {"account_id": [account], "decision": [decision], "date": [date], "note": [note]},
            schema={"account_id": pl.String(), "decision": pl.String(), "date": pl.Datetime("us", "UTC"), "note": pl.String()},
        )
        self.store.add_decisions(frame)
        return frame

    # ---------------------------------------------------------------- trails
    def trace(
        self,
        account: str,
        direction: Literal["forward", "backward"] = "forward",
        hops: int = 4,
        within: str | timedelta = "72h",
        alloc: Literal["fifo", "proportional"] = "fifo",
        *,
        window: str | TimeWindow | None = "all",
        as_of=None,
        txn_ids: Iterable[str] | None = None,
        expand_hubs: bool = False,
        min_value: float = 0.01,
        value: Literal["amount", "amount_base"] = "amount",
    ) -> Trail:
        """Follow the money from ``account`` forwards or backwards in time.

        Forward, hop 1 are the account's outbound transfers in the window (or the given
        ``txn_ids`` among them), traced in full; hop 2 the receivers' outbound transfers drawn from
        hop 1, and so on. Backward, hop 1 are the account's inbound transfers and each further hop
        goes to the senders' inbound transfers that they were drawn from. Only transfers
        within ``within`` after the money arrived (forward) or before it left (backward) are
        followed, under the ``alloc`` model of the module docstring; each account's ledger starts
        at the window start. Traced values below ``min_value`` are dropped. Hubs are not expanded
        unless ``expand_hubs``.

        Amounts are added up as they are, so a trail through several currencies mixes them; with
        ``value="amount_base"`` (when the store carries amounts converted to one reporting currency)
        the trail uses those instead, falling back to ``amount`` where ``amount_base`` is missing.
        The trail's ``amount`` column then holds the value used.
        """
        if direction not in DIRECTIONS:
            raise InputError(f"the direction must be 'forward' or 'backward'. Got '{direction}' instead.")
        if alloc not in ALLOCATIONS:
            raise InputError(f"the allocation must be 'fifo' or 'proportional'. Got '{alloc}' instead.")
        if hops < 1:
            raise InputError(f"hops must be 1 or more. Got '{hops}' instead.")
        w = parse_duration(within, name="within")
        w_us = int(w.total_seconds() * _US)
        if value not in ("amount", "amount_base"):
            raise InputError(f"the value must be 'amount' or 'amount_base'. Got '{value}' instead.")
        win = self._window(window, as_of)
        lf = self._in_window(win)
        self._require(account, lf)
        if value == "amount_base":
            if "amount_base" not in self._names:
                raise InputError("the transfers carry no amount_base column; trace with value='amount'.")
            lf = lf.with_columns(pl.coalesce("amount_base", "amount").alias("amount"))
        fwd = direction == "forward"
        near, far = ("dst_account", "src_account") if fwd else ("src_account", "dst_account")
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
            side, other = ("outbound", "backward for inbound") if fwd else ("inbound", "forward for outbound")
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
            hub = self.hubs(accs, win)
            keep = [a for a in accs if a == account or expand_hubs or not hub[a]]
            if not keep:
                break
            at = at.filter(pl.col("acc").is_in(keep)).with_columns(
                (pl.col("tmax") + w_us) if fwd else pl.col("tmax")
            ).rename({"tmax": "bound"})
            expanded.update(keep)
            links = self._links(lf, at, w, alloc, cache, seen)
            if fwd:
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
        links_df = (
            pl.concat(link_rows) if link_rows
            else pl.DataFrame(schema={"hop": pl.Int32, "from_txn": pl.String, "to_txn": pl.String, "value": pl.Float64, "dwell_s": pl.Float64})
        )
        accounts = self._trail_accounts(account, transfers, fwd, expanded, win)
        return Trail(account=account, direction=direction, alloc=alloc, within=w, hops=hops,
                     transfers=transfers.sort(["hop", "ts", "txn_id"]), links=links_df, accounts=accounts, window=win)

    def _links(self, lf: pl.LazyFrame, at: pl.DataFrame, within: timedelta, alloc: str,
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
                links = ledger_links(g, within, alloc) if g is not None else pl.DataFrame(schema=_LINKS_SCHEMA)
                cache[a] = (bounds[a], links)
        frames = [cache[a][1] for a in at["acc"].to_list()]
        return pl.concat(frames) if frames else pl.DataFrame(schema=_LINKS_SCHEMA)

    def _trail_accounts(self, focus: str, transfers: pl.DataFrame, fwd: bool, expanded: set[str], win: TimeWindow) -> pl.DataFrame:
        recv = transfers.group_by("dst_account").agg(pl.col("traced").sum().alias("traced_in"), pl.col("hop").min().alias("h_in")).rename({"dst_account": "account_id"})
        sent = transfers.group_by("src_account").agg(pl.col("traced").sum().alias("traced_out"), pl.col("hop").min().alias("h_out")).rename({"src_account": "account_id"})
        acc = recv.join(sent, on="account_id", how="full", coalesce=True)
        if acc.height == 0:
            acc = pl.DataFrame({"account_id": [focus], "traced_in": [0.0], "h_in": [0], "traced_out": [0.0], "h_out": [0]},
                               schema={"account_id": pl.String, "traced_in": pl.Float64, "h_in": pl.Int32, "traced_out": pl.Float64, "h_out": pl.Int32})
        # hop at which the account is first reached: forward the receiver of a hop-k transfer,
        # backward its sender (the focus is hop 0)
        if fwd:
            hop = pl.when(pl.col("h_in").is_not_null()).then(pl.col("h_in")).otherwise(pl.col("h_out") - 1)
        else:
            hop = pl.when(pl.col("h_out").is_not_null()).then(pl.col("h_out")).otherwise(pl.col("h_in") - 1)
        acc = acc.with_columns(
            pl.when(pl.col("account_id") == focus).then(0).otherwise(hop).cast(pl.Int32).alias("hop"),
            pl.col("traced_in").fill_null(0.0), pl.col("traced_out").fill_null(0.0),
        ).drop("h_in", "h_out")
        ids = acc["account_id"].to_list()
        hub = self.hubs(ids, win)
        smap = self._score_map(ids)
        acc = acc.with_columns(
            pl.Series("is_hub", [hub[a] for a in ids], dtype=pl.Boolean),
            pl.Series("expanded", [a in expanded for a in ids], dtype=pl.Boolean),
            (pl.col("account_id") == focus).alias("focus"),
            pl.Series("score", [smap.get(a, (None, None))[0] for a in ids], dtype=pl.Float64),
        )
        return acc.sort(["hop", "account_id"])


def _num(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _parse_reasons(text: Any) -> list[dict]:
    if text is None:
        return []
    if isinstance(text, list):
        return [x for x in text if isinstance(x, dict)]
    try:
        val = json.loads(text)
    except (TypeError, ValueError):
        return []
    return [x for x in val if isinstance(x, dict)] if isinstance(val, list) else []


def open_investigation(store: Any, run: str | os.PathLike | pl.DataFrame | None = None, *,
                       config: FeatureConfig | Config | None = None, in_memory: bool = False) -> Investigation:
    """Open a store (path or ``Store``) and optionally a run folder or scores file for investigation
    (see :meth:`Investigation.open`)."""
    return Investigation.open(store, run, config=config, in_memory=in_memory)
