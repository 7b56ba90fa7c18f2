"""Tests of implicit_bias.references against independent computations.

Independent references: cvxpy/Clarabel for the l1 objectives, the dual LP (solved separately)
for l1 optimality certificates, np.linalg.pinv and scipy null spaces for the l2 solution, the
KKT condition of SPEC A.3 (Theorem A.0) and an exact dual Newton solve for the Bregman
projection. Every random draw is seeded.
"""

import cvxpy as cp  # required dependency: imported, so a broken install fails instead of skipping
import numpy as np
import pytest
import scipy.linalg
from scipy.optimize import linprog

from implicit_bias import references as ref
from implicit_bias.errors import (
    InfeasibleProblemError,
    InvalidParameterError,
    InvalidProblemError,
)


def gaussian(m, n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, n)) / np.sqrt(m), rng


def sparse_problem(m, n, s, seed, nonneg=False):
    A, rng = gaussian(m, n, seed)
    x = np.zeros(n)
    support = rng.choice(n, s, replace=False)
    x[support] = rng.uniform(0.5, 2.0, s) * (1 if nonneg else rng.choice([-1, 1], s))
    return A, A @ x, x


def dense_nonneg_problem(m, n, seed):
    """y = A x with x > 0 dense, so S_+ is nonempty and the l1 minimiser is a generic vertex."""
    A, rng = gaussian(m, n, seed)
    return A, A @ rng.uniform(0.1, 1.0, n)


# ----------------------------------------------------------------------------- min_l1


def test_min_l1_recovers_sparse_vector():
    # m = 30 Gaussian measurements of a 3-sparse vector in R^60: far inside the l1 recovery
    # regime, so the LP returns x itself. HiGHS simplex solves the basis system directly,
    # hence 1e-9 (observed ~1e-16).
    A, y, x = sparse_problem(30, 60, 3, seed=0)
    np.testing.assert_allclose(ref.min_l1(A, y), x, atol=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("nonneg", [False, True])
def test_min_l1_matches_cvxpy_and_dual_certificate(seed, nonneg):
    if nonneg:
        A, y = dense_nonneg_problem(15, 40, seed)
    else:
        A, rng = gaussian(15, 40, seed)
        y = rng.standard_normal(15)
    z = ref.min_l1(A, y, nonneg=nonneg)
    value = np.abs(z).sum()

    # Feasibility: HiGHS feasibility tolerance 1e-10 (observed ~1e-15).
    assert np.linalg.norm(A @ z - y) <= 1e-10 * np.linalg.norm(y)
    if nonneg:
        assert z.min() >= 0.0

    # Objective vs cvxpy/Clarabel (interior point, gap tolerance 1e-10): 1e-7 relative.
    v = cp.Variable(A.shape[1], nonneg=nonneg)
    problem = cp.Problem(cp.Minimize(cp.norm1(v)), [A @ v == y])
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert problem.status == cp.OPTIMAL
    assert abs(value - problem.value) <= 1e-7 * value

    # Dual LP, solved independently: max y^T mu s.t. -1 <= A^T mu <= 1 (signed) or
    # A^T mu <= 1 (nonneg). Strong duality and complementary slackness certify optimality.
    m = A.shape[0]
    if nonneg:
        dual = linprog(-y, A_ub=A.T, b_ub=np.ones(A.shape[1]), bounds=(None, None), method="highs")
    else:
        dual = linprog(-y, A_ub=np.vstack([A.T, -A.T]), b_ub=np.ones(2 * A.shape[1]),
                       bounds=(None, None), method="highs")
    assert dual.status == 0
    mu = dual.x
    assert mu.shape == (m,)
    # Both LPs are solved by simplex to ~1e-15; 1e-9 relative leaves room for presolve.
    assert abs(value - y @ mu) <= 1e-9 * value
    active = np.abs(z) > 1e-9
    np.testing.assert_allclose((A.T @ mu)[active], np.sign(z[active]), atol=1e-8)
    assert ref.l1_optimum(A, y, nonneg=nonneg) == pytest.approx(value, rel=1e-12)


def test_min_l1_nonneg_infeasible_suggests_signed_model():
    A, y = np.array([[1.0, 1.0]]), np.array([-1.0])
    with pytest.raises(InfeasibleProblemError, match="nonnegative") as info:
        ref.min_l1(A, y, nonneg=True)
    assert "--signed" in str(info.value)
    with pytest.raises(InfeasibleProblemError):
        ref.l1_optimum(A, y, nonneg=True)
    # The signed problem is feasible: z = (-1, 0) or (0, -1), Q = 1.
    assert ref.l1_optimum(A, y) == pytest.approx(1.0, rel=1e-12)


def test_min_l1_inconsistent_system_is_infeasible():
    A, y = np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1.0, 3.0])
    with pytest.raises(InfeasibleProblemError, match="range of A"):
        ref.min_l1(A, y)


# ----------------------------------------------------------------------------- weighted l1


