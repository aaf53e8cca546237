"""CLI commands: report."""

from __future__ import annotations

from ._app import app, handle_errors  # noqa: F401

