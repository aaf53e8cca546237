"""Synthetic transfer logs with planted money-mule typologies and their labels.

:func:`generate` builds a bank's transfer log for ``n_accounts`` accounts over ``days`` days:

* a realistic background: heavy-tailed personal activity, monthly salaries from employers
  (legitimate hubs that pay thousands of people in one night batch), direct-debit bills and rent,
  card purchases at merchants (Zipf popularity), a payment processor that collects card payments
  and settles to its merchants every night, person-to-person transfers inside small circles of
  contacts, cash withdrawals at ATMs (by everybody, so cash is not a label leak), marketplace
  sellers and sole traders paid by many first-time payers, remittances to and from foreign
  accounts in foreign currencies, occasional large legitimate payments (some just below 10,000),
  and legitimate look-alikes of mule structure: family accounts that collect rent shares and pass
  them on within hours, salary sweeps to a savings account minutes after payday, sole traders
  paying their takings on to suppliers, big-ticket purchases funded by relatives and passed on
  whole, family allowances passed down a chain, and flatmates settling costs in a
  time-respecting ring;
* planted mule patterns (:data:`TYPOLOGIES`): victims paying a mule (fan-in from first-time
  payers), rapid pass-through, layering chains (stack), fan-out, scatter-gather, gather-scatter,
  time-respecting cycles, structuring just below a threshold, and dormant accounts that burst.
  Money moves forward in time along every planted flow: each hop leaves after the money arrived,
  within hours, and keeps 90-98% of what came in.

Everything is drawn from ``np.random.default_rng`` streams derived from ``seed``; the same
arguments give the same frames and, through :func:`write_export`, the same bytes.

Accounts play roles (:data:`ROLES`); ``SynthData.accounts`` lists them. Mules are ordinary
people's accounts (they keep their normal background activity), except dormant mules, which are
silent from the first days of the period until their burst. The criminal ``origin`` accounts that
feed mules, the victims and the exit accounts (foreign accounts, ATMs) are *not* labelled mules;
every planted transfer is labelled laundering in ``txn_labels``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.atomic import atomic_path
from mulegraph.core.errors import InputError
from mulegraph.core.schema import TRANSFER_SCHEMA

__all__ = [
    "TYPOLOGIES",
    "ROLES",
    "CHANNELS",
    "STRUCTURING_THRESHOLD",
    "EXPORT_COLUMNS",
    "SynthData",
    "generate",
    "write_export",
    "mapping_toml",
    "file_sha256",
]

#: Planted typologies, in the order they are planted round-robin.
TYPOLOGIES: tuple[str, ...] = (
    "fan_in",
    "pass_through",
    "stack",
    "fan_out",
    "scatter_gather",
    "gather_scatter",
    "cycle",
    "structuring",
    "dormant_burst",
)

#: Account roles (``SynthData.accounts['role']``).
ROLES: tuple[str, ...] = (
    "person",
    "employer",
    "merchant",
    "biller",
    "landlord",
    "processor",
    "atm",
    "foreign",
    "origin",
)

#: Channel values used in the ``channel`` column.
CHANNELS: tuple[str, ...] = ("TRANSFER", "INSTANT", "CARD", "DIRECT_DEBIT", "CASH", "SALARY")
_TRANSFER, _INSTANT, _CARD, _DEBIT, _CASH, _SALARY = range(len(CHANNELS))

#: Structuring plants amounts in ``[0.9 * threshold, threshold)``.
STRUCTURING_THRESHOLD = 10_000.0

#: Export column -> canonical column, as written by :func:`write_export`.
EXPORT_COLUMNS: dict[str, str] = {
    "Transaction Reference": "txn_id",
    "Booking Date": "ts",
    "Debtor IBAN": "src_account",
    "Creditor IBAN": "dst_account",
    "Amount (minor units)": "amount",
    "Currency": "currency",
    "Payment Type": "channel",
    "Debtor Country": "src_country",
    "Creditor Country": "dst_country",
    "Remittance Information": "",
}
_EXPORT_TS_FORMAT = "%d.%m.%Y %H:%M:%S"
_EXPORT_DELIMITER = ";"

_DAY = 86_400
_HOUR = 3_600
# Share of each hour of the day in personal activity (UTC), quiet at night.
_HOUR_PROFILE = np.array(
    [1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.0, 5.0, 5.5, 6.0, 6.5, 6.0, 5.5, 5.5, 6.0, 6.5, 6.5, 6.0,
     5.0, 4.0, 3.0, 2.0]
)
_HOUR_P = _HOUR_PROFILE / _HOUR_PROFILE.sum()
_FOREIGN_COUNTRIES = ("GB", "PL", "RO", "LT", "AE", "HK", "US", "TR")
_FOREIGN_CURRENCIES = ("USD", "GBP", "CHF")


@dataclass
class SynthData:
    """A generated transfer log with its labels.

    Attributes
    ----------
    transfers:
        Canonical transfers, exactly :data:`mulegraph.schema.TRANSFER_SCHEMA`, sorted by ``ts``.
    labels:
        One row per account: ``account_id``, ``is_mule`` (bool), ``typology`` ('|'-joined sorted
        typologies for mules, null otherwise).
    txn_labels:
        One row per transfer: ``txn_id``, ``is_laundering`` (bool), ``typology`` (null for
        background), ``pattern_id`` (Int64, null for background).
    accounts:
        One row per account: ``account_id``, ``role`` (see :data:`ROLES`), ``country``, ``opened``
        (when the account was opened, null when before the period; nothing happens on it before).
    params:
        The arguments the data was generated with.
    """

    transfers: pl.DataFrame
    labels: pl.DataFrame
    txn_labels: pl.DataFrame
    accounts: pl.DataFrame
    params: dict[str, Any]


_DEFAULT_KNOBS: dict[str, Any] = {
    # mean transfers per account per day (5M transfers for 500k accounts over 60 days)
    "activity": 0.17,
    # account ids: domestic country prefix
    "country": "NL",
    # probability that a pattern reuses a mule of an earlier pattern (multi-typology mules)
    "reuse_share": 0.15,
    # plant at least one pattern of each typology whenever mule_share > 0
    "min_per_typology": 1,
    # hour-of-day shares of personal activity: None means the built-in day/night profile
    "hour_profile": None,
    # share of ordinary people whose account is opened during the period (no activity before)
    "new_account_share": 0.03,
    # share of mules (not dormant ones) whose account is opened shortly before their first use
    "new_mule_share": 0.25,
}


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------


class _Rows:
    """Columns of integer-coded transfers collected block by block."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, src, dst, t, cents, channel, currency=0, pattern=-1, typology=-1) -> None:
        src = np.asarray(src, dtype=np.int64)
        n = src.shape[0]
        if n == 0:
            return

        def full(v, dtype):
            a = np.asarray(v, dtype=dtype)
            return np.full(n, a, dtype=dtype) if a.ndim == 0 else a

        self.blocks.append(
            {
                "src": src,
                "dst": full(dst, np.int64),
                "t": full(t, np.int64),
                "cents": full(cents, np.int64),
                "channel": full(channel, np.int8),
                "currency": full(currency, np.int8),
                "pattern": full(pattern, np.int64),
                "typology": full(typology, np.int8),
            }
        )

    def concat(self) -> dict[str, np.ndarray]:
        keys = ("src", "dst", "t", "cents", "channel", "currency", "pattern", "typology")
        if not self.blocks:
            return {k: np.zeros(0, dtype=np.int64) for k in keys}
        return {k: np.concatenate([b[k] for b in self.blocks]) for k in keys}


