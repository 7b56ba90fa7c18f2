"""The experiments framework without faults: registry, TOML specs, the store, resume, export, progress.

Everything here runs in this process with the serial executor (the Dask executor and the kill
tests are in ``test_sweep_faults.py``). Trials are tiny (n = 40, the l1 LP or the exact limit,
a few milliseconds each) so the whole module takes a few seconds.
"""

from __future__ import annotations

import io
import json
import random
import re
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.errors import InvalidParameterError
from implicit_bias.experiments import (
    EXPERIMENTS, SerialExecutor, SQLiteStore, StoreError, execute_trial, get_experiment, load_spec, run_sweep,
    trial_key,
)
from implicit_bias.experiments.sweep import Progress, pending_tasks

SMALL_PHASE = """
experiment = "phase"
seeds = 2
store = "{store}"

[fixed]
n = 40
alpha = 1e-6

[grid]
method = ["limit", "l1"]
delta = [0.4, 0.6]
rho = [0.1, 0.3]
"""
SMALL_TOTAL = 2 * 2 * 2 * 2

PROGRESS_LINE = re.compile(r"^sweep: (\d+)/(\d+) done, (\d+) failed, [0-9.]+ trials/s, ETA (\d+|inf)s$")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_spec(tmp_path, text: str, name: str = "spec.toml", store: str = "store.sqlite"):
    path = tmp_path / name
    path.write_text(text.replace("{store}", str(tmp_path / store)))
    return path


