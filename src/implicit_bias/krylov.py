"""Matrix-free solves of ``(σ I + A diag(w) A^T) d = r`` by preconditioned conjugate gradients.

This is the linear algebra of the limit oracle's dual Newton steps (SPEC A.1, A.4: the Hessian
``B H(z)^{-1} B^T = A diag(w) A^T``, ``σ = 0``) and of the Rosenbrock stages of the mirror-space
flow (``I/(hγ) + H``, ``σ = 1/(hγ)``) when ``A`` is an operator (:mod:`implicit_bias.sensing`): no
``m x m`` matrix is formed, only products with ``A`` and ``A^T`` and a dense block of the
columns with large weights.

The preconditioner. The weights ``w`` of a sparse limit are large on a few columns ``S`` and
spread over many orders of magnitude below. With ``μ`` the mean weight off ``S`` and
``A A^T ≈ c I`` (exact for the DCT rows, ``c = n/m``; Gaussian ``A`` within a factor of about
``(1 + sqrt(m/n))^2 / (1 - sqrt(m/n))^2``),

    P = δ I + A_S diag(w_S - μ) A_S^T,   δ = σ + μ c,

matches ``H = σ I + A diag(w) A^T`` except for the columns off ``S`` whose weight is far from
``μ``; ``S`` holds the columns whose weight exceeds :data:`SPREAD` times the mean of the others.
``P^{-1}`` is applied in the form that stays accurate when ``w_S`` is ``10^16`` times ``δ``
(the plain Woodbury formula would cancel there): with ``G = A_S^T A_S`` and ``W = diag(w_S - μ)``,

    P^{-1} v = (v - A_S G^{-1} A_S^T v) / δ + A_S G^{-1} (W + δ G^{-1})^{-1} G^{-1} A_S^T v,

the first term the part of ``v`` orthogonal to ``range(A_S)`` (on which ``P = δ I``), the second
the exact inverse on ``range(A_S)``. The columns ``A_S`` and their Gram matrix are cached across
calls (Newton steps and Rosenbrock steps move ``S`` a little at a time).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .dual_linalg import damped_cholesky
from .sensing import column_norms, columns, row_norms

BIG = 1e10  # B: columns whose weight exceeds BIG times the rest (δ/c); CG runs orthogonally to them
SPREAD = 10.0  # S: columns whose weight exceeds SPREAD times the mean of the others
MAX_COLUMNS = 3000  # at most this many columns in S (and min(m/2, ...)): each costs m floats and m |S| flops
WOODBURY = 0  # at most this many of the other large weights enter P by the Woodbury form (0: CG resolves them)
_CACHE_FACTOR = 2  # the cached columns may grow to this multiple of MAX_COLUMNS before a rebuild


class GramPCG:
    """PCG for ``(σ I + A diag(w) A^T) d = r`` with the preconditioner of the module docstring.

    ``prepare(w, σ)`` fixes the system; ``solve(r, tol)`` returns ``(d, A^T d, converged)``. Counters:
    ``products`` (products with ``A`` or ``A^T``), ``iterations`` (CG iterations), ``column_count``
    (explicit columns formed), ``preparations``.
    """

    def __init__(self, A, max_columns: int = MAX_COLUMNS, woodbury: int = WOODBURY):
        self.A = A
        self.woodbury = woodbury
        self.m, self.n = A.shape
        self.c = float(np.mean(row_norms(A)))  # A A^T ≈ c I
        self.norms = column_norms(A)
        self.max_columns = max(0, min(max_columns, self.m // 2))
        self.cached = np.zeros(0, dtype=np.int64)  # columns held in self.block, and their Gram matrix
        self.block = np.zeros((self.m, 0), order="F")
        self.gram = np.zeros((0, 0))
        self.products = self.iterations = self.column_count = self.preparations = 0
        self.w = self.sigma = self._S_factored = None

    def prepare(self, w: np.ndarray, sigma: float = 0.0) -> None:
        """Set the system ``σ I + A diag(w) A^T`` (``w >= 0``) and build its preconditioner."""
        self.w, self.sigma = w, float(sigma)
        S, mu = self._split(w)
        big = w[S] * self.c > BIG * (self.sigma + mu * self.c)
        moderate = S[~big]
        self.B, self.S = S[big], np.sort(moderate[np.argsort(w[moderate])[::-1][: self.woodbury]])
        mu = (float(np.sum(w)) - float(np.sum(w[self.B])) - float(np.sum(w[self.S]))) / (self.n - self.B.size - self.S.size)
        self.delta = self.sigma + max(mu, 1e-300) * self.c
        self.preparations += 1
        self.wK = w
        if self.B.size:
            self.wK = w.copy()
            self.wK[self.B] = 0.0
            position = self._cache(self.B)
            self.AB = self.block[:, position]
            self.GB = (damped_cholesky(self.gram[np.ix_(position, position)])[0], True)
        if self.S.size == 0:
            return
        if self._S_factored is None or not np.array_equal(self._S_factored, self.S):  # G and G^{-1} of a new S
            position = self._cache(self.S)
            self.AS = self.block[:, position]
            L, _ = damped_cholesky(self.gram[np.ix_(position, position)])
            self.G = (L, True)
            self.G_inv = scipy.linalg.cho_solve(self.G, np.eye(self.S.size), check_finite=False)
            self._S_factored = self.S
        inner = self.delta * self.G_inv
        inner[np.diag_indices_from(inner)] += np.maximum(w[self.S] - mu, 0.0)
        scale = 1.0 / np.sqrt(np.diag(inner))  # Cholesky of the graded matrix after symmetric scaling
        L, _ = damped_cholesky(inner * np.outer(scale, scale))
        self.inner, self.inner_scale = (L, True), scale

    def _split(self, w: np.ndarray) -> tuple[np.ndarray, float]:
        """``(S, μ)``: the fewest largest weights whose removal leaves every other weight within
        ``SPREAD`` times the mean ``μ`` of the rest (at most ``max_columns`` of them)."""
        order = np.argsort(w)[::-1]
        ranked = w[order]
        count = self.n - np.arange(self.max_columns + 1)
        rest = (float(np.sum(ranked)) - np.concatenate([[0.0], np.cumsum(ranked[: self.max_columns])])) / count
        fits = ranked[: self.max_columns + 1] <= SPREAD * np.maximum(rest, 0.0)
        k = int(np.argmax(fits)) if np.any(fits) else self.max_columns
        mu = max(float(rest[k]), 0.0)
        if not mu > 0:
            mu = float(np.max(w)) if k == 0 else 1e-300
        return np.sort(order[:k]), mu

    def _cache(self, S: np.ndarray) -> np.ndarray:
        """Positions of ``S`` in the cached columns, adding the missing ones (and their Gram entries)."""
        new = np.setdiff1d(S, self.cached, assume_unique=True)
        if self.cached.size + new.size > _CACHE_FACTOR * max(self.max_columns, 1):
            self.cached, self.block, self.gram = np.zeros(0, dtype=np.int64), np.zeros((self.m, 0), order="F"), np.zeros((0, 0))
            self._S_factored = None  # its A_S was a view of the old block
            new = S
        if new.size:
            fresh = columns(self.A, new)
            self.column_count += new.size
            cross = self.block.T @ fresh
            self.gram = np.block([[self.gram, cross], [cross.T, fresh.T @ fresh]])
            self.block = np.asfortranarray(np.hstack([self.block, fresh]))
            self.cached = np.concatenate([self.cached, new])
        where = {column: i for i, column in enumerate(self.cached.tolist())}
        return np.array([where[column] for column in S.tolist()], dtype=np.int64)

    def precondition(self, v: np.ndarray) -> np.ndarray:
        """``P^{-1} v`` (module docstring)."""
        if self.S.size == 0:
            return v / self.delta
        coef = scipy.linalg.cho_solve(self.G, self.AS.T @ v, check_finite=False)  # G^{-1} A_S^T v
        inner = scipy.linalg.cho_solve(self.inner, coef * self.inner_scale, check_finite=False) * self.inner_scale
        inner = scipy.linalg.cho_solve(self.G, inner, check_finite=False)
        return (v - self.AS @ coef) / self.delta + self.AS @ inner

    def project(self, v: np.ndarray) -> np.ndarray:
        """``v`` minus its component in ``range(A_B)``."""
        if self.B.size == 0:
            return v
        return v - self.AB @ scipy.linalg.cho_solve(self.GB, self.AB.T @ v, check_finite=False)

    def product(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(σ p + A_K diag(w_K) A_K^T p, A^T p)``, ``K`` the columns outside ``B``."""
        Atp = self.A.T @ p
        self.products += 2
        return self.sigma * p + self.A @ (self.wK * Atp), Atp

    def solve(self, r: np.ndarray, tol: float, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(d, A^T d, converged)`` with ``||H d - r|| <= tol ||r||`` when converged.

        CG runs on ``range(A_B)^⊥`` (``B``: weights above :data:`BIG` times the rest); the part of
        ``d`` along ``range(A_B)`` follows from the identity ``A_B^T d = u / w_B`` (module docstring).
        """
        rnorm = float(np.linalg.norm(r))
        if not rnorm > 0:
            return np.zeros(self.m), np.zeros(self.n), True
        d, Atd, converged = self._cg(self.project(r), tol * rnorm, max_iter)
        if self.B.size == 0:
            return d, Atd, converged
        Hd, _ = self.product(d)
        u = scipy.linalg.cho_solve(self.GB, self.AB.T @ (r - Hd), check_finite=False)
        e = scipy.linalg.cho_solve(self.GB, u / self.w[self.B], check_finite=False)
        correction = self.AB @ e
        Atd = Atd + self.A.T @ correction
        Atd[self.B] = u / self.w[self.B]  # exact: the computed A_B^T d would be the rounding of d's other part
        self.products += 1
        return d + correction, Atd, converged

    def _cg(self, r: np.ndarray, target: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Projected PCG for ``Π H Π d = r`` (``r`` in the range of ``Π``), to ``||residual|| <= target``."""
        d, Atd = np.zeros(self.m), np.zeros(self.n)
        res = r.copy()
        if not float(np.linalg.norm(res)) > target:
            return d, Atd, True
        z = self.project(self.precondition(res))
        p, rz = z, float(res @ z)
        for _ in range(max_iter):
            Hp, Atp = self.product(p)
            Hp = self.project(Hp)
            self.iterations += 1
            curvature = float(p @ Hp)
            if not (curvature > 0 and rz > 0):
                return d, Atd, False
            step = rz / curvature
            d += step * p
            Atd += step * Atp
            res -= step * Hp
            if float(np.linalg.norm(res)) <= target:
                return d, Atd, True
            z = self.project(self.precondition(res))
            rz_new = float(res @ z)
            p, rz = z + (rz_new / rz) * p, rz_new
        return d, Atd, False


_DAMPING = 1e-16  # as NewtonMatrix: ν = _DAMPING max(w), a Levenberg-Marquardt damping at the rounding level of the top weights
_FORCING = 1e-3  # relative residual of each Newton direction (as NewtonMatrix)


class KrylovNewton:
    """The matrix-free counterpart of :class:`~implicit_bias.dual_linalg.NewtonMatrix` for the dual Newton
    steps of :func:`implicit_bias.limits.predict_limit`: ``A diag(w + ν) A^T d = r`` by :class:`GramPCG`
    to the relative residual :data:`_FORCING`, the preconditioner rebuilt from each step's weights."""

    def __init__(self, A):
        self.pcg = GramPCG(A)
        self.n = A.shape[1]
        self.fresh = True  # the preconditioner always comes from the current weights
        self.updated_columns = 0

    @property
    def rebuilds(self) -> int:
        return self.pcg.preparations

    @property
    def matvecs(self) -> float:
        """Products with ``A``, and the explicit columns formed (``m |S|`` flops each, as NewtonMatrix counts them)."""
        return self.pcg.products + self.pcg.column_count * self.pcg.m / self.n

    def forget(self) -> None:
        """Nothing is kept between steps but the cached columns."""

    def prepare(self, w: np.ndarray) -> None:
        self.pcg.prepare(w + _DAMPING * float(np.max(w)))

    def solve(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, Atd, _ = self.pcg.solve(r, _FORCING)
        return d, Atd
