"""Stable 64-bit hashes of text columns, the same on every machine, platform and library version.

Polars' own ``hash`` may change between releases, so anything that must be stable across machines
and nights (account shards, duplicate indexes) uses :func:`hash_text`: a splitmix64-mixed sum over
the bytes of each string, computed with NumPy over the Arrow buffers (no per-row Python).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["hash_text", "mix64", "shard_of"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def hash_text(s: pl.Series, seed: int = 0, chunk_rows: int = 250_000) -> np.ndarray:
    """A stable 64-bit hash of each string of ``s`` (nulls hash differently from every text)."""
    arr = s.cast(pl.String).to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks else pa.array([], pa.large_string())
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    valid = ~s.is_null().to_numpy()
    sd = np.uint64(seed)
    with np.errstate(over="ignore"):
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            b0, b1 = int(offsets[lo]), int(offsets[hi])
            starts = offsets[lo:hi] - b0
            ends = offsets[lo + 1 : hi + 1] - b0
            lens = ends - starts
            pos = np.arange(b1 - b0, dtype=np.int64) - np.repeat(starts, lens)
            terms = mix64(data[b0:b1].astype(np.uint64) + ((pos.astype(np.uint64) + np.uint64(1)) << np.uint64(8)) + sd)
            cs = np.zeros(b1 - b0 + 1, dtype=np.uint64)
            np.cumsum(terms, out=cs[1:])
            h = cs[ends] - cs[starts]
            h = mix64(h ^ mix64(lens.astype(np.uint64) + sd * _GOLD))
            out[lo:hi] = np.where(valid[lo:hi], h, mix64(sd ^ _M2))
    return out


def shard_of(account_ids: pl.Series, n_shards: int) -> np.ndarray:
    """The shard (0 .. n_shards - 1) of each account id: its stable hash modulo ``n_shards``."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be at least 1. Got {n_shards} instead.")
    return (hash_text(account_ids, seed=0x5EED) % np.uint64(n_shards)).astype(np.int64)
