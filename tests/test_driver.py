"""The one integrator driver and the statuses simulate() can end with (issue 11, A.2-A.4).

Every status of :mod:`implicit_bias.status` that ``simulate`` can produce is forced here (or in the
test named next to it) and asserted, with the reason checked independently of the library.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from implicit_bias.dynamics import GradientDescent, GradientFlow, Stop, simulate
from implicit_bias.dynamics.descent import STALL_WINDOW
from implicit_bias.dynamics.driver import drive
from implicit_bias.dynamics.matrix import ProductFlow
from implicit_bias.dynamics.rosenbrock import RodasMirrorFlow
from implicit_bias.errors import InvalidParameterError, UnsupportedError
from implicit_bias.models import DeepFactorization, Hadamard
from implicit_bias.problems import gaussian_sparse, matrix_sensing
from implicit_bias.status import STATUSES

PROBLEM = gaussian_sparse(30, 12, 2, seed=21)


def mirror_reference(problem, N, alpha, times):
    """The mirror flow phi' = -A^T (A z(phi) - y), z = (-(N-2) phi)^(-N/(N-2)) (SPEC A.12), N >= 3,
    integrated by scipy's explicit DOP853 at rtol 1e-12: independent of the library's integrators."""
    A, y = problem.A, problem.y

    def z_of(phi):
        return (-(N - 2) * phi) ** (-N / (N - 2))

    phi0 = np.full(problem.n, -(alpha ** N) ** (2 / N - 1) / (N - 2))
    sol = solve_ivp(lambda t, p: -A.T @ (A @ z_of(p) - y), (0, times[-1]), phi0, method="DOP853", t_eval=times,
                    rtol=1e-12, atol=1e-14)
    return z_of(sol.y.T)


@pytest.mark.parametrize("space", ["mirror", "factor"])
def test_saved_times_are_landed_on_and_match_an_independent_solution(space):
    """Save-time policy: the path holds exactly the requested times (no interpolation grid), and the
    saved states agree with an independent DOP853 solution; the Rosenbrock (mirror) and BDF (factor)
    steppers share the driver."""
    N, alpha = 3, 0.1
    times = np.array([0.0, 0.3, 1.7, 5.0, 20.0, 60.0])
    result = simulate(PROBLEM, Hadamard(N), GradientFlow(space=space, rtol=1e-10), init=alpha,
                      stop=Stop(tol=1e-12, max_time=60.0), save_at=times)
    assert result.status == "budget_exhausted" and result.t == 60.0  # landed on max_time exactly
    assert np.array_equal(result.path.t, times)
    reference = mirror_reference(PROBLEM, N, alpha, times)
    # both integrate to ~1e-10 per step; the trajectories agree to ~1e-9 relative, 1e-7 leaves margin
    assert np.max(np.abs(result.path.x - reference)) <= 1e-7 * np.max(np.abs(reference))


def test_matrix_flows_land_on_saved_times():
    """DOP853 (factor and product flow) through the same driver: exact save times, same path (SPEC C.5)."""
    problem = matrix_sensing(6, 5, 2, 20, seed=1)
    times = [0.0, 0.25, 1.0, 3.0]
    runs = [simulate(problem, DeepFactorization(2), dyn, init=0.3, stop=Stop(tol=1e-12, max_time=3.0), save_at=times)
            for dyn in (GradientFlow(), ProductFlow())]
    for run in runs:
        assert run.status == "budget_exhausted" and run.t == 3.0
        assert np.array_equal(run.path.t, times)
    # balanced start: the factor flow's product solves the product flow (C.5); both at rtol 1e-10
    assert np.max(np.abs(runs[0].path.W - runs[1].path.W)) <= 1e-7 * np.max(np.abs(runs[1].path.W))


def test_budget_exhausted_is_reported_for_flow_and_gd():
    """A gradient-evaluation budget far too small for tol 1e-10: the status says so and the run stops
    at the budget (the flow checks after each accepted step, GD after each evaluation)."""
    flow = simulate(PROBLEM, Hadamard(2), GradientFlow(), init=1e-3, stop=Stop(tol=1e-10, max_evals=40))
    gd = simulate(PROBLEM, Hadamard(2), GradientDescent(0.01), init=1e-3, stop=Stop(tol=1e-10, max_evals=40))
    for result in (flow, gd):
        assert result.status == "budget_exhausted" and "budget 40 exhausted" in result.message
        assert result.grad_evals >= 40 and result.residual > 1e-10
    assert gd.grad_evals == 40 and gd.steps == 40


def test_gd_at_the_saddle_stalls_instead_of_burning_the_budget():
    """N = 3 from alpha = 1e-20: the GD update eta * w^2 * |A^T y| is below half an ulp of w, so GD never
    leaves the saddle (SPEC D.1). It must end ``stalled`` after one stall window, not at the budget."""
    N, alpha, eta = 3, 1e-20, 0.05
    update = eta * alpha ** (N - 1) * np.max(np.abs(PROBLEM.A.T @ PROBLEM.y))  # first step, z ~ 0
    assert update < np.spacing(alpha) / 2  # the premise, checked in float64 independently of the library
    result = simulate(PROBLEM, Hadamard(N), GradientDescent(eta), init=alpha, stop=Stop(max_evals=200_000))
    assert result.status == "stalled", result.message
    assert result.steps == STALL_WINDOW and result.grad_evals <= STALL_WINDOW + 1
    assert np.all(result.factors == alpha)  # bitwise at the start
    assert result.residual == pytest.approx(1.0, abs=1e-12)  # x = alpha^3 ~ 0: nothing fitted


def test_a_slow_plateau_is_not_a_stall():
    """Control for the test above: from alpha = 1e-4 the same GD crawls along the plateau (relative
    update ~1e-5 per step, resolvable), so it must run to its budget, not be called stalled."""
    result = simulate(PROBLEM, Hadamard(3), GradientDescent(0.05), init=1e-4, stop=Stop(max_evals=3 * STALL_WINDOW))
    assert result.status == "budget_exhausted", result.message
    assert np.all(result.factors != 1e-4)  # every coordinate moved: no window was bitwise unchanged


def test_flow_from_an_underflowed_product_is_refused_or_fails_without_switching_method():
    """alpha = 1e-250, N = 2: alpha^2 underflows to 0 in float64, where the mirror map log z is -inf.
    ``simulate`` refuses it up front (a typed error naming alpha^N); the Rosenbrock stepper handed
    such a product directly cannot step, and the driver ends ``failed`` and says so, with no other
    method substituted silently (the exponential fallback is gone)."""
    assert (1e-250) ** 2 == 0.0
    with pytest.raises(InvalidParameterError, match="outside float64's range"):
        simulate(PROBLEM, Hadamard(2), GradientFlow(), init=1e-250)
    B = Hadamard(2).lift(PROBLEM.A)
    with np.errstate(divide="ignore"):
        flow = RodasMirrorFlow(B, PROBLEM.y, 2, np.zeros(B.width), 1e-6)
    outcome = drive(flow, stop=Stop(), clock=lambda: 0.0)
    assert outcome.status == "failed" and "outside the domain" in outcome.message and "t=0" in outcome.message
    assert outcome.steps == 0


def test_a_broken_step_schedule_fails():
    result = simulate(PROBLEM, Hadamard(2), GradientDescent(lambda k: 0.01 if k < 5 else float("nan")), init=0.1)
    assert result.status == "failed" and "step schedule returned nan at step 5" in result.message
    assert result.steps == 5


def test_every_status_simulate_reports_is_in_the_vocabulary():
    """The statuses forced in this file (and ``diverged`` in test_dynamics) are words of status.py."""
    forced = {"converged", "budget_exhausted", "stalled", "diverged", "failed"}
    assert forced <= set(STATUSES)


def test_dispatch_by_model_type():
    class MyHadamard(Hadamard):
        pass

    assert simulate(PROBLEM, MyHadamard(2), GradientFlow(), init=0.1).method == "flow[mirror]"  # subclasses dispatch
    with pytest.raises(InvalidParameterError, match="model must be one of Hadamard, WeightNormalized, DeepFactorization"):
        simulate(PROBLEM, object(), GradientFlow(), init=0.1)
    with pytest.raises(UnsupportedError, match="needs a SparseRecovery problem"):
        simulate(matrix_sensing(6, 5, 2, 20, seed=1), Hadamard(2), GradientFlow(), init=0.1)
    with pytest.raises(InvalidParameterError, match="'stop' parameter must be a Stop"):
        simulate(PROBLEM, Hadamard(2), GradientFlow(), init=0.1, stop=1e-8)
    with pytest.raises(InvalidParameterError, match="'save_at' parameter"):
        simulate(PROBLEM, Hadamard(2), GradientFlow(), init=0.1, save_at=[-1.0])
