"""The weight-normalised flow as a time-rescaled mirror flow in an ``m``-dimensional dual (SPEC B.3-B.8).

**Change of variables.** SPEC B.5 reads ``ẇ = -r²G + a w`` with ``a = (r² - η_r)<G, v̄>/r``. With
``w = e^C w̄`` and ``Ċ = a`` (the derivation under B.7) the vector ``w̄`` follows plain
identical-factor flow (A.4) with the time factor ``c = N r² e^{(N-2)C} > 0``: in the mirror
coordinate ``ψ = ∇F_N(z̄)``, ``z̄ = w̄^N`` (A.12),

    ψ̇ = -c B^T(Bz - y),   so   ψ = ψ0 - B^T Λ,   Λ̇ = f(Λ) = c (B z - y).

Two closed forms remove ``C`` and ``r`` from the state: ``w̄`` is parallel to ``w``, so
``r² = e^{2C} S`` with ``S = ||w̄||² = Σ z̄^{2/N}``; and ``C = log(r/r0) - (r² - r0²)/(2η_r)``
(B.7's derivation). Together

    r² = r0² + η_r log(S / r0²),   z = (r/√S)^N z̄,   v̄ = w̄/√S,   ρ = e^{-C} = √S / r.

So the ``(1+n')``-dimensional ``(r, v)`` flow is the ``m``-dimensional ODE for ``Λ``, and the
limit is the Bregman projection of B.8 by construction (``ψ - ψ0 ∈ range B^T`` exactly; with the
homogeneity of ``F_N``, ``z̄_∞ = ρ^N z_∞``). A point with ``Bz = y`` is the projection from
``c z(0)`` with ``c = ρ^{-N}`` evaluated at its own radius, a scalar fixed point: integration error
moves the path, not the limit (rtol 1e-6 and 1e-10 end 1.5e-8 apart, ``tests/test_wn_fast.py``). Its
Jacobian is a symmetric negative semidefinite matrix plus a rank-one term,

    J = -N² B diag(r² z^{2-2/N}) B^T + u (Bz)^T,   u = N²(1 - η_r/r²) Bz + Nκ (Bz - y),
    κ = (N-2)(1 - η_r/r²) - 2η_r/r²,

(``B diag(r² z^{2-2/N}) B^T - (Bz)(Bz)^T ⪰ 0`` by Cauchy-Schwarz), so each Rosenbrock step
factors the SPD ``I/(hγ) + N² B diag(r² z^{2-2/N}) B^T`` once (Cholesky, with the operator and
Gram-column dropping of :mod:`.rosenbrock`) and solves with Sherman-Morrison.

Everything is kept in logarithms (``log z̄``, ``log S``): ``z̄`` itself grows like ``ρ^N``, which
overflows float64 for small ``η_r``. The local error is measured in ``log z`` as in
:class:`.rosenbrock.RodasMirrorFlow` (relative to ``|log z|`` for ``N = 2``). Saved times are
landed on by steps (:mod:`.driver`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dpotrs

from .driver import StepFailure
from .rosenbrock import (
    EPS,
    NOISE,
    TABLEAU,
    RodasControl,
    RotatedOperator,
    Tableau,
    tab_final,
)


def log_sum_exp(a: np.ndarray) -> float:
    """``log Σ exp(a)`` without overflow (scipy's ``logsumexp`` costs ~0.1 ms of checks per call)."""
    top = float(np.max(a))
    return top + float(np.log(np.sum(np.exp(a - top))))


def _cho_solve(chol, rhs: np.ndarray) -> np.ndarray:
    """LAPACK's ``dpotrs`` on a ``cho_factor`` result (``cho_solve`` checks cost ~30 us per call)."""
    x, info = dpotrs(chol[0], rhs, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotrs failed (info {info})")
    return x


@dataclass(frozen=True)
class WNPoint:
    """The model at a mirror state ``ψ``: ``log z``, ``z``, ``r²``, the time factor ``c``,
    ``v̄ = w/||w||``, ``d log z̄ / dψ`` and the (rotated) ``Bz`` and ``Bz - y``."""

    log_z: np.ndarray
    z: np.ndarray
    r2: float
    c: float
    vbar: np.ndarray
    dlog: np.ndarray | float
    Bz: np.ndarray
    res: np.ndarray


@dataclass(frozen=True)
class WNCoordinates:
    """The closed forms of the module docstring for depth ``N``, rate ``η_r`` and radius ``r0``."""

    depth: int
    eta_r: float
    r0: float

    def psi_of_log(self, log_zbar: np.ndarray) -> np.ndarray:
        """``ψ = ∇F_N(z̄)`` (SPEC A.12) from ``log z̄``."""
        N = self.depth
        if N == 2:
            return 0.5 * log_zbar
        return -np.exp((2.0 / N - 1.0) * log_zbar) / (N - 2)

    def log_zbar(self, psi: np.ndarray) -> np.ndarray | None:
        """``log z̄`` from ``ψ``, or None outside the mirror domain (``N > 2``: ``ψ < 0``)."""
        N = self.depth
        if not np.all(np.isfinite(psi)):
            return None
        if N == 2:
            return 2.0 * psi
        if not np.all(psi < 0):
            return None
        return -(N / (N - 2.0)) * np.log(-(N - 2) * psi)

    def dlog(self, psi: np.ndarray) -> np.ndarray | float:
        """``d log z̄ / dψ = N z̄^{1-2/N}``: 2 for ``N = 2``, ``N / ((N-2)|ψ|)`` otherwise."""
        return 2.0 if self.depth == 2 else self.depth / ((self.depth - 2) * np.abs(psi))

    def parts(self, psi: np.ndarray):
        """``(log z, r², c, v̄)`` at ``ψ``, or None outside the domain (``r² <= 0`` included)."""
        N = self.depth
        lzb = self.log_zbar(psi)
        if lzb is None:
            return None
        log_S = log_sum_exp((2.0 / N) * lzb)
        r2 = self.r0**2 + self.eta_r * (log_S - 2.0 * np.log(self.r0))
        if not (np.isfinite(r2) and r2 > 0):
            return None
        NC = 0.5 * N * (np.log(r2) - log_S)
        c = N * r2 * np.exp((N - 2.0) / N * NC)
        vbar = np.exp(lzb / N - 0.5 * log_S)
        return lzb + NC, r2, c, vbar


class RodasWNFlow(RodasControl):
    """RODAS5P (:mod:`.rosenbrock`'s tableau and step control) on ``Λ̇ = c (Bz - y)``, a stepper of
    :func:`~.driver.drive`. ``state`` is ``(r, v̄)`` as one vector, like the ``(r, v)`` BDF path."""

    def __init__(self, B, y, coords: WNCoordinates, v0: np.ndarray, rtol: float, tableau: Tableau | None = None):
        self.tableau = tableau or TABLEAU
        self.A, self.y0, self.signed = B.A, y, B.signed
        self.coords, self.depth, self.rtol = coords, coords.depth, rtol
        self.op = RotatedOperator(self.A, y, self.signed)
        log_w0 = np.log(coords.r0) + np.log(v0) - np.log(np.linalg.norm(v0))
        self.psi = coords.psi_of_log(self.depth * log_w0)
        self.evals, self.matvecs, self.steps, self.rejected, self.factorizations, self.rotations = 0, 0, 0, 0, 0, 0
        self.pt = self._evaluate(self.psi)
        if self.pt is None:
            raise StepFailure("the initial weight-normalised state is outside the mirror domain (SPEC B.1)")
        self._start_control(y)

    @property
    def state(self) -> np.ndarray:
        """``(r, v̄)``: the radius and the unit direction of ``w`` (SPEC B.1, B.4)."""
        return np.concatenate([[np.sqrt(self.pt.r2)], self.pt.vbar])

    def point(self) -> np.ndarray:
        return self.pt.z

    def residual(self) -> float:
        return float(np.linalg.norm(self.pt.res)) / self._ynorm

    def _evaluate(self, psi: np.ndarray) -> WNPoint | None:
        parts = self.coords.parts(psi)
        if parts is None:
            return None
        log_z, r2, c, vbar = parts
        with np.errstate(under="ignore"):
            z = np.exp(log_z)
        Bz = self.op.matvec(z)
        self.evals += 1
        self.matvecs += 1
        return WNPoint(log_z, z, r2, c, vbar, self.coords.dlog(psi), Bz, Bz - self.op.y)

    def rhs(self, pt: WNPoint) -> np.ndarray:
        """``f(Λ) = c (Bz - y)``."""
        return pt.c * pt.res

    def advance(self, target: float) -> None:
        """One accepted step, shortened to land exactly on ``target`` when that is within reach."""
        self._land(target)

    def _log_scale(self, pt: WNPoint) -> np.ndarray | float:
        """Per-coordinate scale of ``δ log z``: ``1/max(|log z|, 1)`` for ``N = 2`` (escape times
        ``∝ |log z|``), 1 for ``N > 2`` (see :meth:`.rosenbrock.RodasMirrorFlow.weights`)."""
        return 1.0 / np.maximum(np.abs(pt.log_z), 1.0) if self.depth == 2 else 1.0

    def first_step(self) -> float:
        """A step that moves ``log z`` by about ``rtol^(1/4)`` along the initial velocity."""
        velocity = np.max(np.abs(self.op.rmatvec(self.rhs(self.pt)) * self.pt.dlog) * self._log_scale(self.pt))
        return self.rtol ** 0.25 / max(float(velocity), 1e-300)

    def _rotate_if_noisy(self, h: float) -> None:
        """As :meth:`.rosenbrock.RodasMirrorFlow._rotate_if_noisy`, with the increment ``h c |Bz - y|``."""
        noise = np.asarray(self.pt.dlog * self._log_scale(self.pt)) * np.ones(self.pt.z.size)
        noise = self.op.base(noise, np.maximum) * np.sqrt(self.op.col_norm2) * EPS
        drift = 2.0 * h * self.pt.c * np.linalg.norm(self.pt.res)
        needed = np.flatnonzero(noise * drift > NOISE * self.rtol)
        if needed.size == 0 or np.all(np.isin(needed, self.op.exact)):
            return
        wanted = np.flatnonzero(noise * drift * 100.0 > NOISE * self.rtol)
        wanted = wanted[np.argsort(-noise[wanted])][: self.op.m]
        self.op = RotatedOperator(self.A, self.y0, self.signed, np.sort(wanted))
        self.pt = self._evaluate(self.psi)
        self.matvecs += self.op.m
        self.rotations += 1
        self._gram = None

    def _factor(self, h: float):
        """Cholesky of ``K = I/(hγ) + N² B diag(r² z^{2-2/N}) B^T`` and the Sherman-Morrison
        terms ``(K^{-1}u, 1 - p^T K^{-1}u)`` of ``I/(hγ) - J = K - u p^T``, ``p = Bz``."""
        N, pt, eta = self.depth, self.pt, self.coords.eta_r
        if self._gram is None or self._gram[1] < h:
            d = N * N * pt.r2 * pt.z ** (2.0 - 2.0 / N)
            self._gram = (self.op.gram(d, h * self.tableau.gamma / self.rtol), h)
            self.matvecs += self.op.m
        K = self._gram[0].copy(order="F")
        K[np.diag_indices_from(K)] += 1.0 / (h * self.tableau.gamma)
        self.factorizations += 1
        chol = scipy.linalg.cho_factor(K, lower=True, check_finite=False, overwrite_a=True)
        kappa = (N - 2) * (1.0 - eta / pt.r2) - 2.0 * eta / pt.r2
        u = N * N * (1.0 - eta / pt.r2) * pt.Bz + N * kappa * pt.res
        Ku = _cho_solve(chol, u)
        denom = 1.0 - float(pt.Bz @ Ku)
        if not (np.isfinite(denom) and abs(denom) > 1e-12):
            raise np.linalg.LinAlgError(f"singular Rosenbrock matrix (Sherman-Morrison denominator {denom:.3g})")
        return chol, Ku, denom

    def _solve(self, factor, rhs: np.ndarray) -> np.ndarray:
        chol, Ku, denom = factor
        x = _cho_solve(chol, rhs)
        return x + Ku * (float(self.pt.Bz @ x) / denom)

    def _error(self, k_last: np.ndarray, new: WNPoint) -> float:
        """Scaled local error in ``log z``: ``δ log z̄ = -dlog ⊙ B^T k`` plus the common shift
        ``δ(NC) = (η_r/r² - 1) Σ v̄² δ log z̄``."""
        dlog = np.maximum(self.pt.dlog, new.dlog)
        dlzb = -dlog * self.op.rmatvec(k_last)
        shift = (self.coords.eta_r / new.r2 - 1.0) * float(new.vbar**2 @ dlzb)
        scale = np.maximum(self._log_scale(self.pt), self._log_scale(new))
        return float(np.max(np.abs(dlzb + shift) * scale) / self.rtol)

    def attempt(self, h: float):
        """One Rosenbrock step of size ``h``: ``(err, (ψ, point))``, ``err = inf`` outside the domain."""
        try:
            factor = self._factor(h)
        except np.linalg.LinAlgError:
            return np.inf, None
        tab = self.tableau
        ks: list[np.ndarray] = []
        f = self.rhs(self.pt)
        for i in range(len(tab.A) + 1):
            rhs = f.copy()
            if i:
                for j, c in enumerate(tab.C[i - 1]):
                    rhs += (c / h) * ks[j]
            ks.append(self._solve(factor, rhs))
            step = sum(a * ks[j] for j, a in enumerate(tab.A[i])) if i < len(tab.A) else tab_final(tab, ks)
            psi = self.psi - self.op.rmatvec(step)
            pt = self._evaluate(psi)
            if pt is None or not np.all(np.isfinite(pt.res)):
                return np.inf, None
            f = self.rhs(pt)
        err = self._error(ks[-1], pt)
        return (err, (psi, pt)) if np.isfinite(err) else (np.inf, None)

    def jacobian(self) -> np.ndarray:
        """The dense ``J = df/dΛ`` of the module docstring at the current state (``m x m``; for checks)."""
        N, pt, eta = self.depth, self.pt, self.coords.eta_r
        H = (self.op.A * (N * N * pt.r2 * self.op.base(pt.z ** (2.0 - 2.0 / N)))) @ self.op.A.T
        kappa = (N - 2) * (1.0 - eta / pt.r2) - 2.0 * eta / pt.r2
        return -H + np.outer(N * N * (1.0 - eta / pt.r2) * pt.Bz + N * kappa * pt.res, pt.Bz)

    def fixed_step(self, h: float) -> None:
        """One step of size ``h`` without error control (order checks); StepFailure outside the domain."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            _, new = self.attempt(h)
        if new is None:
            raise StepFailure(f"a fixed step of size {h:.3g} left the domain")
        self.psi, self.pt, self._gram = new[0], new[1], None
        self._time.add(h)
        self.steps += 1

    def _take(self, new) -> None:
        self.psi, self.pt = new
