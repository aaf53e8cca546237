"""Compatibility path: this module lives in :mod:`mulegraph.investigate.draw`."""

from mulegraph.investigate.draw import *  # noqa: F401,F403
from mulegraph.investigate.draw import __all__  # noqa: F401
