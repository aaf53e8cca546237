"""Mappings: TOML parsing and validation, and each mapping feature applied through ingest."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from mulegraph.core.errors import MappingError
from mulegraph.ingest import ingest
from mulegraph.io.mapping import BUILTIN_MAPPINGS, Mapping, dedupe_header, load_mapping, parse_mapping
from mulegraph.io.store import Store

UTC = timezone.utc


def _ingest_text(tmp_path: Path, text: str, mapping, name: str = "x.csv", **kw):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    report = ingest([f], tmp_path / "store", mapping=mapping, **kw)
    store = Store.open(tmp_path / "store")
    return report, store.transfers(), store.quarantine()


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("name", BUILTIN_MAPPINGS)
def test_builtins_load(name):
    m = load_mapping(name)
    assert isinstance(m, Mapping) and m.name == name
    for col in ("ts", "src_account", "dst_account", "amount"):
        assert col in m.columns


def test_default_is_canonical():
    assert load_mapping(None).name == "canonical"


def test_dedupe_header():
    assert dedupe_header(["Account", "Bank", "Account", "Account"]) == ["Account", "Bank", "Account#2", "Account#3"]


@pytest.mark.parametrize(
    "data, match",
    [
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "colour": 1}, "unknown key"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c"}}, "must map 'amount'"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d", "iban": "e"}}, "unknown canonical"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "timestamp": {"format": "dd/mm"}}, "strftime"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "timestamp": {"timezone": "Mars/Base"}}, "timezone"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "timestamp": {"format": "day_number"}}, "base_date"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "labels": {"is_laundering": "d"}}, "label column"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "currency": {"default": "EURO"}}, "3-letter"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "amount": {"decimal_separator": ",", "thousands_separator": ","}}, "decimal_separator"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "drop": ["d"]}, "drops"),
        ({"columns": {"ts": "a", "src_account": "b", "dst_account": "c", "amount": "d"}, "amount": {"cents": True}}, "unknown key"),
        ({}, "needs a \\[columns\\]"),
    ],
)
def test_parse_mapping_rejects(data, match):
    with pytest.raises(MappingError, match=match):
        parse_mapping(data, "m.toml")


def test_load_mapping_errors(tmp_path):
    with pytest.raises(MappingError, match="neither a built-in"):
        load_mapping(tmp_path / "nope.toml")
    bad = _toml(tmp_path, "columns = [")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(bad)


def test_missing_export_column_is_named(tmp_path):
    text = "txn_id,ts,src_account,dst_account,currency\nt1,2024-01-01,A,B,EUR\n"
    with pytest.raises(MappingError, match="reads column 'amount'"):
        _ingest_text(tmp_path, text, None)


def test_if_present_columns_may_be_absent(tmp_path):
    text = "ts,src_account,dst_account,amount,currency\n2024-01-01,A,B,5,EUR\n"
    report, t, _ = _ingest_text(tmp_path, text, None)
    assert report.accepted == 1
    assert t["channel"].to_list() == [None]
    assert t["txn_id"][0].startswith("h") and len(t["txn_id"][0]) == 33


IBM = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,Amount Paid,"
    "Payment Currency,Payment Format,Is Laundering\n"
    "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,Reinvestment,0\n"
    "2022/09/01 00:20,03208,8000F4580,001,8000F5340,0.01,US Dollar,0.01,US Dollar,Cheque,0\n"
    "2022/09/01 00:21,03209,8000F4670,03209,8000F4670,14675.57,US Dollar,14675.57,US Dollar,Reinvestment,0\n"
    "2022/09/01 00:02,012,8000F5030,012,8000F5AD0,2806.97,Euro,2806.97,Euro,Credit Card,1\n"
    "2022/09/01 00:06,020,80020C5B0,020,80020C5B0,5.23,Bitcoin,5.23,Bitcoin,Bitcoin,0\n"
)


def test_ibm_aml_mapping(tmp_path):
    report, t, q = _ingest_text(tmp_path, IBM, "ibm-aml", labels_out=tmp_path / "labels.parquet")
    # rows 1, 3 and 5 send to themselves (IBM's Reinvestment rows)
    assert report.quarantined_by_rule["self_transfer"] == 3
    assert report.accepted == 2
    t = t.sort("ts")
    assert t["src_account"].to_list() == ["012:8000F5030", "03208:8000F4580"]
    assert t["dst_account"].to_list() == ["012:8000F5AD0", "001:8000F5340"]
    assert t["currency"].to_list() == ["EUR", "USD"]
    assert t["channel"].to_list() == ["Credit Card", "Cheque"]
    assert t["src_bank"].to_list() == ["012", "03208"]
    assert t["ts"][0] == datetime(2022, 9, 1, 0, 2, tzinfo=UTC)
    assert "Is Laundering" not in t.columns and "is_laundering" not in t.columns
    labels = pl.read_parquet(tmp_path / "labels.parquet").sort("ts")
    assert labels["is_laundering"].to_list() == [True, False]
    assert set(labels["txn_id"]) == set(t["txn_id"])


def test_ibm_aml_without_label_column(tmp_path):
    text = "\n".join(",".join(line.split(",")[:10]) for line in IBM.strip().split("\n")) + "\n"
    report, _, _ = _ingest_text(tmp_path, text, "ibm-aml")
    assert report.accepted == 2


def test_amlgentex_mapping_small(tmp_path):
    f = tmp_path / "tx_log.parquet"
    pl.DataFrame(
        {
            "step": pl.Series([0, 1, 1, 2], dtype=pl.Int32),
            "type": pl.Series(["INITALBALANCE", "TRANSFER", "CASH", "TRANSFER"], dtype=pl.Categorical),
            "amount": [100.0, 5.5, 7.0, 3.0],
            "nameOrig": pl.Series([-2, 1, 2, 1], dtype=pl.Int32),
            "nameDest": pl.Series([1, 2, -1, 1], dtype=pl.Int32),
            "bankOrig": ["source", "bank_a", "bank_b", "bank_a"],
            "bankDest": ["bank_a", "bank_b", "sink", "bank_a"],
            "oldbalanceOrig": [0.0, 1.0, 2.0, 3.0],
            "isSAR": pl.Series([0, 1, 0, 0], dtype=pl.Int8),
            "patternID": pl.Series([-1, 23001, -1, -1], dtype=pl.Int32),
            "modelType": pl.Series([0, 2, 0, 0], dtype=pl.Int16),
        }
    ).write_parquet(f)
    report = ingest([f], tmp_path / "store", mapping="amlgentex", labels_out=tmp_path / "l.csv")
    assert report.accepted == 3 and report.quarantined_by_rule["self_transfer"] == 1
    t = Store.open(tmp_path / "store").transfers().sort("ts")
    assert t["src_account"].to_list() == ["EXT_SOURCE", "1", "2"]
    assert t["dst_account"].to_list() == ["1", "2", "EXT_SINK"]
    assert t["ts"].to_list() == [datetime(2024, 3, d, tzinfo=UTC) for d in (1, 2, 2)]
    assert t["currency"].unique().to_list() == ["SEK"]
    assert "isSAR" not in t.columns and "oldbalanceOrig" not in t.columns
    labels = pl.read_csv(tmp_path / "l.csv").sort("ts")
    assert labels["is_laundering"].to_list() == [False, True, False]
    assert labels["pattern_id"].to_list() == [-1, 23001, -1]


def test_custom_mapping_formats(tmp_path):
    m = _toml(
        tmp_path,
        """
