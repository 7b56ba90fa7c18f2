"""Attacks on the sweep store: stale results, failed trials, concurrent sweeps, read-only files,
a full disk, newer and older schemas, corrupt files, network filesystems.

Every attack goes through the real CLI (click's runner in this process, or a subprocess where
the attack needs another process or other OS limits) on a real SQLite file. After each, the
store is reopened by raw ``sqlite3`` (not our code) and its rows are counted and compared with
what was there before: the contract is exit 2, one line on stderr, and no stored row lost.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.experiments import (
    EXPERIMENTS,
    Experiment,
    SQLiteStore,
    StoreError,
    load_spec,
    run_sweep,
)
from implicit_bias.experiments import claims as claims_module
from implicit_bias.experiments import store as store_module
from implicit_bias.experiments.store import StoreWarning, package_version
from implicit_bias.experiments.sweep import pending_tasks

SPEC = """
experiment = "phase"
seeds = {seeds}
store = "{store}"

[fixed]
n = 40
alpha = 1e-6

[grid]
method = ["limit", "l1"]
delta = [0.4, 0.6]
rho = [0.1, 0.3]
"""
PER_SEED = 2 * 2 * 2
BATCH = 3  # --batch-size of the concurrent CLI sweeps


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The CLI's error contract: exit 2, exactly one line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("implicit-bias: error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def raw_rows(path) -> list[tuple]:
    """Every stored row, read by plain sqlite3 (read only), ordered by key."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT key, status, result, error FROM trials ORDER BY key").fetchall()
    finally:
        db.close()


def filled_store(tmp_path, seeds=2, name="store.sqlite"):
    spec_file = tmp_path / f"{name}.toml"
    spec_file.write_text(SPEC.format(seeds=seeds, store=tmp_path / name))
    result = invoke("sweep", spec_file)
    assert result.exit_code == 0, result.output
    return spec_file, tmp_path / name


# --------------------------------------------------------------------------------------------
# stale results: the numerics version is part of every key


def test_a_bumped_numerics_version_reruns_every_trial_and_keeps_the_old_rows(tmp_path, monkeypatch):
    spec_file, store = filled_store(tmp_path)
    old = raw_rows(store)
    assert len(old) == 2 * PER_SEED
    again = invoke("sweep", spec_file)
    assert f"{2 * PER_SEED} trials: {2 * PER_SEED} already stored, 0 done" in again.stdout
    phase = EXPERIMENTS["phase"]
    monkeypatch.setitem(EXPERIMENTS, "phase", dataclasses.replace(phase, numerics=phase.numerics + 1))
    status = invoke("status", store, "--spec", spec_file)
    assert f"{2 * PER_SEED} pending" in status.stdout
    assert f"{2 * PER_SEED} trials were computed by another package or numerics version" in status.stdout
    rerun = invoke("sweep", spec_file)
    assert f"{2 * PER_SEED} trials: 0 already stored, {2 * PER_SEED} done" in rerun.stdout, rerun.output
    rows = raw_rows(store)
    assert len(rows) == 4 * PER_SEED and set(old) <= set(rows)  # the old rows are kept, not reused
    with SQLiteStore(store, readonly=True) as opened:
        assert {(n, c) for _, _, n, c in opened.versions()} == {(phase.numerics, 2 * PER_SEED),
                                                                (phase.numerics + 1, 2 * PER_SEED)}


# --------------------------------------------------------------------------------------------
# failed trials: shown with their messages, rerun by --retry-failed


@dataclass(frozen=True)
class Flaky:
    seed: int = 0


FLAKY_STATE = {"broken": True, "runs": 0}


def _flaky(trial: Flaky) -> dict:
    FLAKY_STATE["runs"] += 1
    if FLAKY_STATE["broken"] and trial.seed % 2:
        raise RuntimeError(f"the disk of seed {trial.seed} is on fire\nsecond line of the message")
    return {"seed": trial.seed, "status": "converged", "value": trial.seed / 3}


