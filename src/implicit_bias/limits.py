"""Exact predicted limits of gradient flow: Bregman projections solved in the dual (SPEC A.1, A.4, A.6).

The limit of the flow from ``z0`` is ``argmin {D_F(z, z0) : Bz = y, z >= 0}``. Its dual is the
smooth convex ``m``-dimensional problem ``min_λ D(λ) = F*(φ0 - B^T λ) + ⟨y, λ⟩`` (see
:mod:`implicit_bias.mirror`); the primal solution is ``z = (∇F)^{-1}(φ0 - B^T λ*)``.
It is solved by damped Newton: the Hessian ``B diag(N z^(2-2/N)) B^T`` is regularised and
factorised with a Cholesky that retries with more damping, each step changes ``log z`` by at most a
trust radius (the flow escapes from ``alpha^N`` over many orders of magnitude), and Armijo
backtracking on ``D`` guards descent. The mirror state ``φ`` is updated per coordinate, never
recomputed as ``φ0 - B^T λ``, so that coordinates far from ``φ0`` keep their relative precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ._blas import pinned_blas
from .errors import InfeasibleProblemError, InvalidParameterError
from .mirror import MirrorMap
from .models import Hadamard, Init
from .problems import SparseRecovery

_TRUST_LOG = 8.0  # max change of log z per Newton step (z moves by at most a factor e^8 ~ 3000)
_ARMIJO = 1e-4
_CHORD_RATIO = 0.25
_STALL_ACCEPT = 1e-10  # a residual below this that stopped halving within 10 Newton steps is accepted


@dataclass(frozen=True, eq=False)
class Limit:
    """The predicted limit and how well it was computed."""

    x: np.ndarray
    z: np.ndarray  # lifted product (u^N, v^N) for the signed model
    status: str  # "converged" | "max_iter"
    residual: float  # ||Bz - y|| / ||y||
    kkt: float  # relative distance of ∇F(z) - ∇F(z0) from range(B^T), recomputed from z
    iterations: int
    matvecs: int
    wall_s: float
    message: str = ""
    dual: np.ndarray = field(default=None, repr=False)


@pinned_blas
def predict_limit(
    problem: SparseRecovery,
    model: Hadamard,
    init: Init,
    *,
    tol: float = 1e-12,
    max_iter: int = 500,
) -> Limit:
    """The exact gradient-flow limit of ``model`` on ``problem`` from ``init`` (Theorems A.1, A.4, E.1)."""
    if not (0 < tol < 1):
        raise InvalidParameterError(f"The 'tol' parameter must be a float in the range (0, 1). Got {tol!r}.")
    start = time.perf_counter()
    factors = model.require_identical(init, problem.n, "predict_limit")
    z0 = factors[0] ** model.depth if model.depth > 1 else factors[0].copy()
    B = model.lift(problem.A)
    if model.depth == 1:
        z, lam = _project_affine(B, problem.y, z0)
        iterations, matvecs, status, message = 1, 4, "converged", "closed form (SPEC E.1)"
    else:
        z, lam, iterations, matvecs, status, message = _dual_newton(B, problem.y, z0, model.depth, tol, max_iter)
    residual = float(np.linalg.norm(B.matvec(z) - problem.y) / np.linalg.norm(problem.y))
    kkt = range_residual(B, MirrorMap(model.depth), z, z0)
    return Limit(
        x=model.x_from_z(z), z=z, status=status, residual=residual, kkt=kkt, iterations=iterations,
        matvecs=matvecs, wall_s=time.perf_counter() - start, message=message, dual=lam,
    )


def range_residual(B, mirror: MirrorMap, z: np.ndarray, z0: np.ndarray) -> float:
    """``||(I - P_range(B^T)) (∇F(z) - ∇F(z0))|| / ||∇F(z) - ∇F(z0)||`` (SPEC A.3 check (i)).

    Coordinates whose ``z`` underflowed to 0 or to a subnormal number (``∇F`` is -inf or has lost
    its digits) are left out: the projection is onto the range of ``B^T`` restricted to the others.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        v = mirror.phi(z) - mirror.phi(z0)
    normal = np.abs(z) >= np.finfo(float).tiny if mirror.depth >= 2 else np.ones(z.shape, bool)
    keep = (np.isfinite(v) & normal).astype(float)
    v = np.where(keep > 0, v, 0.0)
    norm = np.linalg.norm(v)
    if norm == 0:
        return 0.0
    coef = solve_psd(B.weighted_gram(keep), B.matvec(v))  # normal equations of min ||v - B_K^T c||
    return float(np.linalg.norm((v - B.rmatvec(coef)) * keep) / norm)


