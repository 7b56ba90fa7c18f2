"""Gradient descent and mini-batch SGD (SPEC D.1, D.2): one loop shared by every model.

:func:`descent_loop` owns the bookkeeping (step schedule, residual checks, divergence, stalls,
convergence, budgets, saving, evaluation counts) and returns the :class:`~.driver.Outcome` of the
flows; a model plugs in how to form its end-to-end quantity, its residual and gradient, and how to
pull a gradient back onto its parameters. :func:`descent_plan` turns ``GradientDescent``/``SGD``
into a step schedule, the same way for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InvalidParameterError
from ..mirror import MirrorMap
from ..models.hadamard import factor_gradient, product
from .driver import Outcome, save_schedule

# A run is called diverged when its residual exceeds this multiple of ||y|| (it started near
# ||y||: the initial product is small) or becomes non-finite.
_DIVERGENCE_FACTOR = 1e6
# A run is called stalled when its parameters are bitwise unchanged over this many steps: every
# update is below half an ulp of its parameter (e.g. GD at the saddle of N >= 3 from a tiny alpha),
# so no further step can move them.
STALL_WINDOW = 1000


@dataclass(frozen=True)
class DescentPlan:
    """The step schedule of a GD/SGD run: ``step_at(k)``, the fixed step (None for a schedule),
    the batch (None for GD) and the seeded generator of the batches."""

    step_at: Callable[[int], float]
    step: float | None
    batch: int | None
    rng: np.random.Generator | None


def descent_plan(dynamics, m: int, default_step: Callable[[int | None], float]) -> DescentPlan:
    """The plan of ``dynamics`` (``GradientDescent`` or ``SGD``) on ``m`` measurements;
    ``default_step(batch)`` is the model's safe step (SPEC D.3(ii)), used when ``step=None``."""
    batch = getattr(dynamics, "batch", None)
    if batch is not None and batch > m:
        raise InvalidParameterError(f"The 'batch' parameter must be <= m = {m}. Got {batch}.")
    base = dynamics.step if dynamics.step is not None else default_step(batch)
    step_at = base if callable(base) else (lambda k, eta=float(base): eta)
    rng = np.random.default_rng(dynamics.seed) if batch is not None else None
    return DescentPlan(step_at, None if callable(base) else float(base), batch, rng)


class _StallWatch:
    """Compares the parameters bitwise with those :data:`STALL_WINDOW` steps earlier."""

    def __init__(self):
        self.start = None

    def check(self, k: int, state) -> bool:
        """True when ``state`` at step ``k`` (a multiple of the window) equals the one a window ago."""
        if k % STALL_WINDOW:
            return False
        flat = state.ravel() if isinstance(state, np.ndarray) else np.concatenate([np.ravel(part) for part in state])
        if self.start is not None and np.array_equal(flat, self.start):
            return True
        self.start = flat.copy()
        return False

    @staticmethod
    def message(k: int, rel: float) -> str:
        return (
            f"parameters bitwise unchanged over steps {k - STALL_WINDOW}..{k} at residual {rel:.2e}: every update "
            "is below float64 resolution (e.g. GD at the saddle from a tiny init); use a larger init or step, or the flow"
        )


