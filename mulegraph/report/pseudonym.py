"""Keyed pseudonyms for account identifiers in reports.

A pseudonym is ``"P-"`` followed by the first 16 hex digits of HMAC-SHA256(key, account id). The
same key gives the same pseudonym for an account in every report, so that people who share a key can
talk about an account without seeing its identifier; without the key a pseudonym cannot be traced
back by hashing candidate ids. The key comes from ``[report] pseudonym_key`` or the
``MULEGRAPH_PSEUDONYM_KEY`` environment variable (see :mod:`mulegraph.config`).
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

from mulegraph.core.errors import ConfigError

__all__ = ["Pseudonymiser", "pseudonym"]

_MIN_KEY_LENGTH = 8


def pseudonym(account_id: str, key: str | bytes) -> str:
    """The pseudonym of one account id under ``key``."""
    k = key.encode("utf-8") if isinstance(key, str) else key
    return "P-" + hmac.new(k, str(account_id).encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class Pseudonymiser:
    """Maps account ids to pseudonyms (or leaves them as they are when ``key`` is None).

    >>> p = Pseudonymiser("a-secret-key")
    >>> p("ACC1") == p("ACC1") != p("ACC2")
    True
    >>> Pseudonymiser(None)("ACC1")
    'ACC1'
    """

    def __init__(self, key: str | bytes | None):
        if key is not None and len(key) < _MIN_KEY_LENGTH:
            raise ConfigError(
                f"the pseudonym key must be at least {_MIN_KEY_LENGTH} characters long; "
                "set a longer MULEGRAPH_PSEUDONYM_KEY or [report] pseudonym_key."
            )
        self.key = key
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
            out = self._cache[account_id] = pseudonym(account_id, self.key)
        return out

    def series(self, s: pl.Series) -> pl.Series:
        """Pseudonymise a column of ids (one HMAC per distinct id)."""
        if self.key is None:
            return s
        uniq = s.drop_nulls().unique().to_list()
        mapping = {u: self(u) for u in uniq}
        return s.replace_strict(mapping, default=None, return_dtype=pl.String)
