"""BLAS thread pinning.

numpy and scipy each load their own OpenBLAS; with both multi-threaded on a small machine their
spinning threads fight, and the m x m solves of the limit oracle and the integrators ran 10-50x
slower (measured: predict_limit at n = 1000 took 3-5 s with 2 threads vs 0.07-0.13 s with 1).
The heavy entry points therefore run with ``IMPLICIT_BIAS_BLAS_THREADS`` threads (default 1).
"""

from __future__ import annotations

import functools
import os

from threadpoolctl import threadpool_limits


def blas_threads() -> int:
    try:
        return max(1, int(os.environ.get("IMPLICIT_BIAS_BLAS_THREADS", "1")))
    except ValueError:
        return 1


def pinned_blas(function):
    """Run ``function`` with the BLAS pools limited to :func:`blas_threads` threads."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=blas_threads(), user_api="blas"):
            return function(*args, **kwargs)

    return wrapper
