"""The runner of :func:`implicit_bias.dynamics.simulate` for :class:`~implicit_bias.models.Hadamard` models.

Gradient flow of identical factors runs in mirror space (SPEC A.10, A.12) with the Rosenbrock
stepper of :mod:`.rosenbrock`; other factors run in factor space (SPEC A.2) with BDF
(:mod:`.flow`); GD and SGD (SPEC D.1, D.2) with :func:`.descent.descend`; exact mirror descent
(SPEC A.0, A.12) with :func:`.descent.mirror_descend`. All of them end in one
:class:`~.driver.Outcome`, turned into a :class:`~.base.Result` by :func:`sparse_result`.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidParameterError, UnsupportedError
from ..mirror import MirrorMap
from ..models import Hadamard, Init
from ..problems import SparseRecovery
from ..sensing import is_matrix_free
from .base import SGD, GradientDescent, GradientFlow, MirrorDescent, Path, Result, Stop
from .descent import DescentPlan, descend, descent_plan, mirror_descend
from .driver import Outcome, drive
from .flow import FactorSystem, integrate
from .rosenbrock import RodasMirrorFlow


def stopwatch():
    """A clock: seconds since this call."""
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


def simulate_hadamard(problem: SparseRecovery, model: Hadamard, dynamics, *, init: Init | float,
                      stop: Stop = Stop(), save_at=None) -> Result:
    """:func:`~implicit_bias.dynamics.simulate` for the Hadamard model: flow, GD, SGD or MD from ``init``
    (an :class:`Init`, or a float ``alpha``: every factor starts at ``alpha * 1``, SPEC C2)."""
    if not isinstance(init, Init):
        init = Init.uniform(init)
    if not isinstance(dynamics, (GradientFlow, GradientDescent, SGD, MirrorDescent)):
        raise InvalidParameterError(
            f"dynamics must be GradientFlow, GradientDescent, SGD or MirrorDescent; got {type(dynamics).__name__}."
        )
    factors0 = model.initial_factors(init, problem.n)
    _check_matrix_free(problem, model, dynamics, factors0)
    clock = stopwatch()
    if isinstance(dynamics, GradientFlow):
        outcome, factors, method = _flow(problem, model, dynamics, factors0, stop=stop, save_at=save_at, clock=clock)
        return sparse_result(problem, model, outcome, factors, method, clock, drift=invariant_drift(model, factors0, factors))
    if isinstance(dynamics, MirrorDescent):
        return _mirror_descent(problem, model, dynamics, init, factors0, stop=stop, save_at=save_at, clock=clock)
    plan = descent_plan(dynamics, problem.m, lambda batch: default_step(problem, model, init, batch=batch))
    outcome = descend(model.lift(problem.A), problem.y, factors0, plan=plan, stop=stop, save_at=save_at, clock=clock)
    return sparse_result(
        problem, model, outcome, outcome.state, "gd" if plan.batch is None else f"sgd[q={plan.batch}]", clock,
        drift=invariant_drift(model, factors0, outcome.state), plan=plan,
        suggest=lambda: default_step(problem, model, init, batch=plan.batch),
    )


def _check_matrix_free(problem, model: Hadamard, dynamics, factors0) -> None:
    """An operator ``A`` (:mod:`implicit_bias.sensing`) runs only the mirror-space flow (matrix-free
    Rosenbrock stages); everything else here needs a dense ``A``."""
    if not is_matrix_free(problem.A):
        return
    if not (isinstance(dynamics, GradientFlow) and dynamics.space in ("auto", "mirror") and model.identical(factors0)):
        raise UnsupportedError(
            f"with a matrix-free A ({type(problem.A).__name__}) simulate runs only GradientFlow of identical factors "
            "(mirror space); for GD, SGD, mirror descent or factor-space flows pass a dense A "
            "(problem.A.toarray()), or use predict_limit for the limit."
        )


def _flow(problem, model: Hadamard, dynamics: GradientFlow, factors0, *, stop, save_at, clock):
    """``(outcome, factors, method)`` of the flow in mirror space (identical factors) or factor space."""
    B, y = model.lift(problem.A), problem.y
    identical = model.identical(factors0)
    space = dynamics.space if dynamics.space != "auto" else ("mirror" if identical else "factor")
    rtol = dynamics.tolerance(space)
    if space == "mirror":
        if not identical:
            raise UnsupportedError("GradientFlow(space='mirror') needs identical factors; use space='factor'.")
        stepper = RodasMirrorFlow(B, y, model.depth, factors0[0] ** model.depth, rtol)
        outcome = drive(stepper, stop=stop, clock=clock, save_at=save_at)
        z = outcome.state
        factors = np.tile(z if model.depth == 1 else z ** (1.0 / model.depth), (model.depth, 1))
        return outcome, factors, "flow[mirror]"
    system = FactorSystem(B, y, factors0)
    outcome = integrate(system, B=B, y=y, stop=stop, rtol=rtol, atol=dynamics.atol, save_at=save_at, clock=clock)
    return outcome, system.factors(outcome.state), "flow[factor]"


def _mirror_descent(problem, model: Hadamard, dynamics: MirrorDescent, init: Init, factors0, *, stop, save_at, clock):
    """Exact mirror descent (SPEC A.0, A.12) of identical factors; non-identical ones have no mirror map."""
    if not model.identical(factors0):
        raise UnsupportedError(
            "MirrorDescent needs identical factors (a float alpha, Init.uniform or Init.general): only their product "
            "follows a mirror flow (SPEC A.4). Use GradientDescent for explicit non-identical factors."
        )
    plan = descent_plan(dynamics, problem.m, lambda batch: default_step(problem, model, init))
    z0 = factors0[0] ** model.depth if model.depth > 1 else factors0[0].copy()
    outcome = mirror_descend(model.lift(problem.A), problem.y, z0, model.depth, plan=plan, stop=stop,
                             save_at=save_at, clock=clock)
    z = MirrorMap(model.depth).z(outcome.state)
    factors = np.tile(z if model.depth == 1 else z ** (1.0 / model.depth), (model.depth, 1))
    return sparse_result(problem, model, outcome, factors, "mirror_descent", clock, plan=plan, z=z,
                         drift=invariant_drift(model, factors0, factors),
                         suggest=lambda: default_step(problem, model, init))


def sparse_path(problem: SparseRecovery, model, saved) -> Path | None:
    """The :class:`Path` of saved ``(t, z)`` records, ``x`` read through the model."""
    if not saved:
        return None
    xs = np.array([model.x_from_z(z) for _, z in saved])
    Axs = (problem.A @ xs.T).T if is_matrix_free(problem.A) else xs @ problem.A.T
    residual = np.linalg.norm(Axs - problem.y, axis=1) / np.linalg.norm(problem.y)
    return Path(t=np.array([t for t, _ in saved]), x=xs, residual=residual)


def sparse_result(problem, model, outcome: Outcome, factors: np.ndarray, method: str, clock, *, drift: dict,
                  plan: DescentPlan | None = None, suggest=None, note: str = "", z: np.ndarray | None = None) -> Result:
    """The :class:`Result` of ``outcome`` (``z``: the product of ``factors`` unless given); a diverged
    GD/SGD run gets ``suggest()`` as its suggested step."""
    x = model.x_from_z(np.prod(factors, axis=0) if z is None else z)
    message, suggested = outcome.message + note, None
    if outcome.status == "diverged" and suggest is not None:
        suggested = suggest()
        message += f"; try a step <= {suggested:.3g} (SPEC D.3)"
    return Result(
        x=x, status=outcome.status, message=message, method=method,
        residual=problem.residual(x) if np.all(np.isfinite(x)) else float("inf"), grad_evals=outcome.evals,
        matvecs=outcome.matvecs, steps=outcome.steps, t=outcome.t, wall_s=clock(), factors=factors,
        invariant_drift=drift, path=sparse_path(problem, model, outcome.saved),
        step=plan.step if plan is not None else None, suggested_step=suggested,
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
        target = np.ones(model.lifted_width(problem.n))  # ||x||_inf^0 = 1: the step is 1 / ||B||^2
    elif model.identical(factors0):
        target = predict_limit(problem, model, init).z
    else:
        from ..references import min_l1

        target = np.abs(min_l1(problem.A, problem.y, nonneg=not model.signed))
    eta = stable_step_size(B.dense(), target, model.depth, c=0.5)
    return eta * (batch / problem.m if batch is not None else 1.0)
