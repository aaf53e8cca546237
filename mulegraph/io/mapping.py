"""Column mappings: how a bank's export columns become the canonical transfer schema.

A mapping is a small TOML file (or one of the built-ins in :data:`BUILTIN_MAPPINGS`, shipped in
``mulegraph/mappings/``). Every key except ``[columns]`` is optional::

    name = "my-bank"                      # shown in the manifest and in messages
    description = "Nightly CSV export of My Bank"
    delimiter = ";"                       # CSV only; sniffed from the file when left out
    drop = ["Balance", "Branch"]          # export columns that are never read (need not exist)
    if_present = ["channel"]              # mapped columns that may be missing from a file

    [columns]                             # canonical column = export column (or a list of them)
    txn_id = "Reference"                  # leave out: a stable hash of the row's content is used
    ts = "Booking time"
    src_account = ["Payer bank", "Payer account"]   # a list is joined with [accounts] join
    dst_account = ["Payee bank", "Payee account"]
    amount = "Amount"
    currency = "Currency"                 # leave out when [currency] default is set
    channel = "Type"                      # optional
    src_bank = "Payer bank"               # optional: src_bank, dst_bank, src_country,
    dst_bank = "Payee bank"               #   dst_country, amount_base

    [timestamp]
    format = "%d.%m.%Y %H:%M:%S"          # strftime pattern; "auto" (default) = ISO 8601 forms;
                                          # "epoch_s" / "epoch_ms" = Unix time;
                                          # "day_number" = whole days after base_date
    timezone = "Europe/Stockholm"         # zone of timestamps without an offset (default UTC);
                                          # a time in the daylight-saving gap is quarantined
                                          # (bad_timestamp), one in the repeated hour is read
                                          # as the earlier instant
    base_date = "2024-03-01"              # only for format = "day_number"

    [amount]
    minor_units = false                   # true: the export holds cents; divide by 10**decimals
    decimals = 2
    decimal_separator = ","               # default "."
    thousands_separator = " "             # removed before parsing (default: none)

    [currency]
    default = "EUR"                       # used when the column is missing or blank
    aliases = { "Euro" = "EUR", "US Dollar" = "USD" }   # export value -> ISO 4217 code

    [accounts]
    join = ":"                            # separator for accounts built from several columns
    aliases = { "-1" = "EXT_SINK" }       # export value -> account id in the store

    [labels]                              # label columns: never stored with the transfers;
    is_laundering = "Is Fraud"            # `ingest --labels-out FILE` writes them (per txn_id)

Header names are matched exactly. When a header occurs more than once (the IBM AMLworld export
has two ``Account`` columns), its second occurrence is called ``Account#2``, the third
``Account#3`` and so on; the first keeps its plain name. Parquet columns are referred to by name.

A label named ``is_laundering`` is written as a boolean (1/0, true/false, yes/no); other labels
are written as text.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from mulegraph.core.errors import MappingError
from mulegraph.core.schema import OPTIONAL_SCHEMA, TRANSFER_COLUMNS

__all__ = [
    "Mapping",
    "BUILTIN_MAPPINGS",
    "DEFAULT_MAPPING",
    "load_mapping",
    "parse_mapping",
    "dedupe_header",
    "TS_FORMATS",
]

#: Built-in mapping names (files ``mulegraph/mappings/<name>.toml``).
BUILTIN_MAPPINGS: tuple[str, ...] = ("canonical", "ibm-aml", "amlgentex")
DEFAULT_MAPPING = "canonical"

#: Special values of ``[timestamp] format`` besides a strftime pattern.
TS_FORMATS: tuple[str, ...] = ("auto", "epoch_s", "epoch_ms", "day_number")

_MAPPABLE = tuple(TRANSFER_COLUMNS) + tuple(OPTIONAL_SCHEMA)
_REQUIRED_MAPPED = ("ts", "src_account", "dst_account", "amount")
_TOP_KEYS = {"name", "description", "delimiter", "drop", "if_present", "columns", "timestamp",
             "amount", "currency", "accounts", "labels"}
_SECTION_KEYS = {
    "timestamp": {"format", "timezone", "base_date"},
    "amount": {"minor_units", "decimals", "decimal_separator", "thousands_separator"},
    "currency": {"default", "aliases"},
    "accounts": {"join", "aliases"},
}


@dataclass(frozen=True)
class Mapping:
    """A parsed, validated column mapping (see the module docstring for the TOML format)."""

    name: str
    columns: dict[str, tuple[str, ...]]
    description: str = ""
    delimiter: str | None = None
    drop: tuple[str, ...] = ()
    if_present: tuple[str, ...] = ()
    ts_format: str = "auto"
    timezone: str = "UTC"
    base_date: date | None = None
    minor_units: bool = False
    decimals: int = 2
    decimal_separator: str = "."
    thousands_separator: str = ""
    default_currency: str | None = None
    currency_aliases: dict[str, str] = field(default_factory=dict)
    account_join: str = ":"
    account_aliases: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def export_columns(self) -> set[str]:
        """Every export column the mapping reads (transfer columns and labels)."""
        cols = {c for spec in self.columns.values() for c in spec}
        return cols | set(self.labels.values())

    def resolve(self, header: list[str], source: str) -> "Mapping":
        """Check the mapping against a file's (deduplicated) header.

        Returns the mapping with the ``if_present`` columns the file lacks removed. Raises
        :class:`MappingError` naming the first missing column.
        """
        have = set(header)
        columns = {}
        for canon, spec in self.columns.items():
            missing = [c for c in spec if c not in have]
            if not missing:
                columns[canon] = spec
            elif canon in self.if_present:
                continue
            else:
                raise MappingError(
                    f"mapping '{self.name}' reads column '{missing[0]}' for {canon}, but '{source}' "
                    f"has no such column; fix the mapping's [columns] or pass the right --mapping."
                )
        for label, col in self.labels.items():
            if col not in have and label not in self.if_present:
                raise MappingError(
                    f"mapping '{self.name}' reads label column '{col}', but '{source}' has no such "
                    "column; fix the mapping's [labels] or pass the right --mapping."
                )
        labels = {k: v for k, v in self.labels.items() if v in have}
        if "currency" not in columns and self.default_currency is None:
            raise MappingError(
                f"'{source}' has no currency column for mapping '{self.name}'; "
                "set [currency] default in the mapping."
            )
        return _replace(self, columns=columns, labels=labels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (recorded in the store's manifest)."""
        return {
            "name": self.name,
            "source": self.source,
            "columns": {k: list(v) for k, v in self.columns.items()},
            "ts_format": self.ts_format,
            "timezone": self.timezone,
            "base_date": self.base_date.isoformat() if self.base_date else None,
            "minor_units": self.minor_units,
            "labels": dict(self.labels),
        }


