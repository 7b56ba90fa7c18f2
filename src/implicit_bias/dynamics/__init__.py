"""One entry point, :func:`simulate`: where do gradient flow, GD and SGD go on a factorized model?"""

from __future__ import annotations

import time

import numpy as np

from .._arguments import check_simulate_arguments
from .._blas import pinned_blas
from ..errors import InvalidParameterError, UnsupportedError
from ..models import DeepFactorization, Hadamard, Init, WeightNormalized
from ..problems import MatrixRecovery, SparseRecovery
from .base import SGD, Dynamics, GradientDescent, GradientFlow, Path, Result, Stop
from .descent import descend
from .exponential import integrate_mirror
from .flow import FactorSystem, integrate
from .rosenbrock import integrate_rosenbrock
from .matrix import MatrixPath, MatrixResult, ProductFlow, simulate_matrix

__all__ = [
    "simulate", "default_step", "GradientFlow", "GradientDescent", "SGD", "Stop", "Result", "Path",
    "ProductFlow", "MatrixResult", "MatrixPath",
]


@pinned_blas
def simulate(
    problem: SparseRecovery,
    model: Hadamard,
    dynamics: Dynamics,
    *,
    init: Init | float,
    stop: Stop = Stop(),
    save_at=None,
) -> Result:
    """Run ``dynamics`` on ``model`` fitted to ``problem`` from ``init``.

    ``init`` is an :class:`Init` or a float ``alpha`` (every factor starts at ``alpha * 1``,
    SPEC C2). ``save_at``: flow times (GD/SGD: iteration numbers) at which to record ``x``, or
    ``"steps"`` for every accepted step. Never raises on numerical trouble: the ``status`` of
    the result says ``converged``, ``budget_exhausted``, ``diverged`` or ``failed``.

    For :class:`~implicit_bias.models.WeightNormalized` (SPEC B) ``init`` is a ``WNInit`` or a
    float ``r0``; see :func:`implicit_bias.dynamics.weight_norm.simulate_weight_norm`.

    For a :class:`~implicit_bias.problems.MatrixRecovery` with a
    :class:`~implicit_bias.models.DeepFactorization` (SPEC C) ``init`` is a ``MatrixInit`` or a
    float ``alpha``, ``dynamics`` may also be :class:`ProductFlow`, and the result is a
    :class:`MatrixResult`; see :func:`implicit_bias.dynamics.matrix.simulate_matrix`.
    """
    save_at = check_simulate_arguments(problem, model, stop, save_at)  # typed errors before any work
    if isinstance(model, DeepFactorization) or isinstance(problem, MatrixRecovery):
        return simulate_matrix(problem, model, dynamics, init=init, stop=stop, save_at=save_at)
    if isinstance(model, WeightNormalized):
        from .weight_norm import simulate_weight_norm

        return simulate_weight_norm(problem, model, dynamics, init=init, stop=stop, save_at=save_at)
    if not isinstance(init, Init):
        init = Init.uniform(init)
    if not isinstance(dynamics, (GradientFlow, GradientDescent, SGD)):
        raise InvalidParameterError(
            f"dynamics must be GradientFlow, GradientDescent or SGD; got {type(dynamics).__name__}."
        )
    factors0 = model.initial_factors(init, problem.n)
    B, y = model.lift(problem.A), problem.y
    started = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - started

    step = suggested = None
    if isinstance(dynamics, GradientFlow):
        space = dynamics.space
        if space == "auto":
            space = "mirror" if model.identical(factors0) else "factor"
        if space == "mirror":
            if not model.identical(factors0):
                raise UnsupportedError("GradientFlow(space='mirror') needs identical factors; use space='factor'.")
            z, status, message, t, steps, evals, matvecs, saved = integrate_rosenbrock(
                B, y, model.depth, factors0[0] ** model.depth, stop=stop, rtol=dynamics.tolerance(space),
                save_at=save_at, clock=clock,
            )
            method = "flow[mirror]"
            if status == "failed":
                # Safety net: continue from the last accepted state with the exponential integrator.
                z, status, fallback_message, t, more_steps, evals, more_matvecs, more_saved = integrate_mirror(
                    B, y, model.depth, z, stop=stop, rtol=dynamics.tolerance(space) * 10,
                    save_at=save_at, clock=clock, t0=t, evals0=evals,
                )
                message = f"{message}; continued with the exponential integrator: {fallback_message}"
                steps, matvecs, saved = steps + more_steps, matvecs + more_matvecs, saved + more_saved
                method = "flow[mirror+exponential]"
            factors = np.tile(z if model.depth == 1 else z ** (1.0 / model.depth), (model.depth, 1))
        else:
            system = FactorSystem(B, y, factors0)
            state, status, message, t, steps, evals, matvecs, saved = integrate(
                system, B=B, y=y, stop=stop, rtol=dynamics.tolerance(space), atol=dynamics.atol, save_at=save_at,
                clock=clock,
            )
            factors = system.factors(state)
            method = "flow[factor]"
    else:
        batch = dynamics.batch if isinstance(dynamics, SGD) else None
        if batch is not None and batch > problem.m:
            raise InvalidParameterError(f"The 'batch' parameter must be <= m = {problem.m}. Got {batch}.")
        base = dynamics.step if dynamics.step is not None else default_step(problem, model, init, batch=batch)
        step_at = base if callable(base) else (lambda k, eta=float(base): eta)
        step = None if callable(base) else float(base)
        rng = np.random.default_rng(dynamics.seed) if batch is not None else None
        factors, status, message, t, steps, evals, matvecs, saved = descend(
            B, y, factors0, step_at=step_at, stop=stop, save_at=save_at, clock=clock, batch=batch, rng=rng
        )
        if status == "diverged":
            suggested = default_step(problem, model, init, batch=batch)
            message += f"; try a step <= {suggested:.3g} (SPEC D.3)"
        method = "gd" if batch is None else f"sgd[q={batch}]"
    z = np.prod(factors, axis=0)
    x = model.x_from_z(z)
    residual = problem.residual(x) if np.all(np.isfinite(x)) else float("inf")
    path = None
    if saved:
        times = np.array([s[0] for s in saved])
        xs = np.array([model.x_from_z(s[1]) for s in saved])
        path = Path(t=times, x=xs, residual=np.linalg.norm(xs @ problem.A.T - problem.y, axis=1) / np.linalg.norm(problem.y))
    return Result(
        x=x, status=status, message=message, method=method, residual=residual, grad_evals=int(evals),
        matvecs=int(matvecs), steps=int(steps), t=float(t), wall_s=clock(), factors=factors,
        invariant_drift=invariant_drift(model, factors0, factors), path=path, step=step, suggested_step=suggested,
    )


