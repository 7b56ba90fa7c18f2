"""Sweeps under faults: a Dask worker SIGKILLed mid-sweep, the sweep process SIGKILLed mid-run,
and bit-for-bit reproducibility whatever the executor or the number of workers.

One real ``LocalCluster`` (2 single-threaded worker processes on loopback) serves the module;
its start-up is a couple of seconds. The trials are the registered experiments (Dask workers are
spawned processes: they can only run importable code). Results are compared *exactly*: a trial
is a deterministic function of its parameters (seeded generator, one BLAS thread everywhere), the
store serialises floats with ``repr`` (round-trip exact), so equal stores mean bit-for-bit equal
results. Only wall times are excluded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.experiments import (
    EXPERIMENTS,
    DaskExecutor,
    Experiment,
    SerialExecutor,
    SQLiteStore,
    load_spec,
    run_sweep,
)

# A phase diagram at n = 200 (the exact limit and the l1 LP: 5-15 ms a trial) ...
PHASE = {
    "experiment": "phase", "seeds": 5,
    "fixed": {"n": 200, "alpha": 1e-6},
    "grid": {"method": ["limit", "l1"], "delta": [0.3, 0.5, 0.7], "rho": [0.1, 0.3]},
}
PHASE_TOTAL = 2 * 3 * 2 * 5
# ... and the core engine: simulated flow, GD, the exact limit, and a trial that fails at run time.
SPARSE = {
    "experiment": "sparse", "seeds": [0, 7],
    "fixed": {"n": 40, "m": 16, "s": 2, "max_evals": 2000},
    "grid": {"depth": [2, 3], "alpha": [1e-2]},
    "cases": [{"method": "flow"}, {"method": "gd"}, {"method": "limit"}, {"method": "limit", "s": 17}],
}
SPARSE_TOTAL = 2 * 1 * 4 * 2
WALL_TIMES = ("wall_s",)  # the only result fields allowed to differ between two runs of a trial

# A second LocalCluster in the process finds the HTTP port 8787 taken and picks another: harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use")


def snapshot(path) -> dict:
    """key -> everything stored about a trial except wall times, the result as canonical JSON
    text: floats are written by ``repr`` (shortest round-trip digits, ``-0.0`` kept), so equal
    texts mean bit-identical numbers (NaN/inf are stored as null)."""
    with SQLiteStore(path, create=False) as store:
        assert store.integrity() == "ok"
        (rows, distinct), = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM trials")
        assert rows == distinct  # no duplicate (the primary key guarantees it; checked all the same)
        out = {}
        for trial in store.trials():
            result = None if trial.result is None else json.dumps(
                {k: v for k, v in trial.result.items() if k not in WALL_TIMES}, sort_keys=True)
            out[trial.key] = (trial.experiment, trial.params, trial.status, result, trial.error)
        return out


def test_snapshots_tell_apart_numbers_that_differ_in_the_last_bit_or_the_sign_of_zero(tmp_path):
    import numpy as np

    values = [0.1 + 0.2, np.nextafter(0.1 + 0.2, 1.0), 0.0, -0.0]
    for i, value in enumerate(values):
        with SQLiteStore(tmp_path / f"{i}.sqlite") as store:
            store.put("k", "phase", {"seed": 0}, "done", {"value": float(value)}, None, 0.0)
    texts = [snapshot(tmp_path / f"{i}.sqlite")["k"][3] for i in range(len(values))]
    assert len(set(texts)) == len(values)


def sweep_into(path, executor, specs=(PHASE, SPARSE)) -> dict:
    for spec in specs:
        run_sweep(load_spec(spec), store_path=path, executor=executor, progress=False)
    return snapshot(path)


@pytest.fixture(scope="module")
def dask2():
    executor = DaskExecutor(workers=2)
    assert len(executor.worker_pids()) == 2
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The serial executor's store for PHASE and SPARSE: the reference every other run must equal."""
    path = tmp_path_factory.mktemp("serial") / "serial.sqlite"
    reference = sweep_into(path, SerialExecutor())
    assert len(reference) == PHASE_TOTAL + SPARSE_TOTAL
    statuses = [entry[2] for entry in reference.values()]
    assert statuses.count("failed") == 4  # s = 17 > m = 16, crossed with the 2 x 1 grid and 2 seeds
    return reference


