"""Linear measurement maps on matrices, with their adjoints (SPEC C.13).

Every operator maps a ``shape = (d_y, d_x)`` matrix ``W`` to ``m`` measurements, ``apply(W)``,
and back, ``adjoint(r)``, with ``<apply(W), r> = <W, adjoint(r)>_F``. :func:`dot_test` checks
that identity the way PyLops does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from .errors import InvalidParameterError, InvalidProblemError
from ._validation import as_finite_array, check_dense_size, check_seed


def _check_shape(shape) -> tuple[int, int]:
    """Return ``shape`` as a pair of positive ints, or raise :class:`InvalidParameterError`."""
    try:
        pair = tuple(shape)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in pair):
        raise InvalidParameterError(f"The 'shape' parameter must be a pair of positive ints (d_y, d_x). Got {shape!r}.")
    return int(pair[0]), int(pair[1])


def _check_positive_int(value, name: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise InvalidParameterError(f"The '{name}' parameter must be an int >= 1. Got {value!r}.")
    return int(value)


def _check_matrix(W, shape: tuple[int, int], name: str = "W") -> np.ndarray:
    W = as_finite_array(W, name, 2)
    if W.shape != shape:
        raise InvalidProblemError(f"{name} must have shape {shape} to match the operator; got shape {W.shape}.")
    return W


def _check_vector(r, m: int, name: str = "r") -> np.ndarray:
    r = as_finite_array(r, name, 1)
    if r.shape != (m,):
        raise InvalidProblemError(f"{name} must have shape ({m},), one entry per measurement; got shape {r.shape}.")
    return r


@dataclass(frozen=True, eq=False)
class GaussianSensing:
    """Gaussian matrix sensing ``A(W)_l = <A_l, W>_F``, ``(A_l)_ij ~ N(0, 1/m)`` i.i.d. (SPEC C.13).

    The adjoint is ``A*(r) = sum_l r_l A_l``. The ``m`` matrices are drawn once, from ``seed``.
    """

    shape: tuple[int, int]
    m: int
    seed: int | None = None
    _flat: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = _check_shape(self.shape)
        m = _check_positive_int(self.m, "m")
        check_dense_size(m * shape[0] * shape[1], f"{m} Gaussian {shape[0]} x {shape[1]} sensing matrices",
                         "use a smaller m or shape")
        rng = np.random.default_rng(check_seed(self.seed))
        flat = rng.standard_normal((m, shape[0] * shape[1])) / np.sqrt(m)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "m", m)
        object.__setattr__(self, "_flat", flat)

    @property
    def matrices(self) -> np.ndarray:
        """The sensing matrices ``A_l`` stacked as an ``(m, d_y, d_x)`` array (a read-only view)."""
        view = self._flat.reshape(self.m, *self.shape)
        view.flags.writeable = False
        return view

    def apply(self, W) -> np.ndarray:
        """``A(W)``, shape ``(m,)``."""
        return self._flat @ _check_matrix(W, self.shape).ravel()

    def adjoint(self, r) -> np.ndarray:
        """``A*(r) = sum_l r_l A_l``, shape ``(d_y, d_x)``."""
        return (_check_vector(r, self.m) @ self._flat).reshape(self.shape)


@dataclass(frozen=True, eq=False)
class DenseSensing:
    """Matrix sensing ``A(W)_l = <A_l, W>_F`` with given matrices ``A_l`` (e.g. loaded from a file).

    ``matrices`` is an ``(m, d_y, d_x)`` array; the adjoint is ``A*(r) = sum_l r_l A_l`` (SPEC C.13).
    """

    matrices: np.ndarray

    def __post_init__(self) -> None:
        mats = as_finite_array(self.matrices, "matrices", 3)
        if 0 in mats.shape:
            raise InvalidProblemError(f"matrices must be a non-empty (m, d_y, d_x) array; got shape {mats.shape}.")
        mats = mats.copy()
        mats.flags.writeable = False
        object.__setattr__(self, "matrices", mats)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.matrices.shape[1]), int(self.matrices.shape[2])

    @property
    def m(self) -> int:
        return int(self.matrices.shape[0])

    def apply(self, W) -> np.ndarray:
        """``A(W)``, shape ``(m,)``."""
        return self.matrices.reshape(self.m, -1) @ _check_matrix(W, self.shape).ravel()

    def adjoint(self, r) -> np.ndarray:
        """``A*(r) = sum_l r_l A_l``, shape ``(d_y, d_x)``."""
        return (_check_vector(r, self.m) @ self.matrices.reshape(self.m, -1)).reshape(self.shape)


@dataclass(frozen=True, eq=False)
class EntryMask:
    """Matrix completion: observe the entries ``Omega`` of ``W`` (SPEC C.13); the adjoint zero-fills.

    ``index`` is a pair ``(rows, cols)`` of equal-length int arrays (as from ``np.nonzero``),
    naming distinct in-range entries; measurement ``l`` is ``W[rows[l], cols[l]]``.
    """

    shape: tuple[int, int]
    index: tuple[np.ndarray, np.ndarray]

    def __post_init__(self) -> None:
        shape = _check_shape(self.shape)
        try:
            rows, cols = (np.asarray(a) for a in self.index)
        except (TypeError, ValueError) as exc:
            raise InvalidProblemError(f"index must be a pair (rows, cols) of int arrays; got {self.index!r}.") from exc
        if rows.ndim != 1 or rows.shape != cols.shape:
            raise InvalidProblemError(
                f"index must be two 1-d int arrays of equal length; got shapes {rows.shape} and {cols.shape}."
            )
        if rows.size == 0:
            raise InvalidProblemError("index is empty: the mask observes no entry; observe at least one.")
        if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
            raise InvalidProblemError(f"index must hold ints; got dtypes {rows.dtype} and {cols.dtype}.")
        if rows.min() < 0 or rows.max() >= shape[0] or cols.min() < 0 or cols.max() >= shape[1]:
            raise InvalidProblemError(f"index has entries outside the {shape} matrix; rows and cols must be in range.")
        flat = np.ravel_multi_index((rows, cols), shape)
        if np.unique(flat).size != flat.size:
            repeats = flat.size - np.unique(flat).size
            raise InvalidProblemError(f"index names {repeats} entries twice; entries must be distinct.")
        rows, cols = rows.astype(np.intp), cols.astype(np.intp)
        rows.flags.writeable = False
        cols.flags.writeable = False
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "index", (rows, cols))

    @classmethod
    def bernoulli(cls, shape, p: float, seed: int | None = None) -> "EntryMask":
        """Observe each entry independently with probability ``p`` in ``(0, 1]`` (row-major order)."""
        shape = _check_shape(shape)
        if not isinstance(p, Real) or isinstance(p, bool) or not (0.0 < p <= 1.0):
            raise InvalidParameterError(f"The 'p' parameter must be a float in the range (0, 1]. Got {p!r}.")
        check_dense_size(shape[0] * shape[1], f"a {shape[0]} x {shape[1]} mask", "use a smaller shape")
        observed = np.random.default_rng(check_seed(seed)).random(shape) < p
        if not observed.any():
            raise InvalidProblemError(
                f"Bernoulli(p={p}) observed no entry of the {shape} matrix with seed={seed}; raise p or change the seed."
            )
        return cls(shape, np.nonzero(observed))

    @classmethod
    def uniform(cls, shape, count: int, seed: int | None = None) -> "EntryMask":
        """Observe ``count`` distinct entries drawn uniformly without replacement (row-major order)."""
        shape = _check_shape(shape)
        count = _check_positive_int(count, "count")
        size = shape[0] * shape[1]
        if count > size:
            raise InvalidParameterError(
                f"The 'count' parameter must be <= the number of entries d_y*d_x = {size}. Got {count}."
            )
        flat = np.sort(np.random.default_rng(check_seed(seed)).choice(size, size=count, replace=False))
        return cls(shape, np.unravel_index(flat, shape))

    @property
    def m(self) -> int:
        """Number of observed entries."""
        return int(self.index[0].size)

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``(d_y, d_x)`` matrix, True on observed entries."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.index] = True
        return out

    def apply(self, W) -> np.ndarray:
        """``(W_ij)_{(i,j) in Omega}``, shape ``(m,)``."""
        return _check_matrix(W, self.shape)[self.index]

    def adjoint(self, r) -> np.ndarray:
        """Zero-filled ``(d_y, d_x)`` matrix with ``r`` placed on the observed entries."""
        out = np.zeros(self.shape)
        out[self.index] = _check_vector(r, self.m)
        return out


def dot_test(op, seed: int | None = None) -> float:
    """Relative mismatch ``|<A W, r> - <W, A* r>| / (||A W|| ||r||)`` for Gaussian ``W``, ``r`` (PyLops style).

    The denominator bounds both inner products (Cauchy-Schwarz), so the value is rounding-sized
    (about 1e-16) for a correct adjoint and O(1) for a wrong one, never a division by a near-zero.
    """
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(op.shape)
    r = rng.standard_normal(op.m)
    AW = op.apply(W)
    lhs = float(AW @ r)
    rhs = float(np.vdot(W, op.adjoint(r)))
    scale = float(np.linalg.norm(AW) * np.linalg.norm(r))
    if scale == 0.0:
        scale = float(np.linalg.norm(W) * np.linalg.norm(op.adjoint(r))) or 1.0
    return abs(lhs - rhs) / scale
