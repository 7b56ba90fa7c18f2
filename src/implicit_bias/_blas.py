"""BLAS thread pinning.

numpy and scipy each load their own OpenBLAS; with both multi-threaded on a small machine their
spinning threads fight, and the m x m solves of the limit oracle and the integrators ran 10-50x
slower (measured: predict_limit at n = 1000 took 3-5 s with 2 threads in both pools vs 0.07-0.13 s
with 1). Only one pool may therefore run threads: the heavy entry points give the BLAS that
``scipy.linalg`` calls (Gram matrices, Cholesky factorisations, triangular solves)
``IMPLICIT_BIAS_BLAS_THREADS`` threads (default: the usable cores) and keep every other BLAS
(numpy's matrix-vector products) at one. When scipy's BLAS cannot be told apart from the others,
all of them run one thread.

Pinning only ever *lowers* a pool: a pool already held below that count (an outer
``threadpoolctl`` limit, ``OPENBLAS_NUM_THREADS``, a sweep trial's one thread, a Dask worker)
keeps its count, so K workers never run K x cores threads.
"""

from __future__ import annotations

import functools
import os
from contextlib import ExitStack

import scipy
import scipy.linalg  # noqa: F401  (loads scipy's BLAS before the pools are listed)
from threadpoolctl import ThreadpoolController

_CONTROLLER: ThreadpoolController | None = None


def blas_threads() -> int:
    """Threads for scipy's BLAS: ``IMPLICIT_BIAS_BLAS_THREADS`` or the usable cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        return max(1, int(os.environ.get("IMPLICIT_BIAS_BLAS_THREADS", cores)))
    except ValueError:
        return 1


def _split(controller: ThreadpoolController) -> tuple[list[str], list[str]]:
    """File paths of the BLAS libraries scipy ships (or the only one loaded) and of the others."""
    blas = [lib.filepath for lib in controller.lib_controllers if lib.user_api == "blas"]
    home = os.path.dirname(os.path.abspath(scipy.__file__))
    owned = [path for path in blas if os.path.abspath(path).startswith((home + os.sep, home + ".libs" + os.sep))]
    if not owned and len(blas) == 1:
        owned = blas  # one BLAS shared by numpy and scipy: no second pool to fight with
    return owned, [path for path in blas if path not in owned]


def _pinned_counts(controller: ThreadpoolController) -> dict[str, int]:
    """filepath -> the count each BLAS pool gets: scipy's min(:func:`blas_threads`, its current
    count), every other one 1; never more than the pool runs now."""
    owned, _ = _split(controller)
    wanted = blas_threads()
    return {lib.filepath: min(wanted if lib.filepath in owned else 1, max(1, lib.num_threads))
            for lib in controller.lib_controllers if lib.user_api == "blas"}


def pinned_blas(function):
    """Run ``function`` with scipy's BLAS at most at :func:`blas_threads` threads and every other
    BLAS at one, never raising a pool above the count it runs at when called."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        global _CONTROLLER
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        with ExitStack() as stack:
            for path, count in _pinned_counts(_CONTROLLER).items():
                stack.enter_context(_CONTROLLER.select(filepath=path).limit(limits=count))
            return function(*args, **kwargs)

    return wrapper
