"""Run a sweep: expand the spec, skip stored trials, claim the rest in the store a few at a time
(so that several sweeps on one store share the work), execute them, store each as it arrives."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ..errors import InvalidParameterError
from .claims import new_owner
from .executors import SerialExecutor
from .registry import get_experiment
from .spec import SweepSpec
from .store import SQLiteStore, StoreError, package_version, trial_key


AUTO_BATCH = 64  # trials per batch by default: the batched oracle's throughput at n = 200 levels off here


def resolve_batch_size(value) -> int:
    """``--batch-size``: a positive int, or ``"auto"``/None for :data:`AUTO_BATCH`."""
    if value is None or value == "auto":
        return AUTO_BATCH
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1 or (isinstance(value, float) and value != size):
        raise InvalidParameterError(f"The 'batch_size' parameter must be a positive int or 'auto'. Got {value!r}.")
    return size


@dataclass(frozen=True)
class SweepSummary:
    total: int
    skipped: int
    done: int
    failed: int
    wall_s: float
    busy: int = 0  # trials left to another sweep running on the same store


class Progress:
    """A tqdm bar on a terminal; otherwise a plain log line every few seconds."""

    def __init__(self, total: int, stream=None, every_s: float = 5.0):
        self.stream = stream or sys.stderr
        self.total, self.done, self.failed = total, 0, 0
        self.started = self.last = time.perf_counter()
        self.every_s = every_s
        self.bar = None
        if hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="trial", dynamic_ncols=True)

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=self.failed)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"sweep: {self.done}/{self.total} done, {self.failed} failed, {rate:.2f} trials/s, ETA {eta:.0f}s",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def pending_tasks(spec: SweepSpec, store: SQLiteStore, retry_failed: bool = False) -> tuple[list[tuple[str, str, dict]], int]:
    """The trials of ``spec`` whose keys are not in ``store`` (or are stored ``failed``, with
    ``retry_failed``), and the number skipped."""
    version, numerics = package_version(), get_experiment(spec.experiment).numerics
    stored = store.states()
    tasks, seen = [], set()
    trials = spec.trials()
    for params in trials:
        key = trial_key(spec.experiment, params, version, numerics)
        state = stored.get(key)
        if (state is not None and not (retry_failed and state == "failed")) or key in seen:
            continue
        seen.add(key)
        tasks.append((key, spec.experiment, params))
    return tasks, len(trials) - len(tasks)


def claimed_tasks(store: SQLiteStore, tasks: list, owner: str, retry_failed: bool, batch: int, tally: dict):
    """Yield the tasks this sweep claims in the store, ``batch`` keys per transaction, as the
    executor asks for them. Keys held by another live sweep are offered again once at the end
    (that sweep may have died or finished them); ``tally`` counts the stored and the busy ones."""
    todo = list(tasks)
    for last in (False, True):
        busy = []
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            claimed, stored, held = store.claim([key for key, _, _ in chunk], owner, retry_failed)
            tally["stored"] += len(stored)
            held, mine = set(held), set(claimed)
            busy += [task for task in chunk if task[0] in held]
            yield from (task for task in chunk if task[0] in mine)
        todo = busy
    tally["busy"] = len(todo)


def run_sweep(spec: SweepSpec, *, store_path: str | None = None, executor=None, progress: bool = True,
              stream=None, retry_failed: bool = False, batch_size=None, backend: str = "numpy") -> SweepSummary:
    """Run every pending trial of ``spec``; results are written one by one as they arrive.

    Without ``executor`` the trials run in this process, ``batch_size`` compatible ones at a time
    (``"auto"``/None: :data:`AUTO_BATCH`; 1: one at a time) on ``backend`` (numpy or jax); each
    trial is still stored on its own, as it arrives.
    ``retry_failed`` also reruns the trials stored as failed (each replaces its failed row).
    Trials another live sweep has claimed on the same store are left to it (``busy``).
    """
    started = time.perf_counter()
    executor = executor or SerialExecutor(resolve_batch_size(batch_size), backend)
    numerics = get_experiment(spec.experiment).numerics
    with SQLiteStore(store_path or spec.store) as store:
        tasks, skipped = pending_tasks(spec, store, retry_failed)
        params_of = {key: params for key, _, params in tasks}
        bar = Progress(len(tasks), stream) if progress and tasks else None
        owner, tally = new_owner(), {"stored": 0, "busy": 0}
        done = failed = 0
        try:
            claimed = claimed_tasks(store, tasks, owner, retry_failed, max(1, getattr(executor, "batch", 1)), tally)
            for key, outcome in executor.run(claimed):
                store.put(key, spec.experiment, params_of[key], outcome["status"], outcome["result"], outcome["error"],
                          outcome["wall_s"], numerics=numerics, environment=outcome.get("environment"), owner=owner)
                failed += outcome["status"] == "failed"
                done += outcome["status"] == "done"
                if bar:
                    bar.update(outcome["status"] == "failed")
        finally:
            if bar:
                bar.close()
            try:
                store.release(owner)
            except StoreError:
                pass  # a dead owner's claims are free anyway
    return SweepSummary(total=len(tasks) + skipped, skipped=skipped + tally["stored"], done=done, failed=failed,
                        wall_s=time.perf_counter() - started, busy=tally["busy"])