def test_retry_failed_reruns_only_the_failed_trials_and_replaces_their_rows(tmp_path, monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "flaky", Experiment("flaky", Flaky, _flaky, "fails on odd seeds while broken"))
    monkeypatch.setitem(FLAKY_STATE, "broken", True)
    spec_file = tmp_path / "flaky.toml"
    spec_file.write_text(f'experiment = "flaky"\nseeds = 6\nstore = "{tmp_path / "f.sqlite"}"\n')
    assert "6 trials: 0 already stored, 3 done, 3 failed" in invoke("sweep", spec_file).stdout
    status = invoke("status", tmp_path / "f.sqlite")
    lines = status.stdout.splitlines()
    assert "done trials by numerical status: 3 converged" in lines
    # failures grouped by the first line of their message, apart from the numerical statuses
    assert any(re.fullmatch(r"\s+1 x RuntimeError: the disk of seed [135] is on fire", line) for line in lines)
    assert "second line" not in status.stdout
    FLAKY_STATE["broken"] = False
    FLAKY_STATE["runs"] = 0
    assert "6 trials: 6 already stored, 0 done, 0 failed" in invoke("sweep", spec_file).stdout
    assert FLAKY_STATE["runs"] == 0  # without the flag, failed trials are stored results
    retried = invoke("sweep", spec_file, "--retry-failed")
    assert "6 trials: 3 already stored, 3 done, 0 failed" in retried.stdout, retried.output
    assert FLAKY_STATE["runs"] == 3  # exactly the failed ones
    db = sqlite3.connect(tmp_path / "f.sqlite")
    rows = db.execute("SELECT json_extract(params, '$.seed'), status, error, attempts FROM trials").fetchall()
    assert sorted(rows) == [(s, "done", None, 1 + s % 2) for s in range(6)]  # replaced in place, no duplicate
    assert FLAKY_STATE["runs"] == 3 and "0 failed" in invoke("status", tmp_path / "f.sqlite").stdout


def test_a_record_status_outside_the_vocabulary_fails_the_trial(monkeypatch):
    from implicit_bias.experiments import execute_trial

    off = Experiment("off", Flaky, lambda t: {"status": "max_iter"}, "says a word the vocabulary lacks")
    monkeypatch.setitem(EXPERIMENTS, "off", off)
    outcome = execute_trial("off", {"seed": 0})
    assert outcome["status"] == "failed" and "status 'max_iter', not one of" in outcome["error"]


# --------------------------------------------------------------------------------------------
# two sweep processes on one store


WRAPPER = textwrap.dedent("""
    import dataclasses, os, sys, time
    from implicit_bias.experiments import registry
    from implicit_bias.experiments.phase import phase_trial

    log, gate, parties = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def logged(trial):  # every computation leaves a line, written before it starts
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {trial.method} {trial.delta} {trial.rho} {trial.seed}\\n")
        time.sleep(0.005)
        return phase_trial(trial)

    def logged_batch(trials, backend="numpy"):  # a batch logs each of its trials before it starts
        with open(log, "a") as out:
            out.writelines(f"{os.getpid()} {t.method} {t.delta} {t.rho} {t.seed}\\n" for t in trials)
        time.sleep(0.005 * len(trials))
        return registry.phase_trials(trials, backend)

    registry.EXPERIMENTS["phase"] = dataclasses.replace(registry.EXPERIMENTS["phase"], run=logged,
                                                        run_batch=logged_batch)
    open(os.path.join(gate, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(gate)) < parties and time.monotonic() < deadline:  # start together
        time.sleep(0.005)
    from implicit_bias.cli import main
    main(sys.argv[4:], prog_name="implicit-bias")
""")


