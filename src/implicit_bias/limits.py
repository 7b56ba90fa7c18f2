"""Exact predicted limits of gradient flow: Bregman projections solved in the dual (SPEC A.1, A.4, A.6).

The limit of the flow from ``z0`` is ``argmin {D_F(z, z0) : Bz = y, z >= 0}``. Its dual is the
smooth convex ``m``-dimensional problem ``min_λ D(λ) = F*(φ0 - B^T λ) + ⟨y, λ⟩`` (see
:mod:`implicit_bias.mirror`); the primal solution is ``z = (∇F)^{-1}(φ0 - B^T λ*)``.
It is solved by damped Newton on ``D``. The Hessian is ``A diag(w) A^T`` with per-column weights
``w = N z^(2-2/N)`` (summed over the two halves of ``z`` for the signed model); the Newton system
uses the shifted weights ``w + μ``, ``μ = 1e-19 max w`` (a Levenberg-Marquardt damping in the
metric ``A A^T``), and is solved by :class:`_NewtonMatrix`: a Cholesky factorisation kept across
Newton steps, a Woodbury correction for the few columns whose weight moved far from it, and a
Chebyshev iteration for the rest, so that the ``m x m x n`` Gram matrix is formed only a few times
per solve. Each step changes ``log z`` by at most a trust radius (the flow escapes from
``alpha^N`` over many orders of magnitude), and Armijo backtracking on ``D`` guards descent. The
mirror state ``φ`` is updated per coordinate, never recomputed as ``φ0 - B^T λ``, so that
coordinates far from ``φ0`` keep their relative precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ._blas import pinned_blas
from .errors import InfeasibleProblemError, InvalidParameterError, SolverError
from .mirror import MirrorMap
from .models import Hadamard, Init
from .problems import SparseRecovery

_TRUST_LOG = 8.0  # max change of log z per Newton step (z moves by at most a factor e^8 ~ 3000)
_ARMIJO = 1e-4
_STALL_ACCEPT = 1e-10  # a residual below this that stopped halving within 10 Newton steps is accepted
_SHIFT = 1e-19  # Newton matrix A diag(w + μ) A^T with μ = _SHIFT * max(w): damping below rounding of the top weights
_BAND = 2.0  # weights within a factor _BAND of the factorised ones are left to the Chebyshev iteration
_FORCING = 1e-3  # relative accuracy of each Newton direction (preconditioned residual)
_MAX_INNER = 20  # Chebyshev iterations per Newton step (each costs two products with A)
_GRAM_FLOPS = 2e9  # above m^2 n flops the KKT check uses CGLS instead of the m x m Gram matrix


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
    kkt = range_residual(B, MirrorMap(model.depth), z, z0, witness=None if lam is None else -lam)
    return Limit(
        x=model.x_from_z(z), z=z, status=status, residual=residual, kkt=kkt, iterations=iterations,
        matvecs=matvecs, wall_s=time.perf_counter() - start, message=message, dual=lam,
    )


def range_residual(B, mirror: MirrorMap, z: np.ndarray, z0: np.ndarray, witness: np.ndarray | None = None) -> float:
    """``||(I - P_range(B^T)) (∇F(z) - ∇F(z0))|| / ||∇F(z) - ∇F(z0)||`` (SPEC A.3 check (i)).

    Recomputed from ``z`` alone. Coordinates whose ``z`` underflowed to 0 or to a subnormal number
    (``∇F`` is -inf or has lost its digits) are left out: the projection is onto the range of
    ``B^T`` restricted to the others. Small problems solve the normal equations with the Gram
    matrix. Above ``_GRAM_FLOPS`` the least-squares problem ``min_c ||v - B^T c||`` is solved by
    CGLS started from ``witness`` (the solver's ``-λ``, for which ``v = -B^T λ`` in exact
    arithmetic); the value returned is the explicitly recomputed ``||v - B^T c||`` of the best
    ``c`` found, an upper bound of the projection residual, never an estimate below it.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        v = mirror.phi(z) - mirror.phi(z0)
    normal = np.abs(z) >= np.finfo(float).tiny if mirror.depth >= 2 else np.ones(z.shape, bool)
    keep = (np.isfinite(v) & normal).astype(float)
    v = np.where(keep > 0, v, 0.0)
    norm = np.linalg.norm(v)
    if norm == 0:
        return 0.0
    if float(B.m) ** 2 * B.width <= _GRAM_FLOPS or witness is None:
        coef = solve_psd(B.weighted_gram(keep), B.matvec(v))  # normal equations of min ||v - B_K^T c||
        return float(np.linalg.norm((v - B.rmatvec(coef)) * keep) / norm)
    return _cgls_range_residual(B, v, keep, np.asarray(witness, dtype=np.float64)) / norm


