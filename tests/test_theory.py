"""Tests of implicit_bias.theory: every formula against an independent computation.

Independent references: direct transcriptions of SPEC (A.15)-(A.18), the inequalities of the
proof sketch of Theorem A.2 solved by root finding, finite-difference Hessians of the factor
loss (A.1) for (D.3), and exact Bregman projections (SPEC A.14) where a theorem is evaluated.
Every random draw is seeded.
"""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from implicit_bias import references as ref
from implicit_bias import theory as th
from implicit_bias.errors import InvalidParameterError, InvalidProblemError

# ----------------------------------------------------------------------------- beta constants


def test_beta_constants_under_c2_and_signed_a19():
    n, alpha, N = 7, 0.1, 3
    b1, bmin = th.beta_constants(np.full(n, alpha**N))
    assert b1 == pytest.approx(n * alpha**N, rel=1e-15)
    assert bmin == pytest.approx(alpha**N, rel=1e-15)
    # Signed (A.19): (u0^N, v0^N) with u0 = v0 = alpha 1 -> (2 n alpha^N, alpha^N).
    b1, bmin = th.beta_constants(np.concatenate([np.full(n, alpha**N), np.full(n, alpha**N)]))
    assert (b1, bmin) == pytest.approx((2 * n * alpha**N, alpha**N), rel=1e-15)


@pytest.mark.parametrize("bad", [np.array([1.0, 0.0]), np.array([1.0, -1.0]), np.ones((2, 2))])
def test_beta_constants_rejects_non_positive_vectors(bad):
    with pytest.raises(InvalidParameterError, match="'x0_product'"):
        th.beta_constants(bad)


# ----------------------------------------------------------------------------- (A.15)


def eps_transcribed(N, b1, bmin, Q):
    """SPEC (A.15), written out independently with numpy."""
    if N == 2:
        return np.log(b1 / bmin) / np.log(Q / b1)
    e = 1 - 2 / N
    return N / 2 * (np.power(b1, e) - np.power(bmin, e)) / (np.power(Q, e) - np.power(b1, e))


CASES = [(N, b1, bmin, Q) for N in (2, 3, 4, 7) for (b1, bmin, Q) in
         [(1e-3, 1e-4, 1.0), (0.5, 0.5, 2.0), (2e-6, 1e-9, 30.0), (0.9, 0.01, 1.0)]]


@pytest.mark.parametrize("N, b1, bmin, Q", CASES)
def test_epsilon_bound_matches_transcription(N, b1, bmin, Q):
    # Same formula evaluated in a different order: agreement to rounding (1e-13 relative).
    assert th.epsilon_bound(N, b1, bmin, Q) == pytest.approx(eps_transcribed(N, b1, bmin, Q),
                                                             rel=1e-13, abs=1e-300)


def largest_delta_allowed_by_proof(N, b1, bmin, Q):
    """Largest delta allowed by the inequality the proof of Theorem A.2 starts from (SPEC §A.5).

    N = 2: s log(s/(e b1)) <= Q log(Q/(e bmin)), s = (1 + delta) Q.
    N > 2: delta Q <= (N/2) Q^p (b1^{1-p} (1 + delta)^p - bmin^{1-p}), p = 2/N.
    Both left-minus-right sides are convex in delta and <= 0 at delta = 0, so the feasible set
    is [0, delta*]; delta* is found by bracketing and brentq (xtol ~ 1e-15 relative).
    """
    if N == 2:
        def f(d):
            s = (1 + d) * Q
            return s * math.log(s / (math.e * b1)) - Q * math.log(Q / (math.e * bmin))
    else:
        p = 2 / N

        def f(d):
            return d * Q - N / 2 * Q**p * (b1 ** (1 - p) * (1 + d) ** p - bmin ** (1 - p))
    assert f(0.0) <= 0.0
    if f(0.0) == 0.0 and f(1e-12) > 0:
        return 0.0
    hi = 1.0
    while f(hi) <= 0:
        hi *= 2
    return brentq(f, 0.0, hi, xtol=1e-300, rtol=1e-15)