def concurrent_sweeps(tmp_path, parties: int, seeds: int, kill_one: bool = False) -> dict:
    """Start ``parties`` CLI sweeps of one spec on one store at once (optionally SIGKILL one
    mid-run, then rerun), and count the computations each trial got."""
    spec_file = tmp_path / "spec.toml"
    store, log, gate = tmp_path / "shared.sqlite", tmp_path / "computations.log", tmp_path / "gate"
    gate.mkdir()
    spec_file.write_text(SPEC.format(seeds=seeds, store=store))
    # batches of BATCH trials (the CLI's default, 64, would let the first sweep claim every trial)
    command = [sys.executable, "-c", WRAPPER, str(log), str(gate), str(parties), "sweep", str(spec_file),
               "--batch-size", str(BATCH)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(parties)]
    if kill_one:
        while not log.exists() or len(log.read_text().splitlines()) < PER_SEED:
            assert processes[0].poll() is None, processes[0].communicate()
            time.sleep(0.005)
        os.kill(processes[0].pid, signal.SIGKILL)
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        if not (kill_one and process is processes[0]):
            assert process.returncode == 0, err
    if kill_one:
        resumed = subprocess.run(command[:3] + [str(log), str(tmp_path), "0"] + command[6:],
                                 capture_output=True, text=True, timeout=300, check=False)
        assert resumed.returncode == 0, resumed.stderr
    lines = log.read_text().splitlines()
    per_trial: dict[str, int] = {}
    for line in lines:
        trial = line.split(" ", 1)[1]
        per_trial[trial] = per_trial.get(trial, 0) + 1
    pids = {line.split(" ", 1)[0] for line in lines}
    with SQLiteStore(store, readonly=True) as opened:
        integrity, stored, claims = opened.integrity(), len(opened.keys()), opened.live_claims()
    twice = sum(count - 1 for count in per_trial.values())
    print(f"attack: {parties} sweeps{' (one killed)' if kill_one else ''}: {len(per_trial)}/{PER_SEED * seeds} "
          f"computed, {stored} stored, {twice} computed twice, integrity {integrity}")  # shown with -s
    return {"total": PER_SEED * seeds, "stored": stored, "integrity": integrity, "per_trial": per_trial,
            "workers": len(pids), "claims_left": claims, "outputs": [out for out, _ in outputs]}


def test_two_sweep_processes_share_a_store_and_compute_no_trial_twice(tmp_path):
    got = concurrent_sweeps(tmp_path, parties=2, seeds=8)
    assert got["integrity"] == "ok" and got["stored"] == got["total"]
    assert len(got["per_trial"]) == got["total"]  # every trial computed ...
    assert max(got["per_trial"].values()) == 1  # ... exactly once
    assert got["workers"] == 2  # and both processes did part of the work
    assert not got["claims_left"]
    summaries = [re.search(r"(\d+) trials: (\d+) already stored, (\d+) done", out) for out in got["outputs"]]
    assert sum(int(match[3]) for match in summaries) == got["total"]


@pytest.mark.slow
def test_three_sweeps_one_killed_lose_nothing_beyond_its_trial_in_flight(tmp_path):
    got = concurrent_sweeps(tmp_path, parties=3, seeds=12, kill_one=True)
    assert got["integrity"] == "ok" and got["stored"] == got["total"] and len(got["per_trial"]) == got["total"]
    assert sum(count - 1 for count in got["per_trial"].values()) <= BATCH  # the killed sweep had one batch in flight


def test_claims_of_a_dead_sweep_are_taken_over_and_live_ones_are_left(tmp_path):
    spec_file, store = filled_store(tmp_path, seeds=1)
    spec = load_spec(spec_file, ["seeds=3"])
    with SQLiteStore(store) as opened:
        tasks, _ = pending_tasks(spec, opened)
        keys = [key for key, _, _ in tasks]
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
        dead_owner = f"{os.uname().nodename}:{int(dead.stdout)}:1:dead"
        live_owner = claims_module.new_owner()
        opened.claim(keys[:4], dead_owner)  # a sweep that was SIGKILLed
        opened.claim(keys[4:6], live_owner)  # a sweep still running (this process, another sweep id)
    summary = run_sweep(spec, store_path=store, progress=False)
    assert (summary.done, summary.busy) == (len(keys) - 2, 2)
    with SQLiteStore(store) as opened:
        assert set(keys) - opened.keys() == set(keys[4:6]) and list(opened.live_claims().values()) == [2]
        opened.release(live_owner)
    assert run_sweep(spec, store_path=store, progress=False).done == 2


