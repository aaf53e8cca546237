"""The ordinary bank book: account roles and the legitimate activity around the planted patterns.

:func:`allocate_roles` sizes each role (:data:`~mulegraph.synth.base.ROLES`) for a bank of ``n``
accounts; :func:`add_background` draws a period's legitimate transfers into a
:class:`~mulegraph.synth.base.Rows`: salaries in night batches from Zipf-sized employers, salary
sweeps to savings, direct-debit bills, rent (some of it collected from relatives first), sole
traders paying their takings on to suppliers, big-ticket purchases funded by relatives, flatmates'
rings and family chains, and a budget of card payments (partly through a payment processor that
settles nightly), person-to-person transfers among contacts, cash withdrawals, marketplace sales,
remittances in foreign currencies and occasional large payments (some just below the structuring
threshold). Several of these are deliberate look-alikes of mule structure, so that a detector
cannot tell mules by shape alone.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from mulegraph.synth.base import (
    CARD,
    CASH,
    DAY,
    DEBIT,
    HOUR,
    INSTANT,
    SALARY,
    STRUCTURING_THRESHOLD,
    TRANSFER,
    Rows,
    lognormal_cents,
    random_times,
    zipf_p,
)

__all__ = ["allocate_roles", "add_background"]


def allocate_roles(n: int) -> dict[str, int]:
    """How many accounts of each role a bank of ``n`` accounts has (persons take the rest)."""
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


def add_background(rng: np.random.Generator, ctx: dict[str, Any], rows: Rows) -> None:
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
    emp = rng.choice(employers.shape[0], size=employed.shape[0], p=zipf_p(employers.shape[0]))
    emp_of = employers[emp]
    pay_dom = rng.integers(24, 28, size=employers.shape[0])[emp]  # each employer's payday (0-based)
    pay_hr = rng.integers(1, 6, size=employers.shape[0])[emp]  # and the hour of its batch
    salary = lognormal_cents(rng, 2600.0, 0.6, employed.shape[0], lo=400.0)
    sal_src, sal_dst, sal_t, sal_c = [], [], [], []
    for off in months:
        t = off + pay_dom * DAY + pay_hr * HOUR + rng.integers(0, 1800, size=employed.shape[0])
        ok = (t >= 0) & (t < T)
        sal_src.append(emp_of[ok])
        sal_dst.append(employed[ok])
        sal_t.append(t[ok])
        sal_c.append(salary[ok])
    sal_src, sal_dst = np.concatenate(sal_src), np.concatenate(sal_dst)
    sal_t, sal_c = np.concatenate(sal_t), np.concatenate(sal_c)
    rows.add(sal_src, sal_dst, sal_t, sal_c, SALARY)
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
            TRANSFER,
        )
        n_fixed += int(sweeper.sum())

    # --- bills: 1-2 direct debits per person per month to Zipf-popular billers
    n_bills = rng.integers(1, 3, size=P)
    b_person = np.repeat(persons, n_bills)
    b_biller = billers[rng.choice(billers.shape[0], size=b_person.shape[0], p=zipf_p(billers.shape[0]))]
    b_dom = rng.integers(0, 28, size=b_person.shape[0])
    b_amt = lognormal_cents(rng, 80.0, 0.6, b_person.shape[0])
    for off in months:
        t = off + b_dom * DAY + rng.integers(4 * HOUR, 8 * HOUR, size=b_person.shape[0])
        ok = (t >= 0) & (t < T)
        rows.add(b_person[ok], b_biller[ok], t[ok], b_amt[ok], DEBIT)
        n_fixed += int(ok.sum())

    # --- rent: half of the persons pay rent early in the month; some of them are family accounts
    #     that first collect shares from relatives (a legitimate fast pass-through)
    renters = persons[rng.random(P) < 0.5]
    r_to = landlords[rng.integers(0, landlords.shape[0], size=renters.shape[0])]
    r_dom = rng.integers(0, 3, size=renters.shape[0])
    r_amt = lognormal_cents(rng, 900.0, 0.35, renters.shape[0], lo=200.0)
    family = rng.random(renters.shape[0]) < 0.08
    n_rel = rng.integers(2, 4, size=renters.shape[0])
    relatives = persons[
        (np.searchsorted(persons, renters)[:, None] + 1 + rng.integers(0, P - 1, size=(renters.shape[0], 3))) % P
    ]
    for off in months:
        t = off + r_dom * DAY + rng.choice(24, size=renters.shape[0], p=hour_p) * HOUR + rng.integers(0, HOUR, size=renters.shape[0])
        t = np.maximum(t, off + 10 * HOUR)  # leave room for the family shares before
        ok = (t >= 0) & (t < T)
        rows.add(renters[ok], r_to[ok], t[ok], r_amt[ok], TRANSFER)
        n_fixed += int(ok.sum())
        f = ok & family
        for j in range(3):
            g = f & (n_rel > j)
            share = r_amt[g] // n_rel[g]
            tt = t[g] - rng.integers(30 * 60, 8 * HOUR, size=int(g.sum()))
            keep = tt >= 0
            rows.add(relatives[g, j][keep], renters[g][keep], tt[keep], share[keep], TRANSFER)
            n_fixed += int(keep.sum())

    n_days = -(-T // DAY)
    suppliers_pool = np.concatenate([merchants, foreign[: max(1, foreign.shape[0] // 2)]])

    # --- sole traders: many customers pay them (mostly first-time), and on about half of the days
    #     with takings they pay most of it on to a supplier within hours (legitimate pass-through)
    traders = persons[rng.random(P) < 0.015]
    if traders.shape[0]:
        nt = traders.shape[0]
        n_rec = rng.poisson(rng.lognormal(0.0, 0.7, size=nt) * T / DAY)
        who = np.repeat(np.arange(nt), n_rec)
        payer = persons[rng.integers(0, P, size=who.shape[0])]
        ok = payer != traders[who]
        who, payer = who[ok], payer[ok]
        rt = random_times(rng, who.shape[0], T, hour_p)
        ra = lognormal_cents(rng, 150.0, 0.9, who.shape[0])
        rows.add(payer, traders[who], rt, ra, np.where(rng.random(who.shape[0]) < 0.6, TRANSFER, INSTANT))
        n_fixed += who.shape[0]
        key = who * n_days + rt // DAY
        ukey, inv = np.unique(key, return_inverse=True)
        takings = np.bincount(inv, weights=ra.astype(float))
        last = np.zeros(ukey.shape[0], dtype=np.int64)
        np.maximum.at(last, inv, rt)
        supplier = suppliers_pool[rng.integers(0, suppliers_pool.shape[0], size=(nt, 3))]
        pt = last + rng.integers(1800, 12 * HOUR, size=ukey.shape[0])
        pay = (rng.random(ukey.shape[0]) < 0.5) & (pt < T)
        tw = ukey // n_days
        rows.add(traders[tw[pay]], supplier[tw[pay], rng.integers(0, 3, size=int(pay.sum()))], pt[pay],
                 np.round(takings[pay] * rng.uniform(0.6, 0.95, size=int(pay.sum()))).astype(np.int64), TRANSFER)
        n_fixed += int(pay.sum())

    # --- big-ticket purchases funded by relatives or a loan: a large inbound passed on whole
    #     (to a car dealer or a landlord) within hours
    n_big = int(rng.poisson(0.004 * P * T / (30 * DAY)))
    if n_big:
        buyer = persons[rng.integers(0, P, size=n_big)]
        funder = np.where(rng.random(n_big) < 0.8, persons[rng.integers(0, P, size=n_big)], foreign[rng.integers(0, foreign.shape[0], size=n_big)])
        seller = np.where(rng.random(n_big) < 0.6, merchants[rng.integers(0, merchants.shape[0], size=n_big)], landlords[rng.integers(0, landlords.shape[0], size=n_big)])
        amt = lognormal_cents(rng, 15000.0, 0.8, n_big, lo=3000.0)
        t_in = random_times(rng, n_big, T, hour_p)
        t_out = t_in + rng.integers(1800, 6 * HOUR, size=n_big)
        ok = (t_out < T) & (buyer != funder)
        rows.add(funder[ok], buyer[ok], t_in[ok], amt[ok], TRANSFER)
        rows.add(buyer[ok], seller[ok], t_out[ok], amt[ok], TRANSFER)
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
            t = off + rng.integers(0, 28, size=g) * DAY + rng.choice(24, size=g, p=hour_p) * HOUR + rng.integers(0, HOUR, size=g)
            a = lognormal_cents(rng, 250.0 if kind == "ring" else 400.0, 0.5, g, lo=20.0)
            for hop in range(3 if kind == "ring" else 2):
                ok = (t >= 0) & (t < T)
                rows.add(members[ok, hop], members[ok, (hop + 1) % 3], t[ok], a[ok], TRANSFER if kind == "ring" else INSTANT)
                n_fixed += int(ok.sum())
                if kind == "ring":
                    t = t + rng.integers(HOUR, 3 * DAY, size=g)
                    a = np.round(a * rng.uniform(0.9, 1.0, size=g)).astype(np.int64)
                else:
                    t = t + rng.integers(600, 4 * HOUR, size=g)

    # --- the rest of the budget: card, p2p, cash, marketplace sales, remittances, large payments
    budget = int(round(ctx["activity"] * ctx["n_accounts"] * T / DAY))
    rest = max(0, budget - n_fixed)
    shares = {"card": 0.50, "p2p": 0.25, "cash": 0.12, "sale": 0.06, "remit": 0.04, "large": 0.03}
    k = {name: int(round(rest * s)) for name, s in shares.items()}

    # card purchases, a quarter of them through the payment processor
    src = persons[rng.choice(P, size=k["card"], p=w_p)]
    mer = merchants[rng.choice(merchants.shape[0], size=k["card"], p=zipf_p(merchants.shape[0]))]
    t = random_times(rng, k["card"], T, hour_p)
    amt = lognormal_cents(rng, 35.0, 0.9, k["card"], lo=0.5)
    via = rng.random(k["card"]) < 0.25
    rows.add(src, np.where(via, processor, mer), t, amt, CARD)
    # nightly settlement by the processor to each merchant of the day's payments, less 1.5%
    key = mer[via] * n_days + t[via] // DAY
    ukey, inv = np.unique(key, return_inverse=True)
    tot = np.bincount(inv, weights=amt[via].astype(float))
    s_t = (ukey % n_days + 1) * DAY + rng.integers(HOUR, 3 * HOUR, size=ukey.shape[0])
    ok = s_t < T
    rows.add(
        np.full(int(ok.sum()), processor), ukey[ok] // n_days, s_t[ok], np.round(tot[ok] * 0.985).astype(np.int64), TRANSFER
    )

    # person to person inside a small circle of contacts (repeat payees)
    contacts = (np.arange(P)[:, None] + 1 + rng.integers(0, P - 1, size=(P, 6))) % P
    s = rng.choice(P, size=k["p2p"], p=w_p)
    c = rng.choice(6, size=k["p2p"], p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    ch = np.where(rng.random(k["p2p"]) < 0.7, TRANSFER, INSTANT)
    rows.add(persons[s], persons[contacts[s, c]], random_times(rng, k["p2p"], T, hour_p), lognormal_cents(rng, 60.0, 1.0, k["p2p"]), ch)

    # cash withdrawals at ATMs, round amounts
    s = persons[rng.choice(P, size=k["cash"], p=w_p)]
    a = rng.choice(np.array([20, 50, 100, 200, 300, 500]) * 100, size=k["cash"], p=[0.15, 0.3, 0.25, 0.15, 0.08, 0.07])
    rows.add(s, atms[rng.integers(0, atms.shape[0], size=k["cash"])], random_times(rng, k["cash"], T, hour_p), a, CASH)

    # marketplace sellers: paid by many different (mostly first-time) buyers
    sellers = persons[rng.random(P) < 0.01]
    if sellers.shape[0] == 0:
        sellers = persons[:1]
    buyers = persons[rng.integers(0, P, size=k["sale"])]
    sel = sellers[rng.choice(sellers.shape[0], size=k["sale"], p=zipf_p(sellers.shape[0], 0.8))]
    ok = buyers != sel
    rows.add(buyers[ok], sel[ok], random_times(rng, int(ok.sum()), T, hour_p), lognormal_cents(rng, 40.0, 0.8, int(ok.sum())),
             np.where(rng.random(int(ok.sum())) < 0.5, TRANSFER, INSTANT))

    # remittances: a few persons send to a fixed foreign account; some money comes in from abroad
    remitters = persons[rng.random(P) < 0.05]
    if remitters.shape[0]:
        rem_to = foreign[rng.integers(0, foreign.shape[0], size=remitters.shape[0])]
        j = rng.integers(0, remitters.shape[0], size=k["remit"])
        inbound = rng.random(k["remit"]) < 0.3
        cur = np.where(inbound, 1 + rng.integers(0, ctx["n_foreign_currencies"], size=k["remit"]), 0)
        rows.add(np.where(inbound, rem_to[j], remitters[j]), np.where(inbound, remitters[j], rem_to[j]),
                 random_times(rng, k["remit"], T, hour_p), lognormal_cents(rng, 300.0, 0.7, k["remit"]), TRANSFER, cur)

    # occasional large legitimate payments, a fifth of them just below the reporting threshold
    s = persons[rng.choice(P, size=k["large"], p=w_p)]
    to_person = rng.random(k["large"]) < 0.4
    d = np.where(to_person, persons[rng.integers(0, P, size=k["large"])], merchants[rng.integers(0, merchants.shape[0], size=k["large"])])
    amt = lognormal_cents(rng, 8000.0, 0.8, k["large"], lo=1000.0)
    below = rng.random(k["large"]) < 0.2
    amt = np.where(below, rng.integers(int(STRUCTURING_THRESHOLD * 90), int(STRUCTURING_THRESHOLD * 100), size=k["large"]), amt)
    ok = s != d
    rows.add(s[ok], d[ok], random_times(rng, int(ok.sum()), T, hour_p), amt[ok], TRANSFER)

