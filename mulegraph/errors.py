"""Compatibility path: this module lives in :mod:`mulegraph.core.errors`."""

from mulegraph.core.errors import *  # noqa: F401,F403
from mulegraph.core.errors import __all__  # noqa: F401
