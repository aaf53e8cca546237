"""Compatibility path: this module lives in :mod:`mulegraph.io.store`."""

from mulegraph.io.store import *  # noqa: F401,F403
from mulegraph.io.store import __all__  # noqa: F401
