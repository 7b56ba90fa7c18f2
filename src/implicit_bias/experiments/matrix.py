"""One deep-matrix-factorisation trial with every metric of ``run matrix`` (SPEC C, D, E.1)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..dynamics import SGD, GradientDescent, GradientFlow, Stop, simulate
from ..dynamics.matrix import ProductFlow
from .._validation import relative_distance as _relative_distance
from ..errors import InvalidParameterError, SolverError
from ..models import DeepFactorization, MatrixInit
from ..problems import MatrixRecovery, check_matrix_settings, matrix_completion, matrix_sensing
from ..references import min_frobenius, min_nuclear_norm

MATRIX_METHODS = ("flow", "gd", "sgd", "product")


@dataclass(frozen=True)
class MatrixTrial:
    """The parameters of one trial: a seeded rank-``rank`` ``n1 x n2`` problem and a deep factorisation.

    ``m`` counts Gaussian measurements or observed entries (``measurement="completion"``);
    ``widths`` is ``"d_1,...,d_{N-1}"`` or None (``min(n1, n2)`` each); ``alpha`` is the
    factor-level scale of the balanced init ``W_j(0) = alpha I`` (C.12); ``init="gaussian"``
    draws Gaussian factors whose product has the same RMS; ``nuclear=False`` skips the
    nuclear-norm reference (an SDP: the costly part of small trials).
    """

    n1: int = 20
    n2: int = 20
    rank: int = 2
    m: int = 160
    measurement: Literal["gaussian", "completion"] = "gaussian"
    condition: float = 1.0
    seed: int = 0
    depth: int = 3
    widths: str | None = None
    alpha: float = 1e-2
    init: Literal["balanced", "gaussian"] = "balanced"
    method: Literal["flow", "gd", "sgd", "product"] = "flow"
    step: float | None = None
    batch: int = 1
    tol: float = 1e-5
    max_evals: int = 100_000
    max_wall: float = math.inf
    nuclear: bool = True

    def __post_init__(self) -> None:
        if self.method not in MATRIX_METHODS:
            raise InvalidParameterError(f"The 'method' parameter must be one of {MATRIX_METHODS}. Got {self.method!r}.")
        if self.measurement not in ("gaussian", "completion"):
            raise InvalidParameterError(
                f"The 'measurement' parameter must be 'gaussian' or 'completion'. Got {self.measurement!r}.")
        check_matrix_settings(self.n1, self.n2, self.rank, self.m, self.measurement)  # sizes, before any work

    def problem(self) -> MatrixRecovery:
        if self.measurement == "gaussian":
            return matrix_sensing(self.n1, self.n2, self.rank, self.m, condition=self.condition, seed=self.seed)
        return matrix_completion(self.n1, self.n2, self.rank, count=self.m, condition=self.condition, seed=self.seed)

    def model(self) -> DeepFactorization:
        return DeepFactorization(self.depth, parse_widths(self.widths))


def parse_widths(text: str | None) -> tuple[int, ...] | None:
    """``"20,20"`` -> ``(20, 20)``; raises InvalidParameterError with the received text otherwise."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise InvalidParameterError(
            f"--widths must be a comma-separated list of depth-1 positive ints, e.g. --widths 20,20. Got {text!r}."
        ) from None


def matrix_trial(trial: MatrixTrial, problem: MatrixRecovery | None = None) -> dict:
    """Run ``trial`` and compare its end point with the references (nuclear norm, min-Frobenius E.1).

    The nuclear-norm solve failing (SolverError) does not fail the trial: its fields are null and
    ``nuclear_norm_message`` says why. The record holds ``W`` (a nested list, null if not finite).
    """
    problem = problem if problem is not None else trial.problem()
    model = trial.model()
    init = MatrixInit.balanced(trial.alpha)
    if trial.init == "gaussian":
        balanced = model.product(model.initial_factors(init, problem.shape))
        init = MatrixInit.gaussian(float(np.sqrt(np.mean(balanced**2))), seed=trial.seed)
    dynamics = {
        "flow": lambda: GradientFlow(),
        "product": lambda: ProductFlow(),
        "gd": lambda: GradientDescent(step=trial.step),
        "sgd": lambda: SGD(step=trial.step, batch=trial.batch, seed=trial.seed),
    }[trial.method]()
    result = simulate(problem, model, dynamics, init=init,
                      stop=Stop(tol=trial.tol, max_evals=trial.max_evals, max_wall=trial.max_wall))
    W = result.W
    finite = bool(np.all(np.isfinite(W)))
    W_nuc = nuc_message = None
    started = time.perf_counter()
    if trial.nuclear:
        try:
            W_nuc = min_nuclear_norm(problem)
        except SolverError as exc:
            nuc_message = str(exc)
    nuc_seconds = time.perf_counter() - started if trial.nuclear else None
    return {
        "status": result.status, "message": result.message, "method": result.method,
        "measurement": problem.measurement, "shape": list(problem.shape), "m": problem.m,
        "rank": None if problem.W_true is None else int(np.linalg.matrix_rank(problem.W_true)),
        "depth": model.depth, "widths": list(model.dims(problem.shape)[1:-1]), "init": init.describe(),
        "alpha": trial.alpha, "residual": result.residual,
        "relative_error": problem.relative_error(W) if finite else None,
        "nuclear_norm_error": problem.relative_error(W_nuc) if W_nuc is not None else None,
        "frobenius_error": problem.relative_error(min_frobenius(problem)),
        "dist_nuclear_norm": _relative_distance(W, W_nuc) if finite and W_nuc is not None else None,
        "nuclear_norm_s": nuc_seconds, "nuclear_norm_message": nuc_message,
        "effective_rank": result.effective_rank, "singular_values": [float(v) for v in result.singular_values],
        "balancedness_defect": result.balancedness_defect, "balancedness_drift": result.balancedness_drift,
        "grad_evals": result.grad_evals, "steps": result.steps, "t": result.t, "step": result.step,
        "suggested_step": result.suggested_step, "wall_s": result.wall_s,
        "W": W.tolist() if finite else None,
    }
