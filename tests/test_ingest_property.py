"""Property test: on random messy CSVs the vectorised ingest agrees with a plain-Python reference.

Each generated cell carries its own ground truth (the value it should parse to, or None when it
must not parse), so the reference below is a short loop over rows that applies the documented rules
in order. Ingest must give every row the same outcome, and the counts must add up.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
from hypothesis import given, strategies as st

import mulegraph.ingest.commit as commit_module
from mulegraph.ingest import ingest
from mulegraph.io.store import Store

COLUMNS = ["txn_id", "ts", "src_account", "dst_account", "amount", "currency", "channel"]
ACCOUNTS = ["A", "B", "C", " padded ", "x y", 'q"uote', "semi;colon", "comma,here", "new\nline", "tab\there", "Ünï"]
BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
#: a control character (C0, DEL, C1): the ``control_chars`` rule
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@st.composite
def timestamp(draw):
    """(text, expected UTC datetime or None)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["yesterday", "2024-13-01", "2024-02-30 10:00:00", "1/2/2024", "12:00", "2024-01-01T25:00:00"])), None
    dt = BASE + timedelta(seconds=draw(st.integers(0, 90 * 86400)))
    form = draw(st.integers(0, 5))
    if form == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ"), dt
    if form == 1:
        return dt.strftime("%Y-%m-%d %H:%M:%S"), dt
    if form == 2:
        local = dt + timedelta(hours=2)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + ".250+02:00", dt + timedelta(milliseconds=250)
    if form == 3:
        return dt.strftime("%Y-%m-%d"), dt.replace(hour=0, minute=0, second=0)
    if form == 4:
        return dt.strftime("%Y-%m-%d %H:%M"), dt.replace(second=0)
    return " " + dt.strftime("%Y-%m-%dT%H:%M:%S") + " ", dt


