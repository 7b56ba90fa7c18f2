"""Thread pinning: at most one BLAS pool runs threads inside the heavy entry points."""

import pytest
from threadpoolctl import ThreadpoolController, threadpool_info

from implicit_bias._blas import _split, blas_threads, pinned_blas


@pinned_blas
def _pools_inside():
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_blas_threads_reads_the_environment(monkeypatch):
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "3")
    assert blas_threads() == 3
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "not a number")
    assert blas_threads() == 1
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "0")
    assert blas_threads() == 1


def test_only_scipys_blas_runs_threads(monkeypatch):
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "2")
    owned, others = _split(ThreadpoolController())
    if not owned:
        pytest.skip("scipy's BLAS cannot be told apart here: every pool stays at one thread")
    pools = _pools_inside()
    assert all(pools[path] == 1 for path in others)
    assert all(pools[path] == 2 for path in owned)


def test_the_pools_are_restored_after_the_call():
    before = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    _pools_inside()
    after = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    assert before == after
