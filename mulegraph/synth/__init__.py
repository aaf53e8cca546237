"""Synthetic transfer logs with planted money-mule typologies and their labels.

:func:`generate` builds a bank's transfer log for ``n_accounts`` accounts over ``days`` days:

* a realistic background: heavy-tailed personal activity, monthly salaries from employers
  (legitimate hubs that pay thousands of people in one night batch), direct-debit bills and rent,
  card purchases at merchants (Zipf popularity), a payment processor that collects card payments
  and settles to its merchants every night, person-to-person transfers inside small circles of
  contacts, cash withdrawals at ATMs (by everybody, so cash is not a label leak), marketplace
  sellers and sole traders paid by many first-time payers, remittances to and from foreign
  accounts in foreign currencies, occasional large legitimate payments (some just below 10,000),
  and legitimate look-alikes of mule structure: family accounts that collect rent shares and pass
  them on within hours, salary sweeps to a savings account minutes after payday, sole traders
  paying their takings on to suppliers, big-ticket purchases funded by relatives and passed on
  whole, family allowances passed down a chain, and flatmates settling costs in a
  time-respecting ring;
* planted mule patterns (:data:`TYPOLOGIES`): victims paying a mule (fan-in from first-time
  payers), rapid pass-through, layering chains (stack), fan-out, scatter-gather, gather-scatter,
  time-respecting cycles, structuring just below a threshold, and dormant accounts that burst.
  Money moves forward in time along every planted flow: each hop leaves after the money arrived,
  within hours, and keeps 90-98% of what came in.

Everything is drawn from ``np.random.default_rng`` streams derived from ``seed``; the same
arguments give the same frames and, through :func:`write_export`, the same bytes.

Accounts play roles (:data:`ROLES`); ``SynthData.accounts`` lists them. Mules are ordinary
people's accounts (they keep their normal background activity), except dormant mules, which are
silent from the first days of the period until their burst. The criminal ``origin`` accounts that
feed mules, the victims and the exit accounts (foreign accounts, ATMs) are *not* labelled mules;
every planted transfer is labelled laundering in ``txn_labels``.

Modules: :mod:`~mulegraph.synth.base` (vocabulary and random building blocks),
:mod:`~mulegraph.synth.background` (the ordinary bank book), :mod:`~mulegraph.synth.typologies`
(the planted patterns), :mod:`~mulegraph.synth.dataset` (:func:`generate`, :class:`SynthData`) and
:mod:`~mulegraph.synth.export` (:func:`write_export`, :func:`mapping_toml`).
"""

from mulegraph.core.atomic import file_sha256
from mulegraph.synth.base import CHANNELS, ROLES, STRUCTURING_THRESHOLD, TYPOLOGIES
from mulegraph.synth.dataset import SynthData, generate
from mulegraph.synth.export import EXPORT_COLUMNS, check_export_folder, mapping_toml, write_export

__all__ = [
    "TYPOLOGIES",
    "ROLES",
    "CHANNELS",
    "STRUCTURING_THRESHOLD",
    "EXPORT_COLUMNS",
    "SynthData",
    "generate",
    "write_export",
    "check_export_folder",
    "mapping_toml",
    "file_sha256",
]
