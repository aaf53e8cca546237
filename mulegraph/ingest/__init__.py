"""Ingest: raw exports -> mapping -> validation -> quarantine -> dedupe -> the Parquet store.

:func:`ingest` takes CSV files (any delimiter, quoted fields, a header row, BOM, CRLF, ``.gz``) and
Parquet files, given as files, folders or glob patterns. Each file is one atomic commit to the
store (see :mod:`mulegraph.io.store`); a file whose content hash is already in the manifest is
skipped ("already ingested").

CSV columns are read as text first, so nothing is lost, and then parsed with Polars expressions
(no per-row Python). Each row then gets exactly one outcome:

* **accepted**: stored once in the day partition of its timestamp (UTC);
* **duplicate**: all canonical fields equal a row with the same ``txn_id`` already accepted (in
  this file or earlier); counted, not stored again;
* **quarantined** under the first rule it breaks, in this order:

  - ``missing_field``: a required field (txn_id when mapped, ts, src_account, dst_account,
    amount, currency) is missing or blank;
  - ``control_chars``: a text field the store keeps (txn_id, accounts, currency, channel, banks,
    countries) holds a control character (U+0000-U+001F, U+007F-U+009F) inside its value;
  - ``bad_timestamp``: the timestamp does not parse with the mapping's format, or does not exist
    in the mapping's time zone;
  - ``bad_amount``: the amount is not a positive finite number;
  - ``bad_currency``: the currency (after the mapping's aliases) is not a 3-letter code;
  - ``self_transfer``: source account equals destination account;
  - ``txn_id_conflict``: the ``txn_id`` was already accepted (earlier in the file or in the store)
    with different content; the first one seen is kept.

So ``rows_read == accepted + quarantined + duplicates`` always. When the mapping has no
``txn_id``, the id is a stable 128-bit hash of the canonical content (``h`` + 32 hex digits), so
identical rows without ids count as duplicates of each other.

Label columns named in the mapping's ``[labels]`` are never written to the store; with
``labels_out`` they are written (one row per txn_id, accepted and duplicate rows) to a Parquet or
CSV file.

The work is split by responsibility:

* :mod:`~mulegraph.ingest.sources`: finding and opening exports (files, folders, globs, gzip,
  CSV sniffing, Parquet) and the errors about a file itself;
* :mod:`~mulegraph.ingest.timestamps` and :mod:`~mulegraph.ingest.parse`: the mapping applied,
  export columns -> canonical columns;
* :mod:`~mulegraph.ingest.validate`: the quarantine rules and their order;
* :mod:`~mulegraph.ingest.hashing` and :mod:`~mulegraph.ingest.dedupe`: content ids, and
  accepted / duplicate / conflict;
* :mod:`~mulegraph.ingest.commit`: one file, in batches, into one atomic store commit;
* :mod:`~mulegraph.ingest.run`: :func:`ingest` over many files, the report, labels out.

This module re-exports the public names. ``BATCH_ROWS`` is read from
:mod:`mulegraph.ingest.commit`; change it there.
"""

from mulegraph.ingest.commit import BATCH_ROWS
from mulegraph.ingest.hashing import content_hash
from mulegraph.ingest.parse import canonicalize
from mulegraph.ingest.run import IngestReport, ingest
from mulegraph.ingest.sources import EXPORT_SUFFIXES, read_export, resolve_inputs
from mulegraph.ingest.validate import RULES, validate

__all__ = [
    "ingest",
    "IngestReport",
    "RULES",
    "resolve_inputs",
    "read_export",
    "canonicalize",
    "validate",
    "content_hash",
    "EXPORT_SUFFIXES",
    "BATCH_ROWS",
]