@pytest.mark.parametrize("N", [2, 3, 4, 6])
def test_epsilon_bound_dominates_the_proof_inequality(N):
    # epsilon is derived from the inequality by (1+d)log(1+d) >= d (N = 2) or Bernoulli (N > 2),
    # so it must bound delta* from above, and be close to it when small (both relaxations are
    # tight to first order at d = 0).
    Q = 3.0
    for b1 in [1e-8, 1e-5, 1e-3, 1e-1, 1.0, 2.5]:
        for ratio in [1.0, 0.5, 1e-2, 1e-6]:
            bmin = b1 * ratio
            eps = th.epsilon_bound(N, b1, bmin, Q)
            delta = largest_delta_allowed_by_proof(N, b1, bmin, Q)
            assert delta <= eps * (1 + 1e-12) + 1e-15
            if eps < 1e-2:  # observed delta* / eps >= 0.99998 on this grid
                assert delta >= 0.99 * eps


def test_epsilon_bound_limit_small_initialisation():
    # N = 2, uniform x0 = beta 1_n: eps = log(n) / log(Q / (n beta)) -> 0 like 1/log(1/beta).
    n, Q = 10, 2.0
    betas = 10.0 ** -np.arange(2, 301, 20)
    eps = [th.epsilon_bound(2, n * b, b, Q) for b in betas]
    assert np.all(np.diff(eps) < 0)
    np.testing.assert_allclose(eps, np.log(n) / np.log(Q / (n * betas)), rtol=1e-13)
    assert eps[-1] < 0.01
    # N > 2: eps ~ (N/2) (1 - n^{-(1-2/N)}) (n beta / Q)^{1-2/N} as beta -> 0.
    for N in (3, 4):
        e = 1 - 2 / N
        for b in (1e-20, 1e-40):
            leading = N / 2 * (1 - n ** (-e)) * (n * b / Q) ** e
            assert th.epsilon_bound(N, n * b, b, Q) == pytest.approx(leading, rel=1e-6)


@pytest.mark.parametrize("N", [2, 3, 5])
def test_epsilon_bound_is_infinite_without_hypothesis(N):
    assert th.epsilon_bound(N, 1.0, 0.1, 1.0) == math.inf  # beta_1 = Q
    assert th.epsilon_bound(N, 2.0, 0.1, 1.0) == math.inf  # beta_1 > Q
    assert th.epsilon_bound(N, 2.0, 0.1, 0.0) == math.inf  # y = 0
    assert th.epsilon_bound(N, 1.0, 1.0, 2.0) == 0.0  # beta_min = beta_1: a single coordinate


# ----------------------------------------------------------------------------- (A.16)


def test_simple_bound_dominates_a15_under_its_condition():
    checked = 0
    for N in range(3, 9):
        e = 1 - 2 / N
        for Q in (0.3, 1.0, 50.0):
            for b1 in Q * np.logspace(-12, 0, 25):
                simple = th.epsilon_bound_simple(N, b1, Q)
                condition = b1**e <= 0.5 * Q**e
                assert math.isinf(simple) == (not condition)
                if not condition:
                    continue
                assert simple == pytest.approx(N * (b1 / Q) ** e, rel=1e-14)
                for bmin in b1 * np.logspace(-10, 0, 6):
                    assert th.epsilon_bound(N, b1, bmin, Q) <= simple * (1 + 1e-14)
                    checked += 1
    assert checked > 500


def test_simple_bound_is_not_stated_for_depth_two():
    assert th.epsilon_bound_simple(2, 1e-9, 1.0) == math.inf


# ----------------------------------------------------------------------------- (A.17), (A.18)


def test_weights_general_init():
    x0 = np.random.default_rng(0).uniform(1e-6, 0.9, 12)
    np.testing.assert_allclose(th.weights_general_init(2, x0), np.log(1 / x0), rtol=1e-15)
    for N in (3, 4, 6):
        np.testing.assert_allclose(th.weights_general_init(N, x0), x0 ** (2 / N - 1), rtol=1e-15)
    # Uniform x0: uniform weights, so the weighted LP is the plain l1 LP.
    rng = np.random.default_rng(1)
    A = rng.standard_normal((8, 20))
    y = A @ rng.uniform(0.1, 1.0, 20)
    h = th.weights_general_init(3, np.full(20, 1e-3))
    np.testing.assert_allclose(ref.min_weighted_l1(A, y, h, nonneg=True),
                               ref.min_l1(A, y, nonneg=True), atol=1e-9)


def test_weights_general_init_rejects_bad_x0():
    with pytest.raises(InvalidParameterError, match=r"'x0'.*\(0, 1\)"):
        th.weights_general_init(2, np.array([0.5, 1.0]))
    with pytest.raises(InvalidParameterError, match="'x0'"):
        th.weights_general_init(3, np.array([0.5, 0.0]))


