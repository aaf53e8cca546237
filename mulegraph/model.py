"""Compatibility path: this module lives in :mod:`mulegraph.scoring.model`."""

from mulegraph.scoring.model import *  # noqa: F401,F403
from mulegraph.scoring.model import __all__  # noqa: F401