def one_line_error(result) -> str:
    """The CLI's error contract: exit 2, exactly one line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("implicit-bias: error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def snapshot(path) -> dict:
    """key -> everything stored about a trial except wall times."""
    with SQLiteStore(path, create=False) as store:
        return {t.key: (t.experiment, t.params, t.status, t.result, t.error) for t in store.trials()}


# --------------------------------------------------------------------------------------------
# registry and parameter schemas


def test_registry_has_sparse_and_phase_with_dataclass_schemas():
    assert set(EXPERIMENTS) >= {"sparse", "phase"}
    phase = get_experiment("phase")
    assert phase.defaults()["method"] == "limit"
    trial = phase.make({"n": 50, "threshold": 1, "method": "l1"})  # an int is accepted for a float ...
    assert trial.threshold == 1.0 and isinstance(trial.threshold, float)  # ... and stored as a float
    with pytest.raises(InvalidParameterError, match="'n' parameter must be an int"):
        phase.make({"n": 50.0})
    with pytest.raises(InvalidParameterError, match="'signed' parameter must be a bool"):
        phase.make({"signed": 1})
    with pytest.raises(InvalidParameterError, match="'n' parameter must be an int"):
        phase.make({"n": True})  # a bool is not an int here
    with pytest.raises(InvalidParameterError, match="'method' parameter must be one of"):
        phase.make({"method": "newton"})
    with pytest.raises(InvalidParameterError, match="no parameter 'nn'"):
        phase.make({"nn": 3})
    sparse = get_experiment("sparse")
    assert sparse.make({"step": None}).step is None  # Optional[float]
    assert sparse.make({"step": 2}).step == 2.0
    with pytest.raises(InvalidParameterError, match="'step' parameter must be a float"):
        sparse.make({"step": "big"})


def test_experiments_command_lists_parameters():
    result = invoke("experiments")
    assert result.exit_code == 0, result.output
    for name in ("sparse:", "phase:", "    delta = 0.5", "    alpha = 0.001", "    seed = 0"):
        assert name in result.output


def test_execute_trial_never_raises():
    bad = execute_trial("nope", {})
    assert bad["status"] == "failed" and "unknown experiment 'nope'" in bad["error"]
    bad = execute_trial("phase", {"n": "x"})
    assert bad["status"] == "failed" and "'n'" in bad["error"]
    good = execute_trial("phase", {"n": 40, "method": "l1", "seed": 3})
    assert good["status"] == "done" and good["error"] is None and good["result"]["seed"] == 3


def test_trial_key_depends_on_every_parameter_and_version():
    params = {"n": 40, "seed": 0, "alpha": 1e-6}
    key = trial_key("phase", params, "1.0")
    assert key == trial_key("phase", dict(reversed(params.items())), "1.0")  # order does not matter
    assert len({key, trial_key("phase", {**params, "seed": 1}, "1.0"), trial_key("sparse", params, "1.0"),
                trial_key("phase", {**params, "alpha": 1.0000000000000002e-6}, "1.0"),
                trial_key("phase", params, "1.1")}) == 5


# --------------------------------------------------------------------------------------------
# sweep specs


def test_spec_expands_fixed_grid_cases_and_seeds_in_a_deterministic_order():
    spec = load_spec({
        "experiment": "phase", "seeds": [3, 1],
        "fixed": {"n": 30, "method": "l1"},
        "grid": {"delta": [0.3, 0.6], "rho": [0.2]},
        "cases": [{"depth": 2}, {"depth": 3, "method": "limit"}],
    })
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 1 * 2
    assert trials == spec.trials()
    assert [(t["depth"], t["method"], t["delta"], t["seed"]) for t in trials] == [
        (2, "l1", 0.3, 3), (2, "l1", 0.3, 1), (2, "l1", 0.6, 3), (2, "l1", 0.6, 1),
        (3, "limit", 0.3, 3), (3, "limit", 0.3, 1), (3, "limit", 0.6, 3), (3, "limit", 0.6, 1),
    ]
    assert all(t["n"] == 30 and t["rho"] == 0.2 and t["alpha"] == 1e-6 for t in trials)  # defaults filled in
    assert load_spec({"experiment": "phase", "seeds": 3}).seeds == (0, 1, 2)


BAD_SPECS = [
    # (what, spec text, the field the message must name)
    ("unknown parameter", 'experiment = "phase"\n[fixed]\nnn = 3\n', "fixed.nn"),
    ("unknown parameter in grid", 'experiment = "phase"\n[grid]\nalfa = [1e-3]\n', "grid.alfa"),
    ("unknown parameter in a case", 'experiment = "phase"\n[[cases]]\nsteps = 3\n', "cases[0].steps"),
    ("seed is not a parameter", 'experiment = "phase"\n[fixed]\nseed = 3\n', "fixed.seed"),
    ("wrong type", 'experiment = "phase"\n[fixed]\nn = "forty"\n', "'n'"),
    ("wrong type in grid", 'experiment = "phase"\n[grid]\nn = [40, 50.5]\n', "'n'"),
    ("wrong bool", 'experiment = "sparse"\n[fixed]\nsigned = "yes"\n', "'signed'"),
    ("out of range", 'experiment = "phase"\n[grid]\ndelta = [0.5, 1.5]\n', "'delta'"),
    ("empty grid", 'experiment = "phase"\n[grid]\ndelta = []\n', "grid.delta"),
    ("grid value not a list", 'experiment = "phase"\n[grid]\ndelta = 0.5\n', "grid.delta"),
    ("unknown method", 'experiment = "phase"\n[fixed]\nmethod = "newton"\n', "'method'"),
    ("unknown method in grid", 'experiment = "sparse"\n[grid]\nmethod = ["flow", "adam"]\n', "'method'"),
    ("unknown experiment", 'experiment = "phase_diagram"\n', "experiment"),
    ("experiment not a string", 'experiment = ["phase"]\n', "experiment"),
    ("missing experiment", "seeds = 2\n", "experiment"),
    ("unknown top-level field", 'experiment = "phase"\nseed = 3\n', "'seed'"),
    ("zero seeds", 'experiment = "phase"\nseeds = 0\n', "seeds"),
    ("negative seed count", 'experiment = "phase"\nseeds = -2\n', "seeds"),
    ("empty seed list", 'experiment = "phase"\nseeds = []\n', "seeds"),
    ("negative seed", 'experiment = "phase"\nseeds = [0, -1]\n', "seeds"),
    ("float seed", 'experiment = "phase"\nseeds = [0, 1.5]\n', "seeds"),
    ("bool seeds", 'experiment = "phase"\nseeds = true\n', "seeds"),
    ("string seeds", 'experiment = "phase"\nseeds = "3"\n', "seeds"),
    ("duplicate seeds", 'experiment = "phase"\nseeds = [1, 2, 1]\n', "seeds"),
    ("case not a table", 'experiment = "phase"\ncases = [1, 2]\n', "cases[0]"),
    ("fixed not a table", 'experiment = "phase"\nfixed = 3\n', "fixed"),
    ("not TOML", 'experiment = "phase\n', "not valid TOML"),
    ("description not a string", 'experiment = "phase"\ndescription = [1]\n', "'description'"),
    # 1001 x 1000 x 2 = 2,002,000 trials: refused before expanding, naming the size and the largest list
    ("huge grid", 'experiment = "phase"\nseeds = 2\n[grid]\ndelta = [%s]\nrho = [%s]\n'
     % (", ".join(["0.5"] * 1001), ", ".join(["0.5"] * 1000)), "2,002,000 trials"),
    ("huge seed count", 'experiment = "phase"\nseeds = 1000000000000\n', "'seeds'"),
]


@pytest.mark.parametrize("what,text,field", BAD_SPECS, ids=[case[0] for case in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field_before_any_trial(tmp_path, what, text, field):
    store = tmp_path / "never.sqlite"
    spec_file = tmp_path / "bad.toml"
    spec_file.write_text(f'store = "{store}"\n' + text)
    with pytest.raises(InvalidParameterError, match="^sweep spec: ") as info:
        load_spec(spec_file)
    assert field in str(info.value)
    message = one_line_error(invoke("sweep", spec_file))
    assert field in message
    assert not store.exists()  # rejected before the store was even created


def test_huge_grid_message_says_how_to_shrink_it():
    with pytest.raises(InvalidParameterError, match=r"1,500,000 trials \(3 cases x 500 grid.delta x 1,000 seeds\), "
                       r"over the limit of 100,000: shrink 'seeds' \(1,000 values\) or split"):
        load_spec({"experiment": "phase", "seeds": 1000, "grid": {"delta": [0.5] * 500},
                   "cases": [{"depth": 2}, {"depth": 3}, {"depth": 4}]})


def test_missing_spec_file_and_bad_overrides_exit_2(tmp_path):
    assert "not found" in one_line_error(invoke("sweep", tmp_path / "nope.toml"))
    with pytest.raises(InvalidParameterError, match="cannot read"):
        load_spec(tmp_path)  # a folder (the CLI's argument check refuses it before)
    with pytest.raises(InvalidParameterError, match="field 'store' must be a string"):
        load_spec({"experiment": "phase", "store": 3})
    (tmp_path / "binary.toml").write_bytes(bytes(range(256)))
    assert "not a text file" in one_line_error(invoke("sweep", tmp_path / "binary.toml"))
    spec_file = write_spec(tmp_path, SMALL_PHASE)
    for override, field in [("nn=3", "nn"), ("grid.delta=[]", "grid.delta"), ("n=forty", "'n'"),
                            ("seeds=0", "seeds"), ("limits.n=3", "limits"), ("n", "key=value")]:
        assert field in one_line_error(invoke("sweep", spec_file, "--set", override)), override
    assert not (tmp_path / "store.sqlite").exists()


# --------------------------------------------------------------------------------------------
# the store: foreign, corrupt and unreadable files


def _foreign_sqlite(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users VALUES (1, 'ada')")
    db.commit()
    db.close()


def _foreign_meta_shape(path):  # tables named like ours, columns not
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (a, b, c)")
    db.execute("CREATE TABLE trials (x)")
    db.commit()
    db.close()


def _wrong_format(path):  # our shape, another format tag
    with SQLiteStore(path) as store:
        store.db.execute("UPDATE meta SET value = 'someone-else' WHERE key = 'format'")


def _future_schema(path):
    with SQLiteStore(path) as store:
        store.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")


BAD_STORES = {
    "random bytes": (lambda p: p.write_bytes(random.Random(0).randbytes(8192)), "not an implicit-bias store"),
    "text file": (lambda p: p.write_text("key,value\n1,2\n" * 50), "not an implicit-bias store"),
    "other program's SQLite": (_foreign_sqlite, "another program"),
    "foreign meta table": (_foreign_meta_shape, "not an implicit-bias store"),
    "wrong format tag": (_wrong_format, "format 'someone-else'"),
    "future schema": (_future_schema, "schema '99'"),
    "empty file": (lambda p: p.write_bytes(b""), "empty"),
}


@pytest.mark.parametrize("kind", list(BAD_STORES))
def test_foreign_or_corrupt_store_gives_store_error_and_is_left_untouched(tmp_path, kind):
    make, expected = BAD_STORES[kind]
    path = tmp_path / "store.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=re.escape(expected)):
        SQLiteStore(path, create=False)
    if kind != "empty file":  # an empty file is a valid new store when creating is allowed
        with pytest.raises(StoreError, match=re.escape(expected)):
            SQLiteStore(path)
    assert path.read_bytes() == before  # e.g. another program's database is not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite"]  # no -wal/-shm left behind
    message = one_line_error(invoke("status", path))
    assert expected in message
    message = one_line_error(invoke("export", path, "--out", tmp_path / "out.csv"))
    assert expected in message and not (tmp_path / "out.csv").exists()


def test_status_console_script_on_random_bytes_prints_one_line(tmp_path):
    path = tmp_path / "noise.sqlite"
    path.write_bytes(random.Random(1).randbytes(4096))
    result = subprocess.run([sys.executable, "-m", "implicit_bias.cli", "status", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"implicit-bias: error: {path} is not an implicit-bias store (SQLite says: file is not a database)\n"


def test_status_on_missing_store_or_directory_exits_2(tmp_path):
    assert "no store at" in one_line_error(invoke("status", tmp_path / "missing.sqlite"))
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)


def test_sweep_into_a_foreign_store_runs_no_trial(tmp_path):
    path = tmp_path / "theirs.db"
    _foreign_sqlite(path)
    before = path.read_bytes()
    spec_file = write_spec(tmp_path, SMALL_PHASE)
    assert "another program" in one_line_error(invoke("sweep", spec_file, "--store", path))
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------------
# failures inside trials, resume, overrides, export, status


FAILING_SPARSE = """
experiment = "sparse"
seeds = [0, 1]
store = "{store}"