def _project_affine(B, y: np.ndarray, z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z0 + B^+ (y - B z0)``: the limit of the linear model (SPEC E.1)."""
    dense = B.dense()
    lam, *_ = np.linalg.lstsq(dense @ dense.T, y - B.matvec(z0), rcond=None)
    z = z0 + B.rmatvec(lam)
    if np.linalg.norm(B.matvec(z) - y) > 1e-8 * np.linalg.norm(y):
        raise InfeasibleProblemError(
            "y is not in the range of A: no exact solution exists, so there is no interpolating limit. "
            "Check the problem (rank of A, noise) or use m <= rank(A)."
        )
    return z, -lam


def factorize_psd(H: np.ndarray):
    """A solver ``rhs -> d`` for ``H d = rhs`` with ``H`` PSD and possibly numerically singular.

    Cholesky of ``H + τ I`` with ``τ`` starting at ``1e-14 · max diag(H)`` (about the rounding
    level of forming ``H``) and growing by 100 until it succeeds.
    """
    scale = float(np.max(np.diag(H)))
    if not np.isfinite(scale) or scale <= 0:
        return np.zeros_like
    tau = 1e-14 * scale
    eye = np.eye(H.shape[0])
    for _ in range(12):
        try:
            factor = scipy.linalg.cho_factor(H + tau * eye, lower=True, check_finite=False)
            return lambda rhs: scipy.linalg.cho_solve(factor, rhs, check_finite=False)
        except np.linalg.LinAlgError:
            tau *= 100.0
    return lambda rhs: np.linalg.lstsq(H, rhs, rcond=1e-12)[0]


def solve_psd(H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``H d = rhs`` for a PSD, possibly numerically singular ``H`` (see :func:`factorize_psd`)."""
    return factorize_psd(H)(rhs)


def _dual_newton(B, y, z0, depth, tol, max_iter):
    mirror = MirrorMap(depth)
    phi = mirror.phi(z0)
    lam = np.zeros(B.m)
    z = z0.copy()
    r = B.matvec(z) - y
    ynorm = np.linalg.norm(y)
    matvecs = 1
    status, message = "max_iter", f"Newton stopped after {max_iter} iterations"
    iterations = 0
    history: list[float] = []
    solver, chord, grams = None, False, 0
    for iterations in range(1, max_iter + 1):
        rnorm = float(np.linalg.norm(r))
        if rnorm <= tol * ynorm:
            status, message = "converged", f"Newton converged in {iterations - 1} iterations"
            iterations -= 1
            break
        history.append(rnorm)
        if len(history) > 10 and rnorm <= _STALL_ACCEPT * ynorm and rnorm > 0.5 * history[-11]:
            # The last digits of the residual live in directions where the Hessian is below the
            # rounding level of its largest entries (coordinates near alpha^N); Newton creeps there.
            status = "converged"
            message = f"Newton stalled at relative residual {rnorm / ynorm:.1e} after {iterations - 1} iterations (accepted)"
            iterations -= 1
            break
        # Weights below 1e-20 of the largest add less than n * 1e-20 << 1e-14 (the damping of
        # solve_psd) relative to the Hessian's scale: skip them (see LiftedOperator.weighted_gram).
        if solver is None or not chord:
            H = B.weighted_gram(mirror.dz_dphi(z), rel_cutoff=1e-20)
            matvecs += B.m  # forming B D B^T costs as much as m products with B
            solver = factorize_psd(H)
            grams += 1
        d = solver(r)  # Newton direction for λ: H d = -∇D = r (chord step: H from an earlier iterate)
        delta = -B.rmatvec(d)  # φ moves by t·delta
        matvecs += 1
        slope = float(r @ d)  # -∇D·d > 0
        if not np.isfinite(slope) or slope <= 0:
            d, slope = r, float(r @ r)  # fall back to steepest descent
            delta = -B.rmatvec(d)
        t = mirror.log_scale_limit(phi, delta, _TRUST_LOG)
        accepted = False
        rnorm = np.linalg.norm(r)
        for _ in range(60):
            phi_new = phi + t * delta
            if mirror.in_domain(phi_new):
                z_new = mirror.z(phi_new)
                # D(new) - D(old), summed per coordinate to avoid cancellation
                decrease = float(np.sum(mirror.conjugate_terms(z_new) - mirror.conjugate_terms(z)) + t * (y @ d))
                if np.isfinite(decrease) and decrease <= -_ARMIJO * t * slope:
                    accepted = True
                    break
                # Near the optimum the decrease of D drops below its rounding error (it is
                # quadratic in the residual): there, a sufficient decrease of ||r|| is the merit.
                r_new = B.matvec(z_new) - y
                matvecs += 1
                if np.linalg.norm(r_new) <= (1 - _ARMIJO * t) * rnorm:
                    accepted = True
                    break
            t *= 0.5
        if not accepted:
            status, message = "max_iter", "line search failed: the dual made no progress (degenerate or infeasible problem)"
            break
        phi, z, lam = phi_new, z_new, lam + t * d
        r = B.matvec(z) - y
        matvecs += 1
        # Keep the factorised Hessian (a chord step) while full steps still cut the residual by 4:
        # in the endgame H hardly changes and forming it (m x m x n) is the whole cost.
        chord = t == 1.0 and np.linalg.norm(r) <= _CHORD_RATIO * rnorm
        if depth >= 2 and np.max(np.abs(lam)) > 1e300:
            break
    if status != "converged":
        _raise_if_no_nonnegative_solution(B, y)
        if np.linalg.norm(r) <= max(tol, 1e-9) * ynorm:
            status = "converged"
            message += f" (residual {np.linalg.norm(r) / ynorm:.1e} accepted)"
    return z, lam, iterations, matvecs, status, message


def _raise_if_no_nonnegative_solution(B, y) -> None:
    from scipy.optimize import linprog

    dense = B.dense()
    result = linprog(np.zeros(dense.shape[1]), A_eq=dense, b_eq=y, bounds=(0, None), method="highs")
    if result.status == 2:
        hint = " Use the signed model (--signed)." if not B.signed else ""
        raise InfeasibleProblemError(
            "the problem has no nonnegative solution z >= 0 with Bz = y, so the positive flow cannot interpolate."
            + hint
        )


# ----------------------------------------------------------------------------- weight normalisation (SPEC B)


@dataclass(frozen=True, eq=False)
class WNLimit:
    """The weight-normalised limit predicted by (B.8) from the effective init ``rho^{-N} z(0)``."""

    limit: Limit | None  # None when rho^{-N} z(0) underflows float64
    log_rho: float
    effective_scale: float  # rho^{-N} (0.0 on underflow)
    status: str  # "converged" | "max_iter" | "underflow"
    message: str = ""

    @property
    def x(self):
        return None if self.limit is None else self.limit.x


@pinned_blas
def predict_limit_weight_norm(problem: SparseRecovery, model, init, r_inf: float, *,
                              tol: float = 1e-12, max_iter: int = 500) -> WNLimit:
    """The gradient-flow limit of ``WeightNormalized`` from ``init`` (Theorem B.1, SPEC B.7-B.8).

    ``r_inf`` is the run's final radius (``||w_∞||``): ``rho`` depends on it through (B.7), so the
    oracle needs it from a simulation (it cannot be predicted from the problem alone). The limit
    is the Bregman projection of :func:`predict_limit` from ``rho^{-N} z(0)``. When that underflows
    float64 (``rho^{-N} min z(0) < 1e-290``) the status is ``"underflow"`` and no limit is given.
    """
    from .theory import log_magnification_factor

    if not (0 < tol < 1):
        raise InvalidParameterError(f"The 'tol' parameter must be a float in the range (0, 1). Got {tol!r}.")
    z0 = model.initial_product(init, problem.n)
    log_rho = log_magnification_factor(model.as_init(init).r0, r_inf, model.eta_r)
    log_c = -model.depth * log_rho
    if log_c + np.log(np.min(z0)) < np.log(1e-290):
        return WNLimit(None, log_rho, float(np.exp(log_c)), "underflow",
                       f"rho^-N = exp({log_c:.4g}): the effective initialisation underflows float64; "
                       "the limit is then numerically the l1 minimiser of S_+ (SPEC B.9 with rho -> inf)")
    z_eff = np.exp(log_c + np.log(z0))
    base = Hadamard(model.depth, model.signed)
    limit = predict_limit(problem, base, Init.general(z_eff), tol=tol, max_iter=max_iter)
    return WNLimit(limit, log_rho, float(np.exp(log_c)), limit.status, limit.message)


def fit_effective_scale(B, z_inf: np.ndarray, z0: np.ndarray, depth: int, floor: float = 0.0) -> tuple[float, float]:
    """The scalar ``c*`` with ``∇F(z_∞) - ∇F(c* z0) ∈ range(B^T)`` in least squares (SPEC B, check).

    By homogeneity ``∇F_N(c z0) = ∇F_N(z0) + ½ log c`` (N = 2) or ``c^{2/N-1} ∇F_N(z0)`` (N > 2), so
    ``c*`` solves a least-squares problem in ``(c, μ)``: ``∇F(z_∞) - ∇F(c z0) = B^T μ``. Only the
    coordinates with ``z_∞ > floor`` enter (an integrator resolves coordinates below its absolute
    tolerance only in absolute terms: their logarithms are noise); at least ``m + 2`` must remain.
    Returns ``(log c*, relative residual of that fit)``; compare ``log c*`` with ``-N log rho`` (B.7, B.8).
    """
    mirror = MirrorMap(depth)
    keep = np.isfinite(z_inf) & (z_inf > max(floor, 0.0))
    dense = B.dense()
    if keep.sum() < dense.shape[0] + 2:
        return float("nan"), float("inf")
    Q, _ = np.linalg.qr(dense.T[keep])  # orthonormal basis of the restricted range(B^T)

    def perp(u):
        return u - Q @ (Q.T @ u)

    phi_inf, phi0 = perp(mirror.phi(z_inf[keep])), perp(mirror.phi(z0[keep]))
    if depth == 2:
        ones = perp(np.ones(int(keep.sum())))
        a = float((phi_inf - phi0) @ ones / (ones @ ones))  # a = ½ log c
        rest = phi_inf - phi0 - a * ones
        return 2.0 * a, float(np.linalg.norm(rest) / max(np.linalg.norm(phi_inf - phi0), 1e-300))
    s = float(phi_inf @ phi0 / (phi0 @ phi0))  # s = c^{2/N-1}
    if not s > 0:
        return float("nan"), float("inf")
    rest = phi_inf - s * phi0
    return float(np.log(s) * depth / (2.0 - depth)), float(np.linalg.norm(rest) / max(np.linalg.norm(phi_inf), 1e-300))
