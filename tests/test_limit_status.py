"""``converged`` means the stated tolerances held (issue 11, A.2): every status of the limit oracle forced.

The residual and KKT values are recomputed here independently of :mod:`implicit_bias.limits`: the
residual from ``x`` (not the lifted ``z``) and the KKT residual of SPEC A.3 (i) by a dense
least-squares projection (``numpy.linalg.lstsq``) instead of the oracle's damped normal equations.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.dual_linalg import NewtonMatrix
from implicit_bias.errors import InvalidParameterError
from implicit_bias.limits import (
    DEFAULT_KKT_TOL,
    DEFAULT_TOL,
    _direction,
    predict_limit,
    predict_limit_weight_norm,
)
from implicit_bias.mirror import MirrorMap
from implicit_bias.models import Hadamard, Init, WeightNormalized
from implicit_bias.problems import gaussian_sparse
from implicit_bias.status import STATUSES


def _residual(problem, x) -> float:
    """``||Ax - y|| / ||y||`` from ``x`` in the original coordinates."""
    return float(np.linalg.norm(problem.A @ x - problem.y) / np.linalg.norm(problem.y))


def _kkt_lstsq(problem, model: Hadamard, z, z0) -> float:
    """Distance of ``∇F(z) - ∇F(z0)`` from ``range(B^T)`` by dense least squares (SPEC A.3 (i))."""
    mirror = MirrorMap(model.depth)
    v = mirror.phi(z) - mirror.phi(z0)
    Bt = model.lift(problem.A).dense().T
    coef, *_ = np.linalg.lstsq(Bt, v, rcond=None)
    return float(np.linalg.norm(v - Bt @ coef) / np.linalg.norm(v))


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("N", [2, 3, 4])
def test_converged_means_both_tolerances_held(N, signed):
    """On a grid of depths, signs and scales the default tolerances hold and are re-verified independently."""
    problem = gaussian_sparse(60, 24, 3, signed=signed, seed=10 + N)
    model = Hadamard(N, signed)
    for alpha in (1e-1, 1e-4, 1e-8, 1e-12):
        limit = predict_limit(problem, model, Init.uniform(alpha))
        assert limit.status == "converged", limit.message
        assert (limit.tol, limit.kkt_tol) == (DEFAULT_TOL, DEFAULT_KKT_TOL)
        assert limit.residual <= limit.tol and limit.kkt <= limit.kkt_tol
        # A x - y from x = u^N - v^N differs from B z - y only by the rounding of forming x (~1e-16 ||x||)
        assert _residual(problem, limit.x) <= limit.tol
        # lstsq's projection residual and the oracle's agree to rounding (~1e-14 here, measured);
        # the tolerance is the oracle's kkt_tol itself, i.e. the claim being tested
        z0 = np.full(model.lift(problem.A).width, alpha ** N)
        assert _kkt_lstsq(problem, model, limit.z, z0) <= limit.kkt_tol


def test_budget_exhausted_reports_where_it_stopped():
    """One Newton step from alpha = 1e-12 (the full solve takes ~70) cannot reach tol."""
    problem = gaussian_sparse(60, 24, 3, seed=1)
    limit = predict_limit(problem, Hadamard(4), Init.uniform(1e-12), max_iter=1)
    assert limit.status == "budget_exhausted" and limit.iterations == 1
    assert limit.residual > limit.tol
    # the reported residual is that of the returned x (rounding of two ways of forming A x ~ 1e-15 relative)
    assert math.isclose(limit.residual, _residual(problem, limit.x), rel_tol=1e-9)
    assert "budget_exhausted" in limit.message and "max_iter" in limit.message


def test_unreachable_residual_tolerance_is_stalled():
    """tol = 1e-17 is below the rounding of ||Bz - y|| (~1e-16 ||y||): Newton stalls, and says so."""
    problem = gaussian_sparse(60, 24, 3, seed=2)
    default = predict_limit(problem, Hadamard(3), Init.uniform(1e-6))
    limit = predict_limit(problem, Hadamard(3), Init.uniform(1e-6), tol=1e-17)
    assert limit.status == "stalled" and limit.tol == 1e-17
    assert limit.residual > 1e-17
    assert math.isclose(limit.residual, _residual(problem, limit.x), rel_tol=1e-6, abs_tol=1e-16)
    assert "stalled" in limit.message
    # the stalled answer is still the limit: it only ran past the default run's stopping point (both residuals <= 1e-10)
    assert np.allclose(limit.x, default.x, rtol=1e-8, atol=1e-12 * np.max(default.x))


def test_unreachable_kkt_tolerance_is_stalled():
    """Newton reaches its residual target but the KKT residual (rounding, ~1e-14) is above kkt_tol = 1e-17."""
    problem = gaussian_sparse(60, 24, 3, seed=3)
    limit = predict_limit(problem, Hadamard(2), Init.uniform(1e-3), kkt_tol=1e-17)
    assert limit.status == "stalled" and limit.residual <= limit.tol
    assert limit.kkt > 1e-17 and limit.kkt_tol == 1e-17


def test_steepest_descent_fallback_is_counted():
    """A zero Newton matrix (every weight underflowed) makes the step steepest descent, flagged as such."""
    problem = gaussian_sparse(30, 12, 2, seed=4)
    B = Hadamard(2).lift(problem.A)
    r = problem.y.copy()
    d, Atd, slope, steepest = _direction(B, MirrorMap(2), NewtonMatrix(B.A), np.zeros(30), r)
    assert steepest == 1 and np.array_equal(d, r)
    assert np.allclose(Atd, problem.A.T @ r) and math.isclose(slope, float(r @ r))
    limit = predict_limit(problem, Hadamard(2), Init.uniform(1e-2))
    assert limit.steepest_steps == 0 and "0 steepest-descent fallbacks" in limit.message


def test_weight_norm_statuses_carry_the_inner_values():
    problem = gaussian_sparse(60, 24, 3, seed=5)
    model = WeightNormalized(2, 0.5)
    # (B.7): log rho = log(r0 / r_inf) + (r_inf^2 - r0^2) / (2 eta_r) = log(2/3) + 5 for r0 = 2, r_inf = 3
    ok = predict_limit_weight_norm(problem, model, 2.0, 3.0)
    assert ok.status == "converged" and ok.limit is not None
    assert math.isclose(ok.log_rho, math.log(2 / 3) + 5.0, rel_tol=1e-12)
    assert (ok.residual, ok.kkt) == (ok.limit.residual, ok.limit.kkt) and ok.residual <= ok.limit.tol
    short = predict_limit_weight_norm(problem, model, 2.0, 3.0, max_iter=1)
    assert short.status == "budget_exhausted" and short.residual > short.limit.tol
    # r_inf = 40: log rho ~ 1600, so rho^-2 z(0) ~ e^-3200 underflows float64 (below 1e-290 ~ e^-668)
    gone = predict_limit_weight_norm(problem, model, 2.0, 40.0)
    assert gone.status == "underflow" and gone.x is None and math.isnan(gone.residual) and math.isnan(gone.kkt)
    for limit in (ok, short, gone):
        assert limit.status in STATUSES


BAD_VALUES = [0.0, 1.0, -1e-3, 2.0, float("nan"), float("inf"), "1e-8", True, None]


@pytest.mark.parametrize("name", ["tol", "kkt_tol"])
@pytest.mark.parametrize("value", BAD_VALUES)
def test_invalid_tolerances_raise(name, value):
    problem = gaussian_sparse(20, 8, 1, seed=6)
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        predict_limit(problem, Hadamard(2), Init.uniform(0.1), **{name: value})
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        predict_limit_weight_norm(problem, WeightNormalized(2, 0.5), 2.0, 3.0, **{name: value})


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "10"])
def test_invalid_max_iter_raises(value):
    problem = gaussian_sparse(20, 8, 1, seed=6)
    with pytest.raises(InvalidParameterError, match="'max_iter'"):
        predict_limit(problem, Hadamard(2), Init.uniform(0.1), max_iter=value)


# ----------------------------------------------------------------------------- CLI


def _predict(*args):
    return CliRunner().invoke(main, ["predict", "--n", "60", "--m", "24", "--s", "3", *args, "--json"])


CLI_SETTINGS = [
    ((), "converged"),
    (("--depth", "4", "--alpha", "1e-12"), "converged"),
    (("--signed", "--depth", "2", "--alpha", "1e-8"), "converged"),
    (("--depth", "3", "--alpha", "1e-6", "--tol", "1e-17"), "stalled"),
    (("--depth", "2", "--kkt-tol", "1e-17"), "stalled"),
    (("--depth", "4", "--alpha", "1e-12", "--max-iter", "1"), "budget_exhausted"),
]


@pytest.mark.parametrize("args, expected", CLI_SETTINGS)
def test_predict_json_never_claims_an_unmet_tolerance(args, expected):
    result = _predict(*args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {"status", "residual", "kkt", "tol", "kkt_tol", "steepest_steps", "x"} <= record.keys()
    assert record["status"] == expected
    met = record["residual"] <= record["tol"] and record["kkt"] <= record["kkt_tol"]
    assert met == (record["status"] == "converged")
    # the residual in the JSON is that of the x in the JSON, recomputed from the same problem
    problem = gaussian_sparse(60, 24, 3, signed="--signed" in args, seed=0)
    recomputed = _residual(problem, np.array(record["x"]))
    assert math.isclose(record["residual"], recomputed, rel_tol=1e-6, abs_tol=1e-15)


def test_predict_cli_defaults_are_the_library_defaults():
    record = json.loads(_predict().stdout)
    assert (record["tol"], record["kkt_tol"]) == (DEFAULT_TOL, DEFAULT_KKT_TOL)


@pytest.mark.parametrize("args, name", [(("--tol", "0"), "'tol'"), (("--kkt-tol", "2"), "'kkt_tol'"),
                                        (("--max-iter", "0"), "'max_iter'")])
def test_predict_cli_rejects_bad_tolerances(args, name):
    result = _predict(*args)
    assert result.exit_code == 2
    assert name in result.output and "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("n, m, s, seed, depth, alpha", [
    (100, 90, 68, 0, 3, 1e-2), (100, 60, 3, 1, 3, 1e-2), (100, 60, 15, 1, 2, 1e-4), (100, 80, 60, 2, 2, 1e-4),
    (100, 60, 21, 3, 2, 1e-4),  # 500 steps of t ~ 0.01: the trust radius bound coordinates already at 0
])
def test_phase_diagram_problems_converge_without_steepest_descent(n, m, s, seed, depth, alpha):
    """Phase-diagram trials of the report (section e) on which Newton fell back to steepest descent
    for good (477-479 of 500 steps, residual ~5e-9) once its updated Newton matrix lost the digits a
    direction needs (a freshly formed matrix gives the direction back), or crawled at t ~ 0.01 because
    coordinates whose z had underflowed to 0 still bounded the trust radius. Rechecked independently."""
    problem = gaussian_sparse(n, m, s, seed=seed)
    model = Hadamard(depth)
    limit = predict_limit(problem, model, Init.uniform(alpha))
    assert limit.status == "converged" and limit.steepest_steps == 0, limit.message
    assert _residual(problem, limit.x) <= limit.tol
    # KKT by dense least squares over the coordinates that did not underflow (N = 2 sends some to
    # 1e-233 and below, where log z has no digits left; range_residual leaves the same ones out)
    keep = limit.z >= np.finfo(float).tiny
    v = MirrorMap(depth).phi(limit.z[keep]) - MirrorMap(depth).phi(np.full(keep.sum(), alpha ** depth))
    Bt = problem.A.T[keep]
    coef, *_ = np.linalg.lstsq(Bt, v, rcond=None)
    assert np.linalg.norm(v - Bt @ coef) / np.linalg.norm(v) <= limit.kkt_tol
