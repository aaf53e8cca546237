"""Keyed pseudonyms for account identifiers in reports.

A pseudonym is ``"P-"`` followed by the first 16 hex digits of HMAC-SHA256(key, account id). The
same key gives the same pseudonym for an account in every report, so that people who share a key can
talk about an account without seeing its identifier; without the key a pseudonym cannot be traced
back by hashing candidate ids. The key comes from ``[report] pseudonym_key`` or the
``MULEGRAPH_PSEUDONYM_KEY`` environment variable (see :mod:`mulegraph.core.config`).

The key must be at least :data:`MIN_KEY_BYTES` (32) bytes long (UTF-8), and random: anyone who knows
one account id and its pseudonym can test guessed keys offline, as fast as HMAC runs, so a short
or memorable key would give every other pseudonym away. Make one with
``python -c "import secrets; print(secrets.token_urlsafe(32))"`` (43 characters). A shorter key is
a :class:`~mulegraph.core.errors.ConfigError` (exit 2); no key is derived from a passphrase.
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

from mulegraph.core.errors import ConfigError

__all__ = ["MIN_KEY_BYTES", "Pseudonymiser", "check_key", "pseudonym"]

#: the shortest pseudonym key accepted, in bytes of its UTF-8 text
MIN_KEY_BYTES = 32


def check_key(key: str | bytes) -> bytes:
    """The key as bytes; a :class:`~mulegraph.core.errors.ConfigError` when it is shorter than
    :data:`MIN_KEY_BYTES` bytes."""
    k = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(k) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes long (got {len(k)}), and random; "
            "set MULEGRAPH_PSEUDONYM_KEY or [report] pseudonym_key to e.g. the output of "
            "python -c \"import secrets; print(secrets.token_urlsafe(32))\"."
        )
    return k


def pseudonym(account_id: str, key: str | bytes) -> str:
    """The pseudonym of one account id under ``key`` (at least :data:`MIN_KEY_BYTES` bytes)."""
    return _pseudonym(account_id, check_key(key))


def _pseudonym(account_id: str, key: bytes) -> str:
    return "P-" + hmac.new(key, str(account_id).encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class Pseudonymiser:
    """Maps account ids to pseudonyms (or leaves them as they are when ``key`` is None).

    >>> p = Pseudonymiser("a-random-key-of-at-least-32-bytes")
    >>> p("ACC1") == p("ACC1") != p("ACC2")
    True
    >>> Pseudonymiser(None)("ACC1")
    'ACC1'
    """

    def __init__(self, key: str | bytes | None):
        self.key = None if key is None else check_key(key)
        self._cache: dict[str, str] = {}

    @property
    def active(self) -> bool:
        """True when ids are replaced."""
        return self.key is not None

    def __call__(self, account_id: str) -> str:
        if self.key is None or account_id is None:
            return account_id
        out = self._cache.get(account_id)
        if out is None:
            out = self._cache[account_id] = _pseudonym(account_id, self.key)
        return out

    def series(self, s: pl.Series) -> pl.Series:
        """Pseudonymise a column of ids (one HMAC per distinct id)."""
        if self.key is None:
            return s
        uniq = s.drop_nulls().unique().to_list()
        mapping = {u: self(u) for u in uniq}
        return s.replace_strict(mapping, default=None, return_dtype=pl.String)
