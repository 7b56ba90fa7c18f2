"""Matrix references (SPEC C, E.1): nuclear-norm minimisation and the minimum-Frobenius interpolant.

Independent checks: the dual program ``max <y, lam> s.t. ||A*(lam)||_2 <= 1`` solved by Clarabel
(strong duality with the SCS primal), a Candes-Recht dual certificate built from W_true's SVD
(optimality and uniqueness of W_true), a closed form for observed diagonals, the normal
equations ``M^T (M M^T)^{-1} y``, null spaces from scipy and plain GD on the unfactorised loss
(E.1). Every random draw is seeded.
"""

import cvxpy as cp  # required dependency: imported, so a broken install fails instead of skipping
import numpy as np
import pytest
import scipy.linalg

from implicit_bias import references as ref
from implicit_bias.errors import (
    InfeasibleProblemError,
    InvalidParameterError,
    InvalidProblemError,
    SolverError,
)
from implicit_bias.operators import DenseSensing, EntryMask
from implicit_bias.problems import MatrixRecovery, matrix_completion, matrix_sensing


def operator_matrix(problem):
    """The m x (d_y d_x) matrix of the operator, built from adjoints of unit vectors (row-major vec)."""
    return np.stack([problem.operator.adjoint(e).ravel() for e in np.eye(problem.m)])


def dual_optimum(problem):
    """max <y, lam> s.t. sigma_max(A*(lam)) <= 1, by Clarabel: equals min ||W||_* (strong duality)."""
    M = operator_matrix(problem)
    lam = cp.Variable(problem.m)
    dual = cp.Problem(cp.Maximize(problem.y @ lam), [cp.sigma_max(cp.reshape(M.T @ lam, problem.shape, order="C")) <= 1])
    dual.solve(solver="CLARABEL")
    assert dual.status == cp.OPTIMAL
    return dual.value


def feasibility_gap(problem, W):
    """max_l |A(W)_l - y_l| relative to the data scale max(1, ||y||_inf, |W|_max)."""
    return np.max(np.abs(problem.operator.apply(W) - problem.y)) / max(1.0, np.max(np.abs(problem.y)), np.max(np.abs(W)))


# SCS stops when its primal residual is <= eps_abs + eps_rel * (scale of the iterates), with
# eps = 1e-8 by default; 1e-6 leaves two orders for the homogeneous-embedding rescaling
# (observed residuals 1e-13 to 1e-9).
FEAS_TOL = 1e-6
# Both solvers stop at 1e-8 relative gaps; the observed |primal - dual| / primal is <= 2e-8.
DUALITY_RTOL = 1e-6


# ----------------------------------------------------------------------------- nuclear norm


@pytest.mark.parametrize(
    "problem",
    [
        matrix_sensing(10, 8, 2, 40, seed=3),  # too few measurements: the minimiser is not W_true
        matrix_completion(12, 10, 2, count=50, seed=1),
        matrix_sensing(6, 9, 1, 20, condition=1.0, seed=5),
    ],
    ids=["sensing-underdetermined", "completion-underdetermined", "sensing-wide"],
)
def test_nuclear_norm_meets_the_dual_optimum_and_is_feasible(problem):
    W = ref.min_nuclear_norm(problem)
    assert feasibility_gap(problem, W) <= FEAS_TOL
    primal = np.linalg.norm(W, "nuc")
    assert abs(primal - dual_optimum(problem)) <= DUALITY_RTOL * primal


def test_nuclear_norm_of_an_observed_diagonal_is_the_l1_norm():
    # Observing the diagonal d of a square matrix: ||X||_* >= <X, diag(sign d)> = sum |d_i| (the
    # sign matrix has spectral norm 1), with equality at X = diag(d). So the optimum is ||d||_1
    # exactly; the minimiser is not unique (any X with S^T X PSD and that diagonal), so only the
    # objective is compared. Tolerance: SCS eps = 1e-8 on O(1) data; 1e-6 relative.
    d = np.array([3.0, -1.0, 2.0, 0.5, -0.25])
    problem = MatrixRecovery(EntryMask((5, 5), (np.arange(5), np.arange(5))), d)
    W = ref.min_nuclear_norm(problem)
    assert np.linalg.norm(W, "nuc") == pytest.approx(np.abs(d).sum(), rel=1e-6)
    assert np.allclose(np.diag(W), d, atol=1e-6)