@st.composite
def amount(draw):
    """(text, expected float or None when it is not a positive finite number)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(["abc", "-3.5", "0", "0.00", "nan", "inf", "-inf", "1,5", "12 EUR"])), None
    cents = draw(st.integers(1, 10_000_000))
    if kind == 1:
        return f"{cents}e-2", cents / 100
    text = f"{cents / 100:.2f}"
    return (f" {text} " if kind == 2 else text), float(text)


@st.composite
def currency(draw):
    """(text, expected code or None)."""
    return draw(
        st.sampled_from([("EUR", "EUR"), ("SEK", "SEK"), (" usd ", "USD"), ("eur", "EUR"), ("EURO", None), ("E1R", None), ("€", None)])
    )


def blankable(strategy, draw, p_blank: int = 12):
    return ("", None) if draw(st.integers(0, p_blank)) == 0 else draw(strategy)


@st.composite
def messy_rows(draw):
    rows = []
    n = draw(st.integers(0, 25))
    for _ in range(n):
        if rows and draw(st.integers(0, 5)) == 0:
            rows.append(dict(draw(st.sampled_from(rows))))  # an exact repeat
            continue
        if rows and draw(st.integers(0, 5)) == 0:
            near = dict(draw(st.sampled_from(rows)))  # same txn_id, one field changed
            field = draw(st.sampled_from(["channel", "amount", "ts"]))
            near[field] = {"channel": ("OTHER", "OTHER"), "amount": ("7.77", 7.77), "ts": ("2024-02-02", datetime(2024, 2, 2, tzinfo=timezone.utc))}[field]
            rows.append(near)
            continue
        acc = st.sampled_from(ACCOUNTS).map(lambda a: (a, a.strip()))
        row = {
            "txn_id": blankable(st.sampled_from(["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]).map(lambda t: (t, t)), draw, 20),
            "ts": blankable(timestamp(), draw),
            "src_account": blankable(acc, draw),
            "dst_account": blankable(acc, draw),
            "amount": blankable(amount(), draw),
            "currency": blankable(currency(), draw),
            "channel": draw(st.sampled_from([("", None), ("SEPA", "SEPA"), (" card ", "card")])),
        }
        rows.append(row)
    return rows


def reference(rows):
    """Plain loop over rows applying the documented rules in order; returns outcomes per line."""
    outcomes = {}
    accepted = {}
    for line, row in enumerate(rows, start=1):
        text = {k: v[0].strip() for k, v in row.items()}
        if any(text[c] == "" for c in COLUMNS[:-1]):
            outcomes[line] = "missing_field"
            continue
        if any(CONTROL.search(text[c]) for c in ("txn_id", "src_account", "dst_account", "currency", "channel")):
            outcomes[line] = "control_chars"
            continue
        ts, amt, cur = row["ts"][1], row["amount"][1], row["currency"][1]
        if ts is None:
            outcomes[line] = "bad_timestamp"
        elif amt is None or not math.isfinite(amt) or amt <= 0:
            outcomes[line] = "bad_amount"
        elif cur is None:
            outcomes[line] = "bad_currency"
        elif row["src_account"][1] == row["dst_account"][1]:
            outcomes[line] = "self_transfer"
        else:
            content = (ts, row["src_account"][1], row["dst_account"][1], amt, cur, row["channel"][1])
            tid = row["txn_id"][1]
            if tid not in accepted:
                accepted[tid] = content
                outcomes[line] = "accepted"
            elif accepted[tid] == content:
                outcomes[line] = "duplicate"
            else:
                outcomes[line] = "txn_id_conflict"
    return outcomes, accepted


def write_csv(path: Path, rows, delimiter: str, quoting: int, newline: str, bom: bool, order: list[int], gz: bool):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    cols = [COLUMNS[i] for i in order]
    w.writerow(cols)
    for r in rows:
        w.writerow([r[c][0] for c in cols])
    data = (("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


@given(
    rows=messy_rows(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    order=st.permutations(list(range(7))),
    gz=st.booleans(),
    batch_rows=st.sampled_from([None, 1, 3, 7]),
)
def test_random_messy_csv_matches_reference(tmp_path_factory, rows, delimiter, quoting, newline, bom, order, gz, batch_rows):
    d = tmp_path_factory.mktemp("messy")
    export = d / ("export.csv.gz" if gz else "export.csv")
    write_csv(export, rows, delimiter, quoting, newline, bom, order, gz)
    saved = commit_module.BATCH_ROWS
    commit_module.BATCH_ROWS = batch_rows or saved  # small batches: dedupe across batches
    try:
        report = ingest([export], d / "store").to_dict()
    finally:
        commit_module.BATCH_ROWS = saved
    outcomes, accepted = reference(rows)

    # counts add up and match the reference
    assert report["rows_read"] == len(rows)
    assert report["rows_read"] == report["accepted"] + report["quarantined"] + report["duplicates"]
    assert report["accepted"] == sum(o == "accepted" for o in outcomes.values())
    assert report["duplicates"] == sum(o == "duplicate" for o in outcomes.values())

    store = Store.open(d / "store")
    q = store.quarantine()
    got_q = dict(zip(q["line"].to_list(), q["rule"].to_list()))
    want_q = {line: o for line, o in outcomes.items() if o not in ("accepted", "duplicate")}
    assert got_q == want_q
    assert sum(report["quarantined_by_rule"].values()) == report["quarantined"]

    # nothing lost or invented: the stored rows are exactly the reference's accepted rows
    t = store.transfers()
    got = {
        r["txn_id"]: (r["ts"], r["src_account"], r["dst_account"], r["amount"], r["currency"], r["channel"])
        for r in t.to_dicts()
    }
    assert got == accepted

    # quarantined rows keep their original text
    if q.height:
        originals = pl.Series(q["original"]).str.json_decode(
            pl.Struct({c: pl.String for c in COLUMNS})
        ).struct.unnest()
        for line, rec in zip(q["line"].to_list(), originals.to_dicts()):
            src = rows[line - 1]
            for c in ("txn_id", "src_account", "amount"):
                assert (rec[c] or "") == src[c][0], (line, c)
