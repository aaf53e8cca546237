"""Secret keys: reading a key file, the length every key must have, and a key's public id.

Two features take a secret key: signed model folders (:mod:`mulegraph.scoring.persist`, the key
from ``[model] signing_key_file`` or the ``MULEGRAPH_MODEL_KEY`` environment variable, see
:meth:`mulegraph.core.config.ModelConfig.signing_key_source`) and consortium lists of keyed hashes
(:mod:`mulegraph.io.share`, ``--key-file``). Both use HMAC-SHA256, whose strength is the key's:
anyone holding one (message, tag) pair can test guessed keys offline as fast as HMAC runs, so a
key must be long and random. :func:`check_key` refuses keys shorter than :data:`MIN_KEY_BYTES`
(32 bytes, 256 bits); nothing is derived from a passphrase. Make a key file with::

    python -c "import secrets; print(secrets.token_urlsafe(32))" > model.key   # 43 characters
    chmod 600 model.key

A key file holds the key's bytes as they are; one trailing line break (``\\n`` or ``\\r\\n``) is
not part of the key, so that a file written by ``echo`` or an editor works.

:func:`key_id` names a key without revealing it (the first 16 hex digits of an HMAC of a fixed
text that no account id can equal), so that a list or a signature made with another key is
refused with a message saying so instead of matching nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from mulegraph.core.config import ModelConfig
from mulegraph.core.errors import ConfigError, InputError

__all__ = ["MIN_KEY_BYTES", "check_key", "read_key_file", "key_id", "model_signing_key"]

#: the shortest key accepted, in bytes
MIN_KEY_BYTES = 32
#: a key file larger than this is not a key file
_MAX_KEY_FILE_BYTES = 4096
#: the text whose HMAC names a key (a NUL byte: ingest quarantines ids holding control characters)
_KEY_ID_TEXT = b"\x00mulegraph key id"

_MAKE_ONE = "make one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\" > FILE"


def check_key(key: bytes, what: str) -> bytes:
    """``key`` when it holds at least :data:`MIN_KEY_BYTES` bytes; a :class:`ConfigError` (exit 2) naming ``what`` otherwise."""
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the {what} must be at least {MIN_KEY_BYTES} bytes long and random (got {len(key)} bytes); {_MAKE_ONE}."
        )
    return key


def read_key_file(path: str | os.PathLike, what: str = "key file") -> bytes:
    """The key held in the file ``path`` (one trailing line break dropped), checked with :func:`check_key`.

    A missing, unreadable or oversized file is an :class:`InputError`, a short key a
    :class:`ConfigError` (both exit code 2). The key never appears in a message.
    """
    p = Path(path)
    try:
        if not p.is_file():
            raise InputError(f"the {what} '{p}' does not exist or is not a file; {_MAKE_ONE}.")
        if p.stat().st_size > _MAX_KEY_FILE_BYTES:
            raise InputError(f"the {what} '{p}' is larger than {_MAX_KEY_FILE_BYTES} bytes; it does not look like a key file.")
        raw = p.read_bytes()
    except OSError as err:
        raise InputError(f"the {what} '{p}' cannot be read ({err.strerror}); check its permissions.") from None
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    return check_key(raw, f"key in the {what} '{p}'")


def key_id(key: bytes) -> str:
    """A public name of ``key``: 16 hex digits that tell keys apart and say nothing about them."""
    return hmac.new(key, _KEY_ID_TEXT, hashlib.sha256).hexdigest()[:16]


def model_signing_key(config: ModelConfig) -> bytes | None:
    """The key that signs and verifies model folders, or None when none is set.

    ``[model] signing_key_file`` (a key file) when set, else the ``MULEGRAPH_MODEL_KEY``
    environment variable (the key itself, UTF-8). Either must hold at least :data:`MIN_KEY_BYTES` bytes.
    """
    source = config.signing_key_source()
    if source is None:
        return None
    kind, value = source
    if kind == "file":
        return read_key_file(value, "model signing key file ([model] signing_key_file)")
    return check_key(value.encode("utf-8"), "model signing key (MULEGRAPH_MODEL_KEY)")