def _replace(m: Mapping, **changes: Any) -> Mapping:
    import dataclasses

    return dataclasses.replace(m, **changes)


def dedupe_header(names: list[str]) -> list[str]:
    """Give repeated header names a ``#n`` suffix from their second occurrence on.

    >>> dedupe_header(["Account", "Bank", "Account"])
    ['Account', 'Bank', 'Account#2']
    """
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0) + 1
        seen[n] = k
        out.append(n if k == 1 else f"{n}#{k}")
    return out


def _str_list(value: Any, where: str, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise MappingError(f"mapping '{name}': {where} must be a column name or a list of names.")
    return tuple(value)


def _str_dict(value: Any, where: str, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MappingError(f"mapping '{name}': {where} must be a table of text values.")
    return {str(k): v for k, v in value.items()}


def parse_mapping(data: dict[str, Any], source: str = "") -> Mapping:
    """Build a :class:`Mapping` from parsed TOML data; unknown keys are an error."""
    name = str(data.get("name") or (Path(source).stem if source else "mapping"))
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise MappingError(
            f"mapping '{name}' has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}."
        )
    for sec, keys in _SECTION_KEYS.items():
        val = data.get(sec, {})
        if not isinstance(val, dict):
            raise MappingError(f"mapping '{name}': [{sec}] must be a table.")
        bad = sorted(set(val) - keys)
        if bad:
            raise MappingError(
                f"mapping '{name}' has unknown key(s) {', '.join(bad)} in [{sec}]; allowed: {', '.join(sorted(keys))}."
            )
    cols_raw = data.get("columns")
    if not isinstance(cols_raw, dict) or not cols_raw:
        raise MappingError(f"mapping '{name}' needs a [columns] table naming the export's columns.")
    bad = sorted(set(cols_raw) - set(_MAPPABLE))
    if bad:
        raise MappingError(
            f"mapping '{name}' maps unknown canonical column(s) {', '.join(bad)}; "
            f"allowed: {', '.join(_MAPPABLE)}."
        )
    columns = {k: _str_list(v, f"[columns] {k}", name) for k, v in cols_raw.items()}
    for k in _REQUIRED_MAPPED:
        if k not in columns:
            raise MappingError(f"mapping '{name}' must map '{k}' in [columns].")
    ts = data.get("timestamp", {})
    fmt = str(ts.get("format", "auto"))
    if fmt not in TS_FORMATS and "%" not in fmt:
        raise MappingError(
            f"mapping '{name}': [timestamp] format must be a strftime pattern such as "
            f"'%Y-%m-%d %H:%M:%S' or one of {', '.join(TS_FORMATS)}. Got '{fmt}' instead."
        )
    base_date = None
    if fmt == "day_number":
        raw = ts.get("base_date")
        try:
            base_date = raw if isinstance(raw, date) else date.fromisoformat(str(raw))
        except ValueError:
            raise MappingError(
                f"mapping '{name}': format 'day_number' needs [timestamp] base_date = \"YYYY-MM-DD\"."
            ) from None
    tz = str(ts.get("timezone", "UTC"))
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - any failure means an unknown zone
        raise MappingError(
            f"mapping '{name}': unknown [timestamp] timezone '{tz}'; use an IANA name such as "
            "'UTC' or 'Europe/Stockholm'."
        ) from None
    amt = data.get("amount", {})
    decimals = amt.get("decimals", 2)
    if not isinstance(decimals, int) or not 0 <= decimals <= 8:
        raise MappingError(f"mapping '{name}': [amount] decimals must be an integer from 0 to 8.")
    dec_sep = str(amt.get("decimal_separator", "."))
    thou_sep = str(amt.get("thousands_separator", ""))
    if len(dec_sep) != 1 or dec_sep == thou_sep:
        raise MappingError(
            f"mapping '{name}': [amount] decimal_separator must be one character, unlike thousands_separator."
        )
    cur = data.get("currency", {})
    default_currency = cur.get("default")
    if default_currency is not None:
        default_currency = str(default_currency).strip().upper()
        if len(default_currency) != 3 or not default_currency.isalpha() or not default_currency.isascii():
            raise MappingError(f"mapping '{name}': [currency] default must be a 3-letter ISO 4217 code.")
    acc = data.get("accounts", {})
    delimiter = data.get("delimiter")
    if delimiter is not None:
        delimiter = "\t" if delimiter in ("\\t", "tab") else str(delimiter)
        if len(delimiter) != 1:
            raise MappingError(f"mapping '{name}': delimiter must be one character.")
    labels = _str_dict(data.get("labels", {}), "[labels]", name)
    transfer_cols = {c for spec in columns.values() for c in spec}
    leaked = sorted(set(labels.values()) & transfer_cols)
    if leaked:
        raise MappingError(
            f"mapping '{name}' uses label column '{leaked[0]}' as a transfer column; labels must "
            "never be stored with transfers."
        )
    ip = data.get("if_present", [])
    if_present = () if ip == [] else _str_list(ip, "if_present", name)
    unknown_ip = sorted(set(if_present) - set(_MAPPABLE) - set(labels))
    if unknown_ip:
        raise MappingError(f"mapping '{name}': if_present names unknown column(s) {', '.join(unknown_ip)}.")
    drop = tuple(data.get("drop", []) or ())
    dropped_used = sorted(set(drop) & (transfer_cols | set(labels.values())))
    if dropped_used:
        raise MappingError(f"mapping '{name}' both reads and drops column '{dropped_used[0]}'.")
    return Mapping(
        name=name,
        description=str(data.get("description", "")),
        columns=columns,
        delimiter=delimiter,
        drop=drop,
        if_present=if_present,
        ts_format=fmt,
        timezone=tz,
        base_date=base_date,
        minor_units=bool(amt.get("minor_units", False)),
        decimals=decimals,
        decimal_separator=dec_sep,
        thousands_separator=thou_sep,
        default_currency=default_currency,
        currency_aliases=_str_dict(cur.get("aliases", {}), "[currency] aliases", name),
        account_join=str(acc.get("join", ":")),
        account_aliases=_str_dict(acc.get("aliases", {}), "[accounts] aliases", name),
        labels=labels,
        source=source,
    )


def load_mapping(name_or_path: "str | Path | Mapping | None" = None) -> Mapping:
    """Load a built-in mapping by name, or a mapping TOML file by path (default: ``canonical``)."""
    if isinstance(name_or_path, Mapping):
        return name_or_path
    key = DEFAULT_MAPPING if name_or_path is None else str(name_or_path)
    if key in BUILTIN_MAPPINGS:
        text = resources.files("mulegraph").joinpath("mappings", f"{key}.toml").read_text(encoding="utf-8")
        source = f"builtin:{key}"
    else:
        p = Path(key)
        if not p.is_file():
            raise MappingError(
                f"mapping '{key}' is neither a built-in ({', '.join(BUILTIN_MAPPINGS)}) nor an existing "
                "TOML file; check the --mapping value."
            )
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise MappingError(f"mapping file '{p}' cannot be read as UTF-8 text; check the path.") from None
        source = str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MappingError(f"mapping '{key}' is not valid TOML ({err}); fix the file.") from None
    return parse_mapping(data, source)
