"""The stiff path of the deep-matrix flows (issue 12): DOP853, then BDF with the exact Jacobian.

Every check is against an independent computation: central finite differences (the Jacobian),
the logistic closed form of the diagonal depth-2 flow, scipy's solve_ivp DOP853 at rtol 1e-12 on
the same right-hand side, small-step GD (SPEC D.1) and the entries of W itself (the runaway case).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from implicit_bias import matrix_theory as mt
from implicit_bias._validation import relative_distance
from implicit_bias.dynamics import GradientDescent, GradientFlow, Stop, simulate
from implicit_bias.dynamics.driver import drive
from implicit_bias.dynamics.matrix import ProductFlow
from implicit_bias.dynamics.matrix_stiff import (
    StiffSwitchStepper,
    factor_jacobian,
    measurement_rows,
)
from implicit_bias.dynamics.matrix_wmethod import CompletionGaussNewton, WMethodStepper
from implicit_bias.errors import InvalidParameterError, UnsupportedError
from implicit_bias.models import DeepFactorization, MatrixInit
from implicit_bias.operators import EntryMask
from implicit_bias.problems import MatrixRecovery, matrix_completion, matrix_sensing


def _runaway() -> MatrixRecovery:
    """2 x 2 completion, W12 = W21 = 1 and W22 = 0 observed: no finite interpolant of rank 1, so the
    flow drives |W11| = W12 W21 / W22 to infinity as the residual goes to 0."""
    return MatrixRecovery(EntryMask((2, 2), (np.array([0, 1, 1]), np.array([1, 0, 1]))), np.array([1.0, 1.0, 0.0]))


def _flat_flow(problem, factors0):
    """``(rhs, jac, unpack, state0)`` of the factor flow on the row-major concatenated factors."""
    shapes = [Wj.shape for Wj in factors0]
    edges = np.cumsum([0] + [a * b for a, b in shapes])

    def unpack(state):
        return [state[edges[j]:edges[j + 1]].reshape(shapes[j]) for j in range(len(shapes))]

    def rhs(t, state):
        factors = unpack(state)
        below = mt.partial_products(factors)
        return -np.concatenate([g.ravel() for g in mt.chain_gradients(factors, problem.gradient(below[-1]), below)])

    def jac(t, state):
        factors = unpack(state)
        return factor_jacobian(factors, problem.gradient(mt.factor_product(factors)), measurement_rows(problem.operator))

    return rhs, jac, unpack, np.concatenate([Wj.ravel() for Wj in factors0])


@pytest.mark.parametrize("measurement", ["gaussian", "completion"])
def test_factor_jacobian_matches_central_differences(measurement):
    """Exact Jacobian against central differences at random (unbalanced, non-square) factors.
    Central differences with h = 1e-6 err by ~h^2 |f'''| + eps |f| / h ~ 1e-10 relative: 1e-7 is slack."""
    problem = (matrix_sensing(4, 3, 1, 7, seed=1) if measurement == "gaussian"
               else matrix_completion(4, 3, 1, count=7, seed=1))
    model = DeepFactorization(3, widths=(2, 5))
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal(shape) for shape in model.factor_shapes(problem.shape)]
    rhs, jac, _, state = _flat_flow(problem, factors)
    h = 1e-6
    numeric = np.stack([(rhs(0, state + h * e) - rhs(0, state - h * e)) / (2 * h) for e in np.eye(state.size)], axis=1)
    assert np.max(np.abs(jac(0, state) - numeric)) <= 1e-7 * np.max(np.abs(numeric))


def _diagonal_problem():
    """Observe only the diagonal (3, 0.5) of a 2 x 2 matrix: from W_j(0) = alpha I at depth 2 each
    diagonal entry follows the logistic flow w' = -2 w (w - y), w(t) = y / (1 + (y/w0 - 1) e^{-2 y t})."""
    y = np.array([3.0, 0.5])
    return MatrixRecovery(EntryMask((2, 2), (np.array([0, 1]), np.array([0, 1]))), y), y


def test_stiff_stepper_is_tolerance_proportional_on_the_closed_form():
    """BDF from the second step (the switch forced): the error at T = 2 (mid-escape for y = 0.5)
    against the logistic closed form falls with rtol (tolerance proportionality, the order test of an
    adaptive variable-order method, whose error is no clean power of rtol: measured 6.3e-6, 5.6e-7,
    7.3e-9 at rtol 1e-5, 1e-7, 1e-9): below 100 rtol at each, and 100x smaller over the four decades."""
    problem, y = _diagonal_problem()
    alpha, T = 0.1, 2.0
    factors0 = DeepFactorization(2).initial_factors(alpha, problem.shape)
    rhs, jac, unpack, state0 = _flat_flow(problem, factors0)
    exact = y / (1 + (y / alpha**2 - 1) * np.exp(-2 * y * T))
    errors = []
    for rtol in (1e-5, 1e-7, 1e-9):
        stepper = StiffSwitchStepper(rhs, state0, rtol=rtol, atol=1e-3 * rtol * alpha**2, jac=jac, jac_cost=0,
                                     observe=lambda s: mt.factor_product(unpack(s)), residual=problem.residual,
                                     min_explicit_steps=1, stiff_ratio=0.0)
        outcome = drive(stepper, stop=Stop(tol=1e-15, max_time=T), clock=lambda: 0.0)
        assert stepper.switched_at is not None and outcome.t == T
        W = mt.factor_product(unpack(outcome.state))
        errors.append(float(np.max(np.abs(np.diag(W) - exact) / exact)))
        assert abs(W[0, 1]) + abs(W[1, 0]) == 0.0  # off-diagonal entries stay exactly 0
        assert errors[-1] <= 100 * rtol
    assert errors[2] <= errors[0] / 100


def test_switched_flow_agrees_with_an_independent_dop853_solution():
    """Default GradientFlow on 4 x 4 rank-1 completion switches to BDF at t ~ 360; its state at T = 1000
    (landed on by steps) against solve_ivp's DOP853 at rtol 1e-12 on the same right-hand side. The flow
    runs at rtol 1e-10: 1e-7 relative leaves room for the global error's growth along the plateau."""
    problem, model, alpha, T = matrix_completion(4, 4, 1, count=9, seed=0), DeepFactorization(3), 0.1, 1000.0
    result = simulate(problem, model, GradientFlow(), init=alpha, stop=Stop(tol=1e-12, max_time=T), save_at=[T])
    assert "then BDF" in result.message and result.t == T
    rhs, _, unpack, state0 = _flat_flow(problem, model.initial_factors(alpha, problem.shape))
    reference = solve_ivp(rhs, (0, T), state0, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    assert relative_distance(result.W, mt.factor_product(unpack(reference))) <= 1e-7


def test_runaway_completion_reaches_1e_3_and_loss_never_increases():
    """The 2 x 2 runaway case (depth 3, alpha 1e-2, flow) reaches residual 1e-3, which DOP853 alone did
    not in 500k evaluations; the saved loss is non-increasing (to 1e-9 relative: rtol 1e-10 steps), and
    W is the rank-1 matrix the theory predicts: W12 W21 / W22 = W11 (det W ~ 0), W11 ~ 1/W22."""
    problem = _runaway()
    times = np.geomspace(1.0, 1e8, 60)
    result = simulate(problem, DeepFactorization(3), GradientFlow(), init=1e-2, stop=Stop(tol=1e-3, max_evals=100_000),
                      save_at=times)
    assert result.status == "converged" and "then BDF" in result.message, result.message
    assert result.grad_evals < 50_000
    loss = result.path.residual ** 2
    assert np.all(np.diff(loss) <= 1e-9 * loss[:-1])
    W = result.W
    assert abs(np.linalg.det(W)) <= 1e-3 * np.linalg.norm(W) ** 2
    assert W[0, 0] > 500 and abs(W[0, 0] * W[1, 1] - 1) <= 1e-2


def test_product_flow_takes_the_same_stiff_path_on_the_runaway_case():
    """ProductFlow (finite-difference Jacobian after the switch) reaches 1e-3 too; at a common time
    T its W matches the factor flow's (balanced init: the two flows coincide, SPEC C.5) to 1e-6."""
    problem, T = _runaway(), 1e5
    stop = Stop(tol=1e-9, max_time=T)
    product = simulate(problem, DeepFactorization(3), ProductFlow(), init=1e-2, stop=stop, save_at=[T])
    factor = simulate(problem, DeepFactorization(3), GradientFlow(), init=1e-2, stop=stop, save_at=[T])
    assert "then BDF" in product.message and product.t == factor.t == T
    assert relative_distance(product.W, factor.W) <= 1e-6


def test_flow_agrees_with_small_step_gd_to_first_order():
    """GD with step eta follows the flow to O(eta) (SPEC D.1): at T = 600, past the switch to BDF,
    the distance between GD's iterate T/eta and the flow's W(T) halves when eta halves
    (ratio in [1.6, 2.4]) and is below 1e-2 at eta = 0.01."""
    problem, model, alpha, T = matrix_completion(4, 4, 1, count=9, seed=0), DeepFactorization(3), 0.1, 600.0
    flow = simulate(problem, model, GradientFlow(), init=alpha, stop=Stop(tol=1e-12, max_time=T), save_at=[T])
    assert "then BDF" in flow.message
    gaps = []
    for eta in (0.02, 0.01):
        gd = simulate(problem, model, GradientDescent(step=eta), init=alpha,
                      stop=Stop(tol=1e-12, max_time=T, max_evals=10**6))
        assert abs(gd.t - T) <= eta
        gaps.append(relative_distance(gd.W, flow.W))
    assert 1.6 <= gaps[0] / gaps[1] <= 2.4 and gaps[1] <= 1e-2


def test_bad_input_still_raises_typed_errors():
    problem = _runaway()
    with pytest.raises(InvalidParameterError, match="rtol"):
        GradientFlow(rtol=2.0)
    with pytest.raises(UnsupportedError, match="balanced"):
        simulate(problem, DeepFactorization(3), ProductFlow(), init=MatrixInit.gaussian(0.1), stop=Stop())
    with pytest.raises(InvalidParameterError, match="save_at"):
        simulate(problem, DeepFactorization(3), GradientFlow(), init=1e-2, save_at=[-1.0])


# ---------------------------------------------------------------------------------------------
# the W-method of large completion states (matrix_wmethod)


def _completion_flow(seed: int = 1, spread: float = 0.3):
    """5 x 4 rank-1 completion (10 entries), depth 3 with widths (3, 6), from unbalanced random factors:
    ``(problem, rhs, model, state0)`` of the factor flow."""
    problem = matrix_completion(5, 4, 1, count=10, seed=seed)
    rng = np.random.default_rng(0)
    factors0 = [W + spread * rng.standard_normal(W.shape)
                for W in DeepFactorization(3, widths=(3, 6)).initial_factors(0.5, problem.shape)]
    rhs, _, _, state0 = _flat_flow(problem, factors0)
    return problem, rhs, CompletionGaussNewton([W.shape for W in factors0], problem.operator.index), state0


def test_gram_jvp_and_vjp_match_a_finite_difference_jacobian():
    """J J^T by the entry formula, J v and J^T r against the dense Jacobian of the measurements by central
    differences (h = 1e-6: error ~h^2 |f'''| + eps/h ~ 1e-10 relative, so 1e-7 is slack)."""
    problem, _, model, state = _completion_flow()
    model.at(model.unpack(state))
    measure = lambda s: problem.operator.apply(mt.factor_product(model.unpack(s)))
    h = 1e-6
    J = np.stack([(measure(state + h * e) - measure(state - h * e)) / (2 * h) for e in np.eye(state.size)], axis=1)
    scale = np.max(np.abs(J))
    rng = np.random.default_rng(1)
    v, r = rng.standard_normal(state.size), rng.standard_normal(problem.m)
    assert np.max(np.abs(model.gram() - J @ J.T)) <= 1e-7 * scale**2
    assert np.max(np.abs(model.jvp(v) - J @ v)) <= 1e-7 * scale * np.sum(np.abs(v))
    assert np.max(np.abs(model.vjp(r) - J.T @ r)) <= 1e-7 * scale * np.sum(np.abs(r))
    model.factorize()
    c = 0.7  # Woodbury against a dense solve of (I/c + J^T J) u = b
    b = rng.standard_normal(state.size)
    dense = np.linalg.solve(np.eye(state.size) / c + J.T @ J, b)
    assert np.linalg.norm(model.solve(b, c) - dense) <= 1e-6 * np.linalg.norm(dense)


@pytest.mark.parametrize("refresh", ["never", "always"])
def test_wmethod_is_third_order_with_any_jacobian(refresh):
    """Fixed steps T/n, n = 16 .. 128, against solve_ivp's DOP853 at rtol 1e-13: the error falls by 2^3 = 8
    per halving, with the Jacobian refreshed every step and frozen at t = 0 ("never": a W-method keeps its
    order with a stale matrix; an order-2 method would give 4). [6.5, 10] leaves room for the next error
    term (measured at n = 8 .. 64: 8.3, 8.7, 8.4 frozen, 6.2, 6.8, 7.3 refreshed, rising toward 8)."""
    _, rhs, model, state0 = _completion_flow()
    T = 1.0
    reference = solve_ivp(rhs, (0, T), state0, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
    errors = []
    for n in (16, 32, 64, 128):
        stepper = WMethodStepper(rhs, state0, model, rtol=1e-6, atol=1e-9, observe=lambda s: s, residual=lambda s: 1.0,
                                 refresh=refresh, fixed_step=T / n)
        outcome = drive(stepper, stop=Stop(tol=1e-15, max_time=T), clock=lambda: 0.0)
        assert outcome.t == T and outcome.steps == n
        errors.append(np.linalg.norm(outcome.state - reference))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((6.5 <= ratios) & (ratios <= 10)), ratios


def test_adaptive_wmethod_agrees_with_dop853_and_its_loss_never_increases():
    """Adaptive ROS34PW2 (rtol 1e-10, Jacobian refreshed as in production) from t = 0 to T = 200, through
    the driver with saved times landed on by steps: the saved loss is non-increasing (to 1e-9 relative,
    the per-step tolerance), and W(T) matches solve_ivp's DOP853 at rtol 1e-13 to 1e-7 (measured ~1e-9;
    the global error of ~1e3 steps at rtol 1e-10)."""
    problem, rhs, model, state0 = _completion_flow()
    T = 200.0
    to_W = lambda s: mt.factor_product(model.unpack(s))
    stepper = WMethodStepper(rhs, state0, model, rtol=1e-10, atol=1e-12, observe=to_W, residual=problem.residual)
    outcome = drive(stepper, stop=Stop(tol=1e-15, max_time=T), clock=lambda: 0.0, save_at=np.linspace(1, T, 40),
                    snapshot=lambda W: problem.residual(W) ** 2)
    loss = np.array([record for _, record in outcome.saved])
    assert outcome.t == T and np.all(np.diff(loss) <= 1e-9 * loss[:-1])
    assert loss[-1] <= 1e-3 * loss[0]  # the run went through the fit, not only its start
    reference = solve_ivp(rhs, (0, T), state0, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
    assert relative_distance(to_W(outcome.state), to_W(reference)) <= 1e-7