@pytest.mark.parametrize("N", [3, 4, 5])
def test_weighted_bound_reduces_to_a15_for_uniform_init(N):
    # x0 = beta 1: h = beta^{2/N-1} 1, so Q_h = beta^{2/N-1} Q, B_1 = beta^{2/N-1} n beta and
    # B_min = beta^{2/N-1} beta; the common factor cancels in (A.18).
    n, Q = 15, 4.0
    for beta in (1e-9, 1e-4, 1e-2):
        eps_h = th.weighted_epsilon_bound(N, np.full(n, beta), beta ** (2 / N - 1) * Q)
        assert eps_h == pytest.approx(th.epsilon_bound(N, n * beta, beta, Q), rel=1e-10)


def test_weighted_bound_hypothesis_and_depth():
    x0 = np.array([0.5, 0.25])
    B_1 = np.sum(x0 ** (2 / 3))
    assert th.weighted_epsilon_bound(3, x0, B_1) == math.inf
    assert math.isfinite(th.weighted_epsilon_bound(3, x0, 2 * B_1))
    with pytest.raises(InvalidParameterError, match="The 'depth' parameter must be an int >= 3"):
        th.weighted_epsilon_bound(2, x0, 2 * B_1)


# ----------------------------------------------------------------------------- theorems on limits


def nonneg_sparse_problem(m, n, s, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) / np.sqrt(m)
    x = np.zeros(n)
    x[rng.choice(n, s, replace=False)] = rng.uniform(0.5, 2.0, s)
    return A, A @ x, rng


@pytest.mark.parametrize("N, alpha", [(2, 0.1), (2, 0.03), (3, 0.1), (3, 0.03), (4, 0.1)])
def test_theorem_a2_holds_for_the_bregman_limit(N, alpha):
    # Theorem A.1 + A.2: the limit is the Bregman projection; its l1 excess is <= eps Q_+.
    # The projection is accurate to ~1e-9 relative here (test_references), far below eps Q.
    A, y, _ = nonneg_sparse_problem(15, 40, 3, seed=N * 100 + int(1 / alpha))
    x0 = np.full(40, alpha**N)
    z = ref.bregman_projection_cvxpy(A, y, x0, N)
    Q = ref.l1_optimum(A, y, nonneg=True)
    eps = th.epsilon_bound(N, *th.beta_constants(x0), Q)
    assert math.isfinite(eps)
    assert th.bound_holds(z.sum(), Q, eps) is True
    assert z.sum() - Q >= -1e-8 * Q  # z is feasible, so it cannot beat the l1 minimum


@pytest.mark.parametrize("N", [2, 3])
def test_theorem_a4_signed_bound(N):
    # SPEC A.7: the signed limit is the positive projection for [A, -A]; betas from (A.19).
    rng = np.random.default_rng(40 + N)
    A = rng.standard_normal((12, 30)) / np.sqrt(12)
    x = np.zeros(30)
    x[:3] = [1.5, -1.0, 0.7]
    y = A @ x
    alpha = 0.1
    x0 = np.full(60, alpha**N)
    z = ref.bregman_projection_cvxpy(np.hstack([A, -A]), y, x0, N)
    x_hat = z[:30] - z[30:]
    Q = ref.l1_optimum(A, y)
    eps = th.epsilon_bound(N, *th.beta_constants(x0), Q)
    assert math.isfinite(eps)
    assert th.bound_holds(np.abs(x_hat).sum(), Q, eps) is True


def test_theorem_a2_depth_two_general_init_and_a3():
    # N = 2: (A.15) holds for any positive x0 (SPEC §A.5). N = 3: (A.18) with x0 = lambda u.
    A, y, rng = nonneg_sparse_problem(15, 40, 3, seed=7)
    Q = ref.l1_optimum(A, y, nonneg=True)
    x0 = 1e-3 * rng.uniform(0.2, 5.0, 40)
    z = ref.bregman_projection_cvxpy(A, y, x0, 2)
    eps = th.epsilon_bound(2, *th.beta_constants(x0), Q)
    assert math.isfinite(eps) and th.bound_holds(z.sum(), Q, eps) is True

    x0 = 1e-4 * rng.uniform(0.2, 5.0, 40)
    h = th.weights_general_init(3, x0)
    Q_h = h @ ref.min_weighted_l1(A, y, h, nonneg=True)
    z = ref.bregman_projection_cvxpy(A, y, x0, 3)
    eps_h = th.weighted_epsilon_bound(3, x0, Q_h)
    assert math.isfinite(eps_h) and th.bound_holds(h @ z, Q_h, eps_h) is True


