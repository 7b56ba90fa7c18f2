"""Bad input everywhere (issue 11, B.4): every command of the CLI, fed wrong values, hostile files and
broken sweep specs, must exit 2 with ONE line on stderr that names the argument (click's own usage
errors: the usage line plus one ``Error:`` line), print no traceback unless ``--debug`` is given, and
leave every store as it was.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.experiments import SQLiteStore
from implicit_bias.problems import gaussian_sparse, matrix_sensing

HUGE = str(10**12)


def invoke(*args, cwd: Path | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def assert_refused(result, *names: str) -> str:
    """Exit 2, no traceback, nothing on stdout, and one error line naming each of ``names``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "", result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if lines[0].startswith("Usage:"):  # click's usage error: usage, a --help hint, the Error: message
        assert lines[2].startswith("Error:") and len(lines) <= 5, lines  # (a missing choice lists the choices)
        error = " ".join(lines[2:]).lower()
    else:
        assert len(lines) == 1 and lines[0].startswith("implicit-bias: error: "), lines
        error = lines[0].lower()
    for name in names:
        assert name.lower() in error, (name, error)
    return error


# ----------------------------------------------------------------------------- options of run/predict/bound

RUN_SPARSE = [
    (["--n", "0"], "--n"), (["--n", "-5"], "--n"), (["--n", "abc"], "--n"), (["--n", "2.5"], "--n"),
    (["--n", HUGE, "--m", "3", "--s", "1"], "GiB"), (["--n", "1000000000", "--m", "100", "--s", "1"], "GiB"),
    (["--n", "10", "--m", "20"], "m < n"), (["--m", "0"], "--m"), (["--s", "0"], "--s"),
    (["--n", "40", "--m", "16", "--s", "20"], "s <= m"),
    (["--alpha", "nan"], "alpha"), (["--alpha", "inf"], "alpha"), (["--alpha", "-1"], "alpha"), (["--alpha", "0"], "alpha"),
    (["--alpha", "1e308"], "alpha"), (["--alpha", "1e-200"], "alpha"), (["--alpha", "x"], "--alpha"),
    (["--tol", "0"], "tol"), (["--tol", "2"], "tol"), (["--tol", "nan"], "tol"), (["--tol", "-1e-8"], "tol"),
    (["--step", "-1"], "--step"), (["--step", "0"], "--step"), (["--step", "nan"], "--step"), (["--step", "inf"], "--step"),
    (["--noise", "-1"], "noise"), (["--noise", "nan"], "noise"), (["--noise", "inf"], "noise"),
    (["--seed", "-1"], "seed"), (["--seed", "1.5"], "--seed"), (["--depth", "0"], "--depth"), (["--depth", "x"], "--depth"),
    (["--method", "foo"], "--method"), (["--batch", "0"], "--batch"),
    (["--n", "20", "--m", "5", "--s", "1", "--method", "sgd", "--batch", "1000"], "batch"),
    (["--max-evals", "0"], "--max-evals"), (["--max-evals", HUGE + "0" * 20 + ".5"], "--max-evals"),
    (["--weight-norm", "--eta-r", "-1"], "eta_r"), (["--weight-norm", "--eta-r", "nan"], "eta_r"),
    (["--weight-norm", "--r0", "0"], "r0"), (["--weight-norm", "--r0", "inf"], "r0"),
    (["--unknown-option"], "--unknown-option"), (["extra-argument"], "extra-argument"),
]


@pytest.mark.parametrize("args, name", RUN_SPARSE, ids=[" ".join(a)[:40] for a, _ in RUN_SPARSE])
def test_run_sparse_refuses_bad_options(args, name):
    assert_refused(invoke("run", "sparse", *args), name)


