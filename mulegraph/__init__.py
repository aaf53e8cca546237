"""mulegraph: find money-mule accounts in bank transfer graphs.

The public API, by stage (imported lazily, so ``import mulegraph`` stays fast)::

    from mulegraph import Store, load_mapping            # the canonical transfer store
    from mulegraph.ingest import ingest                  # exports -> store
    from mulegraph import compute_features, build_features
    from mulegraph import train, save_model, load_model  # supervised model
    from mulegraph import score                          # ranked accounts with reasons
    from mulegraph.scoring.evaluate import evaluate      # PR-AUC, precision/recall at budgets
    from mulegraph import run, write_report              # the nightly run and its report
    from mulegraph import open_investigation             # investigators' view of one account
    from mulegraph import generate                       # synthetic transfers with planted mules
"""

from __future__ import annotations

import importlib
from typing import Any

from .core.version import __version__  # noqa: E402

from mulegraph.core.errors import (  # noqa: E402
    ConfigError,
    FeatureError,
    InputError,
    MappingError,
    ModelError,
    MulegraphError,
    NothingNewError,
    StoreError,
)

#: public name -> module that defines it
_LAZY = {
    "Config": "mulegraph.core.config",
    "load_config": "mulegraph.core.config",
    "Store": "mulegraph.io.store",
    "load_mapping": "mulegraph.io.mapping",
    "compute_features": "mulegraph.features",
    "build_features": "mulegraph.features.build",
    "MuleModel": "mulegraph.scoring.model",
    "train": "mulegraph.scoring.model",
    "save_model": "mulegraph.scoring.model",
    "load_model": "mulegraph.scoring.model",
    "score": "mulegraph.scoring.score",
    "run": "mulegraph.pipeline",
    "write_report": "mulegraph.report",
    "open_investigation": "mulegraph.investigate",
    "generate": "mulegraph.synth",
}

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
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mulegraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