name = "nordic"
delimiter = ";"
[columns]
txn_id = "Ref"
ts = "Tid"
src_account = ["Bank", "Från"]
dst_account = "Till"
amount = "Belopp"
[timestamp]
format = "%d.%m.%Y %H:%M:%S"
timezone = "Europe/Stockholm"
[amount]
decimal_separator = ","
thousands_separator = " "
[currency]
default = "SEK"
[accounts]
join = "/"
aliases = { "kassa" = "CASH_DESK" }
""",
    )
    text = (
        "Ref;Tid;Bank;Från;Till;Belopp\n"
        "r1;15.01.2024 10:00:00;SEB;111;kassa;1 234,50\n"
        "r2;31.03.2024 02:30:00;SEB;111;222;5,00\n"  # does not exist in Stockholm (DST gap)
        "r3;01.07.2024 12:00:00;SEB;111;222;-5,00\n"
    )
    report, t, q = _ingest_text(tmp_path, text, m)
    assert report.accepted == 1
    assert t["amount"].to_list() == [1234.5]
    assert t["src_account"].to_list() == ["SEB/111"]
    assert t["dst_account"].to_list() == ["CASH_DESK"]
    assert t["currency"].to_list() == ["SEK"]
    assert t["ts"].to_list() == [datetime(2024, 1, 15, 9, 0, tzinfo=UTC)]  # CET = UTC+1
    assert dict(zip(q["line"], q["rule"])) == {2: "bad_timestamp", 3: "bad_amount"}


def test_minor_units_and_epoch(tmp_path):
    m = _toml(
        tmp_path,
        """
[columns]
ts = "t"
src_account = "s"
dst_account = "d"
amount = "cents"
currency = "c"
[timestamp]
format = "epoch_s"
[amount]
minor_units = true
decimals = 2
""",
    )
    report, t, _ = _ingest_text(tmp_path, "t,s,d,cents,c\n1700000000,A,B,12345,EUR\n1700000000.5,A,B,1,EUR\n", m)
    assert report.accepted == 2
    t = t.sort("amount")
    assert t["amount"].to_list() == [0.01, 123.45]
    assert t["ts"].to_list() == [
        datetime.fromtimestamp(1700000000.5, UTC),
        datetime.fromtimestamp(1700000000, UTC),
    ]


@pytest.mark.parametrize("decimals, parquet", [(2, False), (3, False), (2, True)])
def test_minor_units_come_out_exact(tmp_path, decimals, parquet):
    """Dividing by 10**decimals must give the decimal number itself: 9671 cents -> 96.71 exactly
    (a bare float division gives 96.71000000000001)."""
    m = _toml(
        tmp_path,
        f"""
