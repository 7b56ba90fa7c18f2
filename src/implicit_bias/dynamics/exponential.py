"""Gradient flow of identical factors by an adaptive exponential Rosenbrock integrator.

With identical factors the flow is a mirror flow (SPEC A.10, A.12): ``φ' = -B^T r`` with
``r = B z(φ) - y``, i.e. ``φ(t) = φ(0) - B^T λ(t)`` where ``λ' = r`` is the gradient flow of
the convex dual ``D(λ) = F*(φ0 - B^T λ) + ⟨y, λ⟩``. Its Jacobian ``-H``,
``H = B diag(N z^(2-2/N)) B^T``, is ``m x m`` and symmetric, so each step

    λ ← λ + Q diag(h φ1(-h Λ)) Q^T r,        H = Q Λ Q^T,   φ1(x) = (e^x - 1)/x,

solves the linearised flow *exactly* (exponential Rosenbrock–Euler, second order with the exact
Jacobian): stiffness costs nothing, and the step size is limited only by how fast ``H``
changes. The local error is estimated from the defect ``d = r(λ_new) - Q e^{-hΛ} Q^T r``
of the linear prediction, through the next term of the expansion, ``Q diag(h φ2(-hΛ)) Q^T d``,
measured in ``log z`` (every coordinate to relative accuracy ``rtol``).

The mirror state ``φ`` is updated in place per coordinate, never recomputed as
``φ0 - B^T λ``: coordinates that moved over many orders of magnitude keep their relative
precision, and no time variable enters the step (escape times beyond 1e18 are harmless).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..mirror import MirrorMap


def phi1(x: np.ndarray) -> np.ndarray:
    """``(e^x - 1)/x`` for ``x <= 0``, accurate near 0."""
    out = np.ones_like(x)
    big = np.abs(x) > 1e-8
    out[big] = np.expm1(x[big]) / x[big]
    return out


def phi2(x: np.ndarray) -> np.ndarray:
    """``(e^x - 1 - x)/x^2`` for ``x <= 0``, by its series near 0."""
    out = 0.5 + x / 6.0 + x * x / 24.0
    big = np.abs(x) > 1e-3
    out[big] = (np.expm1(x[big]) - x[big]) / (x[big] * x[big])
    return out


class ExponentialMirrorFlow:
    """Stepper for the mirror flow; ``run`` drives it to a stopping rule."""

    def __init__(self, B, y, depth: int, z0: np.ndarray, rtol: float):
        self.B, self.y, self.depth, self.rtol = B, y, depth, rtol
        self.mirror = MirrorMap(depth)
        self.phi = self.mirror.phi(z0)
        self.z = np.array(z0, dtype=np.float64)
        self.r = B.matvec(self.z) - y
        self.t = 0.0
        self.matvecs = 1
        self.evals = 1
        self.steps = 0
        self.rejected = 0
        self.decompositions = 0
        self.cache = None

    def _error(self, dphi_err: np.ndarray, z: np.ndarray) -> float:
        """Largest error in ``log z`` relative to ``rtol`` (depth 1: in ``z`` relative to ``max|z|``)."""
        if self.depth == 1:
            return float(np.max(np.abs(dphi_err)) / (self.rtol * max(1.0, np.max(np.abs(z)))))
        return float(np.max(np.abs(dphi_err) * self.mirror.dz_dphi(z) / z) / self.rtol)

    def _decompose(self):
        H = self.B.weighted_gram(self.mirror.dz_dphi(self.z), rel_cutoff=1e-20)
        self.matvecs += self.B.m
        self.decompositions += 1
        eigenvalues, Q = scipy.linalg.eigh(H, check_finite=False)
        return np.maximum(eigenvalues, 0.0), Q

    def step(self, h: float | None):
        """Take one accepted step; return ``(h_used, h_next, interpolant)``.

        The eigendecomposition of ``H`` is reused from earlier steps while they keep being
        accepted (a frozen Jacobian only enlarges the defect, which the error estimate sees);
        a rejected step first refreshes it, and only then shrinks ``h``.
        """
        B, mirror = self.B, self.mirror
        if h is None:
            # First step: move log z by about sqrt(rtol) along the initial velocity.
            velocity = np.max(np.abs(B.rmatvec(self.r)) * mirror.dz_dphi(self.z) / np.maximum(np.abs(self.z), 1e-300))
            h = np.sqrt(self.rtol) / max(velocity, 1e-300)
        fresh = self.cache is None
        if fresh:
            self.cache = self._decompose()
        for _ in range(200):
            eigenvalues, Q = self.cache
            c = Q.T @ self.r
            x = -h * eigenvalues
            dlam = Q @ (h * phi1(x) * c)
            phi_new = self.phi - B.rmatvec(dlam)
            err = np.inf
            if mirror.in_domain(phi_new):
                z_new = mirror.z(phi_new)
                r_new = B.matvec(z_new) - self.y
                self.matvecs += 2
                self.evals += 1
                defect = r_new - Q @ (np.exp(x) * c)
                correction = Q @ (h * phi2(x) * (Q.T @ defect))
                with np.errstate(over="ignore", invalid="ignore"):
                    err = self._error(B.rmatvec(correction), np.maximum(np.minimum(self.z, z_new), 1e-300))
                if np.isfinite(err) and err <= 1.0:
                    start_phi = self.phi

                    def interpolant(theta: float, h=h, start_phi=start_phi, c=c, lam=eigenvalues, Q=Q):
                        step = theta * h
                        return mirror.z(start_phi - B.rmatvec(Q @ (step * phi1(-step * lam) * c)))

                    self.phi, self.z, self.r = phi_new, z_new, r_new
                    self.t += h
                    self.steps += 1
                    factor = 5.0 if err == 0 else min(5.0, max(0.2, 0.9 / np.sqrt(err)))
                    return h, h * factor, interpolant
            self.rejected += 1
            if not fresh:
                self.cache, fresh = self._decompose(), True
                continue
            h *= 0.2 if not np.isfinite(err) else max(0.1, min(0.9, 0.9 / np.sqrt(err)))
        raise FloatingPointError("step size underflow: the flow could not be advanced")


def integrate_mirror(B, y, depth, z0, *, stop, rtol, save_at, clock, t0=0.0, evals0=0):
    """Run :class:`ExponentialMirrorFlow` from ``z0`` at time ``t0`` until the residual
    tolerance or a budget is reached.

    Returns ``(z, status, message, t, steps, evals, matvecs, saved)``.
    """
    flow = ExponentialMirrorFlow(B, y, depth, z0, rtol)
    flow.t, flow.evals = t0, flow.evals + evals0
    if save_times_given := (save_at is not None and not isinstance(save_at, str)):
        save_at = [s for s in np.atleast_1d(save_at) if s > t0]
    ynorm = np.linalg.norm(y)
    saved: list[tuple[float, np.ndarray]] = []
    save_times = None if save_at is None or isinstance(save_at, str) else np.sort(np.asarray(save_at, float))
    index = 0
    if save_times is not None and not save_times_given:
        while index < len(save_times) and save_times[index] <= 0:
            saved.append((float(save_times[index]), flow.z.copy()))
            index += 1
    elif isinstance(save_at, str) and save_at == "steps":
        saved.append((0.0, flow.z.copy()))
    h = None
    status, message = "budget_exhausted", ""
    while True:
        residual = np.linalg.norm(flow.r) / ynorm
        if not np.isfinite(residual):
            status, message = "failed", f"non-finite residual at t={flow.t:.3g}"
            break
        ended = stop.outcome(flow.evals, flow.t, clock(), residual)
        if ended:
            status, message = ended
            break
        t_old = flow.t
        if np.isfinite(stop.max_time) and h is not None:
            h = min(h, stop.max_time - t_old)
        try:
            h_used, h, interpolant = flow.step(h)
        except (FloatingPointError, np.linalg.LinAlgError, ValueError) as exc:
            status, message = "failed", f"integration failed at t={flow.t:.3g}: {exc}"
            break
        if save_times is not None:
            while index < len(save_times) and save_times[index] <= flow.t:
                saved.append((float(save_times[index]), interpolant((save_times[index] - t_old) / h_used)))
                index += 1
        elif isinstance(save_at, str) and save_at == "steps":
            saved.append((flow.t, flow.z.copy()))
    return flow.z, status, message, flow.t, flow.steps, flow.evals, flow.matvecs, saved
