"""Batched trials: the batched limit oracle (``predict_limits``) against ``predict_limit`` one at a
time, and sweeps that group trials into batches (``--batch-size``) against one-at-a-time sweeps.

Tolerance 1e-10 (max-norm, relative to max |x|): both paths stop at the relative residual 1e-12
(limits._POLISH) or by stalling below 1e-10 with the KKT residual below 1e-8, and the limit is
unique (a strictly convex Bregman projection, SPEC A.1), so they differ by the rounding those
tolerances leave: measured at most 3e-11 over n = 200 and n = 1000 problems (N = 2, 3; signed
and positive), about 1e-12 on the problems below.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.experiments import SQLiteStore, load_spec, run_sweep
from implicit_bias.experiments.executors import SerialExecutor, batches
from implicit_bias.limits import predict_limit
from implicit_bias.limits_batched import predict_limits
from implicit_bias.models import Hadamard, Init
from implicit_bias.problems import gaussian_sparse

TOL = 1e-10
COST_FIELDS = ("wall_s", "matvecs", "grad_evals", "steps", "message")  # how a result was computed, not what


def close(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("depth, signed", [(2, False), (3, False), (2, True), (4, True)])
def test_predict_limits_equals_predict_limit_one_at_a_time(depth, signed):
    problems = [gaussian_sparse(80, m, 4, signed=signed, seed=seed) for m in (20, 35) for seed in range(4)]
    alphas = [10.0 ** -(2 + (i % 3)) for i in range(len(problems))]  # one init per trial, different scales
    inits = [Init.uniform(a) for a in alphas]
    model = Hadamard(depth, signed)
    batched = predict_limits(problems, model, inits)
    assert any("batched" in limit.message for limit in batched)  # the batch really ran (not all handed over)
    for problem, init, limit in zip(problems, inits, batched):
        reference = predict_limit(problem, model, init)
        assert limit.status == reference.status == "converged"
        assert close(limit.x, reference.x) <= TOL
        assert limit.residual <= limit.tol and limit.kkt <= limit.kkt_tol
        # the answer is a limit in its own right: it interpolates the data (independent check)
        assert np.linalg.norm(problem.A @ limit.x - problem.y) <= 1e-9 * np.linalg.norm(problem.y)


def test_trials_the_batch_cannot_finish_are_exactly_the_one_at_a_time_answer():
    # max_iter = 2 stops every batched run short: each trial goes to predict_limit, whose
    # budget_exhausted answer is returned unchanged (same x bit for bit, same status)
    problems = [gaussian_sparse(60, 20, 3, seed=seed) for seed in range(3)]
    model, init = Hadamard(2, False), Init.uniform(1e-3)
    for limit, problem in zip(predict_limits(problems, model, init, max_iter=2), problems):
        reference = predict_limit(problem, model, init, max_iter=2)
        assert limit.status == reference.status == "budget_exhausted"
        np.testing.assert_array_equal(limit.x, reference.x)


def test_depth_one_is_the_closed_form_per_trial():
    problems = [gaussian_sparse(30, 10, 2, seed=seed) for seed in range(2)]
    for limit, problem in zip(predict_limits(problems, Hadamard(1, False), Init.uniform(0.1)), problems):
        np.testing.assert_array_equal(limit.x, predict_limit(problem, Hadamard(1, False), Init.uniform(0.1)).x)


def test_batches_group_compatible_trials_and_keep_the_rest_alone():
    spec = load_spec({"experiment": "phase", "seeds": 3, "fixed": {"n": 40},
                      "grid": {"method": ["limit", "l1"], "delta": [0.3, 0.6], "rho": [0.2]}})
    tasks = [(str(i), "phase", params) for i, params in enumerate(spec.trials())]
    groups = list(batches(iter(tasks), 2))
    assert sorted(key for group in groups for key, _, _ in group) == sorted(key for key, _, _ in tasks)
    for group in groups:
        assert len(group) <= 2
        shapes = {(p["method"], p["delta"]) for _, _, p in group}
        assert len(shapes) == 1
    assert any(len(group) == 2 for group in groups)


def stored(path) -> dict:
    with SQLiteStore(path, create=False) as store:
        return {t.key: t for t in store.trials()}


def assert_same_rows(one: dict, other: dict) -> None:
    """Equal keys, states and parameters; equal results up to TOL on floats and exactly otherwise
    (cost fields excepted)."""
    assert one.keys() == other.keys()
    for key, a in one.items():
        b = other[key]
        assert (a.status, a.params, a.error is None) == (b.status, b.params, b.error is None)
        if a.result is None:
            assert b.result is None
            continue
        assert a.result.keys() == b.result.keys()
        for name, value in a.result.items():
            if name in COST_FIELDS:
                continue
            if isinstance(value, float) and not isinstance(value, bool):
                assert math.isclose(value, b.result[name], rel_tol=TOL, abs_tol=TOL), (name, value, b.result[name])
            else:
                assert value == b.result[name], (name, value, b.result[name])


# oracle trials (batched) next to l1 trials (one at a time), a limit sparse trial with the LP, and
# a trial that fails at run time inside a batch (s = 17 > m = 16)
PHASE = {"experiment": "phase", "seeds": 3, "fixed": {"n": 60, "alpha": 1e-4},
         "grid": {"method": ["limit", "l1"], "delta": [0.3, 0.5], "rho": [0.1, 0.3]}}
SPARSE = {"experiment": "sparse", "seeds": [0, 1, 2], "fixed": {"n": 40, "m": 16, "s": 2, "max_evals": 1500},
          "grid": {"depth": [2, 3], "method": ["limit", "gd", "sgd"]}, "cases": [{"alpha": 1e-2}, {"alpha": 1e-3, "s": 17}]}


def test_sweeps_batched_and_one_at_a_time_store_the_same_rows(tmp_path):
    for spec in (PHASE, SPARSE):
        run_sweep(load_spec(spec), store_path=tmp_path / "one.sqlite", batch_size=1, progress=False)
        run_sweep(load_spec(spec), store_path=tmp_path / "auto.sqlite", progress=False)
    one, auto = stored(tmp_path / "one.sqlite"), stored(tmp_path / "auto.sqlite")
    assert len(one) == 24 + 36
    assert_same_rows(auto, one)
    failed = [t for t in auto.values() if t.status == "failed"]
    assert len(failed) == 18 and all(t.params["s"] == 17 for t in failed)  # only the bad trials, each with its error
    assert all("s" in t.error or "sparsity" in t.error.lower() for t in failed)


def test_a_trial_failing_inside_a_batch_fails_alone(tmp_path, monkeypatch):
    from implicit_bias.experiments import registry

    calls = []
    original = registry.EXPERIMENTS["phase"].run

    def run(trial):  # the one-at-a-time path: trial seed 1 raises there too
        calls.append(trial.seed)
        if trial.seed == 1:
            raise RuntimeError("seed 1 breaks")
        return original(trial)

    def run_batch(trials, backend="numpy"):  # the batch raises because of one trial
        if any(t.seed == 1 for t in trials):
            raise RuntimeError("a batch holding seed 1 breaks")
        return registry.phase_trials(trials, backend)

    import dataclasses

    monkeypatch.setitem(registry.EXPERIMENTS, "phase",
                        dataclasses.replace(registry.EXPERIMENTS["phase"], run=run, run_batch=run_batch))
    spec = load_spec({"experiment": "phase", "seeds": 4, "fixed": {"n": 40, "method": "limit", "delta": 0.5}})
    summary = run_sweep(spec, store_path=tmp_path / "s.sqlite", batch_size=4, progress=False)
    rows = stored(tmp_path / "s.sqlite")
    assert (summary.done, summary.failed) == (3, 1)
    assert {t.params["seed"]: t.status for t in rows.values()} == {0: "done", 1: "failed", 2: "done", 3: "done"}
    assert "seed 1 breaks" in next(t.error for t in rows.values() if t.status == "failed")
    assert sorted(calls) == [0, 1, 2, 3]  # the batch failed as a whole, so each trial reran on its own


KILLER = """
import os, signal, sys
from implicit_bias.experiments import SerialExecutor, load_spec, run_sweep

