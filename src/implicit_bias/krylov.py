"""Matrix-free solves of ``(σ I + A diag(w) A^T) d = r`` by preconditioned conjugate gradients.

This is the linear algebra of the limit oracle's dual Newton steps (SPEC A.1, A.4: the Hessian
``B H(z)^{-1} B^T = A diag(w) A^T``, ``σ = 0``) and of the Rosenbrock stages of the mirror-space
flow (``I/(hγ) + H``, ``σ = 1/(hγ)``) when ``A`` is an operator (:mod:`implicit_bias.sensing`): no
``m x m`` matrix is formed, only products with ``A`` and ``A^T`` and a dense block of the few
columns with extreme weights.

The weights ``w`` of a sparse limit are large on a few columns and spread over many orders of
magnitude below. ``A A^T ≈ c I`` (exact for the DCT rows, ``c = n/m``; a Gaussian ``A`` within a
factor of about ``(1 + sqrt(m/n))^2 / (1 - sqrt(m/n))^2``), so ``H`` is close to
``δ I + A_B diag(w_B) A_B^T`` with ``δ = σ + μ c``, ``μ`` the mean weight off ``B``:

- the columns ``B`` whose weight exceeds :data:`BIG` times ``δ / c`` are split off exactly. In
  floating point ``A_B^T d`` could not be computed from a ``d`` whose other part is ``10^16``
  times larger (its rounding alone would swamp it), so CG runs on ``range(A_B)^⊥`` (projected
  with ``G = A_B^T A_B``), and the component along ``range(A_B)`` follows from the identity
  ``A_B^T d = u / w_B``, ``u = G^{-1} A_B^T (r - H_K d_⊥)`` (``K``: the other columns), up to a
  term of relative size ``δ / (c w_B) <= 1 / BIG``;
- on ``range(A_B)^⊥`` the preconditioner is ``δ I``, a scaling only: this is plain CG there, and it
  resolves the other large weights itself (measured: about 130 iterations per Newton step and 35
  per Rosenbrock stage at n = 5,000 to 50,000, DCT, N = 2).

A Woodbury preconditioner for the large weights below ``BIG`` cut the iterations 6-10x but cost
more than it saved (its ``m x |S|`` products and ``|S|^3`` factorisations against two fast
cosine transforms per iteration; measured at n = 5,000 to 50,000).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .dual_linalg import damped_cholesky
from .sensing import columns, row_norms

BIG = 1e10  # B: columns whose weight exceeds BIG δ / c; CG runs orthogonally to them
MAX_COLUMNS = 3000  # at most min(this, m/2) columns in B: each costs m floats and m |B| flops
_CACHE_FACTOR = 2  # the cached columns may grow to this multiple of the cap before a rebuild


class GramPCG:
    """PCG for ``(σ I + A diag(w) A^T) d = r``, split and preconditioned as the module docstring says.

    ``prepare(w, σ)`` fixes the system; ``solve(r, tol)`` returns ``(d, A^T d, converged)``. Counters:
    ``products`` (products with ``A`` or ``A^T``), ``iterations`` (CG iterations), ``column_count``
    (explicit columns formed), ``preparations``.
    """

    def __init__(self, A, max_columns: int = MAX_COLUMNS):
        self.A = A
        self.m, self.n = A.shape
        self.c = float(np.mean(row_norms(A)))  # A A^T ≈ c I
        self.max_columns = max(0, min(max_columns, self.m // 2))
        self.cached = np.zeros(0, dtype=np.int64)  # columns held in self.block, and their Gram matrix
        self.block = np.zeros((self.m, 0), order="F")
        self.gram = np.zeros((0, 0))
        self.products = self.iterations = self.column_count = self.preparations = 0
        self.w = self.sigma = None

    def prepare(self, w: np.ndarray, sigma: float = 0.0) -> None:
        """Set the system ``σ I + A diag(w) A^T`` (``w >= 0``) and split off its extreme columns ``B``."""
        self.w, self.sigma = w, float(sigma)
        self.B, mu = self._split(w, self.sigma)
        self.delta = self.sigma + max(mu, 1e-300) * self.c
        self.preparations += 1
        self.wK = w
        if self.B.size:
            self.wK = w.copy()
            self.wK[self.B] = 0.0
            position = self._cache(self.B)
            self.AB = self.block[:, position]
            self.GB = (damped_cholesky(self.gram[np.ix_(position, position)])[0], True)

    def _split(self, w: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
        """``(B, μ)``: the leading weights above ``BIG (σ/c + μ)``, ``μ`` the mean of the rest (at most
        ``max_columns`` of them)."""
        order = np.argsort(w)[::-1][: self.max_columns + 1]
        ranked = w[order]
        rest = (float(np.sum(w)) - np.concatenate([[0.0], np.cumsum(ranked[:-1])])) / (self.n - np.arange(ranked.size))
        extreme = ranked * self.c > BIG * (sigma + np.maximum(rest, 0.0) * self.c)
        k = int(np.argmin(extreme)) if not np.all(extreme) else self.max_columns
        return np.sort(order[:k]), float(rest[k])

    def _cache(self, S: np.ndarray) -> np.ndarray:
        """Positions of ``S`` in the cached columns, adding the missing ones (and their Gram entries)."""
        new = np.setdiff1d(S, self.cached, assume_unique=True)
        if self.cached.size + new.size > _CACHE_FACTOR * max(self.max_columns, 1):
            self.cached, self.block, self.gram = np.zeros(0, dtype=np.int64), np.zeros((self.m, 0), order="F"), np.zeros((0, 0))
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
        """Projected CG for ``Π H Π d = r`` (``r`` in the range of ``Π``), to ``||residual|| <= target``."""
        d, Atd = np.zeros(self.m), np.zeros(self.n)
        res = r.copy()
        if not float(np.linalg.norm(res)) > target:
            return d, Atd, True
        z = self.project(res)  # the preconditioner δ I is a scaling: CG on range(A_B)^⊥
        p, rz = z.copy(), float(res @ z)
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
            z = self.project(res)
            rz_new = float(res @ z)
            p, rz = z + (rz_new / rz) * p, rz_new
        return d, Atd, False


_DAMPING = 1e-16  # as NewtonMatrix: ν = _DAMPING max(w), a Levenberg-Marquardt damping at the rounding level of the top weights
_FORCING = 1e-3  # relative residual of each Newton direction (as NewtonMatrix)


class KrylovNewton:
    """The matrix-free counterpart of :class:`~implicit_bias.dual_linalg.NewtonMatrix` for the dual Newton
    steps of :func:`implicit_bias.limits.predict_limit`: ``A diag(w + ν) A^T d = r`` by :class:`GramPCG`
    to the relative residual :data:`_FORCING`, the extreme columns split off afresh at each step's weights."""

    def __init__(self, A):
        self.pcg = GramPCG(A)
        self.n = A.shape[1]
        self.fresh = True  # the split always comes from the current weights (no stale factorisation to retry)
        self.updated_columns = 0

    @property
    def rebuilds(self) -> int:
        return self.pcg.preparations

    @property
    def matvecs(self) -> float:
        """Products with ``A``, and the explicit columns formed (``m`` flops each: ``m / n`` of a product)."""
        return self.pcg.products + self.pcg.column_count * self.pcg.m / self.n

    def forget(self) -> None:
        """Nothing is kept between steps but the cached columns."""

    def prepare(self, w: np.ndarray) -> None:
        self.pcg.prepare(w + _DAMPING * float(np.max(w)))

    def solve(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, Atd, _ = self.pcg.solve(r, _FORCING)
        return d, Atd
