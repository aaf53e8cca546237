"""CLI commands: score."""

from __future__ import annotations

from ._app import app, handle_errors  # noqa: F401