def test_spec_counterexample_violates_a15_but_not_a18():
    # SPEC §A.5: A = [1, 1/2, 1/2], y = 1, x0 = (1e-12, 5e-3, 5e-3), N = 3. The limit solves
    # z = (h - a nu)^{-3}, a^T z = 1 (stationarity of A.14), a 1-D monotone root in nu < min h/a.
    a, N = np.array([1.0, 0.5, 0.5]), 3
    x0 = np.array([1e-12, 5e-3, 5e-3])
    h = th.weights_general_init(N, x0)
    nu = brentq(lambda t: a @ (h - a * t) ** -3.0 - 1.0, -1e6, np.min(h / a) * (1 - 1e-12),
                xtol=1e-14)
    z = (h - a * nu) ** -3.0
    np.testing.assert_allclose(z, [0.0, 1.0, 1.0], atol=1e-9)
    Q_plus = 1.0  # z = (1, 0, 0)
    eps = th.epsilon_bound(N, *th.beta_constants(x0), Q_plus)
    assert eps == pytest.approx(0.41, abs=5e-3)
    assert th.bound_holds(z.sum(), Q_plus, eps) is False  # excess 1.00 > 0.41
    Q_h = min(h[0] / a[0], h[1] / a[1])  # weighted LP with one constraint: best ratio h_k / a_k
    eps_h = th.weighted_epsilon_bound(N, x0, Q_h)
    assert th.bound_holds(h @ z, Q_h, eps_h) is True


# ----------------------------------------------------------------------------- (D.3)


def factor_loss(W, A, y):
    """(A.1): 0.5 ||A (w_1 * ... * w_N) - y||^2 with the N factors as rows of W."""
    r = A @ np.prod(W, axis=0) - y
    return 0.5 * r @ r


def fd_hessian(f, w, h):
    """Central second differences in all coordinates: O(h^2) truncation error."""
    k = w.size
    H = np.empty((k, k))
    E = np.eye(k) * h
    for i in range(k):
        for j in range(i, k):
            H[i, j] = H[j, i] = (f(w + E[i] + E[j]) - f(w + E[i] - E[j])
                                 - f(w - E[i] + E[j]) + f(w - E[i] - E[j])) / (4 * h * h)
    return H


@pytest.mark.parametrize("N", [1, 2, 3, 4])
def test_lambda_max_matches_finite_difference_hessian(N):
    # At an interpolant (Ax = y) with N identical factors w = x^{1/N}, each a separate variable,
    # the Hessian of (A.1) in all N n variables is J^T A^T A J; its top eigenvalue is (D.3).
    rng = np.random.default_rng(50 + N)
    m, n = 3, 6
    A = rng.standard_normal((m, n))
    x = rng.uniform(0.3, 2.0, n)
    y = A @ x
    W = np.tile(x ** (1 / N), (N, 1))
    H = fd_hessian(lambda v: factor_loss(v.reshape(N, n), A, y), W.ravel(), h=1e-4)
    top = np.linalg.eigvalsh(H)[-1]
    # Truncation error ~ h^2 * (4th derivatives) <= ~1e-8 relative; rounding ~ 1e-16 / h^2 * |r|
    # with r ~ h at the interpolant, i.e. ~1e-12. Observed <= 8.5e-13 over N = 1..4 (issue 16: was 1e-7).
    assert th.lambda_max_at(A, x, N) == pytest.approx(top, rel=3e-11)


def test_lambda_max_depth_one_and_zeros():
    A = np.random.default_rng(60).standard_normal((4, 9))
    norm_sq = np.linalg.norm(A, 2) ** 2
    assert th.lambda_max_at(A, np.zeros(9), 1) == pytest.approx(norm_sq, rel=1e-14)
    x = np.zeros(9)
    x[2] = 4.0
    # Only column 2 survives: 3 * 4^{4/3} * ||a_2||^2.
    expected = 3 * 4 ** (4 / 3) * A[:, 2] @ A[:, 2]
    assert th.lambda_max_at(A, x, 3) == pytest.approx(expected, rel=1e-13)
    with pytest.raises(InvalidParameterError, match="'x'"):
        th.lambda_max_at(A, -np.ones(9), 2)
    with pytest.raises(InvalidParameterError, match=r"shape \(n,\) = \(9,\)"):
        th.lambda_max_at(A, np.ones(8), 2)
    with pytest.raises(InvalidProblemError, match="2-D"):
        th.lambda_max_at(np.ones(9), np.ones(9), 2)