def _cgls_range_residual(B, v: np.ndarray, keep: np.ndarray, coef: np.ndarray, max_iter: int = 40) -> float:
    """``min ||keep ⊙ (v - B^T c)||`` over the CGLS iterates from ``coef`` (explicit residuals)."""

    def residual(c):
        return keep * (v - B.rmatvec(c))

    s = residual(coef)
    best = float(np.linalg.norm(s))
    scale = float(np.linalg.norm(B.matvec(keep * v)))  # the normal-equation residual at c = 0
    g = B.matvec(keep * s)
    p, gamma = g, float(g @ g)
    for _ in range(max_iter):
        if not gamma > (1e-14 * scale) ** 2:  # normal equations solved to rounding level
            break
        q = keep * B.rmatvec(p)
        qq = float(q @ q)
        if not qq > 0:
            break
        step = gamma / qq
        coef = coef + step * p
        s = s - step * q
        g = B.matvec(keep * s)
        gamma_new = float(g @ g)
        p, gamma = g + (gamma_new / gamma) * p, gamma_new
    return min(best, float(np.linalg.norm(residual(coef))))


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


def damped_cholesky(H: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of ``H + τ I`` for a PSD, possibly numerically singular ``H``.

    ``τ = 0`` first, then ``1e-14 · max diag(H)`` (about the rounding level of forming ``H``)
    growing by 100 until it succeeds; ``None`` if twelve tries fail or ``H`` has no positive scale.
    """
    scale = float(np.max(np.diag(H)))
    if not np.isfinite(scale) or scale <= 0:
        return None
    tau = 0.0
    for _ in range(13):
        try:
            shifted = H if tau == 0 else H + tau * np.eye(H.shape[0])
            return scipy.linalg.cholesky(shifted, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            tau = 1e-14 * scale if tau == 0 else 100.0 * tau
    return None


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


def _gram_lower(A: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The lower triangle of ``A diag(weights) A^T`` (``weights >= 0``) by one symmetric rank-k update."""
    scaled = A * np.sqrt(weights)
    return scipy.linalg.blas.dsyrk(1.0, scaled.T, trans=1, lower=1)  # scaled.T is Fortran-ordered: no copy


class _Factor:
    """A Cholesky factor ``L`` of ``A diag(g) A^T`` (times ``scale``) with a cache of ``L^{-1} a_k``."""

    def __init__(self, A: np.ndarray, L: np.ndarray):
        self.A, self.L = A, np.asfortranarray(L)
        self.cache = np.empty(A.shape, order="F")
        self.have = np.zeros(A.shape[1], dtype=bool)

    def columns(self, index: np.ndarray) -> np.ndarray:
        new = index[~self.have[index]]
        if new.size:
            self.cache[:, new] = scipy.linalg.solve_triangular(self.L, self.A[:, new], lower=True, check_finite=False)
            self.have[new] = True
        return self.cache[:, index]

    def solve_lower(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        return scipy.linalg.blas.dtrsv(self.L, r, lower=1, trans=1 if transpose else 0)


class _NewtonMatrix:
    """Solves the dual Newton system ``A diag(w') A^T d = r``, ``w' = w + μ``, over many Newton steps.

    The Hessian of the dual (SPEC A.4: ``B H(z)^{-1} B^T``) has per-column weights ``w`` that span
    dozens of orders of magnitude and change every step, and forming it costs ``m^2 n``. Instead a
    factorised base ``P0 = A diag(g) A^T`` is kept: either ``c A A^T`` (``c`` a scalar, from one
    factorisation of ``A A^T``; exact while most weights sit at a common level, as at a uniform
    initialisation and while the off-support weights lie below ``μ``) or the Gram matrix of the
    weights at the last rebuild. Columns whose weight left ``[g/_BAND, _BAND g]`` enter exactly by a
    Woodbury correction ``P = P0 + A_C diag(w'_C - g_C) A_C^T`` (a ``|C| x |C|`` system); for the
    others ``w'/g`` lies in ``[lo, hi]``, so ``P^{-1} H`` has its spectrum in ``[lo, hi]`` (Loewner
    order: ``P ⪰ A_{C'} diag(g) A_{C'}^T``) and a Chebyshev iteration removes that error at a rate
    ``(√κ-1)/(√κ+1)`` without inner products with ``H`` (whose tiny eigenvalues are below the
    rounding of its large ones). The base is rebuilt when more than ``cmax`` columns moved.

    ``A^T d`` is returned with the Woodbury columns replaced by the exact identity
    ``A_C^T d = c'/(w'_C - g_C)``: for a column of weight ``10^20`` times the rest ``A_C^T d`` is
    tiny and computing it from ``d`` would return rounding noise.
    """

    def __init__(self, A: np.ndarray):
        self.A = A
        self.m, self.n = A.shape
        self.cmax = max(8, min(600, self.m // 2))
        self.gram0 = None  # A A^T (lower triangle) and its factor, built on first use
        self.uniform = None
        self.full, self.full_weights = None, None
        self.matvecs = 0.0  # cost in products with A (an m x m x k rank-k update counts m k / (2n))
        self.rebuilds = 0

    # ----------------------------------------------------------------- bases
    def _ensure_gram0(self) -> None:
        if self.gram0 is None:
            self.gram0 = _gram_lower(self.A, np.ones(self.n))
            self.matvecs += self.m / 2
            L = damped_cholesky(self.gram0)
            if L is None:
                raise SolverError("the Gram matrix A A^T has no positive diagonal: A is zero.")
            self.uniform = _Factor(self.A, L)

    def _rebuild(self, w: np.ndarray, mu: float) -> None:
        """Factorise ``A diag(w + μ) A^T``; columns with ``w <= μ`` enter at weight ``μ`` through ``μ A A^T``."""
        big = w > mu
        self.rebuilds += 1
        if self.gram0 is not None or big.sum() <= self.n // 2:
            self._ensure_gram0()
            G = _gram_lower(self.A[:, big], w[big]) + mu * self.gram0
            weights = np.where(big, w + mu, mu)  # the others have w + μ in [μ, 2μ]: inside the band
            self.matvecs += self.m * big.sum() / (2 * self.n)
        else:
            weights = w + mu
            G = _gram_lower(self.A, weights)
            self.matvecs += self.m / 2
        L = damped_cholesky(G)
        if L is None:
            raise SolverError("the Newton matrix of the dual has no positive diagonal (all weights underflowed).")
        self.full, self.full_weights = _Factor(self.A, L), weights

    # ----------------------------------------------------------------- one Newton step
    def prepare(self, w: np.ndarray) -> None:
        """Set up the preconditioner ``P`` for the weights ``w`` of the current iterate."""
        mu = _SHIFT * float(np.max(w))
        wp = w + mu
        level = float(np.median(wp))
        outside_uniform = np.flatnonzero((wp > _BAND * level) | (wp < level / _BAND))
        choice = ("uniform", outside_uniform)
        if self.full is not None:
            g = self.full_weights
            outside_full = np.flatnonzero((wp > _BAND * g) | (wp < g / _BAND))
            if outside_full.size <= outside_uniform.size:
                choice = ("full", outside_full)
        kind, C = choice
        if C.size > self.cmax:
            self._rebuild(w, mu)
            kind, C = "full", C[:0]
        if kind == "uniform":
            self._ensure_gram0()
            factor, scale, g = self.uniform, np.sqrt(level), np.full(self.n, level)
        else:
            factor, scale, g = self.full, 1.0, self.full_weights
        self.factor, self.scale, self.C = factor, scale, C
        self.excess = wp - g
        self.excess[C] = 0.0
        ratio = np.delete(wp / g, C)
        self.lo = min(1.0, float(np.min(ratio))) if ratio.size else 1.0
        self.hi = max(1.0, float(np.max(ratio))) if ratio.size else 1.0
        if C.size:
            self.W = wp[C] - g[C]
            self.Y = factor.columns(C) / scale
            M = self.Y.T @ self.Y
            M[np.diag_indices_from(M)] += 1.0 / self.W
            self.M = scipy.linalg.lu_factor(M, check_finite=False)
            self.matvecs += C.size * (self.m + C.size) / self.n

    def _precondition(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P^{-1} r, A_C^T P^{-1} r)`` by Woodbury on the factorised base."""
        s = self.factor.solve_lower(r) / self.scale
        if self.C.size:
            coef = scipy.linalg.lu_solve(self.M, self.Y.T @ s, check_finite=False)
            s = s - self.Y @ coef
            return self.factor.solve_lower(s, transpose=True) / self.scale, coef / self.W
        return self.factor.solve_lower(s, transpose=True) / self.scale, np.zeros(0)

    def solve(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(d, A^T d)`` with ``A diag(w') A^T d = r`` to relative accuracy ``_FORCING`` (preconditioned)."""
        x, xc = self._precondition(r)
        if self.hi - self.lo > _FORCING:
            # Chebyshev iteration for (I + P^{-1} E) x = P^{-1} r, E = A diag(excess) A^T, spectrum in [lo, hi]
            center, half = 0.5 * (self.hi + self.lo), 0.5 * (self.hi - self.lo)
            sigma = center / half
            bnorm = float(np.linalg.norm(x))
            q, qc = self._precondition(self._excess_product(x))
            res, resc = -q, -qc
            rho = 1.0 / sigma
            step, stepc = res / center, resc / center
            for _ in range(_MAX_INNER):
                if np.linalg.norm(res) <= _FORCING * bnorm:
                    break
                x, xc = x + step, xc + stepc
                q, qc = self._precondition(self._excess_product(step))
                res, resc = res - step - q, resc - stepc - qc
                rho_next = 1.0 / (2.0 * sigma - rho)
                step = rho_next * rho * step + (2.0 * rho_next / half) * res
                stepc = rho_next * rho * stepc + (2.0 * rho_next / half) * resc
                rho = rho_next
        Atd = self.A.T @ x
        self.matvecs += 1
        if self.C.size:
            # x's component along range(A_C) is lost in the cancellation of the Woodbury formula
            # (it is tiny next to the rest of x); restore it from the exact identity A_C^T x = xc,
            # so that A^T x stays one consistent vector of range(A^T) (the KKT condition).
            AC = self.A[:, self.C]
            L = damped_cholesky(AC.T @ AC)  # damped: columns of A_C may repeat (the signed model's [A, -A])
            if L is not None:
                coef = scipy.linalg.cho_solve((L, True), xc - Atd[self.C], check_finite=False)
                x = x + AC @ coef
            Atd = self.A.T @ x
            self.matvecs += 2 + self.C.size * (self.m + self.C.size) / (2 * self.n)
        return x, Atd

    def _excess_product(self, v: np.ndarray) -> np.ndarray:
        self.matvecs += 2
        return self.A @ (self.excess * (self.A.T @ v))


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
    newton = _NewtonMatrix(B.A)
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
        h = mirror.dz_dphi(z)
        w = h[: B.n] + h[B.n :] if B.signed else h
        d, Atd = None, None
        if np.max(w) > 0 and np.all(np.isfinite(w)):
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    newton.prepare(w)
                    d, Atd = newton.solve(r)  # Newton direction for λ: H d = -∇D = r
            except (SolverError, np.linalg.LinAlgError, ValueError):
                d, Atd = None, None  # a diverging dual (no solution): steepest descent below
        slope = float(r @ d) if d is not None else float("nan")
        if not np.isfinite(slope) or slope <= 0 or not np.all(np.isfinite(Atd)):
            d, slope = r, float(r @ r)  # fall back to steepest descent
            Atd = B.A.T @ d
            matvecs += 1
        delta = np.concatenate([-Atd, Atd]) if B.signed else -Atd  # φ moves by t·delta = -t B^T d
        t = mirror.log_scale_limit(phi, delta, _TRUST_LOG)
        accepted = False
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
        if depth >= 2 and np.max(np.abs(lam)) > 1e300:
            break
    matvecs += int(round(newton.matvecs))
    if status != "converged":
        _raise_if_no_nonnegative_solution(B, y)
        if np.linalg.norm(r) <= max(tol, 1e-9) * ynorm:
            status = "converged"
            message += f" (residual {np.linalg.norm(r) / ynorm:.1e} accepted)"
    if newton.rebuilds:
        message += f"; {newton.rebuilds} Gram factorisations"
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