@pytest.mark.parametrize(
    "problem",
    [matrix_completion(20, 20, 1, count=200, seed=0), matrix_completion(30, 30, 2, count=600, seed=1)],
    ids=["completion-rank1", "completion-rank2"],
)
def test_nuclear_norm_recovers_w_true_with_a_dual_certificate(problem):
    # Candes-Recht certificate for W_true = U S V^T with tangent space T: if A is injective on T
    # and some lam has P_T(A* lam) = U V^T and ||P_T_perp(A* lam)||_2 < 1, W_true is the UNIQUE
    # nuclear-norm minimiser. The least-squares lam is computed here, independently of the solver.
    U, s, Vt = np.linalg.svd(problem.W_true)
    r = int(np.sum(s > 1e-10 * s[0]))
    U, V = U[:, :r], Vt[:r].T
    PU, PV = U @ U.T, V @ V.T

    def P_T(Z):
        return PU @ Z + Z @ PV - PU @ Z @ PV

    adjoints = [problem.operator.adjoint(e) for e in np.eye(problem.m)]
    B = np.stack([P_T(Z).ravel() for Z in adjoints], axis=1)
    assert np.linalg.matrix_rank(B) == r * (sum(problem.shape) - r)  # A* maps onto T: A injective on T
    lam, *_ = np.linalg.lstsq(B, (U @ V.T).ravel(), rcond=None)
    Y = np.tensordot(lam, np.array(adjoints), 1)
    assert np.linalg.norm(P_T(Y) - U @ V.T) <= 1e-10  # exact (lstsq on a consistent system)
    assert np.linalg.norm(Y - P_T(Y), 2) < 0.9  # observed 0.67 and 0.73 (strictly below 1)
    # ... so the solver must return W_true; SCS at eps 1e-8 lands within ~1e-8 (observed 5e-9).
    assert problem.relative_error(ref.min_nuclear_norm(problem)) <= 1e-6


def test_gaussian_sensing_recovers_the_talks_rank_two_matrix():
    # SPEC C.13 / the talk's figure: 20 x 20 rank 2 from m = 160 Gaussian measurements, about twice
    # the r (2n - r) = 76 degrees of freedom; the dual optimum equals ||W_true||_*.
    problem = matrix_sensing(20, 20, 2, 160, seed=0)
    W = ref.min_nuclear_norm(problem)
    assert problem.relative_error(W) <= 1e-6  # observed 1.4e-8
    assert abs(dual_optimum(problem) - np.linalg.norm(problem.W_true, "nuc")) <= DUALITY_RTOL * np.linalg.norm(W, "nuc")


def test_noisy_data_use_the_residual_budget():
    problem = matrix_sensing(8, 8, 2, 30, noise=0.1, seed=2)
    exact = ref.min_nuclear_norm(problem)
    budget = ref.min_nuclear_norm(problem, delta=0.05)
    # W = 0 violates the budget (residual 1 > 0.05), so the minimiser sits on its boundary.
    assert problem.residual(budget) == pytest.approx(0.05, rel=1e-5)
    # a larger feasible set cannot raise the optimum (SCS accuracy 1e-8 relative)
    assert np.linalg.norm(budget, "nuc") <= np.linalg.norm(exact, "nuc") * (1 + 1e-7)


def test_clarabel_agrees_with_scs():
    problem = matrix_completion(8, 7, 2, count=30, seed=4)
    scs = ref.min_nuclear_norm(problem)
    clarabel = ref.min_nuclear_norm(problem, solver="clarabel")
    assert np.linalg.norm(clarabel, "nuc") == pytest.approx(np.linalg.norm(scs, "nuc"), rel=DUALITY_RTOL)


