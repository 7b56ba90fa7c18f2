"""Recovery success of one method on one random problem: a pixel of a phase diagram."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..errors import InvalidParameterError
from ..problems import check_sparse_settings, gaussian_sparse

TRIAL_METHODS = ("limit", "flow", "l1", "l2")


@dataclass(frozen=True)
class PhaseTrial:
    """``m = round(delta n)`` Gaussian measurements of an ``s = round(rho m)``-sparse signal.

    ``method``: ``limit`` (the exact gradient-flow limit of the depth-``depth`` Hadamard model
    from ``alpha``), ``flow`` (the simulated flow), ``l1`` (the l1 minimiser, nonnegative for
    positive signals) or ``l2`` (the minimum-norm solution). Success: relative l2 error at most
    ``threshold``.
    """

    n: int = 100
    delta: float = 0.5
    rho: float = 0.2
    signed: bool = False
    method: Literal["limit", "flow", "l1", "l2"] = "limit"
    depth: int = 2
    alpha: float = 1e-6
    threshold: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in TRIAL_METHODS:
            raise InvalidParameterError(f"The 'method' parameter must be one of {TRIAL_METHODS}. Got {self.method!r}.")
        if not (0 < self.delta < 1):
            raise InvalidParameterError(f"The 'delta' parameter must be a float in the range (0, 1). Got {self.delta!r}.")
        if not (0 < self.rho <= 1):
            raise InvalidParameterError(f"The 'rho' parameter must be a float in the range (0, 1]. Got {self.rho!r}.")
        check_sparse_settings(self.n, self.m, self.s, signed=self.signed)  # sizes refused before any trial runs

    @property
    def m(self) -> int:
        return max(1, int(round(self.delta * self.n)))

    @property
    def s(self) -> int:
        return max(1, int(round(self.rho * self.m)))


def phase_trial(trial: PhaseTrial) -> dict:
    from ..dynamics import GradientFlow, Stop, simulate
    from ..limits import predict_limit
    from ..models import Hadamard, Init
    from ..references import min_l1, min_l2

    problem = trial_problem(trial)
    status = "converged"
    extra: dict = {}
    if trial.method == "l1":
        x = min_l1(problem.A, problem.y, nonneg=not trial.signed)
    elif trial.method == "l2":
        x = min_l2(problem.A, problem.y)
    elif trial.method == "limit":
        limit = predict_limit(problem, Hadamard(trial.depth, trial.signed), Init.uniform(trial.alpha))
        x, status = limit.x, limit.status
    else:
        model = Hadamard(trial.depth, trial.signed)
        result = simulate(problem, model, GradientFlow(), init=trial.alpha, stop=Stop(tol=1e-8, max_wall=120))
        x, status = result.x, result.status
        limit = predict_limit(problem, model, Init.uniform(trial.alpha)).x
        extra["dist_to_limit"] = float(np.linalg.norm(x - limit) / np.linalg.norm(limit))
        extra["error_true_of_limit"] = problem.error_true(limit)
    return _record(trial, problem, x, status, extra)


def trial_problem(trial: PhaseTrial):
    return gaussian_sparse(trial.n, trial.m, trial.s, signed=trial.signed, seed=trial.seed)


def _record(trial: PhaseTrial, problem, x, status: str, extra: dict | None = None) -> dict:
    error = problem.error_true(x)
    return {**asdict(trial), "m": trial.m, "s": trial.s, "solver_status": status, "error_true": error,
            "success": bool(error is not None and error <= trial.threshold), **(extra or {})}


def phase_batch_key(trial: PhaseTrial) -> tuple | None:
    """Trials of one method, shape, sign and depth run together (:func:`phase_trials`); flow trials alone."""
    if trial.method == "flow":
        return None
    return (trial.method, trial.n, trial.m, trial.signed) + ((trial.depth,) if trial.method == "limit" else ())


def phase_trials(trials: list[PhaseTrial], backend: str = "numpy") -> list:
    """:func:`phase_trial` for trials of one :func:`phase_batch_key`: oracle trials by the batched
    oracle (:func:`implicit_bias.limits_batched.predict_limits`, equal to one at a time to 1e-10),
    the l1 and l2 references trial by trial (the same computation as :func:`phase_trial`, without a
    sweep's per-trial overhead). One record per trial, or the exception that trial raised."""
    first = trials[0]
    if any(phase_batch_key(t) != phase_batch_key(first) or phase_batch_key(t) is None for t in trials):
        raise ValueError("phase_trials needs trials of one phase_batch_key (method, shape, sign, depth)")
    if first.method != "limit":
        out = []
        for trial in trials:
            try:
                out.append(phase_trial(trial))
            except Exception as exc:  # this trial's failure, not the batch's
                out.append(exc)
        return out
    from ..limits_batched import predict_limits
    from ..models import Hadamard, Init

    problems = [trial_problem(t) for t in trials]
    limits = predict_limits(problems, Hadamard(first.depth, first.signed), [Init.uniform(t.alpha) for t in trials],
                            backend=backend)
    return [_record(t, p, limit.x, limit.status) for t, p, limit in zip(trials, problems, limits)]
