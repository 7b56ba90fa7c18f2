"""Steps above the linear-stability threshold (SPEC D.3(i); §F row 10) and SGD against the flow limit."""

import numpy as np

from implicit_bias.dynamics import SGD, GradientDescent, Stop, simulate
from implicit_bias.limits import predict_limit
from implicit_bias.models import Hadamard, Init
from implicit_bias.problems import gaussian_sparse
from implicit_bias.theory import lambda_max_at


def flow_limit_and_curvature(problem, model, alpha):
    """The flow limit (dual Newton solve of A.14) and its λ_max (D.3), from which the steps are set."""
    limit = predict_limit(problem, model, Init.uniform(alpha))
    assert limit.status == "converged", limit.message
    B = model.lift(problem.A).dense()
    return limit, B, lambda_max_at(B, limit.z, model.depth)


def test_steps_above_the_threshold_diverge_or_land_flatter_at_the_edge_of_stability():
    """§F row 10: GD with eta = c * 2 / λ_max(GF limit), c = 0.5 .. 3.

    Every converged run is linearly stable at its endpoint, eta λ_max(endpoint) / 2 <= 1 (D.3(i);
    the endpoint is at residual 1e-8, so 1 + 1e-6 leaves room for the endpoint's distance to its
    limit). Above the threshold (c > 1) a run diverges, keeps oscillating (residual >= 1e-3), or
    converges to another interpolant with eta λ_max / 2 ~ 1 (observed 0.992-0.996, tolerance 0.95:
    the edge, not merely stable), flatter than the GF limit (λ_max smaller by ~1/c) and with a
    larger l1 norm than the GF limit (observed excess 1.7, 4.7, 8.6 at c = 1.1, 1.3, 1.6; SPEC
    0.10-1.03 on its own problem). Observed here: 3 of 6 converge, 3 diverge (SPEC: 3 of 6).
    """
    problem = gaussian_sparse(60, 25, 3, signed=True, seed=1)
    model, alpha = Hadamard(2, signed=True), 0.1
    limit, B, lam = flow_limit_and_curvature(problem, model, alpha)
    outcomes = {}
    for c in (0.5, 0.9, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0):
        eta = c * 2 / lam
        gd = simulate(problem, model, GradientDescent(step=eta), init=alpha, stop=Stop(tol=1e-8, max_evals=20_000))
        outcomes[c] = gd.status
        assert gd.status in ("converged", "diverged", "budget_exhausted"), gd.message
        if gd.status == "budget_exhausted":
            assert gd.residual >= 1e-3, gd.residual  # oscillating, not a slow convergence
        if gd.status != "converged":
            assert c > 1, (c, gd.message)  # below the threshold GD converges (SPEC D.3(ii) regime)
            continue
        edge = eta * lambda_max_at(B, np.abs(np.prod(gd.factors, axis=0)), 2) / 2
        assert edge <= 1 + 1e-6, (c, edge)
        if c > 1:
            assert edge >= 0.95, (c, edge)
            assert np.sum(np.abs(gd.x)) - np.sum(np.abs(limit.x)) > 0, c
    above = [status for c, status in outcomes.items() if c > 1]
    assert "converged" in above and "diverged" in above, outcomes  # both fates occur, as the SPEC reports


def test_sgd_at_a_tenth_of_the_threshold_ends_near_the_flow_limit():
    """§F row 10: SGD with q = 10 and 20 at eta = 0.1 * 2 / λ_max ends within l1 distance 5e-2 of
    the GF limit (observed 2.6e-2 and 3.9e-2; SPEC 2.3e-2 on its problem). The distance is the O(eta)
    shift of the limit (D.3(iii), D.4): full-batch GD at the same step is 3.9e-2 off, so SGD must be
    within 2x of GD's distance (observed ratios 0.66 and 1.0) -- the noise does not change the order."""
    problem = gaussian_sparse(40, 20, 2, signed=True, seed=9)
    model, alpha = Hadamard(2, signed=True), 0.1
    limit, _, lam = flow_limit_and_curvature(problem, model, alpha)
    eta = 0.1 * 2 / lam
    stop = Stop(tol=1e-8, max_evals=50_000)
    gd = simulate(problem, model, GradientDescent(step=eta), init=alpha, stop=stop)
    gd_distance = np.sum(np.abs(gd.x - limit.x))
    assert gd.converged, gd.message
    for q in (10, 20):
        sgd = simulate(problem, model, SGD(step=eta, batch=q, seed=0), init=alpha, stop=stop)
        assert sgd.converged, sgd.message
        distance = np.sum(np.abs(sgd.x - limit.x))
        assert distance <= 5e-2, (q, distance)
        assert distance <= 2 * gd_distance, (q, distance, gd_distance)
