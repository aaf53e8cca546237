"""Turn canonical transfers into the integer-keyed frame that every feature family reads.

Account ids are mapped once to dense ``UInt32`` indices (group-bys and joins on integers are several
times faster than on strings). Timestamps become ``Int64`` seconds since the epoch (``t``), which
keeps window arithmetic simple and exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from mulegraph.core.config import FeatureConfig
from mulegraph.core.errors import FeatureError
from mulegraph.core.schema import OPTIONAL_SCHEMA, TRANSFER_SCHEMA

__all__ = ["Prepared", "prepare", "with_text_columns", "between_non_hubs", "LEAN_COLUMNS"]

#: the columns of a lean window (:attr:`Prepared.lean`): what the computations over every transfer
#: of a scored window read (one-off structures, collection accounts, closeness to known mules)
LEAN_COLUMNS: tuple[str, ...] = ("row", "t", "src", "dst", "amount")


@dataclass
class Prepared:
    """Integer-keyed transfers for the feature families.

    ``tx`` columns: ``row`` (UInt32, position), ``txn_id``, ``t`` (Int64 epoch seconds), ``ts``,
    ``src``, ``dst`` (UInt32 account indices), ``amount`` (Float64), ``currency``, ``channel`` and
    any optional canonical columns present. Sorted by ``t`` then ``txn_id``. The low-cardinality
    text columns may be held as ``Categorical`` (a window read for scoring by
    :func:`mulegraph.features.shards.prepared_window`); :meth:`canonical` gives text back.

    ``accounts`` columns: ``idx`` (UInt32), ``account_id`` (String), ``is_hub`` (Boolean),
    ``degree`` (distinct counterparties, UInt32).

    ``targets``: the account indices to compute features for (all accounts unless a shard was asked
    for); families may compute for more and the orchestrator keeps only these.

    ``rows``: set for a *lean* window, whose ``tx`` holds only :data:`LEAN_COLUMNS` (what the
    computations over the whole window read); it gives the full rows touching some account indices
    (all rows for None), read again from the store, for :meth:`rows_touching` and :meth:`canonical`.
    """

    tx: pl.DataFrame
    accounts: pl.DataFrame
    config: FeatureConfig
    targets: pl.Series | None = None
    extra: dict = field(default_factory=dict)
    rows: Callable[[pl.Series | None], pl.DataFrame] | None = None

    @property
    def lean(self) -> bool:
        """Whether ``tx`` holds only :data:`LEAN_COLUMNS` (the other columns come from ``rows``)."""
        return self.rows is not None

    def rows_touching(self, idx: pl.Series) -> pl.DataFrame:
        """Every column of the transfers touching the accounts of indices ``idx``, in ``tx`` order
        (sorted by time, then txn_id)."""
        if self.rows is not None:
            return self.rows(idx)
        return self.tx.filter(pl.col("src").is_in(idx.implode()) | pl.col("dst").is_in(idx.implode()))

    @property
    def n_accounts(self) -> int:
        return self.accounts.height

    @property
    def hub_idx(self) -> pl.Series:
        return self.accounts.filter(pl.col("is_hub"))["idx"]

    def canonical(self, accounts: Iterable[str] | pl.Series | None = None) -> pl.DataFrame:
        """The canonical transfers back from the integer-keyed ones, sorted by time then txn_id.

        With ``accounts``, only the transfers touching them (cheap: the window's transfers need
        not be kept in memory next to their prepared form).
        """
        if accounts is not None:
            wanted = pl.Series("account_id", list(accounts) if not isinstance(accounts, pl.Series) else accounts,
                               dtype=pl.String)
            tx = self.rows_touching(self.accounts.filter(pl.col("account_id").is_in(wanted.implode()))["idx"])
        else:
            tx = self.rows(None) if self.rows is not None else self.tx
        ids = self.accounts.sort("idx")["account_id"]
        names = [c for c in (*TRANSFER_SCHEMA, *OPTIONAL_SCHEMA) if c in tx.columns or c in ("src_account", "dst_account")]
        categories = [c for c in names if c in tx.columns and tx.schema[c] == pl.Categorical]  # held as categories
        return tx.with_columns(
            ids.gather(tx["src"]).alias("src_account"), ids.gather(tx["dst"]).alias("dst_account"),
            *(pl.col(c).cast(pl.String) for c in categories),
        ).select(names)


def between_non_hubs(hubs: pl.Series) -> pl.Expr:
    """The transfers of the graph families: between two different accounts, neither of them one of
    the ``hubs`` (their integer indices)."""
    h = hubs.implode()
    return (pl.col("src") != pl.col("dst")) & ~pl.col("src").is_in(h) & ~pl.col("dst").is_in(h)


def with_text_columns(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``lf`` with ``currency`` and ``channel`` added as nulls when it lacks them (they are optional in exports)."""
    names = lf.collect_schema().names()
    return lf.with_columns(pl.lit(None, dtype=TRANSFER_SCHEMA[c]).alias(c) for c in ("currency", "channel") if c not in names)


def prepare(
    transfers: pl.DataFrame | pl.LazyFrame,
    config: FeatureConfig | None = None,
    accounts: list[str] | None = None,
) -> Prepared:
    """Map ids to integers, mark hubs; ``accounts`` restricts the targets to a shard."""
    config = config or FeatureConfig()
    lf = transfers.lazy() if isinstance(transfers, pl.DataFrame) else transfers
    names = lf.collect_schema().names()
    missing = [c for c in ("txn_id", "ts", "src_account", "dst_account", "amount") if c not in names]
    if missing:
        raise FeatureError(f"transfers lack column(s) {', '.join(missing)}; they must follow the canonical schema.")
    df = with_text_columns(lf).collect()
    # account ids -> dense indices in sorted order: the codes of an Enum whose categories are the
    # sorted distinct ids (no join on strings: much less memory than a hash join on large windows)
    ids = pl.concat([df["src_account"], df["dst_account"]]).unique().sort().rename("account_id")
    codes = pl.Enum(ids)
    src = df["src_account"].cast(codes).to_physical().cast(pl.UInt32).rename("src")
    dst = df["dst_account"].cast(codes).to_physical().cast(pl.UInt32).rename("dst")
    tx = (
        df.drop("src_account", "dst_account")
        .with_columns(src, dst, pl.col("ts").dt.epoch("s").alias("t"))
        .sort(["t", "txn_id"])
        .with_row_index("row")
        .with_columns(pl.col("row").cast(pl.UInt32))
    )
    del df
    ids = ids.to_frame().with_row_index("idx").with_columns(pl.col("idx").cast(pl.UInt32))
    # distinct counterparties per account: one 64-bit key per unordered-direction pair
    key = pl.concat(
        [
            tx.select((pl.col("src").cast(pl.UInt64) * (1 << 32) + pl.col("dst")).alias("k")),
            tx.select((pl.col("dst").cast(pl.UInt64) * (1 << 32) + pl.col("src")).alias("k")),
        ]
    )["k"].unique()
    degree = (
        (key // (1 << 32)).cast(pl.UInt32).value_counts(name="degree").rename({"k": "idx"})
        .with_columns(pl.col("degree").cast(pl.UInt32))
    )
    acc = ids.join(degree, on="idx", how="left").with_columns(pl.col("degree").fill_null(0))
    acc = acc.with_columns(
        ((pl.col("degree") > config.hub_degree) | pl.col("account_id").is_in(list(config.hub_accounts))).alias("is_hub")
    )
    targets = None
    if accounts is not None:
        targets = acc.filter(pl.col("account_id").is_in(accounts))["idx"]
    return Prepared(tx=tx, accounts=acc, config=config, targets=targets)