def _times(rng: np.random.Generator, n: int, t_end: int, hour_p: np.ndarray) -> np.ndarray:
    """``n`` timestamps (seconds from the start) in ``[0, t_end)``: uniform day, profiled hour."""
    day = rng.integers(0, max(1, t_end // _DAY), size=n)
    t = day * _DAY + rng.choice(24, size=n, p=hour_p) * _HOUR + rng.integers(0, _HOUR, size=n)
    return np.minimum(t, t_end - 1)


def _zipf_p(n: int, a: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=float) ** a
    return w / w.sum()


def _lognormal_cents(rng: np.random.Generator, median: float, sigma: float, size, lo: float = 1.0) -> np.ndarray:
    """Amounts in cents, lognormal around ``median`` (major units), at least ``lo``."""
    x = np.exp(np.log(median) + sigma * rng.standard_normal(size))
    return np.maximum(np.round(x * 100.0), lo * 100.0).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# accounts
# --------------------------------------------------------------------------------------------------


def _allocate_roles(n: int) -> dict[str, int]:
    counts = {
        "employer": max(2, round(0.004 * n)),
        "merchant": max(5, round(0.01 * n)),
        "biller": max(3, round(0.002 * n)),
        "landlord": max(2, round(0.002 * n)),
        "processor": 1,
        "atm": max(2, round(0.001 * n)),
        "foreign": max(10, round(0.01 * n)),
        "origin": max(12, round(0.003 * n)),
    }
    counts["person"] = n - sum(counts.values())
    return counts


# --------------------------------------------------------------------------------------------------
# background
# --------------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, ctx: dict[str, Any], rows: _Rows) -> None:
    """Legitimate activity, added to ``rows``."""
    idx = ctx["idx"]
    persons, employers, merchants = idx["person"], idx["employer"], idx["merchant"]
    billers, landlords, atms, foreign = idx["biller"], idx["landlord"], idx["atm"], idx["foreign"]
    processor = idx["processor"][0]
    T, hour_p, start = ctx["t_end"], ctx["hour_p"], ctx["start"]
    P = persons.shape[0]
    n_fixed = 0

    # per-person activity weight: heavy-tailed
    w = rng.lognormal(0.0, 1.1, size=P)
    w_p = w / w.sum()

    # months overlapping the period: (seconds offset of the month's first day, days in month)
    months = []
    d0 = start.date().replace(day=1)
    end_date = (start + _dt.timedelta(seconds=T)).date()
    while d0 <= end_date:
        nxt = (d0.replace(day=28) + _dt.timedelta(days=4)).replace(day=1)
        off = int((_dt.datetime.combine(d0, _dt.time(), tzinfo=_dt.timezone.utc) - start).total_seconds())
        months.append(off)
        d0 = nxt

    # --- salaries: employed persons, monthly, from a Zipf-sized employer, in a night batch
    employed = persons[rng.random(P) < 0.75]
    emp = rng.choice(employers.shape[0], size=employed.shape[0], p=_zipf_p(employers.shape[0]))
    emp_of = employers[emp]
    pay_dom = rng.integers(24, 28, size=employers.shape[0])[emp]  # each employer's payday (0-based)
    pay_hr = rng.integers(1, 6, size=employers.shape[0])[emp]  # and the hour of its batch
    salary = _lognormal_cents(rng, 2600.0, 0.6, employed.shape[0], lo=400.0)
    sal_src, sal_dst, sal_t, sal_c = [], [], [], []
    for off in months:
        t = off + pay_dom * _DAY + pay_hr * _HOUR + rng.integers(0, 1800, size=employed.shape[0])
        ok = (t >= 0) & (t < T)
        sal_src.append(emp_of[ok])
        sal_dst.append(employed[ok])
        sal_t.append(t[ok])
        sal_c.append(salary[ok])
    sal_src, sal_dst = np.concatenate(sal_src), np.concatenate(sal_dst)
    sal_t, sal_c = np.concatenate(sal_t), np.concatenate(sal_c)
    rows.add(sal_src, sal_dst, sal_t, sal_c, _SALARY)
    n_fixed += sal_src.shape[0]

    # --- salary sweeps: some employed move most of the salary to a savings account within minutes
    sweep_people = employed[rng.random(employed.shape[0]) < 0.12]
    if sweep_people.shape[0]:
        saving_of = persons[(np.searchsorted(persons, sweep_people) + 1 + rng.integers(0, P - 1, size=sweep_people.shape[0])) % P]
        sweeper = np.isin(sal_dst, sweep_people)
        pos = np.searchsorted(sweep_people, sal_dst[sweeper])
        rows.add(
            sal_dst[sweeper],
            saving_of[pos],
            sal_t[sweeper] + rng.integers(300, 5400, size=int(sweeper.sum())),
            np.round(sal_c[sweeper] * rng.uniform(0.5, 0.9, size=int(sweeper.sum()))).astype(np.int64),
            _TRANSFER,
        )
        n_fixed += int(sweeper.sum())

    # --- bills: 1-2 direct debits per person per month to Zipf-popular billers
    n_bills = rng.integers(1, 3, size=P)
    b_person = np.repeat(persons, n_bills)
    b_biller = billers[rng.choice(billers.shape[0], size=b_person.shape[0], p=_zipf_p(billers.shape[0]))]
    b_dom = rng.integers(0, 28, size=b_person.shape[0])
    b_amt = _lognormal_cents(rng, 80.0, 0.6, b_person.shape[0])
    for off in months:
        t = off + b_dom * _DAY + rng.integers(4 * _HOUR, 8 * _HOUR, size=b_person.shape[0])
        ok = (t >= 0) & (t < T)
        rows.add(b_person[ok], b_biller[ok], t[ok], b_amt[ok], _DEBIT)
        n_fixed += int(ok.sum())

    # --- rent: half of the persons pay rent early in the month; some of them are family accounts
    #     that first collect shares from relatives (a legitimate fast pass-through)
    renters = persons[rng.random(P) < 0.5]
    r_to = landlords[rng.integers(0, landlords.shape[0], size=renters.shape[0])]
    r_dom = rng.integers(0, 3, size=renters.shape[0])
    r_amt = _lognormal_cents(rng, 900.0, 0.35, renters.shape[0], lo=200.0)
    family = rng.random(renters.shape[0]) < 0.08
    n_rel = rng.integers(2, 4, size=renters.shape[0])
    relatives = persons[
        (np.searchsorted(persons, renters)[:, None] + 1 + rng.integers(0, P - 1, size=(renters.shape[0], 3))) % P
    ]
    for off in months:
        t = off + r_dom * _DAY + rng.choice(24, size=renters.shape[0], p=hour_p) * _HOUR + rng.integers(0, _HOUR, size=renters.shape[0])
        t = np.maximum(t, off + 10 * _HOUR)  # leave room for the family shares before
        ok = (t >= 0) & (t < T)
        rows.add(renters[ok], r_to[ok], t[ok], r_amt[ok], _TRANSFER)
        n_fixed += int(ok.sum())
        f = ok & family
        for j in range(3):
            g = f & (n_rel > j)
            share = r_amt[g] // n_rel[g]
            tt = t[g] - rng.integers(30 * 60, 8 * _HOUR, size=int(g.sum()))
            keep = tt >= 0
            rows.add(relatives[g, j][keep], renters[g][keep], tt[keep], share[keep], _TRANSFER)
            n_fixed += int(keep.sum())

    n_days = -(-T // _DAY)
    suppliers_pool = np.concatenate([merchants, foreign[: max(1, foreign.shape[0] // 2)]])

    # --- sole traders: many customers pay them (mostly first-time), and on about half of the days
    #     with takings they pay most of it on to a supplier within hours (legitimate pass-through)
    traders = persons[rng.random(P) < 0.015]
    if traders.shape[0]:
        nt = traders.shape[0]
        n_rec = rng.poisson(rng.lognormal(0.0, 0.7, size=nt) * T / _DAY)
        who = np.repeat(np.arange(nt), n_rec)
        payer = persons[rng.integers(0, P, size=who.shape[0])]
        ok = payer != traders[who]
        who, payer = who[ok], payer[ok]
        rt = _times(rng, who.shape[0], T, hour_p)
        ra = _lognormal_cents(rng, 150.0, 0.9, who.shape[0])
        rows.add(payer, traders[who], rt, ra, np.where(rng.random(who.shape[0]) < 0.6, _TRANSFER, _INSTANT))
        n_fixed += who.shape[0]
        key = who * n_days + rt // _DAY
        ukey, inv = np.unique(key, return_inverse=True)
        takings = np.bincount(inv, weights=ra.astype(float))
        last = np.zeros(ukey.shape[0], dtype=np.int64)
        np.maximum.at(last, inv, rt)
        supplier = suppliers_pool[rng.integers(0, suppliers_pool.shape[0], size=(nt, 3))]
        pt = last + rng.integers(1800, 12 * _HOUR, size=ukey.shape[0])
        pay = (rng.random(ukey.shape[0]) < 0.5) & (pt < T)
        tw = ukey // n_days
        rows.add(traders[tw[pay]], supplier[tw[pay], rng.integers(0, 3, size=int(pay.sum()))], pt[pay],
                 np.round(takings[pay] * rng.uniform(0.6, 0.95, size=int(pay.sum()))).astype(np.int64), _TRANSFER)
        n_fixed += int(pay.sum())

    # --- big-ticket purchases funded by relatives or a loan: a large inbound passed on whole
    #     (to a car dealer or a landlord) within hours
    n_big = int(rng.poisson(0.004 * P * T / (30 * _DAY)))
    if n_big:
        buyer = persons[rng.integers(0, P, size=n_big)]
        funder = np.where(rng.random(n_big) < 0.8, persons[rng.integers(0, P, size=n_big)], foreign[rng.integers(0, foreign.shape[0], size=n_big)])
        seller = np.where(rng.random(n_big) < 0.6, merchants[rng.integers(0, merchants.shape[0], size=n_big)], landlords[rng.integers(0, landlords.shape[0], size=n_big)])
        amt = _lognormal_cents(rng, 15000.0, 0.8, n_big, lo=3000.0)
        t_in = _times(rng, n_big, T, hour_p)
        t_out = t_in + rng.integers(1800, 6 * _HOUR, size=n_big)
        ok = (t_out < T) & (buyer != funder)
        rows.add(funder[ok], buyer[ok], t_in[ok], amt[ok], _TRANSFER)
        rows.add(buyer[ok], seller[ok], t_out[ok], amt[ok], _TRANSFER)
        n_fixed += 2 * int(ok.sum())

    # --- flatmates settling shared costs in a ring (A pays B, B pays C, C pays A within days,
    #     similar amounts: a legitimate time-respecting cycle), and family allowances passed down
    #     a generation within hours (a legitimate chain)
    for kind, share in (("ring", 0.005), ("chain", 0.005)):
        g = int(share * P)
        if g == 0:
            continue
        members = persons[rng.permutation(P)[: 3 * g].reshape(g, 3)] if 3 * g <= P else None
        if members is None:
            continue
        for off in months:
            t = off + rng.integers(0, 28, size=g) * _DAY + rng.choice(24, size=g, p=hour_p) * _HOUR + rng.integers(0, _HOUR, size=g)
            a = _lognormal_cents(rng, 250.0 if kind == "ring" else 400.0, 0.5, g, lo=20.0)
            for hop in range(3 if kind == "ring" else 2):
                ok = (t >= 0) & (t < T)
                rows.add(members[ok, hop], members[ok, (hop + 1) % 3], t[ok], a[ok], _TRANSFER if kind == "ring" else _INSTANT)
                n_fixed += int(ok.sum())
                if kind == "ring":
                    t = t + rng.integers(_HOUR, 3 * _DAY, size=g)
                    a = np.round(a * rng.uniform(0.9, 1.0, size=g)).astype(np.int64)
                else:
                    t = t + rng.integers(600, 4 * _HOUR, size=g)

    # --- the rest of the budget: card, p2p, cash, marketplace sales, remittances, large payments
    budget = int(round(ctx["activity"] * ctx["n_accounts"] * T / _DAY))
    rest = max(0, budget - n_fixed)
    shares = {"card": 0.50, "p2p": 0.25, "cash": 0.12, "sale": 0.06, "remit": 0.04, "large": 0.03}
    k = {name: int(round(rest * s)) for name, s in shares.items()}

    # card purchases, a quarter of them through the payment processor
    src = persons[rng.choice(P, size=k["card"], p=w_p)]
    mer = merchants[rng.choice(merchants.shape[0], size=k["card"], p=_zipf_p(merchants.shape[0]))]
    t = _times(rng, k["card"], T, hour_p)
    amt = _lognormal_cents(rng, 35.0, 0.9, k["card"], lo=0.5)
    via = rng.random(k["card"]) < 0.25
    rows.add(src, np.where(via, processor, mer), t, amt, _CARD)
    # nightly settlement by the processor to each merchant of the day's payments, less 1.5%
    key = mer[via] * n_days + t[via] // _DAY
    ukey, inv = np.unique(key, return_inverse=True)
    tot = np.bincount(inv, weights=amt[via].astype(float))
    s_t = (ukey % n_days + 1) * _DAY + rng.integers(_HOUR, 3 * _HOUR, size=ukey.shape[0])
    ok = s_t < T
    rows.add(
        np.full(int(ok.sum()), processor), ukey[ok] // n_days, s_t[ok], np.round(tot[ok] * 0.985).astype(np.int64), _TRANSFER
    )

    # person to person inside a small circle of contacts (repeat payees)
    contacts = (np.arange(P)[:, None] + 1 + rng.integers(0, P - 1, size=(P, 6))) % P
    s = rng.choice(P, size=k["p2p"], p=w_p)
    c = rng.choice(6, size=k["p2p"], p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    ch = np.where(rng.random(k["p2p"]) < 0.7, _TRANSFER, _INSTANT)
    rows.add(persons[s], persons[contacts[s, c]], _times(rng, k["p2p"], T, hour_p), _lognormal_cents(rng, 60.0, 1.0, k["p2p"]), ch)

    # cash withdrawals at ATMs, round amounts
    s = persons[rng.choice(P, size=k["cash"], p=w_p)]
    a = rng.choice(np.array([20, 50, 100, 200, 300, 500]) * 100, size=k["cash"], p=[0.15, 0.3, 0.25, 0.15, 0.08, 0.07])
    rows.add(s, atms[rng.integers(0, atms.shape[0], size=k["cash"])], _times(rng, k["cash"], T, hour_p), a, _CASH)

    # marketplace sellers: paid by many different (mostly first-time) buyers
    sellers = persons[rng.random(P) < 0.01]
    if sellers.shape[0] == 0:
        sellers = persons[:1]
    buyers = persons[rng.integers(0, P, size=k["sale"])]
    sel = sellers[rng.choice(sellers.shape[0], size=k["sale"], p=_zipf_p(sellers.shape[0], 0.8))]
    ok = buyers != sel
    rows.add(buyers[ok], sel[ok], _times(rng, int(ok.sum()), T, hour_p), _lognormal_cents(rng, 40.0, 0.8, int(ok.sum())),
             np.where(rng.random(int(ok.sum())) < 0.5, _TRANSFER, _INSTANT))

    # remittances: a few persons send to a fixed foreign account; some money comes in from abroad
    remitters = persons[rng.random(P) < 0.05]
    if remitters.shape[0]:
        rem_to = foreign[rng.integers(0, foreign.shape[0], size=remitters.shape[0])]
        j = rng.integers(0, remitters.shape[0], size=k["remit"])
        inbound = rng.random(k["remit"]) < 0.3
        cur = np.where(inbound, 1 + rng.integers(0, ctx["n_foreign_currencies"], size=k["remit"]), 0)
        rows.add(np.where(inbound, rem_to[j], remitters[j]), np.where(inbound, remitters[j], rem_to[j]),
                 _times(rng, k["remit"], T, hour_p), _lognormal_cents(rng, 300.0, 0.7, k["remit"]), _TRANSFER, cur)

    # occasional large legitimate payments, a fifth of them just below the reporting threshold
    s = persons[rng.choice(P, size=k["large"], p=w_p)]
    to_person = rng.random(k["large"]) < 0.4
    d = np.where(to_person, persons[rng.integers(0, P, size=k["large"])], merchants[rng.integers(0, merchants.shape[0], size=k["large"])])
    amt = _lognormal_cents(rng, 8000.0, 0.8, k["large"], lo=1000.0)
    below = rng.random(k["large"]) < 0.2
    amt = np.where(below, rng.integers(int(STRUCTURING_THRESHOLD * 90), int(STRUCTURING_THRESHOLD * 100), size=k["large"]), amt)
    ok = s != d
    rows.add(s[ok], d[ok], _times(rng, int(ok.sum()), T, hour_p), amt[ok], _TRANSFER)


# --------------------------------------------------------------------------------------------------
# planted typologies
# --------------------------------------------------------------------------------------------------


class _Planter:
    """Plants one pattern at a time; collects planted rows and mule memberships."""

    def __init__(self, rng: np.random.Generator, ctx: dict[str, Any]):
        self.rng = rng
        self.ctx = ctx
        self.T = ctx["t_end"]
        self.hop_max = int(max(1200, min(6 * _HOUR, self.T // 40)))
        self.spread = int(min(2 * _DAY, self.T // 4))
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
            chan = _TRANSFER if self.rng.random() < 0.6 else _INSTANT
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
                self.add(mule, idx["atm"][self.rng.integers(0, idx["atm"].shape[0])], t, each, _CASH)
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
        amounts = _lognormal_cents(self.rng, 600.0, 0.7, k, lo=50.0)
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
        t = self.start(rounds * (self.hop_max + 2 * _HOUR + gap_max))
        for _ in range(rounds):  # one round at a time: in, then out within hours, then a pause
            a = int(_lognormal_cents(self.rng, 4000.0, 0.6, 1, lo=500.0)[0])
            self.add(self.origin(), mule, t, a)
            t = self.exit(mule, t + self.hop(), self.keep(a)) + int(self.rng.integers(600, gap_max))

    def stack(self, m: tuple[int, ...]) -> None:
        waves = int(self.rng.integers(1, 4))
        gap_max = max(1200, self.spread // waves)
        t = self.start(waves * ((len(m) + 1) * self.hop_max + 2 * _HOUR + gap_max))
        for _ in range(waves):  # one wave at a time down the chain
            a = int(_lognormal_cents(self.rng, 6000.0, 0.5, 1, lo=1000.0)[0])
            self.add(self.origin(), m[0], t, a)
            for prev, nxt in zip(m[:-1], m[1:]):
                t += self.hop()
                a = self.keep(a)
                self.add(prev, nxt, t, a)
            t = self.exit(m[-1], t + self.hop(), self.keep(a)) + int(self.rng.integers(600, gap_max))

    def fan_out(self, m: tuple[int, ...]) -> None:
        (mule,) = m
        t = self.start(3 * self.hop_max)
        a = int(_lognormal_cents(self.rng, 15000.0, 0.5, 1, lo=3000.0)[0])
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
        a = int(_lognormal_cents(self.rng, 3000.0, 0.5, 1, lo=500.0)[0])
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
        amounts = _lognormal_cents(self.rng, 2500.0, 0.5, k_in, lo=300.0)
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
        a = int(_lognormal_cents(self.rng, 5000.0, 0.5, 1, lo=1000.0)[0])
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
        span = int(min(7 * _DAY, self.T // 2))
        t0 = self.start(span + 2 * self.hop_max)
        ts = np.sort(t0 + self.rng.integers(0, span, size=n))
        lo, hi = int(STRUCTURING_THRESHOLD * 90), int(STRUCTURING_THRESHOLD * 100)
        for t in ts:
            a = int(self.rng.integers(lo, hi))
            self.add(self.origin(), mule, int(t), a)
            self.exit(mule, int(t) + self.hop(), self.keep(a))

    def dormant_burst(self, m: tuple[int, ...]) -> None:
        (mule,) = m
        burst = int(min(_DAY, self.T // 10))
        lo = int(self.T * 0.6)
        t0 = lo + int(self.rng.integers(0, max(1, self.T - lo - burst - 2 * self.hop_max)))
        n = int(self.rng.integers(5, 13))
        ts = np.sort(t0 + self.rng.integers(0, max(1, burst), size=n))
        last = t0
        for t in ts:
            a = int(_lognormal_cents(self.rng, 2000.0, 0.6, 1, lo=200.0)[0])
            self.add(self.origin(), mule, int(t), a)
            last = max(last, self.exit(mule, int(t) + self.hop() // 2 + 1, self.keep(a)))
        self.dormant[mule] = (t0, last)


def _plant(rng: np.random.Generator, ctx: dict[str, Any], mule_share: float, knobs: dict[str, Any]) -> _Planter:
    pl_ = _Planter(rng, ctx)
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


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def _opening_times(rng: np.random.Generator, ctx: dict[str, Any], planter: _Planter, kn: dict[str, Any]) -> np.ndarray:
    """Seconds from the start at which each account is opened; -1 for accounts opened before."""
    n, T = ctx["n_accounts"], ctx["t_end"]
    opened = np.full(n, -1, dtype=np.int64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    if planter.src:
        t = np.asarray(planter.t, dtype=np.int64)
        np.minimum.at(first, np.asarray(planter.src, dtype=np.int64), t)
        np.minimum.at(first, np.asarray(planter.dst, dtype=np.int64), t)
    persons = ctx["idx"]["person"]
    new = persons[(rng.random(persons.shape[0]) < float(kn["new_account_share"])) & (first[persons] == np.iinfo(np.int64).max)]
    opened[new] = rng.integers(0, T, size=new.shape[0])
    cand = np.array([m for m in planter.members if m not in planter.dormant], dtype=np.int64)
    if cand.shape[0]:
        fresh = cand[rng.random(cand.shape[0]) < float(kn["new_mule_share"])]
        opened[fresh] = np.maximum(0, first[fresh] - rng.integers(_HOUR, 3 * _DAY, size=fresh.shape[0]))
    return opened


def _parse_start(start) -> _dt.datetime:
    if isinstance(start, _dt.datetime):
        s = start if start.tzinfo else start.replace(tzinfo=_dt.timezone.utc)
        return s.astimezone(_dt.timezone.utc)
    if isinstance(start, _dt.date):
        return _dt.datetime.combine(start, _dt.time(), tzinfo=_dt.timezone.utc)
    try:
        s = _dt.datetime.fromisoformat(str(start))
    except ValueError:
        raise InputError("start must be an ISO date such as 2025-01-01.") from None
    return s.replace(tzinfo=_dt.timezone.utc) if s.tzinfo is None else s.astimezone(_dt.timezone.utc)


def generate(
    n_accounts: int = 2000,
    days: int = 30,
    seed: int = 0,
    *,
    start: str | _dt.date = "2025-01-01",
    mule_share: float = 0.02,
    currency: str = "EUR",
    **knobs: Any,
) -> SynthData:
    """Generate a synthetic transfer log with planted mule typologies.

    Parameters
    ----------
    n_accounts:
        Number of accounts (all roles together, at least 100).
    days:
        Length of the period in days (at least 2), starting at ``start`` (UTC midnight).
    seed:
        Seed of all randomness; the same arguments give the same data.
    mule_share:
        Share of accounts recruited as mules (0 for none). When positive, every typology is
        planted at least ``min_per_typology`` times (default 1), even if that exceeds the share.
    currency:
        Domestic currency (ISO 4217); a few remittances from abroad use other currencies.
    **knobs:
        ``activity`` (mean transfers per account per day, default 0.17), ``country`` (domestic
        IBAN prefix, default ``"NL"``), ``reuse_share`` (chance a pattern reuses an earlier mule,
        default 0.15), ``min_per_typology``, ``hour_profile`` (24 non-negative weights),
        ``new_account_share`` (people opening their account during the period, default 0.03) and
        ``new_mule_share`` (mules opened shortly before first use, default 0.25).

    Returns
    -------
    SynthData

    Examples
    --------
    >>> data = generate(300, days=10, seed=1)
    >>> list(data.transfers.columns)
    ['txn_id', 'ts', 'src_account', 'dst_account', 'amount', 'currency', 'channel']
    """
    unknown = sorted(set(knobs) - set(_DEFAULT_KNOBS))
    if unknown:
        raise InputError(f"unknown synth option(s) {', '.join(unknown)}; allowed: {', '.join(_DEFAULT_KNOBS)}.")
    kn = {**_DEFAULT_KNOBS, **knobs}
    if int(n_accounts) < 100:
        raise InputError("n_accounts must be at least 100; pass a larger --accounts.")
    if int(days) < 2:
        raise InputError("days must be at least 2; pass a larger --days.")
    if not 0.0 <= float(mule_share) <= 0.2:
        raise InputError("mule_share must be between 0 and 0.2.")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise InputError("currency must be a three-letter ISO 4217 code such as EUR.")
    if not float(kn["activity"]) > 0:
        raise InputError("activity must be a positive number of transfers per account per day.")
    for name in ("reuse_share", "new_account_share", "new_mule_share"):
        if not 0.0 <= float(kn[name]) <= 1.0:
            raise InputError(f"{name} must be a share between 0 and 1.")
    if int(kn["min_per_typology"]) < 0:
        raise InputError("min_per_typology must be 0 or more.")
    if kn["hour_profile"] is None:
        hour_p = _HOUR_P
    else:
        hp = np.asarray(kn["hour_profile"], dtype=float)
        if hp.shape != (24,) or (hp < 0).any() or hp.sum() <= 0:
            raise InputError("hour_profile must be 24 non-negative weights with a positive sum.")
        hour_p = hp / hp.sum()
    n_accounts, days, seed = int(n_accounts), int(days), int(seed)
    start_dt = _parse_start(start)

    ss = np.random.SeedSequence(seed)
    r_accounts, r_background, r_plant, r_open = (np.random.default_rng(s) for s in ss.spawn(4))

    # accounts: roles in contiguous index blocks, ids from a random permutation (no role leak)
    counts = _allocate_roles(n_accounts)
    role_code = np.repeat(np.arange(len(ROLES), dtype=np.int8), [counts[r] for r in ROLES])
    idx = {r: np.flatnonzero(role_code == i) for i, r in enumerate(ROLES)}
    id_num = r_accounts.permutation(n_accounts)
    country = np.full(n_accounts, kn["country"], dtype=object)
    n_foreign = idx["foreign"].shape[0]
    country[idx["foreign"]] = np.array(_FOREIGN_COUNTRIES, dtype=object)[r_accounts.integers(0, len(_FOREIGN_COUNTRIES), size=n_foreign)]
    abroad_origin = r_accounts.random(idx["origin"].shape[0]) < 0.5
    country[idx["origin"][abroad_origin]] = np.array(_FOREIGN_COUNTRIES, dtype=object)[
        r_accounts.integers(0, len(_FOREIGN_COUNTRIES), size=int(abroad_origin.sum()))
    ]
    acc = pl.DataFrame({"num": id_num, "country": pl.Series(country, dtype=pl.String), "role_code": role_code})
    acc = acc.with_columns(
        pl.format(
            "{}{}SYNB{}",
            pl.col("country"),
            (pl.col("num") * 37 % 90 + 10).cast(pl.String),
            pl.col("num").cast(pl.String).str.zfill(10),
        ).alias("account_id")
    )
    account_ids = acc["account_id"]

    T = days * _DAY
    foreign_currencies = [c for c in _FOREIGN_CURRENCIES if c != currency][:2]
    ctx = {"idx": idx, "t_end": T, "hour_p": hour_p, "start": start_dt, "activity": float(kn["activity"]),
           "n_accounts": n_accounts, "n_foreign_currencies": len(foreign_currencies)}
    rows = _Rows()
    _background(r_background, ctx, rows)
    bg = rows.concat()

    planter = _plant(r_plant, ctx, float(mule_share), kn)

    # keep planted structure clean: dormant mules are silent after the first days, and fan-in
    # victims never paid their mule before
    drop = np.zeros(bg["src"].shape[0], dtype=bool)
    if planter.dormant:
        is_dormant = np.zeros(n_accounts, dtype=bool)
        is_dormant[np.fromiter(planter.dormant, dtype=np.int64)] = True
        early = int(min(3 * _DAY, T // 10))
        drop |= (is_dormant[bg["src"]] | is_dormant[bg["dst"]]) & (bg["t"] >= early)
    if planter.fan_in_pairs:
        pairs = np.array(planter.fan_in_pairs, dtype=np.int64)
        is_fan_in_mule = np.zeros(n_accounts, dtype=bool)
        is_fan_in_mule[pairs[:, 1]] = True
        cand = np.flatnonzero(is_fan_in_mule[bg["dst"]])
        hit = np.isin(bg["src"][cand] * n_accounts + bg["dst"][cand], pairs[:, 0] * n_accounts + pairs[:, 1])
        drop[cand[hit]] = True
    # accounts opened during the period: some ordinary people, and a share of the mules a few days
    # before their first planted transfer; nothing happens on an account before it is opened
    opened = _opening_times(r_open, ctx, planter, kn)
    drop |= (bg["t"] < opened[bg["src"]]) | (bg["t"] < opened[bg["dst"]])
    drop |= bg["src"] == bg["dst"]
    drop |= (bg["t"] < 0) | (bg["t"] >= T)
    keep = ~drop
    planted = {
        "src": np.asarray(planter.src, dtype=np.int64),
        "dst": np.asarray(planter.dst, dtype=np.int64),
        "t": np.asarray(planter.t, dtype=np.int64),
        "cents": np.asarray(planter.cents, dtype=np.int64),
        "channel": np.asarray(planter.chan, dtype=np.int8),
        "currency": np.zeros(len(planter.src), dtype=np.int8),
        "pattern": np.asarray(planter.pid, dtype=np.int64),
        "typology": np.asarray(planter.typ, dtype=np.int8),
    }
    all_ = {k: np.concatenate([bg[k][keep], planted[k]]) for k in bg}
    if (all_["t"] >= T).any() or (all_["t"] < 0).any():  # pragma: no cover - guarded by construction
        raise AssertionError("planted transfer outside the period")

    # time order; ties keep their (deterministic) construction order: the key is unique
    n_all = all_["t"].shape[0]
    order = np.argsort(all_["t"] * max(n_all, 1) + np.arange(n_all, dtype=np.int64))
    all_ = {k: v[order] for k, v in all_.items()}
    n = order.shape[0]
    start_us = int(start_dt.timestamp()) * 1_000_000
    currencies = [currency] + foreign_currencies
    cur_names = pl.Series(currencies, dtype=pl.String)
    chan_names = pl.Series(CHANNELS, dtype=pl.String)
    txn_id = pl.int_range(0, n, eager=True).cast(pl.String).str.zfill(10)
    txn_id = ("T" + txn_id).rename("txn_id") if n else pl.Series("txn_id", [], dtype=pl.String)
    transfers = pl.DataFrame(
        {
            "txn_id": txn_id,
            "ts": pl.Series("ts", all_["t"] * 1_000_000 + start_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "src_account": account_ids.gather(all_["src"]),
            "dst_account": account_ids.gather(all_["dst"]),
            "amount": all_["cents"].astype(np.float64) / 100.0,
            "currency": cur_names.gather(all_["currency"].astype(np.int64)),
            "channel": chan_names.gather(all_["channel"].astype(np.int64)),
        }
    )
    transfers = transfers.select([pl.col(c).cast(dt) for c, dt in TRANSFER_SCHEMA.items()])

    typ_names = pl.Series(TYPOLOGIES, dtype=pl.String)
    is_l = all_["pattern"] >= 0
    txn_labels = pl.DataFrame(
        {
            "txn_id": transfers["txn_id"],
            "is_laundering": is_l,
            "typology": typ_names.gather(np.where(is_l, all_["typology"], 0).astype(np.int64)),
            "pattern_id": pl.Series(all_["pattern"], dtype=pl.Int64),
        }
    ).with_columns(
        pl.when(pl.col("is_laundering")).then(pl.col("typology")).otherwise(None).alias("typology"),
        pl.when(pl.col("is_laundering")).then(pl.col("pattern_id")).otherwise(None).alias("pattern_id"),
    )

    mule_idx = np.fromiter(planter.members, dtype=np.int64, count=len(planter.members))
    mule_typ = ["|".join(sorted(planter.members[int(i)])) for i in mule_idx]
    mules = pl.DataFrame({"i": mule_idx, "typology": pl.Series(mule_typ, dtype=pl.String)})
    accounts = acc.with_columns(
        pl.Series("i", np.arange(n_accounts, dtype=np.int64)),
        pl.Series("role", ROLES, dtype=pl.String).gather(role_code.astype(np.int64)),
        pl.DataFrame({"o": opened})
        .select(pl.when(pl.col("o") >= 0).then(pl.col("o") * 1_000_000 + start_us).cast(pl.Datetime("us", "UTC")))
        .to_series()
        .alias("opened"),
    )
    # both frames in account-number order (the number inside the id)
    accounts = accounts.sort("num")
    labels = accounts.join(mules, on="i", how="left", maintain_order="left").select(
        "account_id",
        pl.col("typology").is_not_null().alias("is_mule"),
        "typology",
    )
    accounts_out = accounts.select("account_id", "role", "country", "opened")
    params = {"n_accounts": n_accounts, "days": days, "seed": seed, "start": start_dt.isoformat(),
              "mule_share": float(mule_share), "currency": currency, **kn}
    return SynthData(transfers=transfers, labels=labels, txn_labels=txn_labels, accounts=accounts_out, params=params)


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------


def mapping_toml() -> str:
    """The mapping (TOML, format of :mod:`mulegraph.mapping`) that ingests a :func:`write_export` CSV."""
    return (
        "# Mapping for the synthetic bank export written by `mulegraph synth`.\n"
        "name = \"synth-bank\"\n"
        "description = \"mulegraph synthetic bank export (semicolon-separated, amounts in cents)\"\n"
        "delimiter = \";\"\n"
        "drop = [\"Remittance Information\"]\n"
        "\n"
        "[columns]\n"
        "txn_id = \"Transaction Reference\"\n"
        "ts = \"Booking Date\"\n"
        "src_account = \"Debtor IBAN\"\n"
        "dst_account = \"Creditor IBAN\"\n"
        "amount = \"Amount (minor units)\"\n"
        "currency = \"Currency\"\n"
        "channel = \"Payment Type\"\n"
        "src_country = \"Debtor Country\"\n"
        "dst_country = \"Creditor Country\"\n"
        "\n"
        "[timestamp]\n"
        f"format = \"{_EXPORT_TS_FORMAT}\"\n"
        "timezone = \"UTC\"\n"
        "\n"
        "[amount]\n"
        "minor_units = true\n"
        "decimals = 2\n"
    )


def _export_frame(data: SynthData) -> pl.DataFrame:
    tr = data.transfers
    # free text a mapping must drop: with the separator and quotes, so CSV quoting is exercised
    memo = pl.col("channel").replace_strict(
        {
            "SALARY": "Salary; monthly pay",
            "DIRECT_DEBIT": "Direct debit; mandate",
            "CARD": "Card payment, POS",
            "CASH": "ATM withdrawal",
            "TRANSFER": 'Payment "ref"; thank you',
            "INSTANT": 'Instant payment "ref"',
        },
        default="",
        return_dtype=pl.String,
    )
    # account ids start with their country code (IBAN style)
    return tr.select(
        pl.col("txn_id").alias("Transaction Reference"),
        pl.col("ts").dt.to_string(_EXPORT_TS_FORMAT).alias("Booking Date"),
        pl.col("src_account").alias("Debtor IBAN"),
        pl.col("dst_account").alias("Creditor IBAN"),
        (pl.col("amount") * 100).round(0).cast(pl.Int64).alias("Amount (minor units)"),
        pl.col("currency").alias("Currency"),
        pl.col("channel").alias("Payment Type"),
        pl.col("src_account").str.slice(0, 2).alias("Debtor Country"),
        pl.col("dst_account").str.slice(0, 2).alias("Creditor Country"),
        memo.alias("Remittance Information"),
    )


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # created with the umask's permissions, as a plain open() would
        write(tmp)


def write_export(data: SynthData, out_dir: str | os.PathLike, *, daily: bool = False) -> dict[str, Path]:
    """Write ``data`` as a bank-like export with its mapping and labels.

    Files written in ``out_dir`` (each atomically):

    * ``transfers.csv``: ``;``-separated, bank column names (``Transaction Reference``,
      ``Booking Date`` as ``dd.mm.yyyy HH:MM:SS`` UTC, ``Debtor IBAN``, ``Creditor IBAN``,
      ``Amount (minor units)`` in cents, ``Currency``, ``Payment Type``, ``Debtor Country``,
      ``Creditor Country``, ``Remittance Information`` free text with quotes and separators);
    * ``mapping.toml``: the mapping that ingests it;
    * ``labels.csv``: ``account_id, is_mule, typology``;
    * ``txn_labels.csv``: ``txn_id, is_laundering, typology, pattern_id``;
    * ``accounts.csv``: ``account_id, role, country, opened``.

    With ``daily=True`` the transfers go to one file per booking day instead, as a bank's nightly
    exports would: ``exports/transfers_YYYYMMDD.csv`` (same columns, each with its header), and
    ``transfers`` in the returned dict is that folder (``mulegraph ingest`` accepts a folder).

    Returns the paths by name (``transfers``, ``mapping``, ``labels``, ``txn_labels``, ``accounts``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path '{out}' exists and is not a folder; choose another --out.")
    paths = {
        "transfers": out / ("exports" if daily else "transfers.csv"),
        "mapping": out / "mapping.toml",
        "labels": out / "labels.csv",
        "txn_labels": out / "txn_labels.csv",
        "accounts": out / "accounts.csv",
    }
    exp = _export_frame(data)
    if daily:
        day = data.transfers["ts"].dt.strftime("%Y%m%d").alias("__day")
        for part in exp.with_columns(day).partition_by("__day", maintain_order=True, as_dict=False):
            name = f"transfers_{part['__day'][0]}.csv"
            frame = part.drop("__day")
            _atomic_write(paths["transfers"] / name, lambda p, f=frame: f.write_csv(p, separator=_EXPORT_DELIMITER))
    else:
        _atomic_write(paths["transfers"], lambda p: exp.write_csv(p, separator=_EXPORT_DELIMITER))
    _atomic_write(paths["mapping"], lambda p: Path(p).write_text(mapping_toml(), encoding="utf-8"))
    _atomic_write(paths["labels"], lambda p: data.labels.write_csv(p))
    _atomic_write(paths["txn_labels"], lambda p: data.txn_labels.write_csv(p))
    _atomic_write(paths["accounts"], lambda p: data.accounts.write_csv(p))
    return paths


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (used to check that the same seed gives the same export)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
