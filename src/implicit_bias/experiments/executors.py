"""Where trials run: in this process, or on a Dask distributed cluster."""

from __future__ import annotations

import os
import time
import traceback
from typing import Iterable, Iterator

BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def execute_trial(experiment: str, params: dict) -> dict:
    """Run one trial with one BLAS thread; never raises: failures come back as a record."""
    from threadpoolctl import threadpool_limits

    from .registry import get_experiment

    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            spec = get_experiment(experiment)
            result = spec.run(spec.make(params))
        return {"status": "done", "result": result, "error": None, "wall_s": time.perf_counter() - started}
    except Exception as exc:  # a trial that raises is recorded as failed; the sweep goes on
        message = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, ValueError):
            message += "\n" + traceback.format_exc(limit=3)
        return {"status": "failed", "result": None, "error": message, "wall_s": time.perf_counter() - started}


class SerialExecutor:
    """Runs trials one after another in this process (for debugging and small sweeps)."""

    name = "serial"

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
    by Dask and never duplicated.
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

    def run(self, tasks: Iterable[tuple[str, str, dict]]) -> Iterator[tuple[str, dict]]:
        from dask.distributed import as_completed

        futures = {}
        for key, experiment, params in tasks:
            future = self.client.submit(execute_trial, experiment, params, key=f"trial-{key}", pure=False, retries=2)
            futures[future] = key
        for future in as_completed(futures):
            key = futures.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # the task itself died (e.g. its worker was killed too often)
                outcome = {"status": "failed", "result": None, "error": f"{type(exc).__name__}: {exc}", "wall_s": 0.0}
            yield key, outcome
            future.release()

    def worker_pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