def test_results_are_bit_identical_serial_dask1_dask2(tmp_path, dask2, serial_reference):
    two = sweep_into(tmp_path / "dask2.sqlite", dask2)
    assert two == serial_reference
    one = DaskExecutor(workers=1)
    try:
        assert len(one.worker_pids()) == 1
        assert sweep_into(tmp_path / "dask1.sqlite", one) == serial_reference
    finally:
        one.close()
    # and the trials really ran in other processes
    assert os.getpid() not in dask2.worker_pids().values()


SPARSE_TOML = """
experiment = "sparse"
seeds = [0, 7]
[fixed]
n = 40
m = 16
s = 2
max_evals = 2000
[grid]
depth = [2, 3]
alpha = [1e-2]
[[cases]]
method = "flow"
[[cases]]
method = "gd"
[[cases]]
method = "limit"
[[cases]]
method = "limit"
s = 17
"""


def test_a_rerun_in_a_fresh_process_gives_bit_identical_numbers(tmp_path, serial_reference):
    # The same spec run again, by the CLI in another process (its own memory layout and BLAS
    # initialisation), into a new store: the same bits as the reference.
    spec_file = tmp_path / "sparse.toml"
    spec_file.write_text(SPARSE_TOML)
    assert load_spec(spec_file).trials() == load_spec(SPARSE).trials()
    # --batch-size 1: the reference ran one trial at a time (batched oracle limits agree to 1e-10, not in every bit)
    rerun = subprocess.run([*sweep_command(spec_file), "--store", str(tmp_path / "rerun.sqlite"), "--batch-size", "1"],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(tmp_path / "rerun.sqlite") == {k: v for k, v in serial_reference.items() if v[0] == "sparse"}


# --------------------------------------------------------------------------------------------
# BLAS threads inside sweep trials


@dataclass(frozen=True)
class ProbeTrial:
    seed: int = 0


def _blas_probe(trial: ProbeTrial) -> dict:
    """A trial that reports every BLAS pool's thread count as seen from inside the library's
    thread pinning (the code path of predict_limit and simulate)."""
    import scipy.linalg  # noqa: F401  (scipy's BLAS loaded, as in every real trial)
    from threadpoolctl import threadpool_info

    from implicit_bias._blas import pinned_blas

    pools = pinned_blas(lambda: {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})()
    return {"seed": trial.seed, "pools": pools, "pid": os.getpid()}


PROBE = Experiment("blas_probe", ProbeTrial, _blas_probe, "BLAS thread counts inside a trial")


def _install_probe() -> None:
    """In a worker: register the probe (the registry is per process)."""
    from implicit_bias.experiments import EXPERIMENTS

    EXPERIMENTS["blas_probe"] = PROBE


def _probe_pools(path) -> list[dict]:
    with SQLiteStore(path, create=False) as store:
        trials = store.trials("blas_probe")
    assert trials and all(trial.status == "done" for trial in trials), [t.error for t in trials]
    return [trial.result for trial in trials]


def test_every_blas_pool_runs_one_thread_inside_a_serial_trial(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_limits

    monkeypatch.setitem(EXPERIMENTS, "blas_probe", PROBE)
    with threadpool_limits(limits=2):  # this process would give 2 threads
        run_sweep(load_spec({"experiment": "blas_probe", "seeds": 2}), store_path=tmp_path / "p.sqlite",
                  executor=SerialExecutor(), progress=False)
    for record in _probe_pools(tmp_path / "p.sqlite"):
        assert record["pools"] and set(record["pools"].values()) == {1}, record


def test_every_blas_pool_runs_one_thread_inside_a_dask_trial(tmp_path, dask2, monkeypatch):
    import cloudpickle

    monkeypatch.setitem(EXPERIMENTS, "blas_probe", PROBE)
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # the workers cannot import this test module
    try:
        dask2.client.run(_install_probe)
        run_sweep(load_spec({"experiment": "blas_probe", "seeds": 6}), store_path=tmp_path / "p.sqlite",
                  executor=dask2, progress=False)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    records = _probe_pools(tmp_path / "p.sqlite")
    assert {record["pid"] for record in records} <= set(dask2.worker_pids().values())
    for record in records:
        assert record["pools"] and set(record["pools"].values()) == {1}, record


def test_joining_an_existing_cluster_by_address(tmp_path, dask2, serial_reference):
    address = dask2.cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")  # the embedded cluster listens on loopback only
    store = tmp_path / "joined.sqlite"
    joined = DaskExecutor(scheduler=address)
    try:
        got = sweep_into(store, joined, specs=(PHASE,))
    finally:
        joined.close()  # closes the client only: the cluster lives on
    assert got == {k: v for k, v in serial_reference.items() if v[0] == "phase"}
    assert len(dask2.worker_pids()) == 2
    # the CLI's --scheduler, resuming the same store with more seeds
    spec_file = tmp_path / "phase.toml"
    spec_file.write_text('experiment = "phase"\nseeds = 6\n[fixed]\nn = 200\nalpha = 1e-6\n'
                         '[grid]\nmethod = ["limit", "l1"]\ndelta = [0.3, 0.5, 0.7]\nrho = [0.1, 0.3]\n')
    result = CliRunner().invoke(main, ["sweep", str(spec_file), "--store", str(store), "--scheduler", address])
    assert result.exit_code == 0, result.output
    assert f"{PHASE_TOTAL // 5 * 6} trials: {PHASE_TOTAL} already stored, {PHASE_TOTAL // 5} done, 0 failed" in result.stdout


class KillOneWorker:
    """Passes a Dask executor's results through; after ``after`` of them, SIGKILLs the worker
    process that has the most trials in flight (by its PID), as an OOM killer or a lost node would."""

    name = "dask, one worker killed"

    def __init__(self, executor: DaskExecutor, after: int):
        self.executor, self.after = executor, after
        self.killed_pid = None
        self.in_flight: list[str] = []
        self.results_after_kill = 0

    def run(self, tasks):
        # every task submitted at once (not two per worker at a time): the kill must find the
        # victim with work queued, however fast the trials are
        for count, item in enumerate(self.executor.run(tasks, window=10**6), start=1):
            yield item  # run_sweep stores it before asking for the next one
            if count == self.after:
                self._kill()
            elif self.killed_pid is not None:
                self.results_after_kill += 1

    def _kill(self) -> None:
        processing = self.executor.client.processing()  # worker address -> keys of its running/queued tasks
        pids = self.executor.worker_pids()
        address = max(pids, key=lambda a: len(processing.get(a, ())))
        self.in_flight = [key.removeprefix("trial-") for key in processing.get(address, ())]
        self.killed_pid = pids[address]
        os.kill(self.killed_pid, signal.SIGKILL)


def test_a_worker_killed_mid_sweep_loses_no_trial(tmp_path, dask2, serial_reference):
    killer = KillOneWorker(dask2, after=5)
    summary = run_sweep(load_spec(PHASE), store_path=tmp_path / "killed.sqlite", executor=killer, progress=False)
    assert killer.killed_pid is not None and killer.in_flight, "the kill must hit a worker with work in flight"
    assert killer.results_after_kill >= PHASE_TOTAL // 2  # the kill came early: most trials were still to run
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (PHASE_TOTAL, PHASE_TOTAL, 0, 0)
    got = snapshot(tmp_path / "killed.sqlite")  # exactly once each (primary key + the count check inside)
    assert got == {k: v for k, v in serial_reference.items() if v[0] == "phase"}
    assert set(killer.in_flight) <= set(got)  # the trials lost with the worker were rerun elsewhere
    # the nanny replaces the dead worker (a fresh process): the cluster stays usable
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = dask2.worker_pids()
        if len(pids) == 2 and killer.killed_pid not in pids.values():
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the killed worker was not replaced: {pids}")


# --------------------------------------------------------------------------------------------
# the sweep process itself killed with SIGKILL, then rerun

SPEC_TOML = """
experiment = "phase"
seeds = {seeds}
store = "{store}"

[fixed]
n = 200
alpha = 1e-6

[grid]
method = ["limit", "l1"]
delta = [0.3, 0.5, 0.7]
rho = [0.1, 0.3]
"""


def stored_count(path) -> int:
    """Trials in a store another process is writing (read only; 0 until the table exists)."""
    if not os.path.exists(path):
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:  # created but the schema is not committed yet
        return 0


def sweep_command(spec_file, *extra) -> list[str]:
    return [sys.executable, "-m", "implicit_bias.cli", "sweep", str(spec_file), *extra]


def descendants(pid: int) -> list[int]:
    """PIDs of the processes below ``pid`` (from /proc), to check none outlives a killed sweep."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_mid_run_then_resume(tmp_path, seeds: int, extra: tuple = (), reference: dict | None = None) -> None:
    """Run the CLI sweep, SIGKILL it once some but not all trials are stored, rerun it, and
    compare the final store with an uninterrupted run of the same spec (``reference``, or an
    uninterrupted CLI run)."""
    total = PHASE_TOTAL // 5 * seeds
    spec_file = tmp_path / "spec.toml"
    store = tmp_path / "killed.sqlite"
    spec_file.write_text(SPEC_TOML.format(seeds=seeds, store=store))

    process = subprocess.Popen(sweep_command(spec_file, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    below = []
    try:
        deadline = time.monotonic() + 120
        while stored_count(store) < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the sweep stored nothing in 120 s"
            time.sleep(0.01)
        below = descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    partial = stored_count(store)
    assert 0 < partial < total, f"the kill should land mid-run: {partial}/{total} stored"
    # no process of the killed sweep (Dask nannies, workers) outlives it for long
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = [pid for pid in below if alive(pid)]
    for pid in orphans:  # clean up what we started before failing
        os.kill(pid, signal.SIGKILL)
    assert not orphans, f"processes outlived the killed sweep: {orphans}"

    with SQLiteStore(store, create=False) as opened:  # the store survives SIGKILL (WAL, one commit a trial)
        assert opened.integrity() == "ok"
    resumed = subprocess.run(sweep_command(spec_file, *extra), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    match = re.search(r"(\d+) trials: (\d+) already stored, (\d+) done, (\d+) failed", resumed.stdout)
    assert match, resumed.stdout
    assert int(match[1]) == total and int(match[2]) >= partial and int(match[2]) + int(match[3]) == total
    # stderr is a pipe, not a TTY: plain progress lines, the last one complete
    progress = [line for line in resumed.stderr.splitlines() if line.startswith("sweep: ")]
    assert progress and progress[-1].startswith(f"sweep: {match[3]}/{match[3]} done, 0 failed, "), resumed.stderr

    if reference is None:
        clean_spec = tmp_path / "clean.toml"
        clean_spec.write_text(SPEC_TOML.format(seeds=seeds, store=tmp_path / "clean.sqlite"))
        clean = subprocess.run(sweep_command(clean_spec), capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stderr
        reference = snapshot(tmp_path / "clean.sqlite")
    assert snapshot(store) == reference  # integrity ok, no duplicate, no lost trial, the same values


def test_a_sweep_killed_mid_run_resumes_to_the_uninterrupted_store(tmp_path, serial_reference):
    # The spec is PHASE (60 trials, 0.5-1 s of work after a 0.6 s start): the serial reference
    # is its uninterrupted run (the CLI runs run_sweep with the serial executor).
    same = tomllib.loads(SPEC_TOML.format(seeds=5, store="unused.sqlite"))
    assert load_spec(same).trials() == load_spec(PHASE).trials()
    # The CLI batches the oracle trials (--batch-size auto): its own uninterrupted run is the reference.
    kill_mid_run_then_resume(tmp_path, seeds=5)


@pytest.mark.slow
def test_a_dask_sweep_killed_mid_run_resumes_and_leaves_no_worker_behind(tmp_path):
    kill_mid_run_then_resume(tmp_path, seeds=25, extra=("--workers", "2"))
