"""One entry point, :func:`simulate`: where do gradient flow, GD and SGD go on a factorized model?

``simulate`` looks the model's type up in :data:`RUNNERS` and hands the call to its runner:

- :class:`~implicit_bias.models.Hadamard` -> :func:`.sparse.simulate_hadamard` (SPEC A, D);
- :class:`~implicit_bias.models.WeightNormalized` -> :func:`.weight_norm.simulate_weight_norm` (SPEC B);
- :class:`~implicit_bias.models.DeepFactorization` -> :func:`.matrix.simulate_matrix` (SPEC C, D).

Every flow is integrated through the one driver of :mod:`.driver` (saved times are landed on by
steps), GD, SGD and exact mirror descent through :func:`.descent.descent_loop`. Every result carries a ``status`` from
the one vocabulary of :mod:`implicit_bias.status` (``NEXT_STEP`` there says what to do next);
``simulate`` can end ``converged`` (the residual tolerance ``stop.tol`` held), ``budget_exhausted``
(a ``Stop`` budget ran out first), ``stalled`` (GD/SGD parameters bitwise unchanged: updates below
float64 resolution), ``diverged`` (GD/SGD blew up; ``suggested_step`` says what step to use) or
``failed`` (the integrator broke; the message says where). Numerical trouble never raises.
"""

from __future__ import annotations

from typing import Callable, overload

from .._arguments import check_simulate_arguments
from .._blas import pinned_blas
from ..errors import InvalidParameterError, UnsupportedError
from ..models import DeepFactorization, Hadamard, Init, MatrixInit, WeightNormalized, WNInit
from ..problems import MatrixRecovery, SparseRecovery
from .base import SGD, Dynamics, GradientDescent, GradientFlow, MirrorDescent, Path, Result, Stop
from .matrix import MatrixPath, MatrixResult, ProductFlow, simulate_matrix
from .sparse import default_step, simulate_hadamard
from .weight_norm import simulate_weight_norm

__all__ = [
    "SGD", "GradientDescent", "GradientFlow", "MatrixPath", "MatrixResult", "MirrorDescent", "Path", "ProductFlow", "Result",
    "Stop", "default_step", "simulate",
]

# model type -> (problem type it fits, runner)
RUNNERS: dict[type, tuple[type, Callable]] = {
    Hadamard: (SparseRecovery, simulate_hadamard),
    WeightNormalized: (SparseRecovery, simulate_weight_norm),
    DeepFactorization: (MatrixRecovery, simulate_matrix),
}


def runner_for(problem, model) -> Callable:
    """The runner of ``model``'s type; a typed error when the model is unknown or does not fit ``problem``."""
    entry = next((RUNNERS[kind] for kind in type(model).__mro__ if kind in RUNNERS), None)
    if entry is None:
        names = ", ".join(kind.__name__ for kind in RUNNERS)
        raise InvalidParameterError(f"model must be one of {names}; got {type(model).__name__}.")
    wanted, runner = entry
    if not isinstance(problem, wanted):
        fitting = " or ".join(kind.__name__ for kind, (fits, _) in RUNNERS.items() if isinstance(problem, fits))
        raise UnsupportedError(
            f"{type(model).__name__} needs a {wanted.__name__} problem; a {type(problem).__name__} problem "
            f"needs a {fitting or 'different'} model."
        )
    return runner


@overload
def simulate(problem: SparseRecovery, model: Hadamard, dynamics: Dynamics, *, init: Init | float,
             stop: Stop = ..., save_at=...) -> Result: ...


@overload
def simulate(problem: SparseRecovery, model: WeightNormalized, dynamics: Dynamics, *, init: WNInit | float,
             stop: Stop = ..., save_at=...) -> Result: ...


@overload
def simulate(problem: MatrixRecovery, model: DeepFactorization, dynamics: Dynamics | ProductFlow, *,
             init: MatrixInit | float, stop: Stop = ..., save_at=...) -> MatrixResult: ...


@pinned_blas
def simulate(problem, model, dynamics, *, init, stop: Stop = Stop(), save_at=None):
    """Run ``dynamics`` on ``model`` fitted to ``problem`` from ``init``; a :class:`Result`
    (sparse models) or :class:`MatrixResult` (deep matrix factorisations).

    ``init``: an :class:`Init` or a float ``alpha`` (Hadamard: every factor starts at
    ``alpha * 1``, SPEC C2), a ``WNInit`` or a float ``r0`` (WeightNormalized), a ``MatrixInit``
    or a float ``alpha`` (DeepFactorization, which also takes ``dynamics=ProductFlow()``).
    ``save_at``: flow times (GD/SGD: iteration numbers) at which to record the path, or
    ``"steps"`` for every accepted step. Input errors raise typed errors before any work;
    numerical trouble ends in the result's ``status``.
    """
    save_at = check_simulate_arguments(stop, save_at)  # typed errors before any work
    return runner_for(problem, model)(problem, model, dynamics, init=init, stop=stop, save_at=save_at)
