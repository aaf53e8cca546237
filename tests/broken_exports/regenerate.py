"""Regenerate the broken-export corpus: `python tests/broken_exports/regenerate.py`.

Each file is one kind of broken (or awkward) export; `cases.toml` says what ingest must do with it.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import polars as pl

HERE = Path(__file__).parent
H = "txn_id,ts,src_account,dst_account,amount,currency,channel\n"
GOOD = "t1,2024-01-01T10:00:00Z,A,B,5.00,EUR,card\n"


def w(name: str, data: str | bytes) -> None:
    (HERE / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def main() -> None:
    w("empty.csv", b"")
    w("whitespace_only.csv", "\n  \n\r\n")
    w("header_only.csv", H)
    w("binary_noise.csv", bytes(range(256)) * 4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("sheet.xml", date_time=(2024, 1, 1, 0, 0, 0)), "<x/>")
    w("spreadsheet.xlsx", buf.getvalue())
    w("truncated.csv.gz", gzip.compress((H + GOOD * 2000).encode(), mtime=0)[:300])
    w("double.csv.gz", gzip.compress(gzip.compress((H + GOOD).encode(), mtime=0), mtime=0))
    pbuf = io.BytesIO()
    pl.DataFrame({"txn_id": ["t1"] * 500, "amount": [1.0] * 500}).write_parquet(pbuf)
    w("truncated.parquet", pbuf.getvalue()[: len(pbuf.getvalue()) // 2])
    w("text_named.parquet", "this is not parquet\n")
    w("missing_amount_column.csv", "txn_id,ts,src_account,dst_account,currency\nt1,2024-01-01,A,B,EUR\n")
    w("no_header_row.csv", GOOD + "t2,2024-01-02,A,C,7,EUR,\n")
    w("html_error_page.csv", "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
    w("ragged_extra_fields.csv", H + GOOD + "t2,2024-01-02,A,B,5,EUR,card,EXTRA,MORE\n")
    w("short_rows.csv", H + GOOD + "t2,2024-01-02,A,B\nt3,2024-01-03\n")
    w("latin1.csv", (H + "t1,2024-01-01,Müller,Jönsson,5,EUR,\n").encode("latin-1"))
    w("latin1_late.csv", (H + GOOD.replace("t1", "t0") * 3000 + "t1,2024-01-01,Müller,B,5,EUR,\n").encode("latin-1"))
    w("unterminated_quote.csv", H + GOOD + 't2,2024-01-02,"A,B,5,EUR,card\nt3,2024-01-03,A,B,5,EUR,card\n')
    w(
        "bad_values.csv",
        H
        + GOOD
        + "t2,31/12/2024,A,B,5,EUR,\n"
        + "t3,2024-01-01 25:00:00,A,B,5,EUR,\n"
        + "t4,2024-01-01,A,B,-5,EUR,\n"
        + "t5,2024-01-01,A,B,1e400,EUR,\n"
        + "t6,2024-01-01,A,B,\"1,5\",EUR,\n"
        + "t7,2024-01-01,A,B,5,Euro,\n"
        + "t8,2024-01-01,A,B,5,$,\n",
    )
    w("blank_required.csv", H + GOOD + "t2,2024-01-02,,B,5,EUR,\n" + "t3,2024-01-02,A,  ,5,EUR,\n" + ",2024-01-02,A,B,5,EUR,\n")
    w("self_transfers.csv", H + GOOD + "t2,2024-01-02,A,A,5,EUR,\nt3,2024-01-02, B ,B,5,EUR,\n")
    w("duplicates_conflicts.csv", H + GOOD + GOOD + GOOD + GOOD.replace("5.00", "6.00") + "t2,2024-01-02,A,B,5,EUR,\n")
    w("all_rows_bad.csv", H + "t1,x,A,B,5,EUR,\nt2,2024-01-01,A,A,5,EUR,\n")
    w(
        "semicolon_bom_crlf.csv",
        ("\ufeff" + H + GOOD.replace("card", '"debit; card"') + "t2,2024-01-02,\"C\r\nD\",B,5,EUR,\n")
        .replace(",", ";").replace("\n", "\r\n").replace("\r\r\n", "\r\n"),
    )
    w("mixed_offsets.csv", H + "t1,2024-01-01T10:00:00+02:00,A,B,5,EUR,\nt2,2024-01-01T08:00:00Z,A,C,5,EUR,\nt3,2024-01-01 08:00,A,D,5,EUR,\n")
    w(
        "control_chars.csv",
        H
        + GOOD
        + "t2,2024-01-02,A\x01,B,5,EUR,\n"  # C0 in an account
        + "t3,2024-01-02,A,B\x1b[2J,5,EUR,\n"  # an ANSI escape sequence
        + "t4\x7f,2024-01-02,A,B,5,EUR,\n"  # DEL in the txn_id
        + "t5,2024-01-02,A,B,5,EUR,ca\u0085rd\n"  # C1 (NEL) inside the channel
        + "t6,2024-01-02,A,B,5,E\tR,\n"  # a tab inside the currency
        + '"t7",2024-01-02,"A\nB",C,5,EUR,\n'  # a quoted line break inside an account
        + "t8,2024-01-02,\u202eA,B,5,EUR,\n"  # a right-to-left override is not a control character
        + "t9,2024-01-02,A\x02,A\x02,-5,EUR,\n"  # control_chars comes before bad_amount and self_transfer
        + "t10,2024-01-02,,B\x03,5,EUR,\n"  # missing_field comes first
        + "\tt11 ,2024-01-02,A,B,5,EUR,\n",  # white space around a value is stripped, not a control character
    )
    w("nul_after_64k.csv", H + GOOD.replace("t1", "t0") * 3000 + "t1\x00x,2024-01-01,A,B,5,EUR,\n" + GOOD.replace("t1", "t2"))
    w("nul_early.csv", H + GOOD + "t2,2024-01-01,A\x00,B,5,EUR,\n" + GOOD.replace("t1", "t3"))
    pl.DataFrame(
        {
            "txn_id": ["t1", "t2\x00", "t3", "t4"],
            "ts": ["2024-01-01"] * 4,
            "src_account": ["A", "A", "A\u0085Z", "A"],
            "dst_account": ["B", "B", "B", "B\x1b]0;title\x07"],
            "amount": [5.0] * 4,
            "currency": ["EUR"] * 4,
        }
    ).write_parquet(HERE / "control_chars.parquet")
    (HERE / "folder_without_exports").mkdir(exist_ok=True)
    w("folder_without_exports/README.txt", "exports go here\n")


if __name__ == "__main__":
    main()
