"""The mirror potentials of the Hadamard flows (SPEC A.10, A.12).

In factor time the product ``z`` of ``N`` identical factors obeys ``d/dt ∇F_N(z) = -B^T(Bz - y)``
with

- ``N = 1``: ``∇F(z) = z`` (plain gradient flow, SPEC E.1);
- ``N = 2``: ``∇F(z) = ½ log z``;
- ``N > 2``: ``∇F(z) = -z^(2/N-1) / (N-2)``.

In every case ``dz/dφ = N z^(2-2/N)`` (the inverse Hessian of SPEC A.4) and the convex
conjugate is ``F*(φ) = ½ Σ z(φ)^(2/N)``. Hence the mirror state is
``φ(t) = φ(0) - B^T λ(t)`` with ``λ(t) = ∫ (Bz - y)``: the flow is the gradient flow of the
``m``-dimensional dual ``D(λ) = F*(φ0 - B^T λ) + ⟨y, λ⟩``, whose minimiser is the
Bregman projection of Theorem A.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Largest mirror value for which exp(2 phi) stays finite (N = 2); beyond it z is clamped so
# that an integrator sees a huge residual and rejects the step instead of a NaN.
_MAX_LOG = 300.0


@dataclass(frozen=True)
class MirrorMap:
    depth: int

    def phi(self, z: np.ndarray) -> np.ndarray:
        """``∇F_N(z)`` (SPEC A.12)."""
        N = self.depth
        if N == 1:
            return np.array(z, dtype=np.float64)
        if N == 2:
            return 0.5 * np.log(z)
        return -(z ** (2.0 / N - 1.0)) / (N - 2)

    def z(self, phi: np.ndarray) -> np.ndarray:
        """The inverse map ``(∇F_N)^{-1}(φ)``, clamped to stay finite outside the domain."""
        N = self.depth
        if N == 1:
            return np.array(phi, dtype=np.float64)
        if N == 2:
            return np.exp(2.0 * np.minimum(phi, _MAX_LOG))
        # zeta = z^(2/N-1) > 0 inside the domain; clamp so that z <= 1e150 stays finite
        zeta = np.maximum(-(N - 2) * phi, 10.0 ** (-150.0 * (N - 2) / N))
        return zeta ** (-N / (N - 2.0))

    def in_domain(self, phi: np.ndarray) -> bool:
        N = self.depth
        if N == 1:
            return bool(np.all(np.isfinite(phi)))
        if N == 2:
            return bool(np.all(np.isfinite(phi)) and np.all(phi < _MAX_LOG))
        return bool(np.all(np.isfinite(phi)) and np.all(-(N - 2) * phi > 10.0 ** (-150.0 * (N - 2) / N)))

    def dz_dphi(self, z: np.ndarray) -> np.ndarray:
        """``N z^(2-2/N)``: the inverse Hessian ``H(z)^{-1}`` of SPEC A.4."""
        N = self.depth
        if N == 1:
            return np.ones_like(z)
        return N * np.abs(z) ** (2.0 - 2.0 / N)

    def conjugate_terms(self, z: np.ndarray) -> np.ndarray:
        """Per-coordinate terms of ``F*(φ) = ½ Σ z^(2/N)``."""
        N = self.depth
        if N == 1:
            return 0.5 * z * z
        return 0.5 * z ** (2.0 / N)

    def log_scale_limit(self, phi: np.ndarray, delta: np.ndarray, max_log_change: float,
                        z: np.ndarray | None = None) -> float:
        """Largest ``t <= 1`` with ``|log z(φ + tδ) - log z(φ)| <= max_log_change`` everywhere.

        With ``z``, coordinates that underflowed (``z`` below the smallest normal float) and keep
        shrinking are left out: their ``z`` is 0 to float64 before and after, and bounding their
        ``log z`` only held the others back (hundreds of steps of ``t ~ 0.01``).
        """
        N = self.depth
        if N == 1:
            return 1.0
        live = np.ones(phi.shape, bool)
        if z is not None:
            shrinking = delta < 0 if N == 2 else delta * phi > 0
            live = ~((z < np.finfo(float).tiny) & shrinking)
        if N == 2:
            peak = np.max(np.abs(delta[live]), initial=0.0)
            return 1.0 if peak == 0 else min(1.0, 0.5 * max_log_change / peak)
        # z ∝ (-φ)^(-N/(N-2)): keep the ratio (φ + tδ)/φ in [exp(-c'), exp(c')].
        c = max_log_change * (N - 2) / N
        rate = np.where(live, delta / phi, 0.0)  # > 0 moves away from 0 (z shrinks), < 0 towards 0 (z grows)
        t = 1.0
        grow = rate > 0
        if np.any(grow):
            t = min(t, (np.expm1(c)) / np.max(rate[grow]))
        shrink = rate < 0
        if np.any(shrink):
            t = min(t, (-np.expm1(-c)) / np.max(-rate[shrink]))
        return float(t)
