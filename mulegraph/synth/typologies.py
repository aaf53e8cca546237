"""The planted money-mule patterns (:data:`~mulegraph.synth.base.TYPOLOGIES`).

:func:`plant_typologies` recruits ordinary people's accounts as mules and plants patterns
round-robin over the typologies until the mule budget is spent (and each typology has been planted
``min_per_typology`` times): victims paying a mule, rapid pass-through, layering chains, fan-out,
scatter-gather, gather-scatter, time-respecting cycles, structuring just below the threshold and
dormant accounts that burst. A :class:`Planter` plants one pattern at a time and keeps the planted
transfers, which accounts took part in which typologies, the fan-in victims (whose ordinary
transfers to their mule are dropped) and the dormant mules' burst times.

Money moves forward in time along every planted flow: each hop leaves after the money arrived,
within hours, and keeps 90-98% of what came in; it leaves the network abroad, as cash or back to a
criminal ``origin`` account.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mulegraph.synth.base import CASH, DAY, HOUR, INSTANT, STRUCTURING_THRESHOLD, TRANSFER, TYPOLOGIES, lognormal_cents

__all__ = ["Planter", "plant_typologies"]


class Planter:
    """Plants one pattern at a time; collects planted rows and mule memberships."""

    def __init__(self, rng: np.random.Generator, ctx: dict[str, Any]):
        self.rng = rng
        self.ctx = ctx
        self.T = ctx["t_end"]
        self.hop_max = int(max(1200, min(6 * HOUR, self.T // 40)))
        self.spread = int(min(2 * DAY, self.T // 4))
        self.src: list[int] = []
        self.dst: list[int] = []
        self.t: list[int] = []
        self.cents: list[int] = []
        self.chan: list[int] = []
        self.pid: list[int] = []
        self.typ: list[int] = []
        self.pattern = -1
        self.typology = -1
        self.members: dict[int, set[str]] = {}
        self.patterns: list[tuple[int, str, tuple[int, ...]]] = []
        self.fan_in_pairs: list[tuple[int, int]] = []
        self.dormant: dict[int, tuple[int, int]] = {}

    # helpers -----------------------------------------------------------------------------------
    def hop(self) -> int:
        return int(self.rng.integers(600, self.hop_max))

    def keep(self, cents: int) -> int:
        return int(round(cents * self.rng.uniform(0.90, 0.98)))

    def start(self, span: int) -> int:
        return int(self.rng.integers(0, max(1, self.T - span)))

    def add(self, s: int, d: int, t: int, cents: int, chan: int | None = None) -> None:
        if chan is None:
            chan = TRANSFER if self.rng.random() < 0.6 else INSTANT
        self.src.append(int(s))
        self.dst.append(int(d))
        self.t.append(int(t))
        self.cents.append(max(1, int(cents)))
        self.chan.append(int(chan))
        self.pid.append(self.pattern)
        self.typ.append(self.typology)

    def origin(self) -> int:
        o = self.ctx["idx"]["origin"]
        return int(o[self.rng.integers(0, o.shape[0])])

    def exit(self, mule: int, t: int, cents: int) -> int:
        """Money leaves the mule network: abroad, as cash, or back to a controller. Returns last time."""
        u = self.rng.random()
        idx = self.ctx["idx"]
        if u < 0.5:
            self.add(mule, idx["foreign"][self.rng.integers(0, idx["foreign"].shape[0])], t, cents)
            return t
        if u < 0.85:
            parts = int(self.rng.integers(1, 4))
            each = (cents // parts) // 1000 * 1000  # whole tens of the major unit
            if each <= 0:
                each = cents // parts
            for _ in range(parts):
                self.add(mule, idx["atm"][self.rng.integers(0, idx["atm"].shape[0])], t, each, CASH)
                t += int(self.rng.integers(60, 1800))
            return t - 1
        self.add(mule, self.origin(), t, cents)
        return t

    # typologies ----------------------------------------------------------------------------------
    def fan_in(self, m: tuple[int, ...], victims: np.ndarray) -> None:
        (mule,) = m
        k = victims.shape[0]
        t0 = self.start(self.spread + 4 * self.hop_max)
        ts = np.sort(t0 + self.rng.integers(0, self.spread, size=k))
        amounts = lognormal_cents(self.rng, 600.0, 0.7, k, lo=50.0)
        groups = np.array_split(np.arange(k), int(self.rng.integers(1, 4)))
        for v, t, a in zip(victims, ts, amounts):
            self.add(int(v), mule, int(t), int(a))
            self.fan_in_pairs.append((int(v), mule))
        for g in groups:
            if g.shape[0]:
                self.exit(mule, int(ts[g[-1]]) + self.hop(), self.keep(int(amounts[g].sum())))

    def pass_through(self, m: tuple[int, ...]) -> None:
        (mule,) = m
        rounds = int(self.rng.integers(2, 7))
        gap_max = max(1200, self.spread // rounds)
        t = self.start(rounds * (self.hop_max + 2 * HOUR + gap_max))
        for _ in range(rounds):  # one round at a time: in, then out within hours, then a pause
            a = int(lognormal_cents(self.rng, 4000.0, 0.6, 1, lo=500.0)[0])
            self.add(self.origin(), mule, t, a)
            t = self.exit(mule, t + self.hop(), self.keep(a)) + int(self.rng.integers(600, gap_max))

    def stack(self, m: tuple[int, ...]) -> None:
        waves = int(self.rng.integers(1, 4))
        gap_max = max(1200, self.spread // waves)
        t = self.start(waves * ((len(m) + 1) * self.hop_max + 2 * HOUR + gap_max))
        for _ in range(waves):  # one wave at a time down the chain
            a = int(lognormal_cents(self.rng, 6000.0, 0.5, 1, lo=1000.0)[0])
            self.add(self.origin(), m[0], t, a)
            for prev, nxt in zip(m[:-1], m[1:]):
                t += self.hop()
                a = self.keep(a)
                self.add(prev, nxt, t, a)
            t = self.exit(m[-1], t + self.hop(), self.keep(a)) + int(self.rng.integers(600, gap_max))

    def fan_out(self, m: tuple[int, ...]) -> None:
        (mule,) = m
        t = self.start(3 * self.hop_max)
        a = int(lognormal_cents(self.rng, 15000.0, 0.5, 1, lo=3000.0)[0])
        self.add(self.origin(), mule, t, a)
        k = int(self.rng.integers(5, 13))
        parts = np.floor(self.rng.dirichlet(np.full(k, 3.0)) * self.keep(a)).astype(np.int64)
        idx = self.ctx["idx"]
        pool = np.concatenate([idx["foreign"], idx["origin"]])
        dsts = pool[self.rng.permutation(pool.shape[0])[:k]]
        for i, (d, p) in enumerate(zip(np.resize(dsts, k), parts)):
            self.add(mule, int(d), t + self.hop() + i, int(p))

    def scatter_gather(self, m: tuple[int, ...]) -> None:
        *mids, collector = m
        t0 = self.start(4 * self.hop_max)
        a = int(lognormal_cents(self.rng, 3000.0, 0.5, 1, lo=500.0)[0])
        src = self.origin()
        last = t0
        total = 0
        for i, mid in enumerate(mids):
            t = t0 + int(self.rng.integers(0, 1800)) + i
            part = int(a * self.rng.uniform(0.8, 1.2))
            self.add(src, mid, t, part)
            t2 = t + self.hop()
            fwd = self.keep(part)
            self.add(mid, collector, t2, fwd)
            last = max(last, t2)
            total += fwd
        self.exit(collector, last + self.hop(), self.keep(total))

    def gather_scatter(self, m: tuple[int, ...]) -> None:
        (hub,) = m
        k_in = int(self.rng.integers(4, 11))
        t0 = self.start(self.spread // 2 + 3 * self.hop_max)
        ts = np.sort(t0 + self.rng.integers(0, max(1, self.spread // 2), size=k_in))
        amounts = lognormal_cents(self.rng, 2500.0, 0.5, k_in, lo=300.0)
        o = self.ctx["idx"]["origin"]
        srcs = o[self.rng.permutation(o.shape[0])[:k_in]]
        for s, t, a in zip(np.resize(srcs, k_in), ts, amounts):
            self.add(int(s), hub, int(t), int(a))
        k_out = int(self.rng.integers(3, 9))
        parts = np.floor(self.rng.dirichlet(np.full(k_out, 3.0)) * self.keep(int(amounts.sum()))).astype(np.int64)
        f = self.ctx["idx"]["foreign"]
        dsts = f[self.rng.permutation(f.shape[0])[:k_out]]
        outs = np.sort(int(ts[-1]) + 1 + self.rng.integers(600, self.hop_max, size=k_out))
        for d, p, t in zip(np.resize(dsts, k_out), parts, outs):
            self.add(hub, int(d), int(t), int(p))

    def cycle(self, m: tuple[int, ...]) -> None:
        t = self.start((len(m) + 3) * self.hop_max)
        a = int(lognormal_cents(self.rng, 5000.0, 0.5, 1, lo=1000.0)[0])
        self.add(self.origin(), m[0], t, a)
        ring = list(m) + [m[0]]
        for prev, nxt in zip(ring[:-1], ring[1:]):
            t += self.hop()
            a = self.keep(a)
            self.add(prev, nxt, t, a)
        self.exit(m[0], t + self.hop(), self.keep(a))

    def structuring(self, m: tuple[int, ...]) -> None:
        (mule,) = m
        n = int(self.rng.integers(3, 9))
        span = int(min(7 * DAY, self.T // 2))
        t0 = self.start(span + 2 * self.hop_max)
        ts = np.sort(t0 + self.rng.integers(0, span, size=n))
        lo, hi = int(STRUCTURING_THRESHOLD * 90), int(STRUCTURING_THRESHOLD * 100)
        for t in ts:
            a = int(self.rng.integers(lo, hi))
            self.add(self.origin(), mule, int(t), a)
            self.exit(mule, int(t) + self.hop(), self.keep(a))

    def dormant_burst(self, m: tuple[int, ...]) -> None:
        (mule,) = m
        burst = int(min(DAY, self.T // 10))
        lo = int(self.T * 0.6)
        t0 = lo + int(self.rng.integers(0, max(1, self.T - lo - burst - 2 * self.hop_max)))
        n = int(self.rng.integers(5, 13))
        ts = np.sort(t0 + self.rng.integers(0, max(1, burst), size=n))
        last = t0
        for t in ts:
            a = int(lognormal_cents(self.rng, 2000.0, 0.6, 1, lo=200.0)[0])
            self.add(self.origin(), mule, int(t), a)
            last = max(last, self.exit(mule, int(t) + self.hop() // 2 + 1, self.keep(a)))
        self.dormant[mule] = (t0, last)


def plant_typologies(rng: np.random.Generator, ctx: dict[str, Any], mule_share: float, knobs: dict[str, Any]) -> Planter:
    """Plant patterns until ``mule_share`` of the accounts are mules (none when it is 0).

    Mules are drawn from the first half of a random order of the persons, fan-in victims from the
    second half; a pattern reuses an earlier mule with probability ``knobs["reuse_share"]``
    (dormant mules are never reused).
    """
    pl_ = Planter(rng, ctx)
    persons = ctx["idx"]["person"]
    P = persons.shape[0]
    budget = int(round(mule_share * ctx["n_accounts"]))
    if mule_share <= 0:
        return pl_
    order = rng.permutation(P)  # persons in the order they are recruited as mules
    next_fresh = 0
    used: list[int] = []  # mules that can be reused by later patterns (not dormant ones)
    n_mules = 0
    victim_pool = set()
    min_each = int(knobs["min_per_typology"])
    pattern = 0

    def fresh(k: int) -> list[int] | None:
        nonlocal next_fresh
        if next_fresh + k > P // 2:
            return None
        out = [int(persons[order[next_fresh + i]]) for i in range(k)]
        next_fresh += k
        return out

    while True:
        typ = TYPOLOGIES[pattern % len(TYPOLOGIES)]
        if n_mules >= budget and pattern >= min_each * len(TYPOLOGIES):
            break
        if typ == "stack":
            k = int(rng.integers(3, 6))
        elif typ == "scatter_gather":
            k = int(rng.integers(3, 7)) + 1
        elif typ == "cycle":
            k = int(rng.integers(3, 6))
        else:
            k = 1
        ms = fresh(k)
        if ms is None:
            break
        if typ != "dormant_burst" and used and rng.random() < knobs["reuse_share"]:
            cand = used[int(rng.integers(0, len(used)))]
            if cand not in ms:
                next_fresh -= 1  # give the last fresh one back
                ms[-1] = cand
        m = tuple(ms)
        pl_.pattern, pl_.typology = pattern, TYPOLOGIES.index(typ)
        if typ == "fan_in":
            k_v = int(rng.integers(6, 25))
            mule = m[0]
            cand = persons[order[rng.integers(P // 2, P, size=k_v * 3)]]
            victims = np.array(list(dict.fromkeys(int(v) for v in cand if int(v) != mule and (int(v), mule) not in victim_pool))[:k_v])
            victim_pool.update((int(v), mule) for v in victims)
            pl_.fan_in(m, victims)
        else:
            getattr(pl_, typ)(m)
        for x in m:
            new = x not in pl_.members
            pl_.members.setdefault(x, set()).add(typ)
            if new:
                n_mules += 1
                if typ != "dormant_burst":
                    used.append(x)
        pl_.patterns.append((pattern, typ, m))
        pattern += 1
    return pl_

