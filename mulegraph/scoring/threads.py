"""The thread budget of training and scoring: never more busy threads than cores.

scikit-learn's histogram gradient boosting runs on OpenMP, and NumPy/SciPy on a BLAS library; each
starts a pool as large as the machine by default, and work that nests them (or runs beside
another job) asks for more threads than there are cores. :func:`thread_budget` caps every such
pool loaded in the process with :func:`threadpoolctl.threadpool_limits` for the duration of a
``with`` block; :class:`~mulegraph.scoring.estimator.MuleModel` trains and scores inside one, sized
by ``[model] threads`` (default: the cores this process may use, :func:`available_cores`).
Training runs its folds one after another, so the budget is the whole of it.

OpenMP threads that wait for work spin by default (``OMP_WAIT_POLICY=ACTIVE`` behaviour for a
while), which on a busy machine steals the cores the other threads need: measured on 2 shared
cores, one boosting fit took 20 s with 2 spinning threads and 1.3 s with
``OMP_WAIT_POLICY=PASSIVE``. The policy is read once, when the OpenMP library is loaded (at the
first import of scikit-learn), so it cannot be set by a library afterwards:
:func:`prefer_passive_openmp` sets it for the ``mulegraph`` command before anything is imported
(unless the environment already sets it), and Python callers who share a machine set it
themselves before importing scikit-learn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["available_cores", "resolve_threads", "thread_budget", "prefer_passive_openmp", "OMP_WAIT_POLICY"]

#: the OpenMP waiting policy :func:`prefer_passive_openmp` sets when the environment has none
OMP_WAIT_POLICY = "PASSIVE"


def available_cores() -> int:
    """The number of cores this process may run on (its CPU affinity, else the machine's)."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if count is not None:
        return max(int(count() or 1), 1)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def resolve_threads(threads: int | None) -> int:
    """The thread budget for a ``[model] threads`` setting: the setting, at most the cores; None: the cores."""
    cores = available_cores()
    return cores if threads is None else max(1, min(int(threads), cores))


@contextmanager
def thread_budget(threads: int | None) -> Iterator[int]:
    """Cap the OpenMP and BLAS thread pools at :func:`resolve_threads` ``(threads)`` inside the block.

    Yields the budget. The limits are undone on leaving, also after an error. threadpoolctl can
    only limit libraries that are loaded, so scikit-learn's OpenMP runtime is loaded first.
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the boosting uses
    from threadpoolctl import threadpool_limits

    n = resolve_threads(threads)
    with threadpool_limits(limits=n):
        yield n


def prefer_passive_openmp(environ: dict[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY`` to ``PASSIVE`` in ``environ`` (default ``os.environ``) unless it is set.

    Only OpenMP libraries loaded afterwards read it, so call this before importing scikit-learn
    (the ``mulegraph`` command does, first thing), or pass a child process's environment. Returns
    True when the value was set here.
    """
    env = os.environ if environ is None else environ
    if env.get("OMP_WAIT_POLICY"):
        return False
    env["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    return True