def test_min_weighted_l1_with_unit_weights_is_min_l1():
    A, y, _ = sparse_problem(12, 30, 6, seed=4)
    np.testing.assert_allclose(ref.min_weighted_l1(A, y, np.ones(30)), ref.min_l1(A, y),
                               atol=1e-12)


@pytest.mark.parametrize("nonneg", [False, True])
def test_min_weighted_l1_change_of_variables_and_cvxpy(nonneg):
    # sum h|z| with Az = y  <=>  ||w||_1 with (A diag(1/h)) w = y, z = w / h: an independent
    # route through the unweighted LP. The minimisers are unique for generic data, so they
    # agree to the LP accuracy (1e-9).
    A, y = dense_nonneg_problem(12, 30, seed=5)
    h = np.random.default_rng(6).uniform(0.2, 5.0, 30)
    z = ref.min_weighted_l1(A, y, h, nonneg=nonneg)
    np.testing.assert_allclose(z, ref.min_l1(A / h, y, nonneg=nonneg) / h, atol=1e-9)
    v = cp.Variable(30, nonneg=nonneg)
    problem = cp.Problem(cp.Minimize(h @ cp.abs(v)), [A @ v == y])
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert h @ np.abs(z) == pytest.approx(problem.value, rel=1e-7)  # Clarabel gap 1e-10


@pytest.mark.parametrize("h", [np.zeros(30), -np.ones(30), np.ones(29)])
def test_min_weighted_l1_rejects_bad_weights(h):
    A, y, _ = sparse_problem(12, 30, 3, seed=7)
    with pytest.raises(InvalidParameterError, match="'h'"):
        ref.min_weighted_l1(A, y, h)


# ----------------------------------------------------------------------------- min_l2


def test_min_l2_is_pseudoinverse_solution_and_orthogonal_to_kernel():
    A, rng = gaussian(10, 25, seed=8)
    y = rng.standard_normal(10)
    x0 = rng.standard_normal(25)
    # lstsq and pinv are both SVD based; agreement to 1e-12 for a well-conditioned 10 x 25 A.
    np.testing.assert_allclose(ref.min_l2(A, y), np.linalg.pinv(A) @ y, atol=1e-12)
    x = ref.min_l2(A, y, x0)
    np.testing.assert_allclose(x, x0 + np.linalg.pinv(A) @ (y - A @ x0), atol=1e-12)
    assert np.linalg.norm(A @ x - y) <= 1e-12 * np.linalg.norm(y)
    kernel = scipy.linalg.null_space(A)  # (25, 15), orthonormal
    assert np.linalg.norm(kernel.T @ (x - x0)) <= 1e-12 * np.linalg.norm(x - x0)


# ----------------------------------------------------------------------------- Bregman


def grad_F(z, N):
    """Gradient of the potential F_N of SPEC (A.12)."""
    return 0.5 * np.log(z) if N == 2 else -(z ** (2.0 / N - 1.0)) / (N - 2)


def dual_newton(A, y, x0, N, max_iter=100):
    """Exact Bregman projection via Newton on the smooth dual (independent of cvxpy).

    Stationarity of (A.14) gives z = x0 exp(A^T nu) (N = 2) or z = (x0^{2/N-1} - A^T nu)^{N/(2-N)}
    (N > 2); nu minimises the convex dual psi, whose gradient is (a multiple of) Az - y.
    """
    m = A.shape[0]
    if N == 2:
        def z_of(nu):
            return x0 * np.exp(A.T @ nu)

        def psi(nu):
            with np.errstate(over="ignore"):  # a trial step may overflow: psi = inf, rejected
                return np.sum(z_of(nu)) - y @ nu

        def curvature(nu):
            return z_of(nu)
    else:
        h, q = x0 ** (2.0 / N - 1.0), N / (2.0 - N)

        def z_of(nu):
            return (h - A.T @ nu) ** q

        def psi(nu):
            u = h - A.T @ nu
            return np.inf if np.any(u <= 0) else (N - 2) * np.sum(u ** (2.0 / (2 - N))) - 2 * y @ nu

        def curvature(nu):
            return -2.0 * q * (h - A.T @ nu) ** (q - 1.0)
    nu = np.zeros(m)
    for _ in range(max_iter):
        g = (A @ z_of(nu) - y) * (1.0 if N == 2 else 2.0)
        step = np.linalg.solve((A * curvature(nu)) @ A.T, -g)
        t, f0 = 1.0, psi(nu)
        while t > 1e-10 and not psi(nu + t * step) <= f0 + 1e-4 * t * (g @ step):
            t *= 0.5
        nu = nu + t * step
        if np.linalg.norm(A @ z_of(nu) - y) <= 1e-13 * np.linalg.norm(y):
            break
    z = z_of(nu)
    assert np.linalg.norm(A @ z - y) <= 1e-11 * np.linalg.norm(y), "test Newton did not converge"
    return z


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_bregman_projection_kkt_and_dual_newton(depth):
    # alpha = 0.5 keeps every coordinate of the projection away from 0, so the KKT residual is
    # meaningful on all n > m coordinates.
    A, y = dense_nonneg_problem(10, 30, seed=10 + depth)
    rng = np.random.default_rng(20 + depth)
    x0 = 0.5**depth * rng.uniform(0.5, 2.0, 30)
    z = ref.bregman_projection_cvxpy(A, y, x0, depth)

    assert z.min() >= 0.0
    assert np.linalg.norm(A @ z - y) <= 1e-8 * np.linalg.norm(y)  # Clarabel tol_feas <= 1e-8

    # Theorem A.0 (SPEC A.3): grad F(z) - grad F(x0) in range(A^T), on coordinates bounded away
    # from 0 (the log / negative power amplifies absolute errors at tiny coordinates).
    keep = z > 1e-3 * z.max()
    assert keep.sum() > A.shape[0]  # otherwise the check is vacuous
    d = grad_F(z[keep], depth) - grad_F(x0[keep], depth)
    mu, *_ = np.linalg.lstsq(A[:, keep].T, d, rcond=None)
    # Observed 1e-11..2e-9 (Clarabel at tolerance 1e-12); 1e-7 leaves a 50x margin for the
    # looser fallback tolerances while still catching a wrong objective (which gives O(1)).
    assert np.linalg.norm(A[:, keep].T @ mu - d) <= 1e-7 * np.linalg.norm(d)

    # Independent exact solve; observed agreement 4e-12..2e-10 (SPEC §F.3 reports 1e-7..1e-10).
    z_exact = dual_newton(A, y, x0, depth)
    assert np.max(np.abs(z - z_exact)) <= 1e-7 * np.max(z_exact)


