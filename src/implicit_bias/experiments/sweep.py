"""Run a sweep: expand the spec, skip stored trials, execute the rest, store each as it arrives."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from .executors import SerialExecutor
from .spec import SweepSpec
from .store import SQLiteStore, package_version, trial_key


@dataclass(frozen=True)
class SweepSummary:
    total: int
    skipped: int
    done: int
    failed: int
    wall_s: float


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


def pending_tasks(spec: SweepSpec, store: SQLiteStore) -> tuple[list[tuple[str, str, dict]], int]:
    """The trials of ``spec`` whose keys are not in ``store``, and the number skipped."""
    version = package_version()
    stored = store.keys()
    tasks, seen = [], set()
    for params in spec.trials():
        key = trial_key(spec.experiment, params, version)
        if key in stored or key in seen:
            continue
        seen.add(key)
        tasks.append((key, spec.experiment, params))
    return tasks, len(spec.trials()) - len(tasks)


def run_sweep(spec: SweepSpec, *, store_path: str | None = None, executor=None, progress: bool = True,
              stream=None) -> SweepSummary:
    """Run every pending trial of ``spec``; results are written one by one as they arrive."""
    started = time.perf_counter()
    executor = executor or SerialExecutor()
    with SQLiteStore(store_path or spec.store) as store:
        tasks, skipped = pending_tasks(spec, store)
        params_of = {key: params for key, _, params in tasks}
        bar = Progress(len(tasks), stream) if progress and tasks else None
        done = failed = 0
        try:
            for key, outcome in executor.run(tasks):
                store.put(key, spec.experiment, params_of[key], outcome["status"], outcome["result"], outcome["error"],
                          outcome["wall_s"])
                failed += outcome["status"] == "failed"
                done += outcome["status"] == "done"
                if bar:
                    bar.update(outcome["status"] == "failed")
        finally:
            if bar:
                bar.close()
    return SweepSummary(total=len(tasks) + skipped, skipped=skipped, done=done, failed=failed,
                        wall_s=time.perf_counter() - started)