@pytest.mark.parametrize("N", [1, 2, 3, 5])
def test_stable_step_size_formula_and_domination(N):
    rng = np.random.default_rng(70 + N)
    A = rng.standard_normal((6, 15))
    target = rng.uniform(0, 3, 15)
    c = 0.5
    step = th.stable_step_size(A, target, N, c=c)
    expected = 2 * c / (N * np.linalg.norm(A, 2) ** 2 * target.max() ** (2 - 2 / N))
    assert step == pytest.approx(expected, rel=1e-14)
    # D.3(ii): N ||A||^2 ||x||_inf^{2-2/N} >= lambda_max(x) for every x >= 0 with
    # ||x||_inf <= ||target||_inf, so the step is <= c * 2 / lambda_max at all such x.
    for _ in range(50):
        x = rng.uniform(0, 1, 15) ** rng.uniform(0.2, 5) * target.max()
        assert step <= c * 2 / th.lambda_max_at(A, x, N) * (1 + 1e-12)
    if N == 1:  # depth 1: the plain GD bound c * 2 / ||A||^2 (SPEC E.1 with c = 1)
        assert step == pytest.approx(c * 2 / np.linalg.norm(A, 2) ** 2, rel=1e-14)


def test_stable_step_size_rejects_bad_input():
    A = np.eye(3)
    with pytest.raises(InvalidParameterError,
                       match=r"The 'c' parameter must be a float in the range \(0, inf\). Got 0"):
        th.stable_step_size(A, np.ones(3), 2, c=0)
    with pytest.raises(InvalidParameterError, match="'x_target'.*nonzero"):
        th.stable_step_size(A, np.zeros(3), 2)
    with pytest.raises(InvalidParameterError,
                       match="The 'depth' parameter must be an int >= 1. Got 0."):
        th.stable_step_size(A, np.ones(3), 0)


# ----------------------------------------------------------------------------- bound_holds


def test_bound_holds():
    assert th.bound_holds(1.05, 1.0, 0.1) is True
    assert th.bound_holds(1.2, 1.0, 0.1) is False
    assert th.bound_holds(5.0, 1.0, math.inf) is None
    # Rounding slack: an excess 1e-12 above the bound counts as holding, 1e-6 does not.
    assert th.bound_holds(1.0 + 1e-12, 1.0, 0.0) is True
    assert th.bound_holds(1.0 + 1e-6, 1.0, 0.0) is False
    assert th.bound_holds(1.0 + 1e-12, 1.0, 0.0, rtol=0.0) is False
    with pytest.raises(InvalidParameterError, match="'eps'"):
        th.bound_holds(1.0, 1.0, -0.1)


# ----------------------------------------------------------------------------- errors


DEPTH_MSG = "The 'depth' parameter must be an int >= 2. Got {}."
BETA_MIN_MSG = "The 'beta_min' parameter must be a float in the range (0, beta_1 = 0.1]. Got {}."
RANGE_MSG = "The '{}' parameter must be a float in the range {}. Got {}."


@pytest.mark.parametrize(
    "args, message",
    [
        ((1, 0.1, 0.01, 1.0), DEPTH_MSG.format(1)),
        ((2.0, 0.1, 0.01, 1.0), DEPTH_MSG.format(2.0)),
        ((True, 0.1, 0.01, 1.0), DEPTH_MSG.format(True)),
        ((2, -0.1, 0.01, 1.0), RANGE_MSG.format("beta_1", "(0, inf)", -0.1)),
        ((2, 0.1, 0.0, 1.0), BETA_MIN_MSG.format(0.0)),
        ((2, 0.1, 0.2, 1.0), BETA_MIN_MSG.format(0.2)),
        ((2, 0.1, 0.01, -1.0), RANGE_MSG.format("Q", "[0, inf)", -1.0)),
        ((2, 0.1, 0.01, float("nan")), RANGE_MSG.format("Q", "[0, inf)", "nan")),
    ],
)
def test_epsilon_bound_errors_name_the_parameter(args, message):
    with pytest.raises(InvalidParameterError) as info:
        th.epsilon_bound(*args)
    assert str(info.value) == message
