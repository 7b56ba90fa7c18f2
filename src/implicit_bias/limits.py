"""Exact predicted limits of gradient flow: Bregman projections solved in the dual (SPEC A.1, A.4, A.6).

The limit of the flow from ``z0`` is ``argmin {D_F(z, z0) : Bz = y, z >= 0}``. Its dual is the
smooth convex ``m``-dimensional problem ``min_λ D(λ) = F*(φ0 - B^T λ) + ⟨y, λ⟩`` (see
:mod:`implicit_bias.mirror`); the primal solution is ``z = (∇F)^{-1}(φ0 - B^T λ*)``.
It is solved by damped Newton on ``D``. The Hessian is ``A diag(w) A^T`` with per-column weights
``w = N z^(2-2/N)`` (summed over the two halves of ``z`` for the signed model); the Newton system
uses the shifted weights ``w + ν``, ``ν`` between ``1e-19`` and ``1e-13`` times ``max w`` (a
Levenberg-Marquardt damping in the metric ``A A^T``, at the rounding level of the top weights),
and is solved by :class:`_NewtonMatrix`: a Cholesky factorisation of a Gram matrix kept across
Newton steps and updated only in the columns whose weight moved far from it (a Woodbury
correction when they are few), and GMRES for the rest, so that the ``m x m x n`` Gram matrix is
formed about once per solve. Each step changes ``log z`` by at most a trust radius (the flow escapes from
``alpha^N`` over many orders of magnitude), and Armijo backtracking on ``D`` guards descent. The
mirror state ``φ`` is updated per coordinate, never recomputed as ``φ0 - B^T λ``, so that
coordinates far from ``φ0`` keep their relative precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ._arguments import check_limit_arguments
from ._blas import pinned_blas
from ._validation import check_count, is_real
from .errors import InfeasibleProblemError, InvalidParameterError, SolverError
from .mirror import MirrorMap
from .models import Hadamard, Init
from .problems import SparseRecovery

_TRUST_LOG = 8.0  # max change of log z per Newton step (z moves by at most a factor e^8 ~ 3000)
_ARMIJO = 1e-4
_STALL_ACCEPT = 1e-10  # a residual below this that stopped halving within 10 Newton steps is accepted
_DAMPING = 1e-16  # Newton matrix A diag(w + ν) A^T: ν = _DAMPING max(w) at each factorisation (rounding level of the top weights)
_DAMPING_RANGE = (1e-19, 1e-13)  # ... kept while ν / max(w) stays in this range (max w moves every step)
_BAND = 2.0  # weights within a factor _BAND of the factorised ones are left to GMRES
_FRESH = 0.8  # a fresh Gram matrix when more than this share of its columns moved (else a rank-k update)
_REFRESH = 10.0  # ... or when the updates moved more than _REFRESH times its trace (their rounding)
_FORCING = 1e-3  # relative residual of each Newton direction
_MAX_INNER = 50  # GMRES iterations per Newton step (each costs two products with A)
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
    check_limit_arguments(problem, model, init)
    if not (is_real(tol) and 0 < tol < 1):
        raise InvalidParameterError(f"The 'tol' parameter must be a float in the range (0, 1). Got {tol!r}.")
    max_iter = check_count(max_iter, "max_iter")
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


def damped_cholesky(H: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray | None, float]:
    """Lower Cholesky factor of ``H + τ I`` for a PSD, possibly numerically singular ``H``, and ``τ / max diag(H)``.

    ``τ = shift · max diag(H)`` first, then at least ``1e-14 · max diag(H)`` (about the rounding
    level of forming ``H``) growing by 100 until it succeeds; ``(None, inf)`` if twelve tries fail
    or ``H`` has no positive scale. Only the lower triangle of ``H`` is read.
    """
    scale = float(np.max(np.diag(H)))
    if not np.isfinite(scale) or scale <= 0:
        return None, float("inf")
    for _ in range(13):
        shifted = H
        if shift > 0:
            shifted = H.copy(order="F")
            shifted[np.diag_indices_from(shifted)] += shift * scale
        try:
            return scipy.linalg.cholesky(shifted, lower=True, check_finite=False, overwrite_a=shift > 0), shift
        except np.linalg.LinAlgError:
            shift = max(1e-14, 100.0 * shift)
    return None, float("inf")


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


def _gram_lower(A: np.ndarray, weights: np.ndarray, index: np.ndarray | None = None,
                buffer: np.ndarray | None = None) -> np.ndarray:
    """The lower triangle of ``A_K diag(weights_K) A_K^T`` (``weights >= 0``; ``K = index``, default all columns).

    One symmetric rank-k update of the scaled columns, gathered into ``buffer`` (a flat array of at
    least ``m k`` floats, reused across calls: a fresh ``8 m n``-byte array per Gram matrix costs
    about as much in page faults as the gather itself).
    """
    m = A.shape[0]
    k = A.shape[1] if index is None else index.size
    scaled = (np.empty(m * k) if buffer is None else buffer[: m * k]).reshape(m, k)
    if index is None:
        np.multiply(A, np.sqrt(weights), out=scaled)
    else:
        np.take(A, index, axis=1, out=scaled, mode="clip")
        scaled *= np.sqrt(weights[index])
    return scipy.linalg.blas.dsyrk(1.0, scaled.T, trans=1, lower=1)  # scaled.T is Fortran-ordered: no copy


class _NewtonMatrix:
    """Solves the dual Newton system ``A diag(w + ν) A^T d = r`` over many Newton steps.

    The Hessian of the dual (SPEC A.4: ``B H(z)^{-1} B^T``) has per-column weights ``w`` that span
    dozens of orders of magnitude and change every step, and forming it costs ``m^2 n``. Instead a
    preconditioner ``P = A diag(q) A^T``, ``q = g + ν``, is kept factorised: ``G = A diag(g) A^T``
    is updated in place and the damping ``ν A A^T`` is added before each factorisation. Each step
    compares ``w + ν`` with ``q``; the columns that left ``[q/_BAND, _BAND q]`` moved, and enter

    - by a Woodbury correction (a ``|C| x |C|`` system) when they are at most ``woodbury_max``;
    - else by a symmetric rank-k update of ``G`` (``m^2 / 2`` flops per column, so a step costs in
      proportion to what moved, where the early Newton steps move thousands of columns by orders
      of magnitude) and a new Cholesky factorisation (``m^3 / 3``);
    - or by a fresh Gram matrix when most columns moved or the updates' rounding could exceed that
      of a fresh one.

    GMRES removes the remaining mismatch ``E = A diag(w + ν - q) A^T`` (weight ratios within
    ``_BAND``, so a few iterations).
    """

    def __init__(self, A: np.ndarray):
        self.A = A
        self.m, self.n = A.shape
        self.norms = np.einsum("ij,ij->j", A, A)  # ||a_i||^2: the rounding mass of each column
        self.buffer = np.empty(self.m * self.n)  # scaled columns of each Gram update (reused)
        self.gram0 = None  # A A^T (lower triangle)
        self.g = None
        self.nu = 0.0
        self.shift = 0.0  # relative diagonal shift the last factorisation needed
        self.woodbury_max = max(8, min(600, self.m // 2))  # more moved columns than this update G instead
        self.cache = np.empty(A.shape, order="F")  # L^{-1} a_k of the Woodbury columns
        self.solved = np.zeros(self.n, dtype=bool)
        self.matvecs = 0.0  # cost in products with A (an m x m x k rank-k update counts m k / (2n))
        self.rebuilds = 0
        self.updated_columns = 0

    def prepare(self, w: np.ndarray) -> None:
        """Bring the preconditioner ``P`` up to the weights ``w`` of the current iterate."""
        top = float(np.max(w))
        C = np.zeros(0, dtype=int)
        if self.g is None:
            self._fresh(w)
        else:
            refactor = not (_DAMPING_RANGE[0] * top <= self.nu <= _DAMPING_RANGE[1] * top)
            if refactor:
                self.nu = _DAMPING * top
            wp, q = w + self.nu, self.g + self.nu
            S = np.flatnonzero((wp > _BAND * q) | (wp < q / _BAND))
            mass = self.mass + float(np.abs(wp[S] - q[S]) @ self.norms[S])
            if S.size > _FRESH * np.count_nonzero(w > self.nu) or mass > _REFRESH * float(wp @ self.norms):
                self._fresh(w)
            elif S.size > self.woodbury_max:
                self._update(S, wp[S] - q[S])
                self.g[S] += wp[S] - q[S]
                self.mass = mass
                self._factorise()
            else:
                C = S
                if refactor:
                    self._factorise()
        self.excess = (w + self.nu) - (self.g + self.nu)
        self.C = C
        if C.size:
            self.W = self.excess[C].copy()
            self.excess[C] = 0.0
            self.Y = self._solved_columns(C)
            M = self.Y.T @ self.Y
            M[np.diag_indices_from(M)] += 1.0 / self.W
            self.M = scipy.linalg.lu_factor(M, check_finite=False)
            self.matvecs += C.size * (self.m + C.size) / self.n

    def _fresh(self, w: np.ndarray) -> None:
        """``G = A_K diag(w_K) A_K^T``, ``K = {w > ν}`` (the others enter through ``ν A A^T``)."""
        self.nu, self.shift = _DAMPING * float(np.max(w)), 0.0
        if self.gram0 is None:
            self.gram0 = _gram_lower(self.A, np.ones(self.n), buffer=self.buffer)
            self.matvecs += self.m / 2
        if np.all(w == w[0]):  # uniform weights (the identical initialisation): G = w A A^T
            self.gram, self.g = w[0] * self.gram0, w.copy()
        else:
            big = np.flatnonzero(w > self.nu)
            self.gram = _gram_lower(self.A, w, big, self.buffer)
            self.g = np.zeros(self.n)
            self.g[big] = w[big]
            self.matvecs += self.m * big.size / (2 * self.n)
        self.mass = float((self.g + self.nu) @ self.norms)
        self.rebuilds += 1
        self._factorise()

    def _update(self, S: np.ndarray, delta: np.ndarray) -> None:
        """``G += A_S diag(delta) A_S^T`` by two rank-k updates (the increases, then the decreases)."""
        offset = 0
        for sign, part in ((1.0, delta >= 0), (-1.0, delta < 0)):
            k = int(np.count_nonzero(part))
            if k:
                cols = self.buffer[offset : offset + self.m * k].reshape(self.m, k)
                np.take(self.A, S[part], axis=1, out=cols, mode="clip")
                cols *= np.sqrt(np.abs(delta[part]))
                self.gram = scipy.linalg.blas.dsyrk(sign, cols.T, beta=1.0, c=self.gram, trans=1, lower=1, overwrite_c=1)
                offset += self.m * k
        self.updated_columns += S.size
        self.matvecs += self.m * S.size / (2 * self.n)

    def _factorise(self) -> None:
        """Cholesky factor of ``G + ν A A^T``."""
        L, self.shift = damped_cholesky(self.gram + self.nu * self.gram0, self.shift)
        if L is None:
            raise SolverError("the Newton matrix of the dual has no positive diagonal (all weights underflowed).")
        self.L = np.asfortranarray(L)
        self.solved[:] = False

    def _solved_columns(self, C: np.ndarray) -> np.ndarray:
        """``L^{-1} A_C``, each column solved once per factorisation."""
        new = C[~self.solved[C]]
        if new.size:
            self.cache[:, new] = scipy.linalg.solve_triangular(self.L, self.A[:, new], lower=True, check_finite=False)
            self.solved[new] = True
            self.matvecs += self.m * new.size / (2 * self.n)
        return self.cache[:, C]

    def _precondition(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P^{-1} r, A_C^T P^{-1} r)`` with ``P = L L^T + A_C diag(W) A_C^T`` (Woodbury).

        The second part comes from the identity ``A_C^T P^{-1} r = c / W`` (``c`` the Woodbury
        coefficients): for a column whose weight is ``10^20`` times the rest it is tiny, and
        computing it from ``P^{-1} r`` would return the rounding noise of the other components.
        """
        s = scipy.linalg.blas.dtrsv(self.L, r, lower=1)
        if not self.C.size:
            return scipy.linalg.blas.dtrsv(self.L, s, lower=1, trans=1), np.zeros(0)
        coef = scipy.linalg.lu_solve(self.M, self.Y.T @ s, check_finite=False)
        return scipy.linalg.blas.dtrsv(self.L, s - self.Y @ coef, lower=1, trans=1), coef / self.W

    def solve(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(d, A^T d)`` with ``||A diag(w + ν) A^T d - r|| <= _FORCING ||r||``.

        Right-preconditioned GMRES on ``(I + E P^{-1}) u = r``, ``d = P^{-1} u``: it minimises the
        true residual, and it only applies ``P^{-1}`` and ``E`` (never ``P``, whose largest weights
        can be ``10^20`` times the rest) and needs no bounds on the spectrum.
        """
        beta = float(np.linalg.norm(r))
        if not beta > 0:
            return np.zeros_like(r), np.zeros(self.n)
        basis, solved, solved_c = [r / beta], [], []
        hessenberg = np.zeros((_MAX_INNER + 1, _MAX_INNER))
        for j in range(_MAX_INNER):
            z, zc = self._precondition(basis[j])
            solved.append(z)
            solved_c.append(zc)
            v = basis[j] + self.A @ (self.excess * (self.A.T @ z))
            self.matvecs += 2
            for i, u in enumerate(basis):
                hessenberg[i, j] = float(u @ v)
                v = v - hessenberg[i, j] * u
            hessenberg[j + 1, j] = float(np.linalg.norm(v))
            rhs = np.zeros(j + 2)
            rhs[0] = beta
            coef, *_ = np.linalg.lstsq(hessenberg[: j + 2, : j + 1], rhs, rcond=None)
            residual = float(np.linalg.norm(rhs - hessenberg[: j + 2, : j + 1] @ coef))
            if residual <= _FORCING * beta or not hessenberg[j + 1, j] > 1e-14 * beta:
                break
            basis.append(v / hessenberg[j + 1, j])
        x = sum(c * u for c, u in zip(coef, solved))
        xc = sum(c * u for c, u in zip(coef, solved_c))
        Atd = self.A.T @ x
        self.matvecs += 1
        if self.C.size:
            # x's component along range(A_C) is lost in the cancellation of the Woodbury formula
            # (it is tiny next to the rest of x); restore it from the exact identity A_C^T x = xc,
            # so that A^T x stays one consistent vector of range(A^T) (the KKT condition).
            AC = self.A[:, self.C]
            L, _ = damped_cholesky(AC.T @ AC)  # damped: columns of A_C may repeat (the signed model's [A, -A])
            if L is not None:
                x = x + AC @ scipy.linalg.cho_solve((L, True), xc - Atd[self.C], check_finite=False)
                Atd = self.A.T @ x
                self.matvecs += 2 + self.C.size * (self.m + self.C.size) / (2 * self.n)
        return x, Atd


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
    message += f"; {newton.rebuilds} Gram matrices, {newton.updated_columns} column updates"
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