def test_claim_owners_are_alive_by_process_on_this_host_and_by_lease_elsewhere():
    import socket

    now = 1000.0
    mine = claims_module.new_owner()
    host, pid, start, nonce = mine.rsplit(":", 3)
    assert int(pid) == os.getpid() and claims_module.owner_pid(mine) == os.getpid()
    assert claims_module.owner_alive(mine, expires_at=0.0, now=now)  # alive: the lease does not matter
    if start:  # with /proc: the same pid with another start time is a recycled pid, not the owner
        assert not claims_module.owner_alive(f"{host}:{pid}:{int(start) + 1}:{nonce}", expires_at=now + 60, now=now)
    elsewhere = f"not-{socket.gethostname()}:{pid}:{start}:{nonce}"
    assert claims_module.owner_alive(elsewhere, expires_at=now + 1, now=now)  # another host: its lease
    assert not claims_module.owner_alive(elsewhere, expires_at=now - 1, now=now)
    assert not claims_module.owner_alive("garbage", expires_at=now - 1, now=now)


# --------------------------------------------------------------------------------------------
# read-only, full disk, newer/older schema, corruption: exit 2, one line, rows kept


def _without_write_permission() -> list[str]:
    """A command prefix under which this user cannot write files it may not write (root's
    CAP_DAC_OVERRIDE dropped by setpriv; nothing needed for another user)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("root without setpriv: a read-only file stays writable for this user")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def cli(*args, prefix=(), **kwargs):
    return subprocess.run([*prefix, sys.executable, "-m", "implicit_bias.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, check=False, **kwargs)


def one_line(process) -> str:
    assert process.returncode == 2, (process.returncode, process.stdout, process.stderr)
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("implicit-bias: error: ") and "Traceback" not in process.stderr
    return lines[0]


@pytest.mark.parametrize("what", [pytest.param("file", marks=pytest.mark.slow), "folder"])
def test_a_read_only_store_refuses_to_sweep_and_still_reads(tmp_path, what):
    prefix = _without_write_permission()
    (tmp_path / what).mkdir()
    spec_file, store = filled_store(tmp_path / what)
    before, data = raw_rows(store), store.read_bytes()
    store.chmod(0o444)
    if what == "folder":  # an archived result: nothing in its folder can be created either
        store.parent.chmod(0o555)
    try:
        grown = spec_file.with_name("grown.toml")
        grown.write_text(spec_file.read_text().replace("seeds = 2", "seeds = 3"))
        assert "is read-only" in one_line(cli("sweep", grown, prefix=prefix))
        status = cli("status", store, prefix=prefix)  # reading a read-only store is fine
        assert status.returncode == 0 and f"{len(before)} done, 0 failed; integrity ok" in status.stdout
        out = tmp_path / "export.csv"
        exported = cli("export", store, "--out", out, prefix=prefix)
        assert exported.returncode == 0, exported.stderr
        assert len(out.read_text().splitlines()) == len(before) + 1
    finally:
        store.parent.chmod(0o755)
        store.chmod(0o644)
    assert raw_rows(store) == before and store.read_bytes() == data


def _sqlite_with_max_pages(pages: int):
    real = sqlite3.connect

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, on the real file
        return db

    return connect


def test_a_full_disk_mid_sweep_stops_with_one_line_and_loses_no_stored_trial(tmp_path, monkeypatch):
    spec_file, store = filled_store(tmp_path, seeds=1)
    before = raw_rows(store)
    pages = sqlite3.connect(store).execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setattr("implicit_bias.experiments.store.sqlite3.connect", _sqlite_with_max_pages(pages + 1))
    message = one_line_error(invoke("sweep", spec_file, "--set", "seeds=12"))
    assert "the disk is full" in message and "database or disk is full" in message
    monkeypatch.undo()
    rows = raw_rows(store)
    assert set(before) <= set(rows) and len(rows) < 12 * PER_SEED  # kept what it had, stopped at the limit
    resumed = invoke("sweep", spec_file, "--set", "seeds=12")
    assert resumed.exit_code == 0 and f"{len(rows)} already stored" in resumed.stdout
    with SQLiteStore(store, readonly=True) as opened:
        assert opened.integrity() == "ok" and len(opened.keys()) == 12 * PER_SEED and not opened.live_claims()


@pytest.mark.slow
def test_a_file_size_limit_mid_sweep_stops_with_one_line(tmp_path):
    # The OS refuses to grow any file past 160 KiB (RLIMIT_FSIZE; SIGXFSZ ignored so that write
    # fails with EFBIG, as on a full disk): the WAL hits it within the first hundred trials.
    spec_file, store = filled_store(tmp_path, seeds=1)
    before = raw_rows(store)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (160 * 1024, 160 * 1024))

    message = one_line(cli("sweep", spec_file, "--set", "seeds=200", preexec_fn=limit))
    assert "the disk is full or failing" in message
    rows = raw_rows(store)
    assert set(before) <= set(rows)
    with SQLiteStore(store) as opened:
        assert opened.integrity() == "ok"


def _old_store(path, rows: int) -> None:
    """A store as schema 1 wrote it (the DDL of that version)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("CREATE TABLE trials (key TEXT PRIMARY KEY, experiment TEXT NOT NULL, params TEXT NOT NULL,"
               " status TEXT NOT NULL, result TEXT, error TEXT, version TEXT, wall_s REAL, finished_at REAL)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "implicit-bias-store"), ("schema", "1")])
    db.executemany("INSERT INTO trials VALUES (?, 'phase', ?, 'done', ?, NULL, '0.1', 0.5, 0)",
                   [(f"old{i}", f'{{"seed": {i}}}', f'{{"status": "converged", "x": {i}}}') for i in range(rows)])
    db.commit()
    db.close()


def test_a_schema_1_store_is_read_untouched_and_upgraded_by_a_sweep(tmp_path):
    store = tmp_path / "old.sqlite"
    _old_store(store, rows=5)
    data, before = store.read_bytes(), raw_rows(store)
    status = invoke("status", store)
    assert status.exit_code == 0 and "5 done, 0 failed; integrity ok" in status.stdout
    assert "5 trials were computed by another package or numerics version" in status.stdout
    assert store.read_bytes() == data  # status never writes
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.format(seeds=1, store=store))
    assert f"{PER_SEED} trials: 0 already stored, {PER_SEED} done" in invoke("sweep", spec_file).stdout
    rows = raw_rows(store)
    assert set(before) <= set(rows) and len(rows) == 5 + PER_SEED
    with SQLiteStore(store) as opened:
        assert opened.meta()["schema"] == "2" and opened.integrity() == "ok"


