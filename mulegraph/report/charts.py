"""The pictures of the HTML report, as base64 SVG data URIs (vector, text kept as text).

* :func:`score_chart`: the distribution of scores (log scale), with the lowest alerted score marked;
* :func:`flow_chart`: one suspect in the middle, the counterparties that paid it on the left and
  those it paid on the right, line width by value.

Drawn with matplotlib's object API (no global state, no display needed); the SVG has no metadata
block and no DOCTYPE, so the only URLs inside are the SVG namespace declarations. Labels from the
data are drawn as plain text: control characters as visible escapes
(:func:`mulegraph.core.escape.visible`), no mathtext (a ``$`` in an id is a dollar sign), and
matplotlib's SVG writer escapes ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import base64
import io
import re

import polars as pl

from mulegraph.core.escape import visible
from mulegraph.report.coarsen import fmt_amount, round_amount
from mulegraph.report.pseudonym import Pseudonymiser

__all__ = ["score_chart", "flow_chart"]

_SVG_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


def _svg(fig, tight: bool = True) -> str:
    """The figure as a base64 SVG data URI: vector (sharp on paper), text kept as text, no metadata
    block and no DOCTYPE, so the only URLs inside are the SVG namespace declarations."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mulegraph"}):
        fig.savefig(buf, format="svg", bbox_inches="tight" if tight else None, metadata=_SVG_METADATA)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", buf.getvalue().decode("utf-8"))
    return "data:image/svg+xml;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def score_chart(scores: pl.DataFrame, cutoff: float | None) -> str | None:
    """Histogram of the ranked accounts' scores; ``cutoff`` (the lowest alert) as a dashed line. None without scores."""
    from matplotlib.figure import Figure

    values = scores.filter(pl.col("rank").is_not_null())["score"].drop_nulls().to_numpy()
    if values.size == 0:
        return None
    fig = Figure(figsize=(6.4, 2.6))
    ax = fig.add_subplot()
    ax.hist(values, bins=40, range=(0.0, 1.0), color="#4a6fa5")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("accounts (log scale)")
    if cutoff is not None:
        ax.axvline(cutoff, color="#c0392b", linestyle="--", linewidth=1)
        ax.text(cutoff, ax.get_ylim()[1], " lowest alert", color="#c0392b", va="top", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _short(label: str, n: int = 20) -> str:
    label = visible(label)
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def flow_chart(account: str, flows: pl.DataFrame, ps: Pseudonymiser, max_side: int, *, coarsen: bool = False) -> str | None:
    """The account in the middle, payers on the left, payees on the right; width by value.

    At most ``max_side`` counterparties per side, the rest summed into one "+n others" node;
    labels are pseudonymised with ``ps``; ``coarsen`` rounds the values shown to 2 significant
    figures. None when there are no flows.
    """
    from matplotlib.figure import Figure

    if flows.height == 0:
        return None
    sides = {}
    for direction in ("in", "out"):
        part = flows.filter(pl.col("direction") == direction).sort(["value", "counterparty"], descending=[True, False])
        items = [(ps(cp), v, n) for cp, v, n in zip(part["counterparty"], part["value"], part["count"])][:max_side]
        rest = part.slice(max_side)
        if rest.height:
            items.append((f"+{rest.height} others", float(rest["value"].sum()), int(rest["count"].sum())))
        sides[direction] = items
    vmax = max([v for items in sides.values() for _, v, _ in items] + [1e-12])
    rows = max(len(sides["in"]), len(sides["out"]), 1)
    fig = Figure(figsize=(6.4, 0.28 * rows + 0.5))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-3.0, 3.0)
    ax.set_ylim(-0.9, rows + 0.1)
    ax.axis("off")
    cy = (rows - 1) / 2
    for direction, x in (("in", -1.1), ("out", 1.1)):
        items = sides[direction]
        offset = (rows - len(items)) / 2
        color = "#2e86c1" if direction == "in" else "#c0392b"
        for i, (label, value, n) in enumerate(items):
            y = rows - 1 - (i + offset)
            # plain lines (no arrow patches): cheap to draw; the side says the direction
            ax.plot([x, 0.0], [y, cy], color=color, alpha=0.55, linewidth=0.6 + 6.0 * value / vmax,
                    solid_capstyle="butt")
            shown = fmt_amount(round_amount(value)) if coarsen else f"{value:,.0f}"
            ax.text(x - 0.08 if direction == "in" else x + 0.08, y, f"{_short(label)}  {shown} ({n})",
                    ha="right" if direction == "in" else "left", va="center", fontsize=7, parse_math=False)
    ax.text(0, cy, _short(ps(account), 22), ha="center", va="center", fontsize=8, weight="bold", parse_math=False,
            bbox={"boxstyle": "round,pad=0.3", "fc": "#fdebd0", "ec": "#7f6000"})
    ax.text(-1.1, rows - 0.35, "paid in by", ha="right", fontsize=7, color="#555555")
    ax.text(1.1, rows - 0.35, "paid out to", ha="left", fontsize=7, color="#555555")
    return _svg(fig, tight=False)