def invariant_drift(model: Hadamard, factors0: np.ndarray, factors: np.ndarray) -> dict[str, float]:
    """Relative drift ``max|I(T) - I(0)| / max(max|I(0)|, max|w(0)|^2)`` of each invariant (SPEC A.3, A.8)."""
    if not np.all(np.isfinite(factors)):
        return {}
    identical = model.identical(factors0)
    before, after = model.invariants(factors0, identical), model.invariants(factors, identical)
    scale = max(float(np.max(np.abs(factors0))) ** 2, 1e-300)
    return {
        name: float(np.max(np.abs(after[name] - before[name])) / max(float(np.max(np.abs(before[name]))), scale))
        for name in before
        if name in after
    }


def default_step(problem: SparseRecovery, model: Hadamard, init: Init, *, batch: int | None = None) -> float:
    """Safe GD step of SPEC D.3(ii), ``0.5 * 2 / (N ||B||^2 ||z*||_inf^(2-2/N))``, at the predicted limit ``z*``.

    For SGD with batch ``q`` it is scaled by ``q / m`` (the estimator's curvature is up to ``m/q``
    times larger). Non-identical factors use the l1 minimiser as target.
    """
    from ..limits import predict_limit
    from ..theory import stable_step_size

    B = model.lift(problem.A)
    factors0 = model.initial_factors(init, problem.n)
    if model.depth == 1:
        target = np.ones(1)
    elif model.identical(factors0):
        target = predict_limit(problem, model, init).z
    else:
        from ..references import min_l1

        target = np.abs(min_l1(problem.A, problem.y, nonneg=not model.signed))
    eta = stable_step_size(B.dense(), target, model.depth, c=0.5)
    return eta * (batch / problem.m if batch is not None else 1.0)