RUN_MATRIX = [
    (["--n1", "0"], "--n1"), (["--n2", "-1"], "--n2"), (["--n1", "100000", "--n2", "100000"], "GiB"),
    (["--m", HUGE], "GiB"), (["--m", "0"], "--m"), (["--rank", "50"], "rank"), (["--rank", "0"], "--rank"),
    (["--n1", "4", "--n2", "4", "--m", "30", "--measurement", "completion"], "entries"),
    (["--condition", "0.5"], "condition"), (["--condition", "nan"], "condition"),
    (["--widths", "a,b"], "--widths"), (["--widths", "0,1"], "widths"), (["--widths", "1,2,3,4,5"], "widths"),
    (["--alpha", "-1"], "alpha"), (["--alpha", "nan"], "alpha"), (["--max-wall", "-1"], "max_wall"),
    (["--max-wall", "nan"], "max_wall"), (["--tol", "5"], "tol"), (["--step", "0", "--method", "gd"], "--step"),
    (["--measurement", "foo"], "--measurement"), (["--init", "foo"], "--init"), (["--method", "limit"], "--method"),
    (["--seed", "-3"], "seed"), (["--depth", "0"], "--depth"),
]


@pytest.mark.parametrize("args, name", RUN_MATRIX, ids=[" ".join(a)[:40] for a, _ in RUN_MATRIX])
def test_run_matrix_refuses_bad_options(args, name):
    assert_refused(invoke("run", "matrix", *args), name)


PREDICT = [
    (["--n", "0"], "--n"), (["--n", HUGE, "--m", "3", "--s", "1"], "GiB"), (["--alpha", "nan"], "alpha"),
    (["--alpha", "1e-200"], "alpha"), (["--alpha", "1e308"], "alpha"), (["--depth", "0"], "--depth"),
    (["--seed", "-1"], "seed"), (["--m", "300"], "m < n"), (["--noise", "-0.5"], "noise"),
]


@pytest.mark.parametrize("args, name", PREDICT, ids=[" ".join(a)[:40] for a, _ in PREDICT])
def test_predict_refuses_bad_options(args, name):
    assert_refused(invoke("predict", *args), name)


BOUND = [
    (["--depth", "1", "--beta1", "1", "--beta-min", "1", "--Q", "2"], "--depth"),
    (["--depth", "2", "--beta1", "nan", "--beta-min", "1", "--Q", "2"], "beta_1"),
    (["--depth", "2", "--beta1", "-1", "--beta-min", "1", "--Q", "2"], "beta_1"),
    (["--depth", "2", "--beta1", "1", "--beta-min", "2", "--Q", "2"], "beta_min"),
    (["--depth", "2", "--beta1", "1", "--beta-min", "0", "--Q", "2"], "beta_min"),
    (["--depth", "2", "--beta1", "1", "--beta-min", "1", "--Q", "inf"], "'q'"),
    (["--depth", "2", "--beta1", "1", "--beta-min", "1", "--Q", "-3"], "'q'"),
    (["--depth", "2", "--beta1", "1", "--beta-min", "1", "--Q", "abc"], "--Q"),
    (["--depth", "2"], "--beta1"),
]


@pytest.mark.parametrize("args, name", BOUND, ids=[" ".join(a)[:40] for a, _ in BOUND])
def test_bound_refuses_bad_options(args, name):
    assert_refused(invoke("bound", *args), name)


# ----------------------------------------------------------------------------- hostile .npz files