class Killed(SerialExecutor):
    def run(self, tasks):
        for count, item in enumerate(super().run(tasks), start=1):
            yield item
            if count == 13:  # the 13th result is stored when the sweep asks for the next: die then
                os.kill(os.getpid(), signal.SIGKILL)

spec = load_spec({spec!r})
run_sweep(spec, store_path=sys.argv[1], executor=Killed(batch_size=5), progress=False)
"""


def test_a_killed_batched_sweep_resumes_and_loses_nothing(tmp_path):
    spec = {"experiment": "phase", "seeds": 8, "fixed": {"n": 40, "method": "limit"}, "grid": {"delta": [0.3, 0.6]}}
    path = tmp_path / "killed.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    died = subprocess.run([sys.executable, "-c", KILLER.format(spec=spec), str(path)], env=env, timeout=300, check=False)
    assert died.returncode == -signal.SIGKILL
    assert len(stored(path)) == 13  # mid-batch: 13 of 16 stored, the trials of the interrupted batch lost
    summary = run_sweep(load_spec(spec), store_path=path, progress=False)
    assert (summary.skipped, summary.done) == (13, 3)
    run_sweep(load_spec(spec), store_path=tmp_path / "clean.sqlite", batch_size=1, progress=False)
    assert_same_rows(stored(path), stored(tmp_path / "clean.sqlite"))


def test_the_cli_batch_size_option(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('experiment = "phase"\nseeds = 3\n[fixed]\nn = 40\nmethod = "limit"\n')
    for size in ("1", "auto", "2"):
        result = CliRunner().invoke(main, ["sweep", str(spec), "--store", str(tmp_path / f"{size}.sqlite"),
                                           "--batch-size", size])
        assert result.exit_code == 0, result.output
    assert_same_rows(stored(tmp_path / "2.sqlite"), stored(tmp_path / "1.sqlite"))
    assert_same_rows(stored(tmp_path / "auto.sqlite"), stored(tmp_path / "1.sqlite"))
    bad = CliRunner().invoke(main, ["sweep", str(spec), "--store", str(tmp_path / "x.sqlite"), "--batch-size", "0"])
    assert bad.exit_code != 0 and "batch_size" in bad.output
    assert json.loads(json.dumps(SerialExecutor(batch_size=3).batch)) == 3


@pytest.mark.parametrize("dynamics_name", ["gd", "sgd"])
@pytest.mark.parametrize("depth, signed", [(2, False), (3, True)])
def test_simulate_batch_gd_and_sgd_are_bit_for_bit_the_one_at_a_time_runs(dynamics_name, depth, signed):
    # exact equality, stronger than 1e-10: every stacked product is the same BLAS call per trial
    # and every other operation elementwise, so the iterates are the same floats
    from implicit_bias.dynamics import SGD, GradientDescent, Stop, simulate
    from implicit_bias.dynamics_batched import simulate_batch

    dynamics = GradientDescent() if dynamics_name == "gd" else SGD(batch=5, seed=3)
    problems = [gaussian_sparse(40, 15, 2, signed=signed, seed=seed) for seed in range(4)]
    inits = [Init.uniform(a) for a in (0.1, 0.2, 0.1, 0.3)]
    stop = Stop(tol=1e-5, max_evals=4000)
    model = Hadamard(depth, signed)
    batched = simulate_batch(problems, model, dynamics, init=inits, stop=stop)
    statuses = set()
    for problem, init, result in zip(problems, inits, batched):
        reference = simulate(problem, model, dynamics, init=init, stop=stop)
        np.testing.assert_array_equal(result.x, reference.x)
        np.testing.assert_array_equal(result.factors, reference.factors)
        assert (result.status, result.steps, result.grad_evals, result.t, result.message) == (
            reference.status, reference.steps, reference.grad_evals, reference.t, reference.message)
        statuses.add(result.status)
    assert "converged" in statuses or "budget_exhausted" in statuses
