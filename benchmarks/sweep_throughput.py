#!/usr/bin/env python
"""How many trials per second does a sweep run, and what do the store and the executors cost?

A phase-diagram sweep (``phase`` experiment, n = 200, method in {limit, l1}, a delta x rho grid,
a few seeds: 80 trials by default) is timed in one process, on one machine, in one run:

  (i)    the trial functions alone, in a loop under one BLAS limit;
  (ii)   baseline: ``execute_trial`` called in a plain loop (no store, no sweep);
  (iii)  ``run_sweep`` with the serial executor into a fresh SQLite store;
  (iv)   ``run_sweep`` with a Dask ``LocalCluster`` of K single-threaded worker processes on
         loopback (K = 1, 2 by default), as ``DaskExecutor`` makes it; cluster start-up and the
         first (cold) sweep are timed apart from the warm sweeps. A second variant unsets
         ``MALLOC_TRIM_THRESHOLD_``, which Dask's nanny exports to its workers by default
         (``distributed.nanny.pre-spawn-environ``) and which slows numpy-heavy trials;
  (v)    the store alone: ``SQLiteStore.put`` of every outcome into a fresh store, and the
         resume scan (expand the spec, hash every trial's key, read the stored keys) on a full
         store.

All paths are interleaved, repeat after repeat, so that drifts in the machine's load hit them
alike; walls are the best of ``--repeats`` runs (with their range), every ratio is against the
serial ``run_sweep`` measured in this run. Progress goes to stderr, the markdown tables to stdout (and ``--out``).

    python benchmarks/sweep_throughput.py
    python benchmarks/sweep_throughput.py --out benchmarks/results/sweep_throughput.md
    python benchmarks/sweep_throughput.py --n 100 --seeds 1 --workers 2 --repeats 1   # quick
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one BLAS thread per process, here and in the Dask workers

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dask
from threadpoolctl import threadpool_limits

from implicit_bias.experiments import (
    DaskExecutor, SerialExecutor, SQLiteStore, execute_trial, get_experiment, load_spec, run_sweep,
)
from implicit_bias.experiments.store import package_version, trial_key
from implicit_bias.experiments.sweep import pending_tasks

MALLOC_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
VARIANTS = {
    "default": contextlib.nullcontext,
    "no malloc trim": lambda: dask.config.set({MALLOC_KEY: None}),  # None unsets it for the workers
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    import distributed

    return (f"{cpu}; {os.cpu_count()} logical cores; load average {load} at the end; "
            f"Python {platform.python_version()}; dask {dask.__version__}, distributed {distributed.__version__}; "
            f"implicit-bias {package_version()}")


def phase_spec(n: int, seeds: int) -> dict:
    return {
        "experiment": "phase", "seeds": seeds,
        "fixed": {"n": n, "alpha": 1e-6},
        "grid": {"method": ["limit", "l1"], "delta": [0.2, 0.4, 0.6, 0.8], "rho": [0.1, 0.2, 0.3, 0.4, 0.5]},
    }


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def spread(values) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="comma-separated LocalCluster sizes ('' or 0: none)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Dask variants among {list(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    args = parser.parse_args()
    workers = [int(k) for k in args.workers.split(",") if k.strip() and int(k) > 0]
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose among {list(VARIANTS)}")

    spec = load_spec(phase_spec(args.n, args.seeds))
    trials = spec.trials()
    total = len(trials)
    experiment = get_experiment(spec.experiment)
    scratch = Path(tempfile.mkdtemp(prefix="sweep-throughput-"))
    counter = iter(range(10**6))

    def fresh_store() -> Path:
        return scratch / f"store-{next(counter)}.sqlite"

    def sweep_once(executor) -> tuple[float, float]:
        """Wall of one run_sweep into a fresh store, and the sum of the trials' own walls."""
        path = fresh_store()
        wall, summary = timed(lambda: run_sweep(spec, store_path=path, executor=executor, progress=False))
        assert summary.done == total, summary
        with SQLiteStore(path, create=False) as store:
            (in_trials,), = store.db.execute("SELECT SUM(wall_s) FROM trials")
        return wall, in_trials

    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log("warm-up (imports, first LP) ...")
    for params in trials[:4]:
        execute_trial(spec.experiment, params)

    # Dask clusters first (start-up timed), so that every path can then be interleaved
    clusters = []
    try:
        for variant in variants:
            for k in workers:
                log(f"LocalCluster, {k} worker(s), {variant}: start")
                with VARIANTS[variant]():
                    start_wall, executor = timed(lambda: DaskExecutor(workers=k))
                clusters.append({"variant": variant, "k": k, "start": start_wall, "executor": executor,
                                 "cold": sweep_once(executor)[0], "runs": []})

        # (i)-(iv), interleaved repeat after repeat: a burst of foreign load hits them alike
        raw_walls, loop_walls, serial_runs, outcomes = [], [], [], None
        per_method = {"limit": [], "l1": []}
        for r in range(args.repeats):
            log(f"repeat {r + 1}/{args.repeats}")
            with threadpool_limits(limits=1):
                raw_walls.append(timed(lambda: [experiment.run(experiment.make(p)) for p in trials])[0])
            started = time.perf_counter()
            results = []
            for params in trials:
                results.append(execute_trial(spec.experiment, params))
                per_method[params["method"]].append(results[-1]["wall_s"])
            loop_walls.append(time.perf_counter() - started)
            outcomes = outcomes or results
            serial_runs.append(sweep_once(SerialExecutor()))
            for cluster in clusters:
                cluster["runs"].append(sweep_once(cluster["executor"]))
    finally:
        for cluster in clusters:
            cluster["close"] = timed(cluster["executor"].close)[0]
    assert all(o["status"] == "done" for o in outcomes), [o["error"] for o in outcomes if o["error"]]

    # (v) the store alone
    version = package_version()
    keys = [trial_key(spec.experiment, params, version) for params in trials]
    put_walls, scan_walls, hash_walls = [], [], []
    for r in range(args.repeats):
        with SQLiteStore(fresh_store()) as store:
            started = time.perf_counter()
            for key, params, outcome in zip(keys, trials, outcomes):
                store.put(key, spec.experiment, params, outcome["status"], outcome["result"], outcome["error"],
                          outcome["wall_s"])
            put_walls.append(time.perf_counter() - started)
            hash_walls.append(timed(lambda: [trial_key(spec.experiment, p, version) for p in trials])[0])
            wall, (pending, skipped) = timed(lambda: pending_tasks(spec, store))
            assert not pending and skipped == total
            scan_walls.append(wall)

    # Best of R: foreign load only ever adds time, so the fastest run is the least disturbed one.
    best = min
    raw, loop = best(raw_walls), best(loop_walls)
    serial = best(w for w, _ in serial_runs)
    serial_in = best(t for _, t in serial_runs)
    dask_rows = []
    for c in clusters:
        walls = [w for w, _ in c["runs"]]
        dask_rows.append((c["variant"], c["k"], c["start"], c["cold"], best(walls), best(t for _, t in c["runs"]),
                          c["close"], walls))

    # ---------------------------------------------------------------------------------------------
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emit("# Sweep throughput")
    emit()
    emit(f"Machine: {machine()}; load average at the start {load_at_start}.")
    emit()
    emit(f"Sweep: `phase`, n = {args.n}, method in {{limit, l1}}, delta in {{0.2, 0.4, 0.6, 0.8}}, "
         f"rho in {{0.1, ..., 0.5}}, {args.seeds} seed(s): **{total} trials**. Walls are the best of "
         f"{args.repeats} interleaved runs (the range in brackets; foreign load on a shared machine only adds "
         f"time); each `run_sweep` writes a fresh SQLite store. "
         f"Command: `python benchmarks/sweep_throughput.py {' '.join(sys.argv[1:])}`.")
    emit()
    emit("## Trials per second")
    emit()
    emit("| executor | wall (s) | trials/s | vs serial `run_sweep` | sum of trial walls (s) | notes |")
    emit("|---|---:|---:|---:|---:|---|")
    emit(f"| trial functions in a loop, one BLAS limit around it | {raw:.3f} [{spread(raw_walls)}] | {total / raw:.1f} | "
         f"{serial / raw:.2f}x | | no `execute_trial` wrapper |")
    emit(f"| `execute_trial` in a loop (no store) | {loop:.3f} [{spread(loop_walls)}] | {total / loop:.1f} | "
         f"{serial / loop:.2f}x | | baseline of the sweep overhead |")
    emit(f"| **`run_sweep`, serial executor** | {serial:.3f} [{spread([w for w, _ in serial_runs])}] | "
         f"{total / serial:.1f} | 1.00x | {serial_in:.3f} | |")
    for variant, k, start_wall, cold, warm, warm_in, close_wall, walls in dask_rows:
        emit(f"| `run_sweep`, Dask LocalCluster, {k} worker(s), {variant} | {warm:.3f} [{spread(walls)}] | "
             f"{total / warm:.1f} | {serial / warm:.2f}x | {warm_in:.3f} | warm cluster; first sweep {cold:.3f} s |")
    emit()
    emit("*Sum of trial walls*: the time the trials themselves took, measured inside `execute_trial` "
         "(in the worker for Dask). Above the serial sum, the same trials computed slower there.")
    emit()
    emit("| cluster | start-up (s) | close (s) | start-up in serial trials |")
    emit("|---|---:|---:|---:|")
    for variant, k, start_wall, cold, warm, warm_in, close_wall, walls in dask_rows:
        emit(f"| LocalCluster, {k} worker(s), {variant} | {start_wall:.2f} | {close_wall:.2f} | "
             f"{start_wall / (serial / total):.0f} |")
    emit()
    emit("## Overhead per trial")
    emit()
    trial_ms = 1e3 * loop / total
    emit(f"Trial compute (the best `execute_trial` loop over {total} trials): {trial_ms:.2f} ms a trial "
         f"(limit {1e3 * statistics.median(per_method['limit']):.2f} ms, l1 {1e3 * statistics.median(per_method['l1']):.2f} ms, "
         f"medians of the trials' own walls).")
    emit()
    emit("| item | per trial (ms) | share of a trial's compute |")
    emit("|---|---:|---:|")
    rows = [
        ("`SQLiteStore.put` (one transaction, WAL, synchronous=NORMAL)", best(put_walls) / total),
        ("`trial_key` (sha256 of the parameters)", best(hash_walls) / total),
        ("resume scan `pending_tasks` on a full store (expand, hash, read keys)", best(scan_walls) / total),
        ("`execute_trial` wrapper (a `threadpool_limits` per trial, the registry, try/except)", (loop - raw) / total),
        ("`run_sweep` serial minus the `execute_trial` loop (store, keys, progress)", (serial - loop) / total),
    ]
    for variant, k, start_wall, cold, warm, warm_in, close_wall, walls in dask_rows:
        # k workers share the compute: what is left of the wall beyond (their compute) / k is overhead
        rows.append((f"Dask x{k} ({variant}): wall minus (trial walls in the workers) / {k} "
                     f"(scheduling, transfer, storing)", (warm - warm_in / k) / total))
        rows.append((f"Dask x{k} ({variant}): trial walls in the workers minus serial trial walls (slower compute)",
                     (warm_in - serial_in) / total))
    for label, seconds in rows:
        emit(f"| {label} | {1e3 * seconds:.3f} | {100 * seconds / (loop / total):.1f}% |")
    emit()
    emit(f"Cores: {os.cpu_count()}. The workers, the scheduler and the driving process share them: "
         f"parallel sweeps pay off for trials long compared with the per-task overhead, and on "
         f"machines with more cores than workers.")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
