"""The linear algebra of the limit oracle (:mod:`implicit_bias.limits`): the dual Newton system and the KKT check.

- :class:`NewtonMatrix` solves ``A diag(w + ν) A^T d = r`` (the Hessian ``B H(z)^{-1} B^T`` of the
  dual of SPEC A.1, with the per-column weights ``w = N z^(2-2/N)`` of SPEC A.4) over many Newton
  steps: a Cholesky factorisation of a Gram matrix kept across steps and updated only in the
  columns whose weight moved far from it (a Woodbury correction when they are few), and GMRES for
  the rest, so that the ``m x m x n`` Gram matrix is formed about once per solve. The damping
  ``ν`` is between ``1e-19`` and ``1e-13`` times ``max w`` (a Levenberg-Marquardt damping in the
  metric ``A A^T``, at the rounding level of the top weights).
- :func:`range_residual` is the KKT check (SPEC A.3 (i)): the distance of ``∇F(z) - ∇F(z0)``
  from ``range(B^T)``, by the normal equations or, for large problems, CGLS.
- :func:`damped_cholesky` is the one factorisation of a PSD, possibly numerically singular,
  matrix that both use.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .errors import SolverError
from .mirror import MirrorMap

_DAMPING = 1e-16  # Newton matrix A diag(w + ν) A^T: ν = _DAMPING max(w) at each factorisation (rounding level of the top weights)
_DAMPING_RANGE = (1e-19, 1e-13)  # ... kept while ν / max(w) stays in this range (max w moves every step)
_BAND = 2.0  # weights within a factor _BAND of the factorised ones are left to GMRES
_FRESH = 0.8  # a fresh Gram matrix when more than this share of its columns moved (else a rank-k update)
_REFRESH = 10.0  # ... or when the updates moved more than _REFRESH times its trace (their rounding)
_LOST = 0.5  # ... or when the columns that shrank would take more than this share of its mass away
_GAINED = 1e8  # ... or when the columns that grew would add more than this multiple of its mass
_FORCING = 1e-3  # relative residual of each Newton direction
_MAX_INNER = 50  # GMRES iterations per Newton step (each costs two products with A)
_GRAM_FLOPS = 2e9  # above m^2 n flops the KKT check uses CGLS instead of the m x m Gram matrix
_ROUNDING_SHIFT = 1e-14  # first relative diagonal shift of solve_psd: about the rounding level of forming H


def range_residual(B, mirror: MirrorMap, z: np.ndarray, z0: np.ndarray, witness: np.ndarray | None = None) -> float:
    """``||(I - P_range(B^T)) (∇F(z) - ∇F(z0))|| / ||∇F(z) - ∇F(z0)||`` (SPEC A.3 check (i)).

    Recomputed from ``z`` alone. Coordinates whose ``z`` underflowed to 0 or to a subnormal number
    (``∇F`` is -inf or has lost its digits) are left out: the projection is onto the range of
    ``B^T`` restricted to the others. Small problems solve the normal equations with the Gram
    matrix. Above ``_GRAM_FLOPS``, and for an operator ``A``, the least-squares problem ``min_c ||v - B^T c||`` is solved by
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
    free = not isinstance(B.A, np.ndarray)  # an operator A (implicit_bias.sensing): no Gram matrix
    if not free and (float(B.m) ** 2 * B.width <= _GRAM_FLOPS or witness is None):
        coef = solve_psd(B.weighted_gram(keep), B.matvec(v))  # normal equations of min ||v - B_K^T c||
        return float(np.linalg.norm((v - B.rmatvec(coef)) * keep) / norm)
    start = np.zeros(B.m) if witness is None else np.asarray(witness, dtype=np.float64)
    return _cgls_range_residual(B, v, keep, start, max_iter=200 if witness is None else 40) / norm


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


def damped_cholesky(H: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray | None, float]:
    """Lower Cholesky factor of ``H + τ I`` for a PSD, possibly numerically singular ``H``, and ``τ / max diag(H)``.

    ``τ = shift · max diag(H)`` first, then at least ``1e-14 · max diag(H)`` (about the rounding
    level of forming ``H``) growing by 100 until it succeeds; ``(None, inf)`` if thirteen tries fail
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
            shift = max(_ROUNDING_SHIFT, 100.0 * shift)
    return None, float("inf")


def solve_psd(H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``H d = rhs`` for a PSD, possibly numerically singular ``H``.

    :func:`damped_cholesky` from the shift ``1e-14 · max diag(H)``; least squares when no shift up
    to ``1e10 · max diag(H)`` makes ``H`` positive definite, zero when ``H`` has no positive scale.
    """
    L, _ = damped_cholesky(H, _ROUNDING_SHIFT)
    if L is not None:
        return scipy.linalg.cho_solve((L, True), rhs, check_finite=False)
    if not np.max(np.diag(H)) > 0:
        return np.zeros_like(rhs)
    return np.linalg.lstsq(H, rhs, rcond=1e-12)[0]


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


class NewtonMatrix:
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
        self.fresh = False
        self.updated_columns = 0

    def forget(self) -> None:
        """Make the next :meth:`prepare` form a fresh Gram matrix."""
        self.g = None

    def prepare(self, w: np.ndarray) -> None:
        """Bring the preconditioner ``P`` up to the weights ``w`` of the current iterate."""
        top = float(np.max(w))
        C = np.zeros(0, dtype=int)
        self.fresh = False  # set by _fresh: P was formed from these weights
        if self.g is None:
            self._fresh(w)
        else:
            refactor = not (_DAMPING_RANGE[0] * top <= self.nu <= _DAMPING_RANGE[1] * top)
            if refactor:
                self.nu = _DAMPING * top
            wp, q = w + self.nu, self.g + self.nu
            S = np.flatnonzero((wp > _BAND * q) | (wp < q / _BAND))
            mass = self.mass + float(np.abs(wp[S] - q[S]) @ self.norms[S])
            # P is rebuilt when the moved columns would dwarf it or take most of it away: a correction
            # of 1e8 times its mass loses as many digits in the Woodbury matrix Y^T Y + diag(1/W), and
            # a downdate of most of it leaves its rounding (n = 4, m = 1 or 2, N = 4: 500 Newton steps,
            # hundreds of them steepest descent, on a stale P; a fresh one takes 8).
            delta, base = wp[S] - q[S], float(q @ self.norms)
            unbalanced = (float(np.clip(delta, 0, None) @ self.norms[S]) > _GAINED * base
                          or float(np.clip(-delta, 0, None) @ self.norms[S]) > _LOST * base)
            if S.size > _FRESH * np.count_nonzero(w > self.nu) or mass > _REFRESH * float(wp @ self.norms) or unbalanced:
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
        self.fresh = True
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
