"""Matrix-free measurement operators for the sparse models (SPEC §0, A.8): a subsampled DCT and sparse matrices.

A :class:`~implicit_bias.problems.SparseRecovery` problem holds its ``A`` as a dense array, a
``scipy.sparse`` matrix, or a :class:`DCTSensing` operator. All three answer ``A @ x``,
``A.T @ r`` and ``A.shape``; the functions here add what the matrix-free solvers need without
ever forming ``A``: explicit columns (:func:`columns`), squared column and row norms
(:func:`column_norms`, :func:`row_norms`) and the adjoint test (:func:`dot_test`).

:class:`DCTSensing` is ``sqrt(n/m)`` times ``m`` rows, drawn at random from ``seed``, of the
orthonormal DCT-II matrix ``C`` (``C[k, j] = sqrt(2/n) cos(pi k (2j + 1) / (2n))``, row 0 equal to
``sqrt(1/n)``). The scale makes it look like the Gaussian ``A`` of ``gaussian_sparse`` (entries of
variance ``1/m``): average squared column norm 1 and ``A A^T = (n/m) I`` exactly (orthonormal rows).
Row 0, the constant vector, is never drawn: it measures ``sum(x)``, which would fix ``||x||_1`` of
every nonnegative solution and make the positive model's question (which solution?) degenerate
(measured: with it, the nonnegative solution at n = 20,000 was unique and every init gave ``x_true``).
A product costs one fast cosine transform, ``O(n log n)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
import scipy.sparse

from ._validation import check_count, check_dense_size, check_seed
from .errors import InvalidParameterError, InvalidProblemError, UnsupportedError

if TYPE_CHECKING:
    from .problems import SparseRecovery

OPERATORS = ("gaussian", "dct")
_ROW_SEED = 0x444354  # mixed into the seed of the row subset, so it is independent of the signal's draws


@dataclass(frozen=True, eq=False)
class DCTSensing:
    """``sqrt(n/m) C[rows]``: a seeded random subset of rows ``1 .. n-1`` of the orthonormal DCT-II (module docstring)."""

    n: int
    m: int
    seed: int = 0
    rows: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, m = check_count(self.n, "n"), check_count(self.m, "m")
        if m >= n:
            raise InvalidProblemError(f"a DCT row subset (without the constant row 0) needs m < n rows; got m={m}, n={n}.")
        rng = np.random.default_rng((check_seed(self.seed), _ROW_SEED))
        rows = np.sort(1 + rng.choice(n - 1, size=m, replace=False))  # never row 0 (module docstring)
        rows.flags.writeable = False
        for name, value in (("n", n), ("m", m), ("rows", rows)):
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.m, self.n)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    @property
    def scale(self) -> float:
        return float(np.sqrt(self.n / self.m))

    @property
    def T(self) -> _Adjoint:
        return _Adjoint(self)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for a vector or the columns of a 2-d array."""
        x = _operand(x, self.n, "x")
        return self.scale * scipy.fft.dct(x, type=2, norm="ortho", axis=0)[self.rows]

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        """``A^T r`` for a vector or the columns of a 2-d array (the inverse DCT of ``r`` scattered to ``rows``)."""
        r = _operand(r, self.m, "r")
        full = np.zeros((self.n,) + r.shape[1:])
        full[self.rows] = r
        return self.scale * scipy.fft.idct(full, type=2, norm="ortho", axis=0)

    def __matmul__(self, x):
        return self.matvec(x)

    def columns(self, index) -> np.ndarray:
        """The dense ``m x len(index)`` block ``A[:, index]``, from the closed form of ``C``."""
        index = np.asarray(index, dtype=np.int64)
        phase = np.outer(self.rows.astype(np.int64), 2 * index + 1) % (4 * self.n)  # exact: angles mod 2 pi
        block = np.cos(phase * (np.pi / (2 * self.n))) * np.sqrt(2.0 / self.n)
        block[self.rows == 0] = np.sqrt(1.0 / self.n)
        return self.scale * block

    def column_norms(self) -> np.ndarray:
        """``||a_j||^2 = (1/m) (|rows| + sum_{k in rows, k > 0} cos(pi k (2j + 1) / n))``, by one FFT."""
        indicator = np.zeros(2 * self.n)
        indicator[self.rows[self.rows > 0]] = 1.0
        cosines = np.fft.fft(indicator).real[1::2]  # frequencies 2j + 1, j < n
        return (self.m + cosines) / self.m

    def row_norms(self) -> np.ndarray:
        return np.full(self.m, self.n / self.m)

    def toarray(self) -> np.ndarray:
        check_dense_size(self.m * self.n, f"the dense m x n = {self.m} x {self.n} DCT matrix", "keep the operator")
        return self.columns(np.arange(self.n))


