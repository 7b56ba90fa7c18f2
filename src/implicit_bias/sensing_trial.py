"""One sparse-recovery trial on a matrix-free operator (``run sparse --operator dct``, :mod:`implicit_bias.sensing`).

The record has the keys of :func:`implicit_bias.experiments.sparse.sparse_trial`. The l1 linear
program (HiGHS) needs the dense ``A``: ``l1_min``, ``l1_gap``, ``dist_l1_min`` and the bound are
``None`` for an operator, and ``message`` says so; the oracle's limit (SPEC A.1) is the reference.
"""

from __future__ import annotations

import time

import numpy as np

from ._validation import relative_distance
from .dynamics import GradientFlow, Stop, simulate
from .errors import InvalidParameterError, UnsupportedError
from .limits import predict_limit
from .models import Hadamard, Init
from .problems import SparseRecovery
from .sensing import sparse_problem

METHODS = ("flow", "limit")
NO_LP = "; l1_min not computed: the HiGHS l1 LP needs a dense A (the predicted limit is the reference)"


def operator_trial(problem: SparseRecovery, *, operator: str, depth: int, signed: bool, alpha: float,
                   method: str = "flow", tol: float = 1e-8, max_evals: int = 200_000, settings: dict | None = None) -> dict:
    """The exact limit and, for ``method="flow"``, the mirror-space flow (matrix-free) on ``problem``."""
    if method not in METHODS:
        raise UnsupportedError(
            f"--operator {operator} runs the methods {METHODS} (matrix-free oracle and flow); got {method!r}. "
            "GD and SGD need a dense A: use --operator gaussian."
        )
    model, init = Hadamard(depth, signed), Init.uniform(alpha)
    predicted = predict_limit(problem, model, init)
    started = time.perf_counter()
    if method == "limit":
        x, status, message = predicted.x, predicted.status, predicted.message
        evals, matvecs, steps, t, drift, wall = predicted.matvecs, predicted.matvecs, predicted.iterations, None, {}, predicted.wall_s
    else:
        result = simulate(problem, model, GradientFlow(), init=init, stop=Stop(tol=tol, max_evals=max_evals))
        x, status, message = result.x, result.status, result.message
        evals, matvecs, steps, t, drift = result.grad_evals, result.matvecs, result.steps, result.t, result.invariant_drift
        wall = time.perf_counter() - started
    finite = bool(np.all(np.isfinite(x)))
    return {
        **(settings or {}), "operator": operator, "method": method, "depth": depth, "alpha": alpha,
        "status": status, "message": message + NO_LP,
        "residual": problem.residual(x) if finite else None,
        "l1_norm": float(np.sum(np.abs(x))) if finite else None,
        "l1_min": None, "l1_gap": None, "epsilon_bound": None, "bound_holds": None, "dist_l1_min": None,
        "dist_predicted": relative_distance(x, predicted.x) if finite else None,
        "error_true": problem.error_true(x) if finite else None,
        "predicted_kkt": predicted.kkt, "grad_evals": int(evals), "matvecs": int(matvecs), "steps": int(steps),
        "t": t, "step": None, "suggested_step": None, "invariant_drift": drift, "wall_s": wall,
        "x": [float(v) for v in x],
    }


def operator_record(operator: str, settings: dict, *, depth: int, alpha: float, method: str, tol: float,
                    max_evals: int, problem_file=None, weight_norm: bool = False) -> dict:
    """``run sparse --operator ...``: the generated problem's :func:`operator_trial` (``settings``: n, m, s,
    signed, noise, seed)."""
    if problem_file or weight_norm:
        raise InvalidParameterError(f"--operator {operator} generates its problem and runs the plain Hadamard model; "
                                    "drop --problem and --weight-norm, or use --operator gaussian.")
    problem = sparse_problem(operator, **settings)
    return operator_trial(problem, operator=operator, depth=depth, signed=settings["signed"], alpha=alpha,
                          method=method, tol=tol, max_evals=max_evals, settings={**settings, "tol": tol})
