"""Compatibility path: this module lives in :mod:`mulegraph.io.labels`."""

from mulegraph.io.labels import *  # noqa: F401,F403
from mulegraph.io.labels import __all__  # noqa: F401