def test_nuclear_norm_errors():
    problem = matrix_sensing(5, 5, 1, 10, seed=0)
    with pytest.raises(InvalidProblemError, match="matrix recovery problem"):
        ref.min_nuclear_norm(np.eye(3))
    for kwargs, name in [({"eps": 0.0}, "eps"), ({"eps": float("nan")}, "eps"), ({"delta": -0.1}, "delta"),
                         ({"solver": "NOPE"}, "solver")]:
        with pytest.raises(InvalidParameterError, match=name):
            ref.min_nuclear_norm(problem, **kwargs)
    # 30 noisy measurements of a 4 x 5 matrix (20 unknowns): A(W) = y has no solution.
    rng = np.random.default_rng(0)
    overdetermined = MatrixRecovery(DenseSensing(rng.standard_normal((30, 4, 5))), rng.standard_normal(30))
    with pytest.raises(InfeasibleProblemError, match="delta > 0"):
        ref.min_nuclear_norm(overdetermined)
    assert overdetermined.residual(ref.min_nuclear_norm(overdetermined, delta=0.9)) <= 0.9 + 1e-6
    with pytest.raises(SolverError, match="max_iters"):
        ref.min_nuclear_norm(matrix_completion(30, 30, 3, count=300, seed=0), max_iters=2)


# ----------------------------------------------------------------------------- Frobenius (E.1)


@pytest.mark.parametrize(
    "problem",
    [matrix_sensing(6, 5, 2, 12, seed=0), matrix_sensing(4, 9, 1, 30, seed=1), matrix_completion(7, 6, 2, p=0.4, seed=2)],
    ids=["sensing", "sensing-wide", "completion"],
)
def test_min_frobenius_is_the_normal_equation_solution_orthogonal_to_the_null_space(problem):
    W = ref.min_frobenius(problem)
    M = operator_matrix(problem)
    closed = M.T @ np.linalg.solve(M @ M.T, problem.y)  # full row rank (m < d_y d_x): E.1
    # both are backward-stable solves of a system with cond(M) < 10: agreement to ~1e-14
    assert np.allclose(W.ravel(), closed, rtol=0, atol=1e-10 * np.linalg.norm(closed))
    assert problem.residual(W) <= 1e-12
    null = scipy.linalg.null_space(M)
    assert np.linalg.norm(null.T @ W.ravel()) <= 1e-10 * np.linalg.norm(W)
    # any other interpolant W + N z is longer (Pythagoras)
    z = np.random.default_rng(0).standard_normal(null.shape[1])
    assert np.linalg.norm(W.ravel() + null @ z) > np.linalg.norm(W)


def test_min_frobenius_of_completion_is_the_zero_fill():
    problem = matrix_completion(5, 6, 2, count=11, seed=3)
    expected = np.zeros(problem.shape)
    rows, cols = problem.operator.index
    expected[rows, cols] = problem.W_true[rows, cols]
    assert np.array_equal(ref.min_frobenius(problem), expected)


def test_min_frobenius_from_w0_is_the_gradient_descent_limit():
    # E.1: GD on 0.5 ||A(W) - y||^2 with eta < 2 / ||M||_2^2 from W0 converges to
    # W0 + A^+(y - A(W0)). The error contracts by (1 - eta sigma_min^2) per step; 5000 steps
    # reach rounding level (checked at 1e-9).
    problem = matrix_sensing(4, 5, 1, 8, seed=6)
    W0 = np.random.default_rng(1).standard_normal(problem.shape)
    M = operator_matrix(problem)
    eta = 1.0 / np.linalg.norm(M, 2) ** 2
    W = W0.copy()
    for _ in range(5000):
        W -= eta * problem.gradient(W)
    assert np.allclose(ref.min_frobenius(problem, W0), W, atol=1e-9)


def test_min_frobenius_probes_operators_without_matrices():
    # An operator exposing only shape/m/apply/adjoint is probed with unit matrices; the answer
    # must equal the DenseSensing one (same linear map), to lstsq rounding.
    problem = matrix_sensing(3, 4, 1, 6, seed=8)

    class Opaque:
        shape, m = problem.operator.shape, problem.operator.m
        apply, adjoint = problem.operator.apply, problem.operator.adjoint

    opaque = MatrixRecovery(Opaque(), problem.y)
    assert np.allclose(ref.min_frobenius(opaque), ref.min_frobenius(problem), atol=1e-12)


def test_min_frobenius_errors():
    problem = matrix_sensing(3, 3, 1, 4, seed=0)
    with pytest.raises(InvalidParameterError, match="W0"):
        ref.min_frobenius(problem, np.zeros((2, 3)))
    with pytest.raises(InvalidParameterError, match="NaN"):
        ref.min_frobenius(problem, np.full((3, 3), np.nan))
    with pytest.raises(InvalidProblemError):
        ref.min_frobenius("not a problem")
