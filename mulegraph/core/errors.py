"""Exceptions raised by mulegraph.

Every error a user can cause derives from :class:`MulegraphError`. Its message says what is wrong
and what to do, and never contains account identifiers or amounts, so that it can be printed and
logged safely. The CLI maps each class to an exit code (``exit_code``):

* 0 success, 1 failure, 2 bad input or usage, 3 nothing new to do.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_BAD_INPUT",
    "EXIT_NOTHING_NEW",
    "MulegraphError",
    "InputError",
    "MappingError",
    "ConfigError",
    "StoreError",
    "FeatureError",
    "EmptyWindowError",
    "ModelError",
    "EngineError",
    "NothingNewError",
    "DiskFullError",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_NOTHING_NEW = 3


class MulegraphError(Exception):
    """Base class. ``str(err)`` is a one-line message fit for a terminal."""

    exit_code: int = EXIT_BAD_INPUT


class InputError(MulegraphError):
    """An input file or argument is missing, unreadable or malformed."""


class MappingError(InputError):
    """A column mapping is invalid or does not fit the export it is applied to."""


class ConfigError(InputError):
    """A configuration file or option is invalid."""


class StoreError(MulegraphError):
    """The store directory is missing, not a store, or inconsistent."""


class FeatureError(MulegraphError):
    """Features cannot be computed from the given transfers or options."""


class EmptyWindowError(InputError, FeatureError):
    """The chosen window holds no transfers (bad input; also a :class:`FeatureError`)."""


class ModelError(MulegraphError):
    """A model file is missing, incompatible, tampered with, or cannot be trained."""


class EngineError(MulegraphError):
    """The engine computing a window's features failed (e.g. a cluster lost the same task repeatedly)."""

    exit_code = EXIT_FAILURE


class NothingNewError(MulegraphError):
    """There is nothing new to do (for example, every export was ingested already)."""

    exit_code = EXIT_NOTHING_NEW


class DiskFullError(MulegraphError, OSError):
    """The disk (or the user's quota) is full: a file could not be written. Also an :class:`OSError`.

    Raised by :func:`mulegraph.core.atomic.disk_full_names`, which names the file or folder that
    was being written; nothing half-written is left in its place.
    """

    exit_code = EXIT_FAILURE

    def __str__(self) -> str:  # the message, not OSError's "[Errno 28] ..." form
        return str(self.args[0]) if self.args else "no space left on the device"
