"""Slow, obviously-correct references for the per-account flow features.

Plain Python over a list of transfers (dicts with ``txn_id``, ``t`` in epoch seconds, ``src``,
``dst``, ``amount``, ``currency``, ``channel`` and optionally ``src_country``/``dst_country``). Each
function follows the definition in the module docstring of its family, one account at a time, with
no cleverness: the vectorised code in ``mulegraph.features`` must agree with it.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict, deque

from mulegraph.core.config import FeatureConfig

DAY = 86_400
TOL = 1e-9


def _secs(text: str) -> int:
    return int(text[:-1]) * {"h": 3600, "d": DAY}[text[-1]]


def _share(num: float, den: float):
    return None if den == 0 else num / den


def reference_features(transfers: list[dict], cfg: FeatureConfig | None = None) -> dict[str, dict]:
    """account id -> {feature name: value (None for null)} for every account with a transfer."""
    cfg = cfg or FeatureConfig()
    order = sorted(transfers, key=lambda x: (x["t"], x["txn_id"]))
    accounts = sorted({x["src"] for x in order} | {x["dst"] for x in order})
    has_country = any("src_country" in x for x in order)
    return {a: _one(a, order, cfg, has_country) for a in accounts}


def _one(a: str, order: list[dict], cfg: FeatureConfig, has_country: bool) -> dict:
    ins = [x for x in order if x["dst"] == a]
    outs = [x for x in order if x["src"] == a]
    events = ins + outs
    f: dict = {}
    # volume
    for d, xs, cp in (("in", ins, "src"), ("out", outs, "dst")):
        amts = [x["amount"] for x in xs]
        f[f"{d}_count"] = len(xs)
        f[f"{d}_cp"] = len({x[cp] for x in xs})
        f[f"{d}_value"] = float(sum(amts))
        f[f"{d}_mean"] = statistics.fmean(amts) if amts else None
        f[f"{d}_max"] = max(amts) if amts else None
        f[f"{d}_std"] = statistics.pstdev(amts) if amts else None
    f["active_days"] = len({x["t"] // DAY for x in events})
    in_value, out_value = f["in_value"], f["out_value"]

    # fan
    for w in cfg.fan_windows:
        width = _secs(w)
        for d, xs, cp in (("in", ins, "src"), ("out", outs, "dst")):
            best = 0
            for x in xs:
                best = max(best, len({y[cp] for y in xs if x["t"] <= y["t"] < x["t"] + width}))
            f[f"fan{d}_max_{w}"] = best
    first = sum(x["amount"] for x in ins if not any(y["src"] == x["src"] and y["t"] < x["t"] for y in ins))
    f["first_time_in_share"] = _share(first, in_value)
    by_cp: dict = defaultdict(float)
    for x in outs:
        by_cp[x["dst"]] += x["amount"]
    f["out_hhi"] = sum((v / out_value) ** 2 for v in by_cp.values()) if outs else None

    # passthrough: an explicit FIFO queue; inbound before outbound at equal times
    stream = sorted([(x["t"], 0, x["txn_id"], x) for x in ins] + [(x["t"], 1, x["txn_id"], x) for x in outs],
                    key=lambda e: e[:3])
    queue: deque = deque()
    pieces = []  # (dwell seconds, amount)
    for t, kind, _, x in stream:
        if kind == 0:
            queue.append([x["amount"], t])
            continue
        need = x["amount"]
        while need > 0 and queue:
            take = min(need, queue[0][0])
            pieces.append((t - queue[0][1], take))
            queue[0][0] -= take
            need -= take
            if queue[0][0] <= 0:
                queue.popleft()
    f["forward_ratio"] = _share(out_value, in_value)
    for w in cfg.passthrough_windows:
        f[f"passthrough_share_{w}"] = _share(sum(v for d, v in pieces if d <= _secs(w)), in_value)
    forwarded = sum(v for _, v in pieces)
    for name, q in (("dwell_median_h", 0.5), ("dwell_p10_h", 0.1)):
        f[name] = None
        if pieces:
            weights: dict = defaultdict(float)
            for d, v in pieces:
                weights[d] += v
            cum = 0.0
            for d in sorted(weights):
                cum += weights[d]
                if cum >= q * forwarded:
                    f[name] = d / 3600
                    break
    f["retained_share"] = _share(in_value - forwarded, in_value)
    horizon = max(_secs(w) for w in cfg.passthrough_windows)
    split_n, split_v = 0, 0.0
    for x in ins:
        total, k = 0.0, 0
        for o in outs:
            if o["t"] < x["t"]:
                continue
            if o["t"] > x["t"] + horizon:
                break
            total += o["amount"]
            k += 1
            amt = x["amount"]
            if k >= 2 and cfg.split_low * amt * (1 - TOL) <= total <= cfg.split_high * amt * (1 + TOL):
                split_n += 1
                split_v += amt
                break
    f["split_count"] = split_n
    f["split_share"] = _share(split_v, in_value)

    # temporal
    t_first = min(x["t"] for x in events)
    f["age_at_first_in_d"] = (min(x["t"] for x in ins) - t_first) / DAY if ins else None
    per_day = Counter(x["t"] // DAY for x in events)
    days = sorted(per_day)
    f["max_dormancy_d"] = max([b - a_ - 1 for a_, b in zip(days, days[1:])], default=0)
    f["burst_ratio"] = max(per_day.values()) / statistics.median(per_day.values())
    f["velocity"] = len(events) / len(days)
    start, end = cfg.night_hours
    if all(x["t"] % DAY == 0 for x in events):
        f["night_share"] = None
    else:
        def night(h):
            return start <= h < end if start <= end else (h >= start or h < end)

        f["night_share"] = sum(night((x["t"] % DAY) // 3600) for x in events) / len(events)

    # amounts
    def is_round(v):
        r = v / cfg.round_unit
        return r >= 1 - 1e-6 and abs(r - round(r)) < 1e-6

    f["round_share"] = sum(is_round(x["amount"]) for x in events) / len(events)
    f["structuring_share"] = sum(
        any(thr * (1 - cfg.structuring_margin) <= x["amount"] < thr for thr in cfg.structuring_thresholds)
        for x in events
    ) / len(events)
    matched = 0
    for o in outs:
        if any(o["t"] - 72 * 3600 <= i["t"] <= o["t"] and i["amount"] * 0.8 * (1 - TOL) <= o["amount"]
               <= i["amount"] * (1 + TOL) for i in ins):
            matched += 1
    f["amount_match_share"] = _share(matched, len(outs))

    # channel
    cash = {c.strip().upper() for c in cfg.cash_channels}
    known = [x for x in outs if x.get("channel") is not None]
    f["cash_out_share"] = _share(
        sum(x["amount"] for x in known if x["channel"].strip().upper() in cash), sum(x["amount"] for x in known)
    ) if known else None
    cur = Counter(x["currency"] for x in events if x.get("currency") is not None)
    f["cross_currency_share"] = 1 - max(cur.values()) / sum(cur.values()) if cur else None
    both = [x for x in events if x.get("src_country") is not None and x.get("dst_country") is not None]
    f["cross_border_share"] = (
        sum(x["src_country"] != x["dst_country"] for x in both) / len(both) if has_country and both else None
    )
    return f
