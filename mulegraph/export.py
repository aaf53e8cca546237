"""Compatibility path: this module lives in :mod:`mulegraph.investigate.export`."""

from mulegraph.investigate.export import *  # noqa: F401,F403
from mulegraph.investigate.export import __all__  # noqa: F401
