"""Generating a synthetic bank: :func:`generate` and its result, :class:`SynthData`.

:func:`generate` checks its arguments, gives accounts their roles and ids, draws the ordinary bank
book (:mod:`~mulegraph.synth.background`) and the planted patterns
(:mod:`~mulegraph.synth.typologies`) from independent random streams spawned from ``seed``, keeps
the planted structure clean (dormant mules silent, fan-in victims new to their mule, nothing on an
account before it is opened) and assembles the canonical transfers, the account and transfer
labels and the account list, in a fixed order, so that the same arguments give the same frames.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.schema import TRANSFER_SCHEMA
from mulegraph.synth.background import add_background, allocate_roles
from mulegraph.synth.base import CHANNELS, DAY, HOUR, HOUR_P, ROLES, TYPOLOGIES, Rows
from mulegraph.synth.typologies import Planter, plant_typologies

__all__ = ["SynthData", "generate"]

#: the largest synthetic data sets and activity generate() makes (larger ones are typing errors)
MAX_ACCOUNTS = 10_000_000
MAX_DAYS = 3660
MAX_ACTIVITY = 100.0

_FOREIGN_COUNTRIES = ("GB", "PL", "RO", "LT", "AE", "HK", "US", "TR")
_FOREIGN_CURRENCIES = ("USD", "GBP", "CHF")


@dataclass
class SynthData:
    """A generated transfer log with its labels.

    Attributes
    ----------
    transfers:
        Canonical transfers, exactly :data:`mulegraph.core.schema.TRANSFER_SCHEMA`, sorted by ``ts``.
    labels:
        One row per account: ``account_id``, ``is_mule`` (bool), ``typology`` ('|'-joined sorted
        typologies for mules, null otherwise).
    txn_labels:
        One row per transfer: ``txn_id``, ``is_laundering`` (bool), ``typology`` (null for
        background), ``pattern_id`` (Int64, null for background).
    accounts:
        One row per account: ``account_id``, ``role`` (see :data:`~mulegraph.synth.base.ROLES`), ``country``, ``opened``
        (when the account was opened, null when before the period; nothing happens on it before).
    params:
        The arguments the data was generated with.
    """

    transfers: pl.DataFrame
    labels: pl.DataFrame
    txn_labels: pl.DataFrame
    accounts: pl.DataFrame
    params: dict[str, Any]

    def summary(self) -> dict[str, int]:
        """Counts: ``transfers``, ``accounts``, ``mules`` and ``laundering_transfers``."""
        return {
            "transfers": self.transfers.height,
            "accounts": self.labels.height,
            "mules": int(self.labels["is_mule"].sum()),
            "laundering_transfers": int(self.txn_labels["is_laundering"].sum()),
        }


#: Options of :func:`generate` beyond its named arguments, with their defaults.
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


def _opening_times(rng: np.random.Generator, ctx: dict[str, Any], planter: Planter, kn: dict[str, Any]) -> np.ndarray:
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
        opened[fresh] = np.maximum(0, first[fresh] - rng.integers(HOUR, 3 * DAY, size=fresh.shape[0]))
    return opened


def _parse_start(start) -> _dt.datetime:
    """The period's start as an aware UTC datetime (a naive one is read as UTC)."""
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
    if not 100 <= int(n_accounts) <= MAX_ACCOUNTS:
        raise InputError(f"n_accounts (--accounts) must be between 100 and {MAX_ACCOUNTS}.")
    if not 2 <= int(days) <= MAX_DAYS:
        raise InputError(f"days (--days) must be between 2 and {MAX_DAYS}.")
    if int(seed) < 0:
        raise InputError("seed (--seed) must be 0 or more.")
    if not 0.0 <= float(mule_share) <= 0.2:
        raise InputError("mule_share must be between 0 and 0.2.")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise InputError("currency must be a three-letter ISO 4217 code such as EUR.")
    if not 0 < float(kn["activity"]) <= MAX_ACTIVITY:
        raise InputError(f"activity (--activity) must be above 0 and at most {MAX_ACTIVITY} transfers per account per day.")
    for name in ("reuse_share", "new_account_share", "new_mule_share"):
        if not 0.0 <= float(kn[name]) <= 1.0:
            raise InputError(f"{name} must be a share between 0 and 1.")
    if int(kn["min_per_typology"]) < 0:
        raise InputError("min_per_typology must be 0 or more.")
    if kn["hour_profile"] is None:
        hour_p = HOUR_P
    else:
        hp = np.asarray(kn["hour_profile"], dtype=float)
        if hp.shape != (24,) or (hp < 0).any() or hp.sum() <= 0:
            raise InputError("hour_profile must be 24 non-negative weights with a positive sum.")
        hour_p = hp / hp.sum()
    n_accounts, days, seed = int(n_accounts), int(days), int(seed)
    start_dt = _parse_start(start)
    if start_dt.year > 9999 - MAX_DAYS // 365 - 1:  # the period and its timestamps stay within year 9999
        raise InputError(f"start (--start) must be in the year {9999 - MAX_DAYS // 365 - 1} or earlier.")

    ss = np.random.SeedSequence(seed)
    r_accounts, r_background, r_plant, r_open = (np.random.default_rng(s) for s in ss.spawn(4))

    # accounts: roles in contiguous index blocks, ids from a random permutation (no role leak)
    counts = allocate_roles(n_accounts)
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

    T = days * DAY
    foreign_currencies = [c for c in _FOREIGN_CURRENCIES if c != currency][:2]
    ctx = {"idx": idx, "t_end": T, "hour_p": hour_p, "start": start_dt, "activity": float(kn["activity"]),
           "n_accounts": n_accounts, "n_foreign_currencies": len(foreign_currencies)}
    rows = Rows()
    add_background(r_background, ctx, rows)
    bg = rows.concat()

    planter = plant_typologies(r_plant, ctx, float(mule_share), kn)

    # keep planted structure clean: dormant mules are silent after the first days, and fan-in
    # victims never paid their mule before
    drop = np.zeros(bg["src"].shape[0], dtype=bool)
    if planter.dormant:
        is_dormant = np.zeros(n_accounts, dtype=bool)
        is_dormant[np.fromiter(planter.dormant, dtype=np.int64)] = True
        early = int(min(3 * DAY, T // 10))
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


