"""Thread pinning: at most one BLAS pool runs threads inside the heavy entry points, and no pool
ever runs more threads than it was given from outside (an outer threadpoolctl limit, the
environment, a sweep trial). Thread counts are read back from the BLAS libraries themselves
(threadpoolctl asks each library), not from our own bookkeeping. The probes inside sweep trials
(serial and Dask workers) are in test_sweep_faults.py, next to the shared cluster."""

import json
import os
import subprocess
import sys

import pytest
from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

from implicit_bias._blas import _split, blas_threads, pinned_blas


@pinned_blas
def _pools_inside():
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def _owned_and_others():
    owned, others = _split(ThreadpoolController())
    if not owned:
        pytest.skip("scipy's BLAS cannot be told apart here: every pool stays at one thread")
    return owned, others


def test_blas_threads_reads_the_environment(monkeypatch):
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "3")
    assert blas_threads() == 3
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "not a number")
    assert blas_threads() == 1
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "0")
    assert blas_threads() == 1


def test_only_scipys_blas_runs_threads_within_what_it_was_given(monkeypatch):
    owned, others = _owned_and_others()
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", "2")
    with threadpool_limits(limits=2):  # the caller gives every pool 2 threads
        pools = _pools_inside()
    assert all(pools[path] == 1 for path in others)
    assert all(pools[path] == 2 for path in owned)


@pytest.mark.parametrize("outer,asked", [(1, 2), (1, 64), (2, 1)])
def test_pinning_never_raises_a_pool_above_an_outer_limit(monkeypatch, outer, asked):
    # The bug this guards: inside execute_trial's one-thread limit, pinning set scipy's pool back
    # to every core, so K Dask workers ran K x cores threads.
    owned, others = _owned_and_others()
    monkeypatch.setenv("IMPLICIT_BIAS_BLAS_THREADS", str(asked))
    with threadpool_limits(limits=outer):
        given = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        pools = _pools_inside()
        after = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    assert all(pools[path] == 1 for path in others)
    assert all(pools[path] == min(outer, asked) for path in owned)
    assert after == given  # the outer limit is back after the call (a single-threaded build, e.g. SCS's, stays at 1)


def test_the_pools_are_restored_after_the_call():
    before = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    _pools_inside()
    after = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    assert before == after


PROBE = """
import json, os
from threadpoolctl import ThreadpoolController, threadpool_info
from implicit_bias._blas import _split, pinned_blas
pools = pinned_blas(lambda: {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})()
owned, others = _split(ThreadpoolController())
print(json.dumps({"pools": pools, "owned": owned, "cores": len(os.sched_getaffinity(0))}))
"""


def test_outside_any_limit_scipys_pool_gets_every_core():
    # A fresh process with no thread setting at all: OpenBLAS starts at one thread a core, so the
    # owned pool gets every usable core (sched_getaffinity) and the others one.
    _owned_and_others()
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "IMPLICIT_BIAS_BLAS_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout)
    assert probe["owned"]
    for path, count in probe["pools"].items():
        assert count == (probe["cores"] if path in probe["owned"] else 1), probe