def _operand(x, rows: int, name: str) -> np.ndarray:
    """``x`` as a float64 vector or matrix with ``rows`` rows, else :class:`InvalidProblemError`."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] != rows:
        raise InvalidProblemError(f"{name} must have {rows} rows to match the DCT operator; got shape {x.shape}.")
    return x


@dataclass(frozen=True)
class _Adjoint:
    """``A.T`` of a :class:`DCTSensing`: ``A.T @ r`` is ``A.rmatvec(r)``."""

    op: DCTSensing

    @property
    def shape(self) -> tuple[int, int]:
        return (self.op.n, self.op.m)

    def __matmul__(self, r):
        return self.op.rmatvec(r)


def dct_sparse(n: int, m: int, s: int, *, signed: bool = False, noise: float = 0.0, seed: int = 0) -> SparseRecovery:
    """:func:`~implicit_bias.problems.gaussian_sparse` with ``A`` a matrix-free :class:`DCTSensing` (``m`` seeded
    random rows of the orthonormal DCT-II, scaled by ``sqrt(n/m)`` like the Gaussian ``A``); the signal and the
    noise are drawn as there, from ``seed``. Memory ``O(n)``: no ``m x n`` array is formed."""
    from .problems import SparseRecovery, _noisy, check_sparse_settings

    n, m, s = check_sparse_settings(n, m, s, signed=signed, noise=noise, dense=False)
    A = DCTSensing(n, m, seed=check_seed(seed))
    rng = np.random.default_rng(seed)
    x_true = np.zeros(n)
    support = rng.choice(n, size=s, replace=False)
    magnitudes = 1.0 + np.abs(rng.standard_normal(s))
    x_true[support] = (rng.choice([-1.0, 1.0], size=s) if signed else np.ones(s)) * magnitudes
    y = A @ x_true
    if noise > 0:
        y = _noisy(y, noise, rng.standard_normal(m) / np.sqrt(m))
    return SparseRecovery(A, y, x_true, name=f"dct_sparse(n={n}, m={m}, s={s}, {'signed' if signed else 'positive'}, seed={seed})")


def sparse_problem(operator: str, n: int, m: int, s: int, *, signed: bool = False, noise: float = 0.0,
                   seed: int = 0) -> SparseRecovery:
    """:func:`~implicit_bias.problems.gaussian_sparse` (``operator="gaussian"``) or :func:`dct_sparse` (``"dct"``)."""
    from .problems import gaussian_sparse

    if operator not in OPERATORS:
        raise InvalidParameterError(f"The 'operator' parameter must be one of {OPERATORS}. Got {operator!r}.")
    build = gaussian_sparse if operator == "gaussian" else dct_sparse
    return build(n, m, s, signed=signed, noise=noise, seed=seed)


def is_matrix_free(A) -> bool:
    """True for an ``A`` that is not a dense array (a ``scipy.sparse`` matrix or a :class:`DCTSensing`)."""
    return not isinstance(A, np.ndarray)


def as_measurement(A):
    """``A`` checked as a measurement operator: a ``scipy.sparse`` matrix becomes a finite float64
    CSR array, a :class:`DCTSensing` is kept; anything else is left to the dense checks (None)."""
    if isinstance(A, DCTSensing):
        return A
    if scipy.sparse.issparse(A):
        if A.ndim != 2:
            raise InvalidProblemError(f"A must be a 2-d sparse matrix; got {A.ndim} dimensions.")
        csr = scipy.sparse.csr_array(A, dtype=np.float64)
        if not np.all(np.isfinite(csr.data)):
            raise InvalidProblemError("A contains NaN/inf entries; clean the data before fitting.")
        return csr
    return None


def column_norms(A) -> np.ndarray:
    """Squared column norms ``||a_j||^2`` of a dense, sparse or DCT ``A``."""
    if isinstance(A, DCTSensing):
        return A.column_norms()
    if scipy.sparse.issparse(A):
        return np.asarray(A.multiply(A).sum(axis=0)).ravel()
    return np.einsum("ij,ij->j", A, A)


def row_norms(A) -> np.ndarray:
    """Squared row norms of a dense, sparse or DCT ``A`` (the diagonal of ``A A^T``)."""
    if isinstance(A, DCTSensing):
        return A.row_norms()
    if scipy.sparse.issparse(A):
        return np.asarray(A.multiply(A).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", A, A)


def columns(A, index) -> np.ndarray:
    """The dense block ``A[:, index]`` (Fortran order) of a dense, sparse or DCT ``A``."""
    if isinstance(A, DCTSensing):
        return np.asfortranarray(A.columns(index))
    if scipy.sparse.issparse(A):
        return np.asfortranarray(A[:, index].toarray())
    return np.asfortranarray(A[:, index])


def operator_norm_squared(A, iterations: int = 60, seed: int = 0) -> float:
    """``||A||_2^2``: exactly ``n/m`` for a :class:`DCTSensing`, else by power iteration on ``A^T A``
    (started from a seeded Gaussian vector; a lower bound converging from below)."""
    if isinstance(A, DCTSensing):
        return A.n / A.m
    v = np.random.default_rng(seed).standard_normal(A.shape[1])
    value = 0.0
    for _ in range(iterations):
        v /= np.linalg.norm(v)
        w = A.T @ (A @ v)
        value = float(v @ w)
        v = w
    return value


def dot_test(A, seed: int | None = None) -> float:
    """``|<A x, r> - <x, A^T r>| / (||A x|| ||r||)`` for Gaussian ``x``, ``r`` (as :func:`implicit_bias.operators.dot_test`)."""
    rng = np.random.default_rng(seed)
    x, r = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
    Ax = A @ x
    scale = float(np.linalg.norm(Ax) * np.linalg.norm(r)) or 1.0
    return abs(float(Ax @ r) - float(x @ (A.T @ r))) / scale


def require_dense(A, what: str, instead: str) -> np.ndarray:
    """``A`` itself when it is a dense array, else :class:`UnsupportedError` saying what to use instead."""
    if is_matrix_free(A):
        raise UnsupportedError(
            f"{what} needs a dense measurement matrix A; this problem's A is a {type(A).__name__} (matrix-free). "
            f"{instead}"
        )
    return A