@pytest.mark.parametrize("depth", [2, 3])
def test_bregman_projection_small_init_and_homogeneity(depth):
    # x0 = 1e-3^N: still within cvxpy's reliable range (SPEC §F.3); observed errors 1e-10..3e-9,
    # tolerance 1e-6 as used downstream. The projection is equivariant under
    # (y, x0) -> (c y, c x0), since D_{F_N} is homogeneous.
    A, y, _ = sparse_problem(15, 40, 3, seed=30 + depth, nonneg=True)
    x0 = np.full(40, 1e-3**depth)
    z = ref.bregman_projection_cvxpy(A, y, x0, depth)
    np.testing.assert_allclose(z, dual_newton(A, y, x0, depth), atol=1e-6 * z.max())
    z_scaled = ref.bregman_projection_cvxpy(A, 7.0 * y, 7.0 * x0, depth)
    np.testing.assert_allclose(z_scaled, 7.0 * z, atol=1e-6 * 7.0 * z.max())


def test_bregman_projection_counterexample_of_spec():
    # SPEC §A.5: A = [1, 1/2, 1/2], y = 1, x0 = (1e-12, 5e-3, 5e-3), N = 3 -> limit ~ (0, 1, 1)
    # (exactly: z_1 = (1e4 - nu)^-3 ~ 1e-12, z_2 = z_3). Observed deviation 2e-8.
    A, y = np.array([[1.0, 0.5, 0.5]]), np.array([1.0])
    z = ref.bregman_projection_cvxpy(A, y, np.array([1e-12, 5e-3, 5e-3]), 3)
    np.testing.assert_allclose(z, [0.0, 1.0, 1.0], atol=1e-6)


def test_bregman_projection_infeasible_and_bad_parameters():
    A, y = np.array([[1.0, 1.0]]), np.array([-1.0])
    with pytest.raises(InfeasibleProblemError, match="--signed"):
        ref.bregman_projection_cvxpy(A, y, np.ones(2), 2)
    A, y = np.array([[1.0, 1.0]]), np.array([1.0])
    with pytest.raises(InvalidParameterError,
                       match="The 'depth' parameter must be an int >= 2. Got 1."):
        ref.bregman_projection_cvxpy(A, y, np.ones(2), 1)
    with pytest.raises(InvalidParameterError, match="'x0'"):
        ref.bregman_projection_cvxpy(A, y, np.array([1.0, 0.0]), 2)
    with pytest.raises(InvalidParameterError, match=r"shape \(n,\) = \(2,\)"):
        ref.bregman_projection_cvxpy(A, y, np.ones(3), 2)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "A, y, match",
    [
        (np.ones(3), np.ones(1), r"2-D array of shape \(m, n\)"),
        (np.ones((2, 3)), np.ones(3), r"shape \(m,\) = \(2,\).*Got an array of shape \(3,\)"),
        (np.array([[1.0, np.nan]]), np.ones(1), "finite"),
    ],
)
@pytest.mark.parametrize("func", [ref.min_l1, ref.l1_optimum, ref.min_l2])
def test_invalid_problems_are_rejected(func, A, y, match):
    with pytest.raises(InvalidProblemError, match=match):
        func(A, y)