def write_hostile_files(root: Path) -> dict[str, Path]:
    """Files that are not a usable problem, each a different way."""
    files = {}

    def put(name, writer):
        files[name] = root / name
        writer(files[name])

    put("text.npz", lambda p: p.write_text("A = [[1, 2]]\ny = [1]\n"))
    put("random.npz", lambda p: p.write_bytes(np.random.default_rng(0).bytes(512)))
    put("empty.npz", lambda p: p.write_bytes(b""))
    put("pickle.npz", lambda p: p.write_bytes(pickle.dumps({"A": np.ones((1, 2)), "y": np.ones(1)})))
    put("objects.npz", lambda p: np.savez(p, A=np.array([[{"x": 1}, None]], dtype=object), y=np.ones(1)))
    put("no_arrays.npz", lambda p: np.savez(p))
    put("missing_A.npz", lambda p: np.savez(p, y=np.ones(3)))
    put("missing_y.npz", lambda p: np.savez(p, A=np.ones((2, 3))))
    put("strings.npz", lambda p: np.savez(p, A=np.array([["a", "b"]]), y=np.ones(1)))
    put("complex.npz", lambda p: np.savez(p, A=np.ones((1, 2)) * 1j, y=np.ones(1)))
    put("A_3d.npz", lambda p: np.savez(p, A=np.ones((2, 3, 4)), y=np.ones(2)))
    put("A_empty.npz", lambda p: np.savez(p, A=np.zeros((0, 3)), y=np.zeros(0)))
    put("y_wrong.npz", lambda p: np.savez(p, A=np.ones((2, 3)), y=np.ones(5)))
    put("y_zero.npz", lambda p: np.savez(p, A=np.ones((2, 3)), y=np.zeros(2)))
    put("x_true_wrong.npz", lambda p: np.savez(p, A=np.ones((2, 3)), y=np.ones(2), x_true=np.ones(7)))
    put("nan.npz", lambda p: np.savez(p, A=np.array([[1.0, np.nan]]), y=np.ones(1)))
    put("inf_y.npz", lambda p: np.savez(p, A=np.ones((1, 2)), y=np.array([np.inf])))
    put("bare.npy", lambda p: np.save(p, np.ones(3)))
    good = root / "good.npz"
    gaussian_sparse(12, 4, 1, seed=0).save(good)
    put("truncated.npz", lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]))
    put("foreign.zip.npz", lambda p: zipfile.ZipFile(p, "w").writestr("readme.txt", "not arrays"))
    put("damaged.npz", lambda p: p.write_bytes(good.read_bytes().replace(b"NUMPY", b"NUMPX", 1)))
    put("directory.npz", lambda p: p.mkdir())
    files["missing.npz"] = root / "missing.npz"
    return files


