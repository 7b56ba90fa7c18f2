"""Factor gradient descent and mini-batch SGD (SPEC D.1, D.2)."""

from __future__ import annotations

import numpy as np

from ..models.hadamard import factor_gradient, product

# A run is called diverged when its residual exceeds this multiple of ||y|| (it started near
# ||y||: the initial product is small) or becomes non-finite.
_DIVERGENCE_FACTOR = 1e6


def minibatch_gradient(B, y, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Unbiased estimator ``(m/q) Σ_{l∈J} b_l (b_l^T z - y_l)`` of ``B^T(Bz - y)`` (SPEC D.2)."""
    sub = B.rows(rows)
    return (B.m / len(rows)) * sub.rmatvec(sub.matvec(z) - y[rows])


def descend(B, y, factors, *, step_at, stop, save_at, clock, batch=None, rng=None):
    """Run GD (``batch=None``) or SGD with ``batch`` rows per step on the lifted problem.

    SGD uses the unbiased estimator ``(m/q) Σ_{l∈J} b_l (b_l^T z - y_l)`` of ``B^T(Bz - y)``
    (SPEC D.2). The full residual is checked every step for GD, every epoch for SGD.
    Returns ``(factors, status, message, t, steps, grad_evals, matvecs, saved)``.
    """
    m = B.m
    ynorm = np.linalg.norm(y)
    check_every = 1 if batch is None else max(1, m // batch)
    saved: list[tuple[float, np.ndarray]] = []
    save_steps = None if save_at is None or isinstance(save_at, str) else set(int(k) for k in save_at)
    t, evals, matvecs = 0.0, 0.0, 0
    status, message = "budget_exhausted", ""
    k = 0
    residual = np.linalg.norm(B.matvec(product(factors)) - y) / ynorm
    while True:
        z = product(factors)
        if (save_steps is not None and k in save_steps) or (isinstance(save_at, str) and save_at == "steps"):
            saved.append((t, z.copy()))
        if k % check_every == 0 or batch is None:
            r = B.matvec(z) - y
            residual = np.linalg.norm(r) / ynorm
            matvecs += 1
            evals += 0.5 if batch is not None else 0.0
            if not np.isfinite(residual) or residual > _DIVERGENCE_FACTOR:
                status, message = "diverged", f"residual {residual:.3g} at step {k} (step size too large)"
                break
            if residual <= stop.tol:
                status, message = "converged", f"relative residual {residual:.2e} <= tol {stop.tol:g}"
                break
        spent = stop.exhausted(evals, t, clock(), residual)
        if spent:
            message = spent
            break
        eta = step_at(k)
        if batch is None:
            g = B.rmatvec(r)
            evals += 1
            matvecs += 1
        else:
            g = minibatch_gradient(B, y, z, rng.choice(m, size=batch, replace=False))
            evals += batch / m
            matvecs += 2 * batch / m
        factors = factors - eta * factor_gradient(factors, g)
        t += eta
        k += 1
    return factors, status, message, t, k, int(np.ceil(evals)), int(np.ceil(matvecs)), saved
