"""One sparse-recovery trial with every metric the core engine reports (SPEC A, D, E.1)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..dynamics import SGD, GradientDescent, GradientFlow, Stop, simulate
from ..errors import InvalidParameterError
from ..limits import predict_limit
from ..models import Hadamard, Init
from ..problems import SparseRecovery, gaussian_sparse
from ..references import min_l1
from ..theory import beta_constants, bound_holds, epsilon_bound

Method = Literal["flow", "gd", "sgd", "limit"]
METHODS = ("flow", "gd", "sgd", "limit")


@dataclass(frozen=True)
class SparseTrial:
    """The parameters of one trial (a Gaussian problem unless a problem is passed)."""

    n: int = 200
    m: int = 60
    s: int = 5
    signed: bool = False
    noise: float = 0.0
    seed: int = 0
    depth: int = 2
    alpha: float = 1e-3
    method: Method = "flow"
    step: float | None = None
    batch: int = 1
    tol: float = 1e-8
    max_evals: int = 200_000
    max_wall: float = float("inf")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidParameterError(f"The 'method' parameter must be one of {METHODS}. Got {self.method!r}.")

    def problem(self) -> SparseRecovery:
        return gaussian_sparse(self.n, self.m, self.s, signed=self.signed, noise=self.noise, seed=self.seed)


def _relative_distance(x: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(x - reference) / max(np.linalg.norm(reference), 1e-300))


def sparse_trial(trial: SparseTrial, problem: SparseRecovery | None = None) -> dict:
    """Run ``trial`` and compare its end point with the theory.

    Distances are relative l2 distances. ``l1_min`` is ``Q_+`` (positive model) or ``Q``
    (signed), by the HiGHS LP; the bound is (A.15) with (A.19) for the signed model, and
    ``None`` when the theorem does not apply (depth 1, or ``beta_1 >= Q``).
    """
    problem = problem if problem is not None else trial.problem()
    model = Hadamard(trial.depth, trial.signed)
    init = Init.uniform(trial.alpha)
    # References first: an infeasible positive problem fails here, before any simulation.
    x_l1 = min_l1(problem.A, problem.y, nonneg=not trial.signed)
    Q = float(np.sum(np.abs(x_l1)))
    predicted = predict_limit(problem, model, init)
    started = time.perf_counter()
    if trial.method == "limit":
        x, status, message = predicted.x, predicted.status, predicted.message
        grad_evals, matvecs, steps, t, step, suggested, drift = predicted.matvecs, predicted.matvecs, predicted.iterations, None, None, None, {}
        wall = predicted.wall_s
    else:
        dynamics = {
            "flow": lambda: GradientFlow(),
            "gd": lambda: GradientDescent(step=trial.step),
            "sgd": lambda: SGD(step=trial.step, batch=trial.batch, seed=trial.seed),
        }[trial.method]()
        result = simulate(
            problem, model, dynamics, init=init,
            stop=Stop(tol=trial.tol, max_evals=trial.max_evals, max_wall=trial.max_wall),
        )
        x, status, message = result.x, result.status, result.message
        grad_evals, matvecs, steps, t = result.grad_evals, result.matvecs, result.steps, result.t
        step, suggested, drift = result.step, result.suggested_step, result.invariant_drift
        wall = time.perf_counter() - started
    finite = bool(np.all(np.isfinite(x)))
    l1_norm = float(np.sum(np.abs(x))) if finite else float("inf")
    eps = None
    holds = None
    if trial.depth >= 2:
        beta_1, beta_min = beta_constants(model.initial_product(init, problem.n))
        eps_value = epsilon_bound(trial.depth, beta_1, beta_min, Q)
        if np.isfinite(eps_value):
            eps = float(eps_value)
            # The theorem speaks of the limit: judge it only for converged runs.
            holds = bound_holds(l1_norm, Q, eps_value) if status == "converged" else None
    return {
        **asdict(trial),
        "status": status,
        "message": message,
        "residual": problem.residual(x) if finite else None,
        "l1_norm": l1_norm if finite else None,
        "l1_min": Q,
        "l1_gap": (l1_norm - Q) / Q if finite else None,
        "epsilon_bound": eps,
        "bound_holds": holds,
        "dist_l1_min": _relative_distance(x, x_l1) if finite else None,
        "dist_predicted": _relative_distance(x, predicted.x) if finite else None,
        "error_true": problem.error_true(x) if finite else None,
        "predicted_kkt": predicted.kkt,
        "grad_evals": int(grad_evals),
        "matvecs": int(matvecs),
        "steps": int(steps),
        "t": t,
        "step": step,
        "suggested_step": suggested,
        "invariant_drift": drift,
        "wall_s": wall,
        "x": [float(v) for v in x],
    }
