"""Where trials run: in this process, or on a Dask distributed cluster."""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
import traceback
from typing import Iterable, Iterator

BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STATUS_FIELDS = ("status", "solver_status")  # the fields of a trial's record that hold a numerical status


def environment() -> str:
    """What computed the numbers in this process (JSON): Python, numpy, scipy and each BLAS loaded
    (asked again whenever modules were imported since, as a new import may load another BLAS)."""
    return _environment(len(sys.modules))


@functools.lru_cache(maxsize=4)
def _environment(_modules: int) -> str:
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    blas = sorted({f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')}, "
                   f"{info.get('threading_layer')})" for info in threadpool_info() if info.get("user_api") == "blas"})
    return json.dumps({"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
                       "blas": blas}, sort_keys=True)


def _check_statuses(experiment: str, record: dict) -> None:
    """A record's numerical status must be a word of :mod:`implicit_bias.status`."""
    from ..status import STATUSES

    for name in STATUS_FIELDS:
        if name in record and record[name] not in STATUSES:
            raise ValueError(f"experiment {experiment!r} returned {name} {record[name]!r}, not one of {STATUSES}")


def execute_trial(experiment: str, params: dict) -> dict:
    """Run one trial with one BLAS thread; never raises: failures come back as a record.

    The outcome's ``status`` is the trial's state (``done``: it returned a record, ``failed``: it
    raised); the record's own ``status`` says how the numerics ended (implicit_bias.status).
    """
    from threadpoolctl import threadpool_limits

    from .registry import get_experiment

    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            spec = get_experiment(experiment)
            result = spec.run(spec.make(params))
        _check_statuses(experiment, result)
        outcome = {"status": "done", "result": result, "error": None}
    except Exception as exc:  # a trial that raises is recorded as failed; the sweep goes on
        message = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, ValueError):
            message += "\n" + traceback.format_exc(limit=3)
        outcome = {"status": "failed", "result": None, "error": message}
    return {**outcome, "wall_s": time.perf_counter() - started, "environment": environment()}


class SerialExecutor:
    """Runs trials one after another in this process (for debugging and small sweeps)."""

    name = "serial"
    batch = 1  # tasks claimed from the store at a time

    def run(self, tasks: Iterable[tuple[str, str, dict]]) -> Iterator[tuple[str, dict]]:
        for key, experiment, params in tasks:
            yield key, execute_trial(experiment, params)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Submits trials to Dask distributed; yields results in completion order.

    ``scheduler``: the address of an existing cluster (``tcp://host:8786``); otherwise an
    embedded ``LocalCluster`` with ``workers`` single-threaded worker processes on loopback.
    Trials are submitted under their store key, so a task lost with a dying worker is rerun
    by Dask and never duplicated. Two tasks per worker thread are in flight at a time: the
    others stay unclaimed in the store, free for another sweep on the same store.
    """

    name = "dask"

    def __init__(self, workers: int = 2, scheduler: str | None = None):
        from dask.distributed import Client, LocalCluster

        for key, value in BLAS_ENV.items():  # inherited by the worker processes
            os.environ.setdefault(key, value)
        if scheduler:
            self.cluster = None
            self.client = Client(scheduler)
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None)
            self.client = Client(self.cluster)

    @property
    def batch(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def run(self, tasks: Iterable[tuple[str, str, dict]], window: int | None = None) -> Iterator[tuple[str, dict]]:
        """``window``: tasks in flight at a time (default: two per worker thread)."""
        from dask.distributed import as_completed

        tasks = iter(tasks)
        futures, running = {}, as_completed()

        def submit() -> None:
            for key, experiment, params in tasks:  # one task, if any is left
                future = self.client.submit(execute_trial, experiment, params, key=f"trial-{key}", pure=False,
                                            retries=2)
                futures[future] = key
                running.add(future)
                return

        for _ in range(window or 2 * self.batch):
            submit()
        for future in running:
            key = futures.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # the task itself died (e.g. its worker was killed too often)
                outcome = {"status": "failed", "result": None, "error": f"{type(exc).__name__}: {exc}",
                           "wall_s": 0.0, "environment": None}
            yield key, outcome
            future.release()
            submit()

    def worker_pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
