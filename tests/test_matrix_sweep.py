"""The ``matrix`` experiment in a sweep (registry, store) and its record against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from implicit_bias.experiments import SQLiteStore, get_experiment, load_spec, run_sweep
from implicit_bias.experiments.matrix import MatrixTrial, matrix_trial
from implicit_bias.errors import InvalidParameterError
from implicit_bias.references import min_frobenius


def test_matrix_sweep_stores_every_trial_and_depth_one_is_the_min_norm_limit(tmp_path):
    """Depth 1 from ``W(0) = alpha I`` converges to ``W0 + A^+(y - A W0)`` (SPEC E.1), computed here by
    lstsq; the stored error must match it up to the residual slack ``||A(W) - y|| / sigma_min^+ / ||W*||``."""
    spec = load_spec({
        "experiment": "matrix", "seeds": 1, "store": str(tmp_path / "m.sqlite"),
        "fixed": {"n1": 6, "n2": 6, "rank": 1, "m": 20, "tol": 1e-9, "max_wall": 20.0, "nuclear": False},
        "grid": {"depth": [1, 3], "alpha": [0.1]},
    })
    summary = run_sweep(spec, progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    with SQLiteStore(tmp_path / "m.sqlite", create=False) as store:
        rows = {t.params["depth"]: t.result for t in store.trials()}
    assert "W" not in rows[1] and len(rows[3]["singular_values"]) == 6
    trial = MatrixTrial(n1=6, n2=6, rank=1, m=20, depth=1, alpha=0.1, seed=0)
    problem = trial.problem()
    expected = problem.relative_error(min_frobenius(problem, W0=0.1 * np.eye(6)))
    A = np.asarray(problem.operator.matrices).reshape(problem.m, -1)
    sigma_min = np.linalg.svd(A, compute_uv=False).min()  # A has full row rank (20 < 36)
    slack = rows[1]["residual"] * np.linalg.norm(problem.y) / sigma_min / np.linalg.norm(problem.W_true)
    assert rows[1]["status"] == "converged"
    assert abs(rows[1]["relative_error"] - expected) <= slack + 1e-12
    # and the implicit bias of depth: the deep flow is far closer to the rank-1 truth than min-norm
    assert rows[3]["relative_error"] < 0.1 * rows[1]["relative_error"]


def test_matrix_trial_record_matches_its_own_end_point():
    """The record's numbers are recomputed from the returned W: error, spectrum, effective rank."""
    record = matrix_trial(MatrixTrial(n1=8, n2=7, rank=2, m=40, depth=2, alpha=0.3, tol=1e-6, seed=3))
    problem = MatrixTrial(n1=8, n2=7, rank=2, m=40, seed=3).problem()
    W = np.array(record["W"])
    assert record["relative_error"] == pytest.approx(problem.relative_error(W), rel=1e-12)
    assert np.allclose(record["singular_values"], np.linalg.svd(W, compute_uv=False), rtol=1e-10, atol=1e-14)
    assert record["residual"] == pytest.approx(problem.residual(W), rel=1e-9)
    assert record["nuclear_norm_error"] is not None and record["nuclear_norm_s"] >= 0


def test_matrix_experiment_validates_parameters():
    experiment = get_experiment("matrix")
    with pytest.raises(InvalidParameterError, match="'method' parameter must be one of"):
        experiment.make({"method": "newton"})
    with pytest.raises(InvalidParameterError, match="no parameter 'width'"):
        experiment.make({"width": "3,3"})
    spec = load_spec("examples/matrix_depth_scale.toml")
    assert spec.experiment == "matrix" and len(spec.trials()) == 18
