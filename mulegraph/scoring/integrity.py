"""The seal of a model folder: a checksum manifest over every file, and an optional keyed signature.

:func:`seal` writes ``checksums.json`` (:data:`CHECKSUMS_NAME`) after every other file of the
folder: the sha256 of each of them, by name, written atomically, so that a folder whose writing was
interrupted has no manifest or an old one that no longer matches. With a key it then writes
``signature.json`` (:data:`SIGNATURE_NAME`): HMAC-SHA256 of the manifest's exact bytes under the key,
and the key's public id (:func:`mulegraph.core.keys.key_id`).

:func:`verify` checks a folder against its seal: every listed file present and unchanged, no file
that is not listed (a folder inside it included), and, when a key is given, a signature made with
that key. Each refusal is one :class:`~mulegraph.core.errors.ModelError` (exit code 2) naming the
file.

What the seal protects against: without a key, accidents (a damaged copy, a file edited or swapped
by hand, a file left over from another model); it does **not** stop someone who edits a file and
computes the manifest again, since the manifest's recipe is public. With a key, only a holder of
the key can make a folder that verifies: keep the key out of the model folder and out of the
config file that travels with it (``[model] signing_key_file`` points to a file readable only by
the accounts that train and score).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from pathlib import Path

from mulegraph.core.atomic import file_sha256, write_bytes_atomic
from mulegraph.core.errors import ModelError
from mulegraph.core.keys import key_id

__all__ = ["CHECKSUMS_NAME", "SIGNATURE_NAME", "seal", "break_seal", "verify", "version_of"]

#: the checksum manifest of a model folder
CHECKSUMS_NAME = "checksums.json"
#: the keyed signature of the checksum manifest
SIGNATURE_NAME = "signature.json"
_SEAL_FILES = (CHECKSUMS_NAME, SIGNATURE_NAME)
_FORMAT = "mulegraph-checksums"
_ALGORITHM = "HMAC-SHA256"


def break_seal(folder: str | os.PathLike) -> None:
    """Remove the seal before a folder's files are rewritten, so that an interrupted rewrite
    leaves a folder that is refused as unsealed rather than one that half matches."""
    for name in _SEAL_FILES:
        with contextlib.suppress(FileNotFoundError):
            (Path(folder) / name).unlink()


def seal(folder: str | os.PathLike, names: list[str], key: bytes | None = None) -> bytes:
    """Write the checksum manifest of the files ``names`` of ``folder`` (and the signature with
    ``key``); returns the manifest's bytes. Call it after every file is written."""
    d = Path(folder)
    doc = {"format": _FORMAT, "algorithm": "sha256", "files": {n: file_sha256(d / n) for n in sorted(names)}}
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")
    write_bytes_atomic(d / CHECKSUMS_NAME, data)
    if key is not None:
        sig = {"algorithm": _ALGORITHM, "signs": CHECKSUMS_NAME, "key_id": key_id(key), "mac": _mac(key, data)}
        write_bytes_atomic(d / SIGNATURE_NAME, (json.dumps(sig, indent=1) + "\n").encode("utf-8"))
    return data


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _refuse(message: str) -> ModelError:
    return ModelError(f"{message}; the model folder is refused (train the model again, or restore the folder from a copy).")


def verify(folder: str | os.PathLike, key: bytes | None = None, required: tuple[str, ...] = ()) -> bytes:
    """Check ``folder`` against its seal; returns the manifest's bytes (see the module docstring).

    ``required``: file names the manifest must list. ``key``: when given, ``signature.json`` must
    hold the HMAC of the manifest under it.
    """
    d = Path(folder)
    path = d / CHECKSUMS_NAME
    if not path.is_file():
        raise ModelError(
            f"the model folder '{d}' has no {CHECKSUMS_NAME} (the sha256 of its files): it was saved by an older "
            "mulegraph or its saving was interrupted; train the model again."
        )
    data = path.read_bytes()
    try:
        doc = json.loads(data.decode("utf-8"))
        listed = {str(n): str(h) for n, h in doc["files"].items()}
        ok = doc.get("format") == _FORMAT and doc.get("algorithm") == "sha256"
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise _refuse(f"the file {CHECKSUMS_NAME} is not a valid checksum manifest") from None
    if not ok or any(Path(n).name != n or n in _SEAL_FILES or n in (".", "..") for n in listed):
        raise _refuse(f"the file {CHECKSUMS_NAME} is not a valid checksum manifest")
    for name in required:
        if name not in listed:
            raise _refuse(f"the file {name} is not listed in {CHECKSUMS_NAME}")
    present = sorted(p.name for p in d.iterdir() if p.name not in _SEAL_FILES)
    extra = [n for n in present if n not in listed]
    if extra:
        raise _refuse(f"the file {extra[0]} is not part of the model (not listed in {CHECKSUMS_NAME}); remove it if it was added by hand")
    for name, digest in sorted(listed.items()):
        f = d / name
        if not f.is_file():
            raise _refuse(f"the model file {name} is missing")
        if not hmac.compare_digest(file_sha256(f), digest):
            raise _refuse(f"the model file {name} does not match its sha256 in {CHECKSUMS_NAME}: it was changed after the model was saved")
    if key is not None:
        _verify_signature(d, data, key)
    return data


def _verify_signature(d: Path, data: bytes, key: bytes) -> None:
    path = d / SIGNATURE_NAME
    if not path.is_file():
        raise ModelError(
            f"the model folder '{d}' is not signed ({SIGNATURE_NAME} is missing) but a model signing key is set; "
            "only signed models are accepted: train it again with the key set, or unset the key "
            "([model] signing_key_file, MULEGRAPH_MODEL_KEY) to accept unsigned models."
        )
    try:
        sig = json.loads(path.read_text(encoding="utf-8"))
        mac, kid = str(sig["mac"]), str(sig.get("key_id", ""))
        ok = sig.get("algorithm") == _ALGORITHM and sig.get("signs") == CHECKSUMS_NAME
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, OSError):
        raise _refuse(f"the file {SIGNATURE_NAME} is not a valid signature") from None
    if not ok:
        raise _refuse(f"the file {SIGNATURE_NAME} is not a valid signature")
    if kid != key_id(key):
        raise ModelError(
            f"the model in '{d}' was signed with another key (key id {kid or 'unknown'}; the key set here has id "
            f"{key_id(key)}); use the key it was signed with, or train it again with this key."
        )
    if not hmac.compare_digest(mac, _mac(key, data)):
        raise _refuse(f"the signature in {SIGNATURE_NAME} does not match {CHECKSUMS_NAME}: the files were changed after signing")


def version_of(checksums: bytes) -> str:
    """The model version a checksum manifest gives: ``mulegraph-`` and 12 hex digits of its sha256."""
    return "mulegraph-" + hashlib.sha256(checksums).hexdigest()[:12]
