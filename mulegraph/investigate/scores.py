"""A run's scores as investigators read them: the scores file, an account's reasons and their evidence.

:func:`load_scores` reads a run folder, a ``runs/latest`` pointer or a scores file. The reasons of
a scored account come as the ``reasons`` column of :data:`~mulegraph.core.schema.SCORE_SCHEMA`:
a ``List(Struct)`` column (:data:`~mulegraph.core.schema.REASONS_DTYPE`), or JSON text in run
folders and score files written before reasons were a struct; :func:`reason_frame` reads both
(through :func:`~mulegraph.core.schema.as_reasons`). :func:`evidence_transfers` looks up the
transfers behind them.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from mulegraph.core.errors import InputError
from mulegraph.core.escape import strip_formula_guard
from mulegraph.core.schema import REASON_STRUCT, as_reasons

__all__ = ["load_scores", "reason_frame", "evidence_transfers"]

#: transfer columns the evidence shows
_TX = ["txn_id", "ts", "src_account", "dst_account", "amount"]


def load_scores(run: str | os.PathLike | pl.DataFrame) -> pl.DataFrame:
    """Read a run's scores: a run folder (``scores.parquet`` inside), a ``runs/latest`` pointer, or a
    scores file (``.parquet``, ``.csv`` or ``.json``). A DataFrame is returned as it is."""
    if isinstance(run, pl.DataFrame):
        return run
    p = Path(run)
    if p.is_file() and p.suffix == "" and p.stat().st_size < 4096:
        # a pointer file such as runs/latest holding a run id or a path
        target = p.read_text(encoding="utf-8").strip()
        cand = Path(target) if Path(target).is_absolute() else p.parent / target
        if cand.exists():
            p = cand
    if p.is_dir():
        if (p / "scores.parquet").is_file():
            p = p / "scores.parquet"
        elif (p / "latest").exists():
            return load_scores(p / "latest")
        else:
            raise InputError("the run folder has no scores.parquet; pass a run folder from 'mulegraph run' or a scores file.")
    if not p.is_file():
        raise InputError("the run or scores file does not exist; pass a run folder or a scores file.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(p)
        elif suffix == ".csv":  # written by write_scores: formula-like ids carry a guarding "'"
            df = strip_formula_guard(pl.read_csv(p, schema_overrides={"account_id": pl.String}), ["account_id"])
        elif suffix == ".json":
            df = pl.read_json(p)
        else:
            raise InputError("scores must be a .parquet, .csv or .json file, or a run folder.")
    except (pl.exceptions.PolarsError, OSError, ValueError):
        raise InputError("the scores file cannot be read; pass the scores.parquet of a run.") from None
    if "account_id" not in df.columns or "score" not in df.columns:
        raise InputError("the scores file lacks the account_id and score columns; pass the scores of a run.")
    return df.with_columns(pl.col("account_id").cast(pl.String))


def reason_frame(row: pl.DataFrame) -> pl.DataFrame:
    """The reasons of one scored account, one row each, strongest first.

    ``row`` is the account's row of the scores (a one-row frame); its ``reasons`` may be a
    ``List(Struct)`` column or legacy JSON text. Columns: ``reason`` (1 = strongest), then the
    fields of :data:`~mulegraph.core.schema.REASON_STRUCT` (``code`` is ``""`` where missing,
    ``txn_ids`` an empty list). No ``reasons`` column, a null or an empty list give no rows.
    """
    schema = {"reason": pl.UInt32(), **REASON_STRUCT.to_schema()}
    if "reasons" not in row.columns:
        return pl.DataFrame(schema=schema)
    try:
        parsed = as_reasons(row.select("reasons").head(1))
    except pl.exceptions.PolarsError:
        raise InputError("the run's reasons for the account cannot be read; the scores file is damaged.") from None
    items = parsed.select(pl.col("reasons").explode()).filter(pl.col("reasons").is_not_null())
    if items.height == 0:
        return pl.DataFrame(schema=schema)
    return (
        items.unnest("reasons")
        .with_columns(pl.col("code").fill_null(""), pl.col("txn_ids").fill_null(pl.lit([], pl.List(pl.String))))
        .with_row_index("reason", offset=1)
        .cast(schema)
    )


def evidence_transfers(lf: pl.LazyFrame, account: str, frame: pl.DataFrame, code: str | None = None,
                       reason: int | None = None) -> pl.DataFrame:
    """The transfers behind reasons (``frame`` from :func:`reason_frame`), read from ``lf``.

    Columns: ``reason``, ``code``, ``txn_id``, ``ts``, ``src_account``, ``dst_account``,
    ``amount`` and ``direction`` (``in``/``out`` for the account, ``other`` for a transfer of the
    pattern around it). Only one ``code`` or one ``reason`` number when given; ids that are not in
    ``lf`` are left out.
    """
    pairs = frame.select("reason", "code", "txn_ids").explode("txn_ids").rename({"txn_ids": "txn_id"}).drop_nulls("txn_id")
    if code is not None:
        pairs = pairs.filter(pl.col("code") == code)
    if reason is not None:
        pairs = pairs.filter(pl.col("reason") == reason)
    ids = pairs["txn_id"].unique().to_list()
    tx = lf.filter(pl.col("txn_id").is_in(ids)).select(_TX).collect().unique("txn_id", keep="first")
    out = pairs.join(tx, on="txn_id", how="inner").with_columns(
        pl.when(pl.col("dst_account") == account).then(pl.lit("in"))
        .when(pl.col("src_account") == account).then(pl.lit("out"))
        .otherwise(pl.lit("other")).alias("direction")
    )
    return out.sort(["reason", "ts", "txn_id"])
