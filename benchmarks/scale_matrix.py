"""Issue 12, Part 1 (matrix flows): the stiff path of the deep-matrix flows against today's DOP853.

``ratio`` is baseline seconds / new seconds; where the baseline ran out of budget first it is a lower
bound. ``rows(quick)`` measures, in one run, each target's baseline (pure DOP853, today's integrator, driven
by the same driver) and the new default (DOP853, then BDF with the exact dense Jacobian once a
long run is stability-limited; states above 1500 numbers stay on DOP853). ``python
benchmarks/scale_matrix.py [--quick]`` prints the markdown table.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.integrate import DOP853

from implicit_bias import matrix_theory as mt
from implicit_bias._validation import relative_distance
from implicit_bias.dynamics import GradientDescent, GradientFlow, Stop, simulate
from implicit_bias.dynamics.driver import drive
from implicit_bias.dynamics.flow import ScipyStepper
from implicit_bias.dynamics.matrix import ProductFlow
from implicit_bias.models import DeepFactorization
from implicit_bias.operators import EntryMask
from implicit_bias.problems import MatrixRecovery, matrix_completion


def _runaway() -> MatrixRecovery:
    return MatrixRecovery(EntryMask((2, 2), (np.array([0, 1, 1]), np.array([1, 0, 1]))), np.array([1.0, 1.0, 0.0]))


def _dop853(problem, model, alpha, stop, rtol=1e-10):
    """Today's factor flow: DOP853 through the driver, same rtol/atol rule as ``GradientFlow()``."""
    factors0 = model.initial_factors(alpha, problem.shape)
    shapes = [Wj.shape for Wj in factors0]
    edges = np.cumsum([0] + [a * b for a, b in shapes])

    def unpack(state):
        return [state[edges[j]:edges[j + 1]].reshape(shapes[j]) for j in range(len(shapes))]

    def rhs(t, state):
        factors = unpack(state)
        below = mt.partial_products(factors)
        return -np.concatenate([g.ravel() for g in mt.chain_gradients(factors, problem.gradient(below[-1]), below)])

    state0 = np.concatenate([Wj.ravel() for Wj in factors0])
    atol = min(1e-12, 1e-2 * rtol * float(np.max(np.abs(state0))))
    stepper = ScipyStepper(DOP853, rhs, state0, rtol=rtol, atol=atol, observe=lambda s: mt.factor_product(unpack(s)),
                           residual=problem.residual, residual_matvecs=1)
    started = time.perf_counter()
    outcome = drive(stepper, stop=stop, clock=lambda: time.perf_counter() - started)
    W = mt.factor_product(unpack(outcome.state))
    return outcome, W, time.perf_counter() - started


def _best_of(k, run):
    """``(result, best seconds)`` of ``k`` runs of ``run()``."""
    best, result = np.inf, None
    for _ in range(k):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return result, best


def _row(target, baseline, new, goal, met, detail):
    base_s = baseline[1]
    return {"target": target, "baseline": baseline[0], "new": round(new, 3),
            "ratio": round(base_s / new, 1) if new > 0 else None, "goal": goal if isinstance(goal, str) else f"< {goal:g} s",
            "verdict": "met" if met else "missed", "detail": detail}


def runaway_rows(quick: bool) -> list[dict]:
    problem, model, tol = _runaway(), DeepFactorization(3), 1e-3
    budget = 100_000 if quick else 500_000
    out, W_dop, base_s = _dop853(problem, model, 1e-2, Stop(tol=tol, max_evals=budget))
    baseline = (f"DOP853 {base_s:.1f} s, {out.status} at {out.evals} evals, residual {problem.residual(W_dop):.2g}", base_s)
    rows = []
    for name, dynamics in (("factor flow", GradientFlow()), ("product flow", ProductFlow())):
        result, new_s = _best_of(1 if quick else 3, lambda d=dynamics: simulate(
            problem, model, d, init=1e-2, stop=Stop(tol=tol, max_evals=budget)))
        rows.append(_row(
            f"2x2 runaway completion, depth 3, alpha 1e-2, {name}: residual 1e-3", baseline, new_s, 10,
            result.converged and new_s < 10,
            f"{result.status}, residual {result.residual:.3g}, {result.steps} steps, {result.grad_evals} evals, "
            f"t = {result.t:.3g}, W11 = {result.W[0, 0]:.4g}; {result.message}"))
    return rows


def completion_100_row(quick: bool) -> dict:
    """The 100 x 100 target: its 30,000-number state is above the dense-Jacobian limit, so the flow
    is today's DOP853; both columns are that run (with a wall budget in quick mode)."""
    problem, model = matrix_completion(100, 100, 5, count=2000, seed=0), DeepFactorization(3)
    stop = Stop(tol=1e-6, max_evals=100_000, max_wall=10.0 if quick else np.inf)
    result, new_s = _best_of(1, lambda: simulate(problem, model, GradientFlow(), init=1e-1, stop=stop))
    return _row("100x100 rank-5 completion (m = 2000), depth 3, alpha 0.1, flow: residual 1e-6",
                (f"DOP853 (unchanged) {new_s:.1f} s", new_s), new_s, 10, result.converged and new_s < 10,
                f"{result.status}, residual {result.residual:.3g}, {result.steps} steps, {result.grad_evals} evals, "
                f"t = {result.t:.3g}: state 30,000 > 1,500 (no dense Jacobian); see the report")


def faithfulness_row(quick: bool) -> dict:
    """4 x 4 rank-1 completion (switches to BDF at t ~ 360): W(T = 600) against pure DOP853 and GD."""
    problem, model, alpha, T = matrix_completion(4, 4, 1, count=9, seed=0), DeepFactorization(3), 0.1, 600.0
    (flow, new_s) = _best_of(1, lambda: simulate(problem, model, GradientFlow(), init=alpha,
                                                 stop=Stop(tol=1e-12, max_time=T), save_at=[T]))
    out, W_dop, base_s = _dop853(problem, model, alpha, Stop(tol=1e-12, max_time=T, max_evals=10**7))
    gd = simulate(problem, model, GradientDescent(step=0.01), init=alpha, stop=Stop(tol=1e-12, max_time=T, max_evals=10**6))
    dist_dop, dist_gd = relative_distance(flow.W, W_dop), relative_distance(flow.W, gd.W)
    return _row("faithfulness: 4x4 rank-1 completion, depth 3, W(600) vs DOP853 and GD(eta = 0.01)",
                (f"DOP853 {base_s:.2f} s ({out.steps} steps)", base_s), new_s, "same W(T) as DOP853 to 1e-7", dist_dop < 1e-7,
                f"{flow.message}; |W - W_DOP853| / |W| = {dist_dop:.2g}, |W - W_GD| / |W| = {dist_gd:.2g} (O(eta))")


def rows(quick: bool = False) -> list[dict]:
    return [completion_100_row(quick), *runaway_rows(quick), faithfulness_row(quick)]


def _markdown(table: list[dict]) -> str:
    keys = ["target", "baseline", "new", "ratio", "goal", "verdict", "detail"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in table]
    return "\n".join(lines)


if __name__ == "__main__":
    print(_markdown(rows(quick="--quick" in sys.argv)))
