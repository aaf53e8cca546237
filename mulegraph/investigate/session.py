"""One investigation: questions about single accounts, answered from a store and a run's scores.

:func:`open_investigation` (or :meth:`Investigation.open`) opens a store and optionally a run;
an :class:`Investigation` then answers, one account at a time: its summary
(:class:`AccountSummary`), the subgraph around it (:meth:`~Investigation.ego_graph`), its money
trails (:meth:`~Investigation.trace`, built by :mod:`~mulegraph.investigate.trails`), its timeline
with a running balance, the run's reasons with their evidence (:mod:`~mulegraph.investigate.scores`)
and the investigators' decisions kept in the store. See :mod:`mulegraph.investigate` for hubs and
the allocation model of trails.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Literal

import networkx as nx
import polars as pl

from mulegraph.core.config import Config, FeatureConfig
from mulegraph.core.errors import InputError, StoreError
from mulegraph.core.schema import DECISION_SCHEMA, EXPLAIN_SCHEMA
from mulegraph.core.window import TimeWindow, filter_window, parse_duration, resolve_window
from mulegraph.investigate.scores import evidence_transfers, load_scores, reason_frame
from mulegraph.investigate.trails import ALLOCATIONS, DIRECTIONS, Trail, trace_transfers, trail_accounts

__all__ = ["AccountSummary", "Investigation", "open_investigation"]

#: transfer columns the investigation needs
_TX = ["txn_id", "ts", "src_account", "dst_account", "amount"]


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


class Investigation:
    """Questions about single accounts, answered from a store's transfers (and a run's scores).

    ``transfers`` is a canonical transfer frame (eager or lazy); ``scores`` a frame with the
    :data:`~mulegraph.core.schema.SCORE_SCHEMA` columns; ``store`` the :class:`mulegraph.io.store.Store` the
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
            new = pl.concat([nb["src_account"], nb["dst_account"]]).unique().sort().to_list()  # a fixed order: a fixed layout
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

        Columns (:data:`~mulegraph.core.schema.EXPLAIN_SCHEMA`): ``reason`` (1 = strongest),
        ``code``, ``feature``, ``family``, ``text``, ``value``, ``percentile``, ``txn_ids`` (list),
        ``n_transfers`` and ``evidence_total`` (count and sum of the evidence transfers found in the
        store), ``score`` and ``rank``. A code can appear more than once (two features behind the
        same typology). The scores' reasons may be a struct column or legacy JSON text.
        :meth:`evidence` returns the transfers.
        """
        if self.scores is None:
            raise InputError("no run is open; open the investigation with a run folder or scores to see reasons.")
        row = self.scores.filter(pl.col("account_id") == account)
        if row.height == 0:
            raise InputError("the account is not in the run's scores (hubs and inactive accounts are not ranked).")
        frame = reason_frame(row)
        if frame.height == 0:
            return pl.DataFrame(schema=EXPLAIN_SCHEMA)
        r = row.row(0, named=True)
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
        return evidence_transfers(self._lf, account, frame, code, reason=reason)

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
            schema=DECISION_SCHEMA,
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
        followed, under the ``alloc`` model of :mod:`mulegraph.investigate`; each account's ledger
        starts at the window start. Traced values below ``min_value`` are dropped. Hubs are not
        expanded unless ``expand_hubs``. The hop-by-hop work is :func:`~mulegraph.investigate.trails.trace_transfers`.

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
        if value not in ("amount", "amount_base"):
            raise InputError(f"the value must be 'amount' or 'amount_base'. Got '{value}' instead.")
        win = self._window(window, as_of)
        lf = self._in_window(win)
        self._require(account, lf)
        if value == "amount_base":
            if "amount_base" not in self._names:
                raise InputError("the transfers carry no amount_base column; trace with value='amount'.")
            lf = lf.with_columns(pl.coalesce("amount_base", "amount").alias("amount"))
        forward = direction == "forward"

        def is_hub(accounts: list[str]) -> dict[str, bool]:
            return self.hubs(accounts, win)

        transfers, links, expanded = trace_transfers(
            lf, account, forward=forward, hops=hops, within=w, alloc=alloc, is_hub=is_hub,
            txn_ids=txn_ids, expand_hubs=expand_hubs, min_value=min_value,
        )
        accounts = trail_accounts(account, transfers, forward=forward, expanded=expanded, is_hub=is_hub,
                                  score_map=self._score_map)
        return Trail(account=account, direction=direction, alloc=alloc, within=w, hops=hops,
                     transfers=transfers, links=links, accounts=accounts, window=win)


def open_investigation(store: Any, run: str | os.PathLike | pl.DataFrame | None = None, *,
                       config: FeatureConfig | Config | None = None, in_memory: bool = False) -> Investigation:
    """Open a store (path or ``Store``) and optionally a run folder or scores file for investigation
    (see :meth:`Investigation.open`)."""
    return Investigation.open(store, run, config=config, in_memory=in_memory)
