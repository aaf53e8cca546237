"""Hashes of transfers: stable content ids, and fingerprints that tell a duplicate from a conflict.

:func:`content_hash` gives rows without a ``txn_id`` a stable 128-bit id from their canonical
content; it is computed with numpy from the values' bytes (splitmix64 mixing), so it does not
depend on the Polars version. :func:`hash_text` is the same stable 64-bit string hash, used
wherever a hash is written to disk.
"""

from __future__ import annotations

import numpy as np
import polars as pl

import pyarrow as pa

from mulegraph.core.hashing import hash_text, mix64

__all__ = ["CONTENT", "content_hash", "content_key", "hash_text"]

#: The canonical content of a transfer: two rows with one txn_id are duplicates when these agree.
CONTENT: tuple[str, ...] = ("ts", "src_account", "dst_account", "amount", "currency", "channel")

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_mix = mix64


def _content_u64(frame: pl.DataFrame, seed: int) -> np.ndarray:
    """64 bits of a stable hash of each row's canonical content (see :func:`content_hash`)."""
    n = frame.height
    ts = frame["ts"].cast(pl.Int64).fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
    amt = frame["amount"].cast(pl.Float64).fill_null(0.0).to_numpy().astype(np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(n, np.uint64(seed), dtype=np.uint64)
        texts = [hash_text(frame[c], seed + i) for i, c in enumerate(("src_account", "dst_account", "currency", "channel"))]
        for v in [ts, amt] + texts:
            h = _mix((h * _GOLD) ^ v)
    return h


def content_key(frame: pl.DataFrame) -> pl.Series:
    """A 64-bit content fingerprint per row, to tell a duplicate from a txn_id conflict.

    Only compared within one ingest call (one process), so Polars' fast native hash is used;
    two rows with the same txn_id are a duplicate only when their fingerprints are equal.
    """
    return frame.select(pl.struct(list(CONTENT)).hash(0x5EED3).alias("__h")).to_series()


def content_hash(frame: pl.DataFrame) -> pl.Series:
    """Stable txn ids from canonical content: ``'h'`` + 32 hex digits (128 bits).

    The hash covers ts, src_account, dst_account, amount, currency and channel, and does not
    depend on the Polars version (it is computed with numpy from the values' bytes).
    """
    n = frame.height
    halves = [_content_u64(frame, seed) for seed in (0x5EED1, 0x5EED2)]
    buf = np.stack(halves, axis=1).astype(">u8").tobytes()
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(buf)])
    return ("h" + pl.from_arrow(fixed).bin.encode("hex")).alias("txn_id") if n else pl.Series("txn_id", [], pl.String)