def descent_loop(
    state: Any,
    *,
    forward: Callable[[Any], Any],
    residual: Callable[[Any], np.ndarray],
    gradient: Callable[[Any, np.ndarray], np.ndarray],
    minibatch: Callable[[Any, np.ndarray], np.ndarray],
    update: Callable[[Any, Any, np.ndarray, float], Any],
    m: int,
    ynorm: float,
    step_at: Callable[[int], float],
    stop,
    clock: Callable[[], float],
    snapshot: Callable[[Any], Any] | None = None,
    save_at=None,
    batch: int | None = None,
    rng: np.random.Generator | None = None,
) -> Outcome:
    """GD (``batch=None``, SPEC D.1) or SGD with ``batch`` of the ``m`` measurements per step (D.2).

    Per step: ``snap = forward(state)`` (the end-to-end point, None when not finite); every step
    for GD, every epoch (``m // batch`` steps) for SGD, ``r = residual(snap)`` (``A(x) - y``) is
    checked for divergence, convergence (``||r|| <= tol ||y||``) and the ``stop`` budgets; then
    ``g = gradient(snap, r)`` (``A^*(r)``) or ``g = minibatch(snap, rows)`` (the unbiased
    ``m/q``-scaled estimator) and ``state = update(state, snap, g, eta_k)`` (the chain rule).
    ``(t, snapshot(snap))`` is saved at the iterations in ``save_at`` (every one for ``"steps"``);
    parameters bitwise unchanged over :data:`STALL_WINDOW` steps mean ``stalled``. Costs: a full
    gradient is one evaluation and two products with ``A``; an SGD step ``q/m`` of each; an SGD
    residual check half an evaluation.
    """
    times, every_step = save_schedule(save_at)
    save_steps = set() if times is None else {int(k) for k in times}
    check_every = 1 if batch is None else max(1, m // batch)
    t, evals, matvecs, k = 0.0, 0.0, 0.0, 0
    status, message, rel, r = "budget_exhausted", "", np.inf, None
    saved: list[tuple[float, Any]] = []
    stall = _StallWatch()
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            snap = forward(state)
            if snap is None:
                status, message = "diverged", f"non-finite parameters at step {k} (step size too large)"
                break
            if snapshot is not None and (every_step or k in save_steps):
                saved.append((t, snapshot(snap)))
            if batch is None or k % check_every == 0:
                r = residual(snap)
                rel = float(np.linalg.norm(r) / ynorm)
                matvecs += 1
                evals += 0.5 if batch is not None else 0.0
                if not np.isfinite(rel) or rel > _DIVERGENCE_FACTOR:
                    status, message = "diverged", f"residual {rel:.3g} at step {k} (step size too large)"
                    break
            ended = stop.outcome(evals, t, clock(), rel)
            if ended:
                status, message = ended
                break
            if stall.check(k, state):
                status, message = "stalled", stall.message(k, rel)
                break
            eta = step_at(k)
            if not (np.isfinite(eta) and eta > 0):
                status, message = "failed", f"the step schedule returned {eta!r} at step {k}; steps must be positive floats"
                break
            if batch is None:
                g = gradient(snap, r)
                evals += 1
                matvecs += 1
            else:
                g = minibatch(snap, rng.choice(m, size=batch, replace=False))
                evals += batch / m
                matvecs += 2 * batch / m
            state = update(state, snap, g, eta)
            t += eta
            k += 1
    return Outcome(status=status, message=message, t=t, steps=k, evals=int(np.ceil(evals)),
                   matvecs=int(np.ceil(matvecs)), saved=tuple(saved), state=state)


def minibatch_gradient(B, y, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Unbiased estimator ``(m/q) Σ_{l∈J} b_l (b_l^T z - y_l)`` of ``B^T(Bz - y)`` (SPEC D.2)."""
    sub = B.rows(rows)
    return (B.m / len(rows)) * sub.rmatvec(sub.matvec(z) - y[rows])


def descend(B, y, factors, *, plan: DescentPlan, stop, save_at, clock) -> Outcome:
    """GD or SGD (``plan``) on the lifted Hadamard problem (SPEC D.1, D.2); saved records are ``z``."""

    def forward(factors):
        z = product(factors)
        return z if np.all(np.isfinite(z)) else None

    return descent_loop(
        factors, forward=forward, residual=lambda z: B.matvec(z) - y, gradient=lambda z, r: B.rmatvec(r),
        minibatch=lambda z, rows: minibatch_gradient(B, y, z, rows),
        update=lambda factors, z, g, eta: factors - eta * factor_gradient(factors, g),
        m=B.m, ynorm=float(np.linalg.norm(y)), step_at=plan.step_at, stop=stop, clock=clock,
        snapshot=np.copy, save_at=save_at, batch=plan.batch, rng=plan.rng,
    )


def mirror_descend(B, y, z0: np.ndarray, depth: int, *, plan: DescentPlan, stop, save_at, clock) -> Outcome:
    """Exact mirror descent ``φ_{k+1} = φ_k - eta_k B^T(B z_k - y)`` with ``φ = ∇F_N(z)`` (SPEC A.0, A.12)
    on the lifted problem; the state is ``φ``, saved records are ``z``. A step that leaves the
    mirror map's domain (``N > 2``: ``φ >= 0``, i.e. ``z = inf``) ends the run ``diverged``."""
    mirror = MirrorMap(depth)

    def forward(phi):
        if not mirror.in_domain(phi):
            return None
        z = mirror.z(phi)
        return z if np.all(np.isfinite(z)) else None

    return descent_loop(
        mirror.phi(z0), forward=forward, residual=lambda z: B.matvec(z) - y, gradient=lambda z, r: B.rmatvec(r),
        minibatch=lambda z, rows: minibatch_gradient(B, y, z, rows),
        update=lambda phi, z, g, eta: phi - eta * g,
        m=B.m, ynorm=float(np.linalg.norm(y)), step_at=plan.step_at, stop=stop, clock=clock,
        snapshot=np.copy, save_at=save_at, batch=None, rng=None,
    )
