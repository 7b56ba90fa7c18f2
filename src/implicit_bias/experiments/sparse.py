"""One sparse-recovery trial with every metric the core engine reports (SPEC A, D, E.1)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..dynamics import SGD, GradientDescent, GradientFlow, Stop, simulate
from ..dynamics.weight_norm import resolved_floor
from .._validation import check_dense_size
from .._validation import relative_distance as _relative_distance
from ..errors import InvalidParameterError
from ..limits import fit_effective_scale, predict_limit, predict_limit_weight_norm
from ..models import Hadamard, Init, WeightNormalized, WNInit
from ..problems import SparseRecovery, gaussian_sparse
from ..references import min_l1
from ..theory import (beta_constants, bound_holds, epsilon_bound, log_magnification_factor, wn_beta_constants,
                      wn_epsilon_bound, wn_paper_hypotheses)

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
        check_dense_size(self.n * self.m, f"an m x n = {self.m} x {self.n} problem", "use smaller n and m")

    def problem(self) -> SparseRecovery:
        return gaussian_sparse(self.n, self.m, self.s, signed=self.signed, noise=self.noise, seed=self.seed)


def sparse_trial(trial: SparseTrial, problem: SparseRecovery | None = None, predicted=None, result=None) -> dict:
    """Run ``trial`` and compare its end point with the theory (:func:`compare`).

    Distances are relative l2 distances. ``l1_min`` is ``Q_+`` (positive model) or ``Q``
    (signed), by the HiGHS LP; the bound is (A.15) with (A.19) for the signed model, and
    ``None`` when the theorem does not apply (depth 1, or ``beta_1 >= Q``). ``predicted``: the
    oracle's :class:`~implicit_bias.limits.Limit` and ``result`` the run's ``Result`` when already
    computed (:func:`sparse_trials`).
    """
    problem = problem if problem is not None else trial.problem()
    model = Hadamard(trial.depth, trial.signed)
    init = Init.uniform(trial.alpha)
    # References first: an infeasible positive problem fails here, before any simulation.
    x_l1 = min_l1(problem.A, problem.y, nonneg=not trial.signed)
    predicted = predicted if predicted is not None else predict_limit(problem, model, init)
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
        batched = result is not None
        if not batched:
            result = simulate(problem, model, dynamics, init=init, stop=_stop(trial))
        x, status, message = result.x, result.status, result.message
        grad_evals, matvecs, steps, t = result.grad_evals, result.matvecs, result.steps, result.t
        step, suggested, drift = result.step, result.suggested_step, result.invariant_drift
        wall = result.wall_s if batched else time.perf_counter() - started
    return {
        **asdict(trial),
        "status": status,
        "message": message,
        **compare(problem, x, status, model=model, init=init, x_l1=x_l1, predicted=predicted.x),
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


def _stop(trial: SparseTrial) -> Stop:
    return Stop(tol=trial.tol, max_evals=trial.max_evals, max_wall=trial.max_wall)


def _dynamics(trial: SparseTrial):
    return {"gd": lambda: GradientDescent(step=trial.step),
            "sgd": lambda: SGD(step=trial.step, batch=trial.batch, seed=trial.seed)}[trial.method]()


def sparse_batch_key(trial: SparseTrial) -> tuple | None:
    """Oracle, GD and SGD trials of one shape, sign, depth and run settings run together (flows alone)."""
    if trial.method == "flow":
        return None
    run = () if trial.method == "limit" else (trial.step, trial.batch, trial.tol, trial.max_evals, trial.max_wall)
    return (trial.method, trial.n, trial.m, trial.signed, trial.depth) + run


def sparse_trials(trials: list[SparseTrial], backend: str = "numpy") -> list:
    """:func:`sparse_trial` for trials of one :func:`sparse_batch_key`: their limits by the batched
    oracle (:func:`implicit_bias.limits_batched.predict_limits`), GD/SGD by
    :func:`implicit_bias.dynamics_batched.simulate_batch`, the rest (the HiGHS l1 LP, the
    comparison) per trial. One record per trial, or the exception that trial raised."""
    from ..limits_batched import predict_limits

    first = trials[0]
    if any(sparse_batch_key(t) != sparse_batch_key(first) or sparse_batch_key(t) is None for t in trials):
        raise ValueError("sparse_trials needs trials of one sparse_batch_key (method, shape, sign, depth, run settings)")
    problems = [t.problem() for t in trials]
    model, inits = Hadamard(first.depth, first.signed), [Init.uniform(t.alpha) for t in trials]
    limits = predict_limits(problems, model, inits, backend=backend)
    results = [None] * len(trials)
    if first.method != "limit":
        from ..dynamics_batched import simulate_batch

        results = simulate_batch(problems, model, [_dynamics(t) for t in trials], init=inits, stop=_stop(first))
    out = []
    for trial, problem, limit, result in zip(trials, problems, limits, results):
        try:
            out.append(sparse_trial(trial, problem, predicted=limit, result=result))
        except Exception as exc:  # this trial's failure (e.g. an infeasible l1 LP), not the batch's
            out.append(exc)
    return out


def compare(problem: SparseRecovery, x, status: str, *, model: Hadamard, init: Init, x_l1, predicted) -> dict:
    """The comparison step of a sparse trial: the end point ``x`` against the theory.

    ``x_l1`` is the l1 minimiser (``Q_+`` for the positive model, ``Q`` for the signed one) and
    ``predicted`` the oracle's exact limit from ``init``. Returns the relative residual, ``||x||_1``,
    ``l1_min = Q``, the relative l1 gap ``(||x||_1 - Q)/Q``, the epsilon bound of (A.15) with
    ``(beta_1, beta_min)`` of the initial product (A.19 for the signed model; ``None`` for depth 1
    or when ``beta_1 >= Q``), whether the gap is within it (judged only for a ``converged`` ``x``:
    the theorem speaks of the limit), and the relative l2 distances to the l1 minimiser, to the
    predicted limit and to the ground truth. A non-finite ``x`` gives ``None`` for its metrics.
    """
    Q = float(np.sum(np.abs(x_l1)))
    finite = bool(np.all(np.isfinite(x)))
    l1_norm = float(np.sum(np.abs(x))) if finite else float("inf")
    eps = holds = None
    if model.depth >= 2:
        beta_1, beta_min = beta_constants(model.initial_product(init, problem.n))
        eps_value = epsilon_bound(model.depth, beta_1, beta_min, Q)
        if np.isfinite(eps_value):
            eps = float(eps_value)
            holds = bound_holds(l1_norm, Q, eps_value) if status == "converged" else None
    return {
        "residual": problem.residual(x) if finite else None,
        "l1_norm": l1_norm if finite else None,
        "l1_min": Q,
        "l1_gap": (l1_norm - Q) / Q if finite else None,
        "epsilon_bound": eps,
        "bound_holds": holds,
        "dist_l1_min": _relative_distance(x, x_l1) if finite else None,
        "dist_predicted": _relative_distance(x, predicted) if finite else None,
        "error_true": problem.error_true(x) if finite else None,
    }


# ----------------------------------------------------------------------------- weight normalisation (SPEC B)

WN_METHODS = ("flow", "gd", "sgd")


@dataclass(frozen=True)
class WeightNormTrial:
    """One weight-normalised trial ``w = r v/||v||`` (SPEC B) and the plain flow from the same ``z(0)``."""

    n: int = 100
    m: int = 40
    s: int = 5
    signed: bool = False
    noise: float = 0.0
    seed: int = 0
    depth: int = 2
    eta_r: float = 0.1
    r0: float = 2.0
    method: Literal["flow", "gd", "sgd"] = "flow"
    step: float | None = None
    batch: int = 1
    tol: float = 1e-9
    max_evals: int = 60_000
    max_wall: float = float("inf")

    def __post_init__(self) -> None:
        if self.method not in WN_METHODS:
            raise InvalidParameterError(
                f"The 'method' parameter must be one of {WN_METHODS} for weight normalisation "
                f"(the limit oracle needs r_inf from a run, SPEC B.7). Got {self.method!r}."
            )
        # Validate eta_r, r0 and the memory the problem needs eagerly (clear errors before any work).
        check_dense_size(self.n * self.m, f"an m x n = {self.m} x {self.n} problem", "use smaller n and m")
        WeightNormalized(self.depth, self.eta_r, self.signed)
        WNInit(self.r0)

    def problem(self) -> SparseRecovery:
        return gaussian_sparse(self.n, self.m, self.s, signed=self.signed, noise=self.noise, seed=self.seed)


def weight_norm_trial(trial: WeightNormTrial, problem: SparseRecovery | None = None) -> dict:
    """Run ``trial`` and compare it with Theorem B.1 and with plain flow from the same initialisation.

    ``plain_l1_gap`` is the exact limit (dual Newton, SPEC A.1/A.4) of plain gradient flow from
    ``z(0) = (r0/sqrt(n'))^N 1``. ``fitted_log_c`` is the effective scale fitted from the end point
    (KKT, SPEC B check), to be compared with ``-N log rho`` (``log_effective_scale``). The oracle
    limit (B.8) is compared only when the run converged; otherwise ``explanation`` says why not.
    """
    problem = problem if problem is not None else trial.problem()
    model = WeightNormalized(trial.depth, trial.eta_r, trial.signed)
    init = WNInit(trial.r0)
    N = trial.depth
    x_l1 = min_l1(problem.A, problem.y, nonneg=not trial.signed)
    Q = float(np.sum(np.abs(x_l1)))
    z0 = model.initial_product(init, problem.n)
    width = model.lifted_width(problem.n)
    plain = predict_limit(problem, Hadamard(N, trial.signed), Init.uniform(model.equivalent_alpha(init, problem.n)))
    plain_gap = (float(np.sum(np.abs(plain.x))) - Q) / Q
    dynamics = {
        "flow": lambda: GradientFlow(),
        "gd": lambda: GradientDescent(step=trial.step),
        "sgd": lambda: SGD(step=trial.step, batch=trial.batch, seed=trial.seed),
    }[trial.method]()
    result = simulate(problem, model, dynamics, init=init,
                      stop=Stop(tol=trial.tol, max_evals=trial.max_evals, max_wall=trial.max_wall))
    x, status = result.x, result.status
    finite = bool(np.all(np.isfinite(x)))
    w = result.factors[0]
    r_inf = float(np.linalg.norm(w)) if finite else None
    record = {**asdict(trial), "status": status, "message": result.message, "l1_min": Q, "plain_l1_gap": plain_gap,
              "residual": result.residual if finite else None, "grad_evals": result.grad_evals,
              "matvecs": result.matvecs, "steps": result.steps, "t": result.t, "step": result.step,
              "invariant_drift": result.invariant_drift, "wall_s": result.wall_s}
    beta_1, beta_min = wn_beta_constants(trial.r0, width, N)
    hyp = wn_paper_hypotheses(N, beta_1, Q, model.lift(problem.A).dense())
    record.update({"beta_1": beta_1, "beta_min": beta_min, "paper_c_N_beta_1_lt_Q": hyp["c_N_beta_1_lt_Q"],
                   "paper_kernel_condition": hyp["kernel_positive_vector"]})
    keys = ("r_inf", "log_rho", "log_effective_scale", "fitted_log_c", "fitted_kkt", "l1_norm", "l1_gap",
            "epsilon_bound", "bound_holds", "dist_predicted", "oracle_status", "gap_ratio_plain_over_wn")
    record.update({key: None for key in keys})
    if not finite:
        record["explanation"] = "the run diverged; no limit"
        return record
    log_rho = log_magnification_factor(trial.r0, r_inf, trial.eta_r)
    log_c, kkt = fit_effective_scale(model.lift(problem.A), w ** N, z0, N, floor=resolved_floor(N))
    l1_norm = float(np.sum(np.abs(x)))
    record.update({"r_inf": r_inf, "log_rho": log_rho, "log_effective_scale": -N * log_rho,
                   "fitted_log_c": log_c if np.isfinite(log_c) else None, "fitted_kkt": kkt})
    if status != "converged":
        record["explanation"] = (
            "not converged, so no limit is reported: " + result.message
        )
        return record
    gap = (l1_norm - Q) / Q
    eps = wn_epsilon_bound(N, beta_1, beta_min, Q, log_rho)
    oracle = predict_limit_weight_norm(problem, model, init, r_inf)
    dist = None if oracle.x is None else float(np.max(np.abs(x - oracle.x)) / np.max(np.abs(oracle.x)))
    record.update({
        "l1_norm": l1_norm, "l1_gap": gap,
        "epsilon_bound": float(eps) if np.isfinite(eps) else None,
        "bound_holds": bound_holds(l1_norm, Q, eps) if np.isfinite(eps) else None,
        "dist_predicted": dist, "oracle_status": oracle.status,
        "gap_ratio_plain_over_wn": plain_gap / max(abs(gap), 1e-16),
        "explanation": "converged; the limit is the Bregman projection from rho^-N x(0) (SPEC B.8)"
        + ("" if oracle.x is not None else f"; oracle: {oracle.message}"),
    })
    return record
