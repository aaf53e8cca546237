"""mulegraph: find money-mule accounts in bank transfer graphs.

The public API is re-exported here; see ``__all__``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ConfigError,
    FeatureError,
    InputError,
    MappingError,
    ModelError,
    MulegraphError,
    NothingNewError,
    StoreError,
)

__all__ = [
    "__version__",
    "MulegraphError",
    "InputError",
    "MappingError",
    "ConfigError",
    "StoreError",
    "FeatureError",
    "ModelError",
    "NothingNewError",
]