def _newer_schema(path):
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.commit()
    db.close()


def _header_noise(path):
    with open(path, "r+b") as handle:
        handle.write(random.Random(0).randbytes(100))


def _truncated(path):
    os.truncate(path, path.stat().st_size // 2)


def _page_noise(path):
    with open(path, "r+b") as handle:
        handle.seek(4096 * 3)
        handle.write(random.Random(1).randbytes(4096))


DAMAGE = {
    "newer schema": (_newer_schema, "written by a newer implicit-bias"),
    "random header": (_header_noise, "not an implicit-bias store (SQLite says: file is not a database)"),
    "truncated": (_truncated, "is corrupt"),
    "random page": (_page_noise, "is corrupt"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_gets_one_line_from_every_command_and_is_not_touched(tmp_path, kind):
    damage, expected = DAMAGE[kind]
    spec_file, store = filled_store(tmp_path, seeds=10)
    original = store.read_bytes()
    damage(store)
    damaged = store.read_bytes()
    for args in (("sweep", spec_file), ("status", store), ("export", store, "--out", tmp_path / "x.csv")):
        assert expected in one_line_error(invoke(*args)), args
    assert store.read_bytes() == damaged and not (tmp_path / "x.csv").exists()
    wal = tmp_path / "store.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # nothing was written to it either
    if kind in ("newer schema", "random header"):  # undo the damage: every row is still there
        if kind == "random header":
            store.write_bytes(original[:100] + damaged[100:])
        else:
            _newer_schema(store)
            sqlite3.connect(store).execute("UPDATE meta SET value = '2' WHERE key = 'schema'").connection.commit()
        with SQLiteStore(store, readonly=True) as opened:
            assert opened.integrity() == "ok" and len(opened.keys()) == 10 * PER_SEED


# --------------------------------------------------------------------------------------------
# network filesystems


MOUNTS = """/dev/vda / ext4 rw,relatime 0 0
server:/export {root} nfs4 rw,relatime,vers=4.2 0 0
//nas/share {root}/smb cifs rw 0 0
tmpfs {root}/smb/local tmpfs rw 0 0
"""


def test_network_filesystems_are_recognised_from_the_mount_table(tmp_path):
    mounts = MOUNTS.format(root=tmp_path)
    assert claims_module.filesystem_type(tmp_path / "a.sqlite", mounts) == "nfs4"
    assert claims_module.filesystem_type(tmp_path / "smb" / "x" / "a.sqlite", mounts) == "cifs"
    assert claims_module.filesystem_type(tmp_path / "smb" / "local" / "a.sqlite", mounts) == "tmpfs"
    assert claims_module.filesystem_type("/var/a.sqlite", mounts) == "ext4"
    assert [claims_module.is_network_filesystem(k) for k in ("nfs4", "cifs", "fuse.sshfs", "tmpfs", "ext4", None)] == [
        True, True, True, False, False, False]


def test_a_store_on_a_network_filesystem_warns_once(tmp_path, monkeypatch):
    table = tmp_path / "mounts"
    table.write_text(MOUNTS.format(root=tmp_path))
    monkeypatch.setattr(claims_module, "MOUNTS", str(table))
    with pytest.warns(StoreWarning, match=r"network filesystem \(nfs4\).*local disk"):
        SQLiteStore(tmp_path / "remote.sqlite").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SQLiteStore(tmp_path / "remote.sqlite").close()  # once per store
        SQLiteStore(tmp_path / "smb" / "local" / "here.sqlite").close()  # local: silent
    monkeypatch.undo()
    assert claims_module.filesystem_type(tmp_path) not in claims_module.NETWORK_FILESYSTEMS  # this test's disk


def test_the_cli_gives_the_network_filesystem_warning_as_one_line(tmp_path, monkeypatch):
    table = tmp_path / "mounts"
    table.write_text(MOUNTS.format(root=tmp_path))
    monkeypatch.setattr(claims_module, "MOUNTS", str(table))
    store = tmp_path / "remote.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # made outside the CLI
        SQLiteStore(store).close()
    monkeypatch.setattr(store_module, "_WARNED", set())  # warned once per store and process: again here
    result = CliRunner().invoke(main, ["status", str(store)])
    lines = [line for line in result.stderr.splitlines() if "network filesystem" in line]
    assert result.exit_code == 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("implicit-bias: warning: ") and "local disk" in lines[0]


def test_status_json_reports_versions_and_environment(tmp_path):
    import json

    import numpy
    import scipy

    _, store = filled_store(tmp_path, seeds=1)
    report = json.loads(invoke("status", store, "--json").stdout)
    assert (report["done"], report["failed"], report["stale"], report["integrity"]) == (PER_SEED, 0, 0, "ok")
    (env,) = report["environments"]
    assert (env["numpy"], env["scipy"], env["count"]) == (numpy.__version__, scipy.__version__, PER_SEED)
    assert env["blas"] and all(text.split()[0] in ("openblas", "mkl", "blis", "accelerate") for text in env["blas"])
    assert set(report["result_statuses"]) <= set(__import__("implicit_bias.status").status.STATUSES)
    with SQLiteStore(store, readonly=True) as opened:
        assert opened.meta()["created_by"] == package_version()
    with pytest.raises(StoreError, match="no store at"):
        SQLiteStore(tmp_path / "missing.sqlite", readonly=True)
