"""Command-line interface. Each ``*_cmd`` module registers its commands on :data:`app`."""

from mulegraph.cli._app import app, handle_errors, main
from mulegraph.cli import ingest_cmd, synth_cmd, features_cmd, model_cmd, score_cmd, run_cmd, report_cmd, investigate_cmd, share_cmd  # noqa: F401,E402

__all__ = ["app", "main", "handle_errors"]
