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

Modules
-------
:mod:`~mulegraph.investigate.session` (:class:`Investigation`, :class:`AccountSummary`,
:func:`open_investigation`), :mod:`~mulegraph.investigate.trails` (:func:`ledger_links`,
:class:`Trail`), :mod:`~mulegraph.investigate.scores` (:func:`load_scores`, reasons and their
evidence), :mod:`~mulegraph.investigate.draw` (pictures), :mod:`~mulegraph.investigate.export`
(GraphML, GEXF, Cytoscape JSON) and :mod:`~mulegraph.investigate.output` (:func:`save_graph`: a
picture or a graph file, chosen by the file's suffix).
"""

from mulegraph.investigate.output import SAVE_FORMATS, save_graph, trace_to_file
from mulegraph.investigate.scores import load_scores
from mulegraph.investigate.session import AccountSummary, Investigation, open_investigation
from mulegraph.investigate.trails import ALLOCATIONS, DIRECTIONS, Trail, ledger_links

__all__ = [
    "ALLOCATIONS",
    "DIRECTIONS",
    "SAVE_FORMATS",
    "AccountSummary",
    "Investigation",
    "Trail",
    "ledger_links",
    "load_scores",
    "open_investigation",
    "save_graph",
    "trace_to_file",
]