[fixed]
n = 40
m = 16
method = "limit"
alpha = 1e-3

[grid]
s = [2, 20]          # s = 20 > m = 16: valid parameters, but gaussian_sparse refuses at run time
"""


def test_a_trial_that_raises_is_stored_failed_and_the_sweep_goes_on(tmp_path):
    spec_file = write_spec(tmp_path, FAILING_SPARSE)
    spec = load_spec(spec_file)  # passes validation: the schema knows nothing of s <= m
    assert len(spec.trials()) == 4
    result = invoke("sweep", spec_file)
    assert result.exit_code == 0, result.output
    assert "4 trials: 0 already stored, 2 done, 2 failed" in result.stdout
    with SQLiteStore(tmp_path / "store.sqlite", create=False) as store:
        trials = store.trials()
        assert store.counts() == {"done": 2, "failed": 2}
    for trial in trials:
        if trial.params["s"] == 20:
            assert trial.status == "failed" and trial.result is None
            assert trial.error.startswith("InvalidProblemError: sparsity s=20 exceeds the number of measurements m=16")
        else:
            assert trial.status == "done" and trial.error is None
            assert trial.result["status"] == "converged" and "x" not in trial.result  # metrics, not vectors
    status = invoke("status", tmp_path / "store.sqlite", "--spec", spec_file)
    assert status.exit_code == 0, status.output
    assert "2 done, 2 failed, 0 pending; integrity ok" in status.stdout
    # failed trials are stored results too: a rerun does not retry them
    again = invoke("sweep", spec_file)
    assert "4 trials: 4 already stored, 0 done, 0 failed" in again.stdout


def test_rerunning_a_finished_sweep_skips_everything(tmp_path):
    spec_file = write_spec(tmp_path, SMALL_PHASE)
    spec = load_spec(spec_file)
    first = run_sweep(spec, progress=False)
    assert (first.total, first.skipped, first.done, first.failed) == (SMALL_TOTAL, 0, SMALL_TOTAL, 0)
    before = snapshot(spec.store)
    with SQLiteStore(spec.store) as store:
        finished = store.db.execute("SELECT key, finished_at FROM trials ORDER BY key").fetchall()

    class Forbidden:
        def run(self, tasks):
            tasks = list(tasks)
            assert tasks == [], "a finished sweep must not submit anything"
            return iter(())

    second = run_sweep(spec, executor=Forbidden(), progress=False)
    assert (second.total, second.skipped, second.done, second.failed) == (SMALL_TOTAL, SMALL_TOTAL, 0, 0)
    assert snapshot(spec.store) == before
    with SQLiteStore(spec.store) as store:
        assert store.db.execute("SELECT key, finished_at FROM trials ORDER BY key").fetchall() == finished
    result = invoke("sweep", spec_file)
    assert f"{SMALL_TOTAL} trials: {SMALL_TOTAL} already stored, 0 done, 0 failed" in result.stdout
    # growing the sweep runs only the new trials
    grown = run_sweep(load_spec(spec_file, ["seeds=3"]), progress=False)
    assert (grown.total, grown.skipped, grown.done) == (SMALL_TOTAL // 2 * 3, SMALL_TOTAL, SMALL_TOTAL // 2)


def test_set_overrides_change_the_trials(tmp_path):
    spec_file = write_spec(tmp_path, SMALL_PHASE)
    other = tmp_path / "other.sqlite"
    result = invoke("sweep", spec_file, "--set", "n=30", "--set", "method=l1", "--set", "grid.rho=[0.2]",
                    "--set", "seeds=[5]", "--set", f'store="{other}"')
    assert result.exit_code == 0, result.output
    assert "2 trials: 0 already stored, 2 done, 0 failed" in result.stdout
    assert not (tmp_path / "store.sqlite").exists()
    params = sorted((t[1]["n"], t[1]["method"], t[1]["delta"], t[1]["rho"], t[1]["seed"]) for t in snapshot(other).values())
    # method=l1 (a bare word, read as a string) replaced the grid over methods
    assert params == [(30, "l1", 0.4, 0.2, 5), (30, "l1", 0.6, 0.2, 5)]
    # --store beats the spec's store; fixed.NAME is explicit
    third = tmp_path / "third.sqlite"
    result = invoke("sweep", spec_file, "--store", third, "--set", "fixed.n=35", "--set", "seeds=1",
                    "--set", "grid.method=['l2']")
    assert result.exit_code == 0, result.output
    assert {(t[1]["n"], t[1]["method"]) for t in snapshot(third).values()} == {(35, "l2")}


def test_a_bare_override_beats_the_cases_too():
    source = {"experiment": "phase", "fixed": {"n": 30}, "grid": {"delta": [0.3, 0.6]},
              "cases": [{"method": "limit", "depth": 3}, {"method": "l1"}, {"method": "limit", "depth": 2}]}
    assert len(load_spec(source).trials()) == 6
    spec = load_spec(source, ["method=l2"])
    # the cases collapse to {depth: 3}, {} and {depth: 2}: each crossed with the grid, all l2
    assert [(t["method"], t["depth"]) for t in spec.trials()] == [("l2", 3)] * 2 + [("l2", 2)] * 2 + [("l2", 2)] * 2
    spec = load_spec(source, ["method=l2", "depth=4"])
    assert spec.cases == ({},) and [(t["method"], t["depth"]) for t in spec.trials()] == [("l2", 4)] * 2
    assert source["cases"][0] == {"method": "limit", "depth": 3}  # the caller's dict is not modified
    # an explicit fixed.NAME keeps the documented precedence: cases still win over [fixed]
    assert {t["method"] for t in load_spec(source, ["fixed.method=l2"]).trials()} == {"limit", "l1"}


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by key; missing values as None so that CSV's NaN and the store's None compare equal."""
    frame = frame.sort_values("key").reset_index(drop=True)
    return frame.astype(object).where(frame.notna(), None)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips(tmp_path, fmt):
    spec_file = write_spec(tmp_path, FAILING_SPARSE)  # mixed done / failed rows, None values, bools
    assert invoke("sweep", spec_file).exit_code == 0
    store_path = tmp_path / "store.sqlite"
    result = invoke("export", store_path, "--format", fmt)
    assert result.exit_code == 0, result.output
    out = store_path.with_suffix(f".{fmt}")
    assert f"wrote {out}" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    with SQLiteStore(store_path, create=False) as store:
        expected = store.dataframe()
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(back.columns) == list(expected.columns)
    assert len(back) == 4 and set(back["status"]) == {"done", "failed"}  # the trial's status ...
    assert set(back["result_status"].dropna()) == {"converged"}  # ... is not shadowed by the solver's
    left, right = _normalise(back), _normalise(expected)
    for column in expected.columns:
        for a, b in zip(left[column], right[column]):
            if isinstance(b, float) and fmt == "csv":
                # CSV writes floats with repr precision (round trip exact), but a column holding
                # None and ints comes back as float: compare values, not types.
                assert float(a) == b, (column, a, b)
            else:
                assert a == b or (str(a) == str(b)), (column, a, b)
    # the explicit --out path, and an unknown format through the API
    result = invoke("export", store_path, "--format", fmt, "--out", tmp_path / f"named.{fmt}")
    assert result.exit_code == 0 and (tmp_path / f"named.{fmt}").exists()
    with SQLiteStore(store_path, create=False) as store, pytest.raises(StoreError, match="unknown export format"):
        store.export(tmp_path / "x.xlsx", "xlsx")


