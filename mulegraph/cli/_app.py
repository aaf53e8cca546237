"""The typer application and the one place that maps library errors to exit codes.

Commands stay thin: parse options, call one library function, print its summary. Every command is
wrapped with :func:`handle_errors`, so a :class:`~mulegraph.errors.MulegraphError` becomes a
one-line message on stderr and its exit code, and an unexpected exception becomes a short notice
without the exception's text (which could hold account data). Set ``MULEGRAPH_DEBUG=1`` to get the
full traceback instead (locals are never shown).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, TypeVar

import typer

from mulegraph.core.atomic import is_disk_full
from mulegraph.core.version import __version__
from mulegraph.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, InputError, MulegraphError
from mulegraph.core.escape import visible
from mulegraph.core.paths import probe_writable, refuse_protected_output

F = TypeVar("F", bound=Callable)

app = typer.Typer(
    name="mulegraph",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mulegraph {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Find money-mule accounts in bank transfer exports: ingest, features, scoring, reports.

    \b
    A first try on synthetic data:
      mulegraph synth --out demo
      mulegraph run demo/transfers.csv --mapping demo/mapping.toml
      mulegraph report --out report.html

    Each command has --help with examples. Exit codes: 0 done; 1 failure; 2 bad input or usage;
    3 nothing new to do. Set MULEGRAPH_DEBUG=1 to see the traceback of an internal error.
    """


class EngineKind(str, Enum):
    """Where a window's features are computed (``--engine``)."""

    local = "local"
    dask = "dask"


def engine_option():
    """The ``--engine`` option of the commands that compute features (one definition for all)."""
    return typer.Option(
        None,
        "--engine",
        help="Where features are computed: local (this process) or dask (a Dask cluster; without "
        "--scheduler a local one sized to this machine). [engine] kind; default local.",
    )


def scheduler_option():
    """The ``--scheduler`` option of the commands that compute features."""
    return typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler to run the feature shards on, e.g. tcp://10.0.0.5:8786 (implies --engine dask; "
        "the store must be on a path every worker can read). [engine] scheduler.",
    )


def error(message: str) -> None:
    """Print a one-line error message on stderr (control characters shown as visible escapes, since
    a message may quote a value from the data)."""
    typer.echo(f"error: {visible(message, keep_newlines=True)}", err=True)


def check_out_file(path: Path, suffixes: tuple[str, ...], option: str = "--out") -> Path:
    """Check an output file before any work is done: a known suffix, not in a store or a run
    folder, an existing writable folder.

    A long computation must not end with "cannot write there": commands call this first.
    """
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise InputError(
            f"{option} '{path.name}' must end in {', '.join(suffixes)}; pass e.g. {option} result{suffixes[0]}."
        )
    refuse_protected_output(path, option)
    if path.is_dir():
        raise InputError(f"{option} '{path}' is a folder; give a file name such as '{path / ('result' + suffixes[0])}'.")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"the folder of {option} '{path}' does not exist; create it first or choose another {option}.")
    check_writable(parent, option)
    return path


def check_out_path(path: Path, option: str = "--out") -> Path:
    """Check an output file of any suffix before any work: not in a store or a run folder, and its
    folder (or the nearest existing parent) writable."""
    refuse_protected_output(path, option)
    check_writable(path.parent, option)
    return path


def check_writable(path: Path, option: str = "--out") -> None:
    """Check that a file can be created in ``path`` (or its nearest existing parent) by creating
    one, and that ``path`` is not in a store or a run folder.

    ``os.access`` is not enough: it says yes to root on a read-only file system.
    """
    refuse_protected_output(path, option)
    try:
        probe_writable(path)
    except NotADirectoryError as err:
        raise InputError(f"'{err}' is a file, so {option} '{path}' cannot be created there; choose another {option}.") from None
    except OSError as err:
        here = Path(err.filename).parent if err.filename else Path(path)
        raise InputError(f"cannot write in '{here}' ({err.strerror}); choose another {option}.") from None


#: errors of the file system a user can fix (a path, a permission), as one line
_USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def _disk_full(err: BaseException) -> None:
    """One line for a full disk (the library usually names the file; some writers do not)."""
    filename = getattr(err, "filename", None)
    where = f" to write '{filename}'" if filename else ""
    error(f"no space left on the device{where}; free some space and run again.")


def handle_errors(func: F) -> F:
    """Decorator for commands: map mulegraph errors to exit codes, hide data in crashes."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except MulegraphError as err:
            error(str(err))
            raise typer.Exit(err.exit_code) from None
        except BrokenPipeError:
            # output piped into a reader that stopped early (e.g. `| head`): not an error
            try:  # point stdout at /dev/null so the flush at exit does not fail again
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            raise typer.Exit(0) from None
        except OSError as err:
            if is_disk_full(err):
                _disk_full(err)
                raise typer.Exit(EXIT_FAILURE) from None
            if err.errno in _USER_OS_ERRORS and err.filename is not None:
                error(f"cannot use '{err.filename}': {err.strerror}; check the path and its permissions.")
                raise typer.Exit(EXIT_BAD_INPUT) from None
            if os.environ.get("MULEGRAPH_DEBUG"):
                raise
            error(f"internal error ({type(err).__name__}) in '{func.__name__}'; rerun with MULEGRAPH_DEBUG=1 to see it.")
            raise typer.Exit(EXIT_FAILURE) from None
        except KeyboardInterrupt as err:
            # an ingest says what it committed before the interrupt (mulegraph.ingest.interrupt)
            error(str(err) or "interrupted; the store and earlier runs are left as they were.")
            raise typer.Exit(130) from None
        except MemoryError:
            error("out of memory; try a shorter --window or fewer exports at a time.")
            raise typer.Exit(EXIT_FAILURE) from None
        except Exception as err:  # noqa: BLE001 - last line of defence, re-raised in debug mode
            if is_disk_full(err):  # e.g. a Polars ComputeError from a writer without a file name
                _disk_full(err)
                raise typer.Exit(EXIT_FAILURE) from None
            if os.environ.get("MULEGRAPH_DEBUG"):
                raise
            error(
                f"internal error ({type(err).__name__}) in '{func.__name__}'. The message is not shown "
                "because it may contain account data; rerun with MULEGRAPH_DEBUG=1 to see it, and "
                "please report it."
            )
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    """Console entry point.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it, before any command loads
    scikit-learn's OpenMP runtime (see :mod:`mulegraph.scoring.threads`).
    """
    from mulegraph.scoring.threads import prefer_passive_openmp

    prefer_passive_openmp()
    sys.exit(app())
