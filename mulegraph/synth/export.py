"""Writing a synthetic bank as a bank-like export: the CSV files, their mapping and the labels.

:func:`write_export` writes what ``mulegraph synth`` leaves in its ``--out`` folder: the transfers
as a ``;``-separated export with a bank's column names (amounts in cents, dates as
``dd.mm.yyyy HH:MM:SS``, a free-text column with quotes and separators), the mapping
(:func:`mapping_toml`) that ingests it, and the account labels, transfer labels and account list.
Each file is written atomically (:mod:`mulegraph.core.atomic`); the same data gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from mulegraph.core.atomic import atomic_path, write_text_atomic
from mulegraph.core.errors import InputError
from mulegraph.core.paths import refuse_protected_output
from mulegraph.synth.dataset import SynthData

__all__ = ["EXPORT_COLUMNS", "mapping_toml", "check_export_folder", "write_export"]

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


def mapping_toml() -> str:
    """The mapping (TOML, format of :mod:`mulegraph.io.mapping`) that ingests a :func:`write_export` CSV."""
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
    """The transfers with the export's column names, formats and free-text column."""
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


def _write_csv(frame: pl.DataFrame, path: Path, separator: str = ",") -> None:
    with atomic_path(path) as tmp:  # created with the umask's permissions, as a plain open() would
        frame.write_csv(tmp, separator=separator)


def check_export_folder(out_dir: str | os.PathLike) -> Path:
    """Refuse an ``out_dir`` that is a file, or a mulegraph store or run folder (``manifest.json``).

    :func:`write_export` checks this itself; call it first to fail before generating the data.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path '{out}' exists and is not a folder; choose another --out.")
    if (out / "manifest.json").exists():
        raise InputError(
            f"--out '{out}' is a mulegraph store or run folder; write the synthetic export to a folder of its own."
        )
    return refuse_protected_output(out)  # nor inside one


def write_export(data: SynthData, out_dir: str | os.PathLike, *, daily: bool = False) -> dict[str, Path]:
    """Write ``data`` as a bank-like export with its mapping and labels.

    Files written in ``out_dir`` (created if missing; each file atomically):

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

    A file in place of ``out_dir``, or a mulegraph store or run folder, is refused
    (:func:`check_export_folder`). Returns the paths by name (``transfers``, ``mapping``,
    ``labels``, ``txn_labels``, ``accounts``).
    """
    out = check_export_folder(out_dir)
    paths = {
        "transfers": out / ("exports" if daily else "transfers.csv"),
        "mapping": out / "mapping.toml",
        "labels": out / "labels.csv",
        "txn_labels": out / "txn_labels.csv",
        "accounts": out / "accounts.csv",
    }
    (paths["transfers"] if daily else out).mkdir(parents=True, exist_ok=True)
    exp = _export_frame(data)
    if daily:
        day = data.transfers["ts"].dt.strftime("%Y%m%d").alias("__day")
        for part in exp.with_columns(day).partition_by("__day", maintain_order=True, as_dict=False):
            _write_csv(part.drop("__day"), paths["transfers"] / f"transfers_{part['__day'][0]}.csv", _EXPORT_DELIMITER)
    else:
        _write_csv(exp, paths["transfers"], _EXPORT_DELIMITER)
    write_text_atomic(paths["mapping"], mapping_toml())
    _write_csv(data.labels, paths["labels"])
    _write_csv(data.txn_labels, paths["txn_labels"])
    _write_csv(data.accounts, paths["accounts"])
    return paths
