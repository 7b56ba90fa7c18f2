"""Gradient descent and mini-batch SGD (SPEC D.1, D.2): one loop shared by every model.

:func:`descent_loop` owns the bookkeeping (step schedule, residual checks, divergence,
convergence, budgets, saving, evaluation counts); a model plugs in how to form its end-to-end
quantity, its residual and gradient, and how to pull a gradient back onto its parameters.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..models.hadamard import factor_gradient, product

# A run is called diverged when its residual exceeds this multiple of ||y|| (it started near
# ||y||: the initial product is small) or becomes non-finite.
_DIVERGENCE_FACTOR = 1e6


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
    save: Callable[[float, Any], None] | None = None,
    save_at=None,
    batch: int | None = None,
    rng: np.random.Generator | None = None,
):
    """GD (``batch=None``, SPEC D.1) or SGD with ``batch`` of the ``m`` measurements per step (D.2).

    Per step: ``snap = forward(state)`` (the end-to-end point, None when not finite); every step
    for GD, every epoch (``m // batch`` steps) for SGD, ``r = residual(snap)`` (``A(x) - y``) is
    checked for divergence, convergence (``||r|| <= tol ||y||``) and the ``stop`` budgets; then
    ``g = gradient(snap, r)`` (``A^*(r)``) or ``g = minibatch(snap, rows)`` (the unbiased
    ``m/q``-scaled estimator) and ``state = update(state, snap, g, eta_k)`` (the chain rule).
    ``save(t, snap)`` is called at the iterations in ``save_at`` (or every one for ``"steps"``).

    Costs: a full gradient is one evaluation and two products with ``A``; an SGD step ``q/m`` of
    each; an SGD residual check half an evaluation. Returns
    ``(state, status, message, t, steps, grad_evals, matvecs)``.
    """
    every_step = isinstance(save_at, str) and save_at == "steps"
    save_steps = None if save_at is None or isinstance(save_at, str) else {int(k) for k in save_at}
    check_every = 1 if batch is None else max(1, m // batch)
    t, evals, matvecs, k = 0.0, 0.0, 0.0, 0
    status, message, rel, r = "budget_exhausted", "", np.inf, None
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            snap = forward(state)
            if snap is None:
                status, message = "diverged", f"non-finite parameters at step {k} (step size too large)"
                break
            if save is not None and (every_step or (save_steps is not None and k in save_steps)):
                save(t, snap)
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
    return state, status, message, t, k, int(np.ceil(evals)), int(np.ceil(matvecs))


def minibatch_gradient(B, y, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Unbiased estimator ``(m/q) Σ_{l∈J} b_l (b_l^T z - y_l)`` of ``B^T(Bz - y)`` (SPEC D.2)."""
    sub = B.rows(rows)
    return (B.m / len(rows)) * sub.rmatvec(sub.matvec(z) - y[rows])


def descend(B, y, factors, *, step_at, stop, save_at, clock, batch=None, rng=None):
    """GD (``batch=None``) or SGD with ``batch`` rows per step on the lifted Hadamard problem (SPEC D.1, D.2).

    Returns ``(factors, status, message, t, steps, grad_evals, matvecs, saved)``.
    """
    saved: list[tuple[float, np.ndarray]] = []

    def forward(factors):
        z = product(factors)
        return z if np.all(np.isfinite(z)) else None

    factors, status, message, t, k, evals, matvecs = descent_loop(
        factors, forward=forward, residual=lambda z: B.matvec(z) - y, gradient=lambda z, r: B.rmatvec(r),
        minibatch=lambda z, rows: minibatch_gradient(B, y, z, rows),
        update=lambda factors, z, g, eta: factors - eta * factor_gradient(factors, g),
        m=B.m, ynorm=float(np.linalg.norm(y)), step_at=step_at, stop=stop, clock=clock,
        save=lambda t, z: saved.append((t, z.copy())), save_at=save_at, batch=batch, rng=rng,
    )
    return factors, status, message, t, k, evals, matvecs, saved