[columns]
ts = "t"
src_account = "s"
dst_account = "d"
amount = "minor"
currency = "c"
[amount]
minor_units = true
decimals = {decimals}
""",
    )
    minor = [9671, 1, 10, 99, 100, 12345, 5000029, 70000007, 8.0e9 + 3] + list(range(9600, 9800))
    minor = [int(v) for v in minor]
    want = [float(f"{v // 10**decimals}.{v % 10**decimals:0{decimals}d}") for v in minor]
    frame = pl.DataFrame(
        {"t": ["2024-01-01T00:00:00"] * len(minor), "s": [f"A{i}" for i in range(len(minor))], "d": "B",
         "minor": minor, "c": "EUR"}
    )
    if parquet:  # a numeric column, not text
        f = tmp_path / "x.parquet"
        frame.write_parquet(f)
        ingest([f], tmp_path / "store", mapping=m)
        t = Store.open(tmp_path / "store").transfers()
    else:
        _, t, _ = _ingest_text(tmp_path, frame.write_csv(), m)
    got = dict(zip(t["src_account"].to_list(), t["amount"].to_list()))
    assert [got[f"A{i}"] for i in range(len(minor))] == want  # exact float equality
    if decimals == 2:
        assert got["A0"] == 96.71 and repr(got["A0"]) == "96.71"


def test_currency_aliases_and_default_fill_blanks(tmp_path):
    m = _toml(
        tmp_path,
        """
[columns]
ts = "ts"
src_account = "s"
dst_account = "d"
amount = "a"
currency = "cur"
[currency]
default = "NOK"
aliases = { "Krone" = "DKK" }
""",
    )
    report, t, _ = _ingest_text(tmp_path, "ts,s,d,a,cur\n2024-01-01,A,B,1,Krone\n2024-01-01,A,C,1,\n", m)
    assert sorted(t["currency"].to_list()) == ["DKK", "NOK"]


def test_mapping_without_currency_needs_default(tmp_path):
    m = _toml(tmp_path, '[columns]\nts = "ts"\nsrc_account = "s"\ndst_account = "d"\namount = "a"\n')
    with pytest.raises(MappingError, match="no currency column"):
        _ingest_text(tmp_path, "ts,s,d,a\n2024-01-01,A,B,1\n", m)


def test_ambiguous_local_time_is_the_earlier_instant(tmp_path):
    m = _toml(
        tmp_path,
        '[columns]\nts = "t"\nsrc_account = "s"\ndst_account = "d"\namount = "a"\ncurrency = "c"\n'
        '[timestamp]\nformat = "%Y-%m-%d %H:%M"\ntimezone = "Europe/Berlin"\n',
    )
    # 2024-10-27 02:30 happens twice in Berlin (CEST then CET)
    report, t, _ = _ingest_text(tmp_path, "t,s,d,a,c\n2024-10-27 02:30,A,B,1,EUR\n", m)
    assert t["ts"].to_list() == [datetime(2024, 10, 27, 0, 30, tzinfo=UTC)]


def test_parquet_quarantine_keeps_original_values(tmp_path):
    f = tmp_path / "e.parquet"
    pl.DataFrame(
        {"txn_id": ["a", "b"], "ts": ["2024-01-01", "2024-01-02"], "src_account": ["X", "Y"],
         "dst_account": ["Z", "Y"], "amount": [1.5, 2.0], "currency": ["EUR", "EUR"], "memo": ["m1", "m2"]}
    ).write_parquet(f)
    report = ingest([f], tmp_path / "store")
    assert report.quarantined_by_rule["self_transfer"] == 1
    q = Store.open(tmp_path / "store").quarantine()
    assert q["line"].to_list() == [2]
    assert json.loads(q["original"][0]) == {
        "txn_id": "b", "ts": "2024-01-02", "src_account": "Y", "dst_account": "Y", "amount": "2.0",
        "currency": "EUR", "memo": "m2",
    }


def _toml_block_after(text: str, marker: str) -> str:
    start = text.index(marker)
    block = text[text.index("```toml", start) + len("```toml"):]
    return block[: block.index("```")]


def test_documented_examples_parse():
    import textwrap
    import tomllib

    import mulegraph.io.mapping as mapping_module

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    m = parse_mapping(tomllib.loads(_toml_block_after(readme, "## Mapping format")), "readme")
    assert m.columns["src_account"] == ("Payer Bank", "Payer Account") and m.minor_units
    doc = mapping_module.__doc__
    example = textwrap.dedent(doc[doc.index("    name = "): doc.index("Header names are matched")])
    m2 = parse_mapping(tomllib.loads(example), "docstring")
    assert m2.labels == {"is_laundering": "Is Fraud"} and m2.decimal_separator == ","