SPARSE_FILES = ["text.npz", "random.npz", "empty.npz", "pickle.npz", "objects.npz", "no_arrays.npz", "missing_A.npz",
                "missing_y.npz", "strings.npz", "complex.npz", "A_3d.npz", "A_empty.npz", "y_wrong.npz", "y_zero.npz",
                "x_true_wrong.npz", "nan.npz", "inf_y.npz", "bare.npy", "truncated.npz", "foreign.zip.npz",
                "damaged.npz", "directory.npz", "missing.npz"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return write_hostile_files(root)


@pytest.mark.parametrize("name", SPARSE_FILES)
@pytest.mark.parametrize("command", [("run", "sparse"), ("predict",), ("run", "sparse", "--weight-norm")],
                         ids=["run-sparse", "predict", "run-weight-norm"])
def test_sparse_problem_files_are_refused(hostile, name, command):
    error = assert_refused(invoke(*command, "--problem", hostile[name]), "problem")
    assert "allow_pickle" not in error  # never suggest unpickling an untrusted file


MATRIX_FILES = {
    "shape_3.npz": dict(rows=np.array([0]), cols=np.array([0]), shape=np.array([3, 3, 3]), y=np.ones(1)),
    "shape_float.npz": dict(rows=np.array([0]), cols=np.array([0]), shape=np.array([3.0, 3.0]), y=np.ones(1)),
    "shape_huge.npz": dict(rows=np.array([0]), cols=np.array([0]), shape=np.array([10**6, 10**6]), y=np.ones(1)),
    "rows_outside.npz": dict(rows=np.array([5]), cols=np.array([0]), shape=np.array([3, 3]), y=np.ones(1)),
    "rows_repeated.npz": dict(rows=np.array([0, 0]), cols=np.array([1, 1]), shape=np.array([3, 3]), y=np.ones(2)),
    "rows_float.npz": dict(rows=np.array([0.5]), cols=np.array([0]), shape=np.array([3, 3]), y=np.ones(1)),
    "matrices_2d.npz": dict(matrices=np.ones((2, 3)), y=np.ones(2)),
    "matrices_y.npz": dict(matrices=np.ones((2, 3, 3)), y=np.ones(4)),
    "W_true_wrong.npz": dict(matrices=np.ones((2, 3, 3)), y=np.ones(2), W_true=np.ones((2, 2))),
}


@pytest.mark.parametrize("name", ["text.npz", "random.npz", "empty.npz", "pickle.npz", "objects.npz", "no_arrays.npz",
                                  "truncated.npz", "bare.npy", "directory.npz", "missing.npz", *MATRIX_FILES])
def test_matrix_problem_files_are_refused(hostile, tmp_path, name):
    path = hostile.get(name, tmp_path / name)
    if name in MATRIX_FILES:
        np.savez(path, **MATRIX_FILES[name])
    assert_refused(invoke("run", "matrix", "--problem", path), "problem")


def test_the_good_files_load(hostile, tmp_path):
    """The hostile files above are refused for what they hold: a well-formed file of each kind runs."""
    assert invoke("predict", "--problem", hostile["text.npz"].parent / "good.npz", "--json").exit_code == 0
    matrix_sensing(3, 3, 1, 8, seed=0).save(tmp_path / "m.npz")
    result = invoke("run", "matrix", "--problem", tmp_path / "m.npz", "--method", "gd", "--max-evals", "20", "--json")
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- sweep specs and stores

SPECS = {
    "unknown_top.toml": ('experiment = "phase"\nfoo = 1\n', "'foo'"),
    "unknown_param.toml": ('experiment = "phase"\n[fixed]\nwidth = 3\n', "width"),
    "wrong_type.toml": ('experiment = "phase"\n[fixed]\nn = "abc"\n', "'n'"),
    "wrong_bool.toml": ('experiment = "phase"\n[fixed]\nsigned = 1\n', "'signed'"),
    "wrong_choice.toml": ('experiment = "phase"\n[fixed]\nmethod = "foo"\n', "'method'"),
    "negative_n.toml": ('experiment = "phase"\n[fixed]\nn = -5\n', "n must be"),
    "huge_n.toml": ('experiment = "phase"\n[fixed]\nn = 1000000000000\n', "GiB"),
    "delta_out.toml": ('experiment = "phase"\n[grid]\ndelta = [0.5, 2.0]\n', "'delta'"),
    "grid_not_list.toml": ('experiment = "phase"\n[grid]\ndelta = 0.5\n', "grid.delta"),
    "grid_empty.toml": ('experiment = "phase"\n[grid]\ndelta = []\n', "grid.delta"),
    "huge_grid.toml": ('experiment = "phase"\nseeds = 2000\n[grid]\ndelta = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n'
                       'rho = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n', "trials"),
    "huge_seeds.toml": (f'experiment = "phase"\nseeds = {10**12}\n', "seeds"),
    "seeds_negative.toml": ('experiment = "phase"\nseeds = [-1]\n', "seeds"),
    "seeds_repeated.toml": ('experiment = "phase"\nseeds = [1, 1]\n', "seeds"),
    "seeds_string.toml": ('experiment = "phase"\nseeds = "five"\n', "seeds"),
    "cases_not_tables.toml": ('experiment = "phase"\ncases = [1, 2]\n', "cases"),
    "no_experiment.toml": ("seeds = 2\n", "experiment"),
    "unknown_experiment.toml": ('experiment = "nope"\n', "experiment"),
    "experiment_number.toml": ("experiment = 5\n", "experiment"),
    "syntax.toml": ('experiment = "phase\n[[[', "toml"),
    "binary.toml": (None, "toml"),
    "matrix_rank.toml": ('experiment = "matrix"\n[fixed]\nn1 = 4\nn2 = 4\nrank = 9\n', "rank"),
}

OVERRIDES = [
    (["--set", "n=abc"], "'n'"), (["--set", "nokey"], "key=value"), (["--set", "foo.bar=1"], "foo"),
    (["--set", "seeds=-3"], "seeds"), (["--set", "grid.delta=[]"], "grid.delta"), (["--set", "nope=1"], "nope"),
    (["--workers", "0"], "--workers"), (["--workers", "x"], "--workers"), (["--scheduler", "garbage"], "--scheduler"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real store with rows, and a snapshot of everything in it."""
    root = tmp_path_factory.mktemp("store")
    spec = root / "tiny.toml"
    spec.write_text(f'experiment = "phase"\nseeds = 3\nstore = "{root / "tiny.sqlite"}"\n[fixed]\nn = 20\n'
                    'method = "l2"\n[grid]\ndelta = [0.5]\nrho = [0.2, 0.4]\n')
    result = invoke("sweep", spec)
    assert result.exit_code == 0, result.output
    return root, spec, root / "tiny.sqlite", snapshot(root / "tiny.sqlite")


def snapshot(path: Path) -> list:
    with SQLiteStore(path, create=False) as s:
        assert s.integrity() == "ok"
        return sorted((t.key, t.status, repr(t.result)) for t in s.trials())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bad_specs_are_refused_and_the_store_keeps_its_rows(store, name):
    root, _, path, rows = store
    text, fragment = SPECS[name]
    spec = root / name
    if text is None:
        spec.write_bytes(np.random.default_rng(1).bytes(64))
    else:
        spec.write_text(text)
    started = time.perf_counter()
    assert_refused(invoke("sweep", spec, "--store", path), fragment)
    assert time.perf_counter() - started < 30  # refused up front, not after validating millions of trials
    assert_refused(invoke("status", path, "--spec", spec), fragment)
    assert snapshot(path) == rows and len(rows) == 6


@pytest.mark.parametrize("args, fragment", OVERRIDES, ids=[" ".join(a) for a, _ in OVERRIDES])
def test_bad_overrides_are_refused_and_the_store_keeps_its_rows(store, args, fragment):
    _, spec, path, rows = store
    assert_refused(invoke("sweep", spec, "--store", path, *args), fragment)
    assert snapshot(path) == rows


def test_missing_and_directory_specs(store):
    root, _, path, rows = store
    assert_refused(invoke("sweep", root / "absent.toml", "--store", path), "absent.toml")
    assert_refused(invoke("sweep", root), "spec_file")  # click: a directory is not a file
    assert_refused(invoke("sweep", root / "tiny.toml", "--store", root), "--store")
    assert snapshot(path) == rows


def store_commands(root: Path, path: Path) -> list:
    """(args, fragment) of store commands given a bad option, a bad store or a bad output path."""
    text = root / "text.sqlite"
    text.write_text("not a database")
    return [
        (["status", root / "absent.sqlite"], "no store"), (["status", root], "store_path"), (["status", text], "not"),
        (["export", root / "absent.sqlite"], "no store"), (["export", text], "not"),
        (["export", path, "--format", "xls"], "--format"), (["export", path, "--out", root], "--out"),
        (["export", path, "--out", "/proc/forbidden.csv"], "forbidden"),
        (["export", path, "--format", "parquet", "--out", "/proc/forbidden.parquet"], "forbidden"),
        (["plot", root / "absent.sqlite", "--kind", "phase"], "no store"), (["plot", text, "--kind", "phase"], "not"),
        (["plot", path, "--kind", "nope"], "--kind"), (["plot", path], "--kind"),
        (["plot", path, "--kind", "l1-gap"], "sparse"), (["plot", path, "--kind", "phase", "--out", root], "--out"),
        (["reproduce", "--workers", "0"], "--workers"), (["reproduce", "--out", path], "--out"),
        (["reproduce", "--out", "/proc/forbidden"], "forbidden"), (["reproduce", "--scheduler", "garbage"], "scheduler"),
    ]


def test_store_commands_refuse_bad_input_and_lose_nothing(store):
    root, _, path, rows = store
    cases = store_commands(root, path)
    for args, fragment in cases:
        assert_refused(invoke(*args), fragment)
    assert snapshot(path) == rows
    assert not (root / "absent.sqlite").exists()  # a mistyped store path is never created


# ----------------------------------------------------------------------------- real processes, --debug

CLI = [sys.executable, "-m", "implicit_bias.cli"]


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_real_processes_exit_2_with_one_line(hostile):
    for args in (["run", "sparse", "--n", HUGE, "--m", "3", "--s", "1"], ["predict", "--problem", hostile["pickle.npz"]],
                 ["run", "matrix", "--problem", hostile["text.npz"]], ["bound", "--depth", "2", "--beta1", "nan",
                                                                      "--beta-min", "1", "--Q", "2"]):
        started = time.perf_counter()
        done = run_cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("implicit-bias: error: "), lines
        assert done.stdout == ""
        assert time.perf_counter() - started < 60  # memory bombs are refused before any allocation


def test_debug_shows_the_traceback(hostile):
    done = run_cli("predict", "--problem", hostile["text.npz"], "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr and "InvalidProblemError" in done.stderr
    result = invoke("export", "/proc/absent-store.sqlite", "--debug")
    assert result.exit_code == 1 and result.exception is not None and not isinstance(result.exception, SystemExit)