def test_status_counts_done_failed_pending(tmp_path):
    spec_file = write_spec(tmp_path, SMALL_PHASE)
    run_sweep(load_spec(spec_file, ["grid.delta=[0.4]"]), progress=False)
    result = invoke("status", tmp_path / "store.sqlite", "--spec", spec_file)
    assert result.exit_code == 0, result.output
    half = SMALL_TOTAL // 2
    assert result.stdout.splitlines()[0] == (
        f"store {tmp_path / 'store.sqlite'}: {half} done, 0 failed, {half} pending; integrity ok")
    with SQLiteStore(tmp_path / "store.sqlite") as store:
        tasks, skipped = pending_tasks(load_spec(spec_file), store)
    assert (len(tasks), skipped) == (half, half)
    assert all(params["delta"] == 0.6 for _, _, params in tasks)


# --------------------------------------------------------------------------------------------
# progress


def test_progress_is_plain_log_lines_on_stderr_when_not_a_tty(tmp_path):
    spec_file = write_spec(tmp_path, FAILING_SPARSE)
    result = invoke("sweep", spec_file)  # CliRunner's stderr is not a TTY
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("sweep:")]
    assert lines, result.stderr
    assert PROGRESS_LINE.match(lines[-1]).groups()[:3] == ("4", "4", "2")
    assert "sweep:" not in result.stdout  # stdout keeps only the summary, for scripts

    stream = io.StringIO()
    progress = Progress(3, stream, every_s=0.0)  # a line per trial
    for failed in (False, True, False):
        progress.update(failed)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [PROGRESS_LINE.match(line).groups()[:3] for line in lines] == [("1", "3", "0"), ("2", "3", "1"),
                                                                       ("3", "3", "1")]
    assert lines[-1].endswith("ETA 0s")

    stream = io.StringIO()
    progress = Progress(50, stream, every_s=3600.0)  # throttled: only the final line
    for _ in range(50):
        progress.update(False)
    assert stream.getvalue().count("\n") == 1 and stream.getvalue().startswith("sweep: 50/50 done")


def test_progress_is_a_tqdm_bar_on_a_tty():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(4, stream)
    for failed in (False, False, True, False):
        progress.update(failed)
    progress.close()
    text = stream.getvalue()
    assert "sweep:" not in text and "4/4" in text and "failed=1" in text


def test_run_sweep_writes_progress_to_the_given_stream(tmp_path):
    spec = load_spec(json.loads(json.dumps({"experiment": "phase", "seeds": 2, "fixed": {"n": 30, "method": "l1"}})))
    stream = io.StringIO()
    summary = run_sweep(spec, store_path=tmp_path / "s.sqlite", executor=SerialExecutor(), stream=stream)
    assert summary.done == 2
    assert PROGRESS_LINE.match(stream.getvalue().splitlines()[-1]).groups()[:3] == ("2", "2", "0")
    stream = io.StringIO()
    run_sweep(spec, store_path=tmp_path / "s.sqlite", stream=stream)
    assert stream.getvalue() == ""  # nothing to run, nothing printed
