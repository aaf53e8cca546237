"""The CLI frame: errors become one line and an exit code; crashes never print data."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from mulegraph import __version__
from mulegraph.cli import app
from mulegraph.cli._app import handle_errors
from mulegraph.core.errors import InputError, NothingNewError

runner = CliRunner()


def _app_raising(exc: BaseException) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @handle_errors
    def boom() -> None:
        raise exc

    @demo.command()
    def other() -> None:  # a second command keeps typer in multi-command mode
        pass

    return demo


def test_user_error_is_one_line_with_its_exit_code():
    res = runner.invoke(_app_raising(InputError("file 'x.csv' is empty; export it again")), ["boom"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: file 'x.csv' is empty; export it again"


def test_nothing_new_exit_code():
    res = runner.invoke(_app_raising(NothingNewError("nothing new")), ["boom"])
    assert res.exit_code == 3


def test_unexpected_error_hides_its_message(monkeypatch):
    monkeypatch.delenv("MULEGRAPH_DEBUG", raising=False)
    res = runner.invoke(_app_raising(ValueError("account SE1234 amount 999.00")), ["boom"])
    assert res.exit_code == 1
    assert "SE1234" not in res.output and "999" not in res.output
    assert "internal error (ValueError)" in res.output
    assert "Traceback" not in res.output


def test_version_and_help():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "mule" in res.output.lower()


def test_broken_pipe_is_quiet():
    res = runner.invoke(_app_raising(BrokenPipeError()), ["boom"])
    assert res.exit_code == 0
    assert "internal error" not in res.output
