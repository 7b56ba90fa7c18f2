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


def execute_batch(experiment: str, params_list: list[dict], backend: str = "numpy") -> list[dict]:
    """Run compatible trials together (:attr:`Experiment.run_batch`); never raises.

    One outcome per trial, as :func:`execute_trial` gives it (a trial's numbers do not depend on
    the other trials of its batch: the stacked products are computed trial by trial): a trial the batch reports as failed
    gets its own failure record; if the batch itself raises, every trial is rerun on its own, so
    one bad trial never costs the others. ``wall_s`` is the batch's wall time shared equally.
    """
    from threadpoolctl import threadpool_limits

    from .registry import get_experiment

    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            spec = get_experiment(experiment)
            results = spec.run_batch([spec.make(params) for params in params_list], backend=backend)
    except Exception:  # the batch as a whole failed: one at a time, each with its own outcome
        return [execute_trial(experiment, params) for params in params_list]
    wall = (time.perf_counter() - started) / len(params_list)
    env = environment()
    outcomes = []
    for result in results:
        if isinstance(result, BaseException):
            message = f"{type(result).__name__}: {result}"
            outcome = {"status": "failed", "result": None, "error": message}
        else:
            try:
                _check_statuses(experiment, result)
                outcome = {"status": "done", "result": result, "error": None}
            except ValueError as exc:
                outcome = {"status": "failed", "result": None, "error": f"ValueError: {exc}"}
        outcomes.append({**outcome, "wall_s": wall, "environment": env})
    return outcomes


def batches(tasks: Iterable[tuple[str, str, dict]], size: int, buffer: int = 4) -> Iterator[list[tuple[str, str, dict]]]:
    """Group ``tasks`` into lists of at most ``size`` compatible trials (same experiment and
    :attr:`Experiment.batch_key`), in arrival order; a trial without a key is a batch of one.
    At most ``buffer * size`` tasks wait to be grouped (the largest group leaves first)."""
    from .registry import get_experiment

    groups: dict[tuple, list] = {}
    waiting = 0
    for task in tasks:
        spec = get_experiment(task[1])
        key = spec.batch_key(spec.make(task[2])) if size > 1 and spec.batch_key is not None else None
        if key is None:
            yield [task]
            continue
        group = groups.setdefault((task[1], key), [])
        group.append(task)
        waiting += 1
        if len(group) >= size:
            waiting -= len(group)
            yield groups.pop((task[1], key))
        elif waiting >= buffer * size:
            largest = max(groups, key=lambda name: len(groups[name]))
            waiting -= len(groups[largest])
            yield groups.pop(largest)
    yield from groups.values()


class SerialExecutor:
    """Runs trials in this process (for debugging and small sweeps), ``batch_size`` compatible
    trials at a time (1: one at a time; see :func:`batches`)."""

    name = "serial"

    def __init__(self, batch_size: int = 1, backend: str = "numpy"):
        self.batch_size, self.backend = max(1, int(batch_size)), backend

    @property
    def batch(self) -> int:
        return self.batch_size  # tasks claimed from the store at a time

    def run(self, tasks: Iterable[tuple[str, str, dict]]) -> Iterator[tuple[str, dict]]:
        if self.batch_size == 1:
            for key, experiment, params in tasks:
                yield key, execute_trial(experiment, params)
            return
        for group in batches(tasks, self.batch_size):
            outcomes = execute_batch(group[0][1], [params for _, _, params in group], self.backend)
            yield from ((key, outcome) for (key, _, _), outcome in zip(group, outcomes))

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

    def __init__(self, workers: int = 2, scheduler: str | None = None, batch_size: int = 1, backend: str = "numpy"):
        from dask.distributed import Client, LocalCluster

        self.batch_size, self.backend = max(1, int(batch_size)), backend
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
        return max(1, sum(self.client.nthreads().values())) * self.batch_size

    def run(self, tasks: Iterable[tuple[str, str, dict]], window: int | None = None) -> Iterator[tuple[str, dict]]:
        """``window``: tasks in flight at a time (default: two per worker thread)."""
        from dask.distributed import as_completed

        groups = batches(tasks, self.batch_size)
        futures, running = {}, as_completed()

        def submit() -> None:
            for group in groups:  # one task (a batch of compatible trials), if any is left
                keys = [key for key, _, _ in group]
                if len(group) == 1:
                    future = self.client.submit(execute_trial, group[0][1], group[0][2], key=f"trial-{keys[0]}",
                                                pure=False, retries=2)
                else:
                    future = self.client.submit(execute_batch, group[0][1], [params for _, _, params in group],
                                                self.backend, key=f"batch-{keys[0]}-{len(keys)}", pure=False, retries=2)
                futures[future] = keys
                running.add(future)
                return

        for _ in range(window or 2 * max(1, self.batch // self.batch_size)):
            submit()
        for future in running:
            keys = futures.pop(future)
            try:
                outcomes = future.result()
                outcomes = [outcomes] if isinstance(outcomes, dict) else outcomes
            except Exception as exc:  # the task itself died (e.g. its worker was killed too often)
                outcomes = [{"status": "failed", "result": None, "error": f"{type(exc).__name__}: {exc}",
                             "wall_s": 0.0, "environment": None}] * len(keys)
            yield from zip(keys, outcomes)
            future.release()
            submit()

    def worker_pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
