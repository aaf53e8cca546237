"""Compatibility path: the configuration lives in :mod:`mulegraph.core.config`."""

from mulegraph.core.config import *  # noqa: F401,F403
from mulegraph.core.config import __all__  # noqa: F401
