"""Deep matrix factorisation ``W = W_N ... W_1`` (SPEC C.1-C.3, C.12).

``W_j`` has shape ``(d_j, d_{j-1})`` with ``d_0 = d_x`` and ``d_N = d_y``; the hidden widths are
``(d_1, ..., d_{N-1})``. Depth 1 is the plain linear model ``W = W_1``. The formulas themselves
(product, factor gradients, balancedness, balanced factors) live in :mod:`implicit_bias.matrix_theory`;
this module adds the model's shapes and its initialisations.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal

import numpy as np

from .. import matrix_theory as mt
from .._validation import as_finite_array
from ..errors import InvalidParameterError, InvalidProblemError

InitKind = Literal["balanced", "product", "gaussian", "explicit"]


def _check_positive_float(value, name: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not (0.0 < float(value) < np.inf):
        raise InvalidParameterError(f"The '{name}' parameter must be a float in the range (0, inf). Got {value!r}.")
    return float(value)


def _check_seed(seed) -> int | None:
    if seed is not None and (not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0):
        raise InvalidParameterError(f"The 'seed' parameter must be None or an int >= 0. Got {seed!r}.")
    return None if seed is None else int(seed)


def _haar_columns(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    """``d x k`` matrix with orthonormal columns, Haar-distributed (QR with the signs of ``diag R`` fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((d, k)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


@dataclass(frozen=True, eq=False)
class MatrixInit:
    """How the factors start. Build it with one of the class methods:

    - :meth:`balanced`: ``W_j = alpha Q_j Q_{j-1}^T`` (SPEC C.12 (i)); product scale ``alpha^N``.
    - :meth:`product`: balanced factors with a prescribed product ``W0`` (SPEC C.12 (ii)).
    - :meth:`gaussian`: i.i.d. Gaussian factors, all rescaled by one factor so that the product's
      entries have RMS ``scale`` (not balanced).
    - :meth:`explicit`: user-given factors ``(W_1, ..., W_N)``.
    """

    kind: InitKind
    alpha: float | None = None
    W0: np.ndarray | None = None
    scale: float | None = None
    factors: tuple | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("balanced", "product", "gaussian", "explicit"):
            raise InvalidParameterError(
                f"The 'kind' parameter must be one of 'balanced', 'product', 'gaussian', 'explicit'. Got {self.kind!r}."
            )
        object.__setattr__(self, "seed", _check_seed(self.seed))
        if self.kind == "balanced":
            object.__setattr__(self, "alpha", _check_positive_float(self.alpha, "alpha"))
        elif self.kind == "product":
            object.__setattr__(self, "W0", as_finite_array(self.W0, "W0", 2))
        elif self.kind == "gaussian":
            object.__setattr__(self, "scale", _check_positive_float(self.scale, "scale"))
        else:
            try:
                mats = tuple(as_finite_array(Wj, f"factors[{j}]", 2) for j, Wj in enumerate(self.factors))
            except TypeError as exc:
                raise InvalidProblemError(
                    f"factors must be a sequence of 2-d arrays (W_1, ..., W_N); got {self.factors!r}."
                ) from exc
            mt.factor_product(mats)  # raises if empty or the shapes do not chain
            object.__setattr__(self, "factors", tuple(Wj.copy() for Wj in mats))

    @classmethod
    def balanced(cls, alpha: float, seed: int | None = None) -> "MatrixInit":
        """``W_j(0) = alpha Q_j Q_{j-1}^T`` (SPEC C.12 (i)): ``alpha I`` for square factors, Haar-orthogonal with ``seed``."""
        return cls("balanced", alpha=alpha, seed=seed)

    @classmethod
    def product(cls, W0, seed: int | None = None) -> "MatrixInit":
        """Balanced factors with ``W_N ... W_1 = W0`` (SPEC C.12 (ii)); Haar hidden frames with ``seed``."""
        return cls("product", W0=W0, seed=seed)

    @classmethod
    def gaussian(cls, scale: float, seed: int = 0) -> "MatrixInit":
        """i.i.d. ``N(0, 1)`` factors times one common factor, so that ``rms(W_N ... W_1) = scale``."""
        return cls("gaussian", scale=scale, seed=seed)

    @classmethod
    def explicit(cls, factors) -> "MatrixInit":
        """User-given factors ``(W_1, ..., W_N)``, ``W_j`` of shape ``(d_j, d_{j-1})``."""
        return cls("explicit", factors=factors)

    def describe(self) -> str:
        if self.kind == "balanced":
            return f"balanced(alpha={self.alpha:g}{'' if self.seed is None else f', seed={self.seed}'})"
        if self.kind == "gaussian":
            return f"gaussian(scale={self.scale:g}, seed={self.seed})"
        return f"{self.kind} factors"


@dataclass(frozen=True)
class DeepFactorization:
    """``W = W_N ... W_1`` with hidden widths ``(d_1, ..., d_{N-1})`` (SPEC C.1).

    ``widths=None`` takes ``min(d_y, d_x)`` for every hidden layer, so that no rank is lost.
    """

    depth: int = 2
    widths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        depth = self.depth
        if not isinstance(depth, Integral) or isinstance(depth, bool) or depth < 1:
            raise InvalidParameterError(f"The 'depth' parameter must be an int >= 1. Got {depth!r}.")
        object.__setattr__(self, "depth", int(depth))
        if self.widths is not None:
            try:
                widths = tuple(self.widths)
            except TypeError:
                widths = None
            if widths is None or len(widths) != depth - 1 or not all(
                isinstance(d, Integral) and not isinstance(d, bool) and d >= 1 for d in widths
            ):
                raise InvalidParameterError(
                    f"The 'widths' parameter must be None or {depth - 1} positive ints (the hidden widths"
                    f" d_1, ..., d_{{N-1}} of a depth-{depth} factorization). Got {self.widths!r}."
                )
            object.__setattr__(self, "widths", tuple(int(d) for d in widths))

    def dims(self, shape) -> tuple[int, ...]:
        """``(d_0, ..., d_N)`` for a product of shape ``(d_y, d_x)``."""
        d_y, d_x = _check_shape(shape)
        hidden = self.widths if self.widths is not None else (min(d_y, d_x),) * (self.depth - 1)
        return (d_x, *hidden, d_y)

    def factor_shapes(self, shape) -> tuple[tuple[int, int], ...]:
        """Shapes ``(d_j, d_{j-1})`` of ``W_1, ..., W_N``."""
        d = self.dims(shape)
        return tuple((d[j], d[j - 1]) for j in range(1, self.depth + 1))

    def n_params(self, shape) -> int:
        return int(sum(a * b for a, b in self.factor_shapes(shape)))

    def initial_factors(self, init: MatrixInit | float, shape) -> tuple[np.ndarray, ...]:
        """The factors ``(W_1, ..., W_N)`` at ``t = 0`` for a product of shape ``(d_y, d_x)``.

        A float ``init`` means :meth:`MatrixInit.balanced` with that ``alpha``.
        """
        if not isinstance(init, MatrixInit):
            init = MatrixInit.balanced(init)
        dims = self.dims(shape)
        N = self.depth
        if init.kind == "balanced":
            r = min(dims)
            rng = None if init.seed is None else np.random.default_rng(init.seed)
            Q = [np.eye(d, r) if rng is None else _haar_columns(rng, d, r) for d in dims]
            return tuple(init.alpha * Q[j] @ Q[j - 1].T for j in range(1, N + 1))
        if init.kind == "product":
            if init.W0.shape != tuple(shape):
                raise InvalidProblemError(f"W0 has shape {init.W0.shape} but the problem's matrices are {tuple(shape)}.")
            if N == 1:
                return (init.W0.copy(),)
            return mt.balanced_factors(init.W0, N, dims[1:-1], seed=init.seed)
        if init.kind == "gaussian":
            rng = np.random.default_rng(init.seed)
            mats = [rng.standard_normal(s) for s in self.factor_shapes(shape)]
            rms = np.sqrt(np.mean(mt.factor_product(mats) ** 2))
            if not rms > 0:
                raise InvalidProblemError("the Gaussian factors have a zero product; change the seed.")
            c = (init.scale / rms) ** (1.0 / N)
            return tuple(c * Wj for Wj in mats)
        return self._check_explicit(init.factors, shape)

    def _check_explicit(self, factors, shape) -> tuple[np.ndarray, ...]:
        expected = self.factor_shapes(shape)
        got = tuple(Wj.shape for Wj in factors)
        if len(got) != self.depth:
            raise InvalidProblemError(f"explicit init has {len(got)} factors but the model has depth {self.depth}.")
        if got[-1][0] != expected[-1][0] or got[0][1] != expected[0][1]:
            raise InvalidProblemError(
                f"the explicit factors' product has shape {(got[-1][0], got[0][1])} but the problem's matrices are"
                f" {tuple(shape)}."
            )
        if got != expected:
            raise InvalidProblemError(
                f"the explicit factors have shapes {got} but the model expects {expected}; pass"
                f" widths={tuple(s[0] for s in got[:-1])} to DeepFactorization."
            )
        return tuple(Wj.copy() for Wj in factors)

    # thin wrappers over matrix_theory, so that the dynamics only talk to the model
    @staticmethod
    def product(factors) -> np.ndarray:
        """``W_N ... W_1``."""
        return mt.factor_product(factors)

    @staticmethod
    def gradients(factors, grad_W) -> tuple[np.ndarray, ...]:
        """Factor gradients of ``L^N`` from the end-to-end gradient (SPEC C.1)."""
        return mt.factor_gradients(factors, grad_W)

    @staticmethod
    def balancedness_defect(factors) -> float:
        """``max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F / max_j ||W_j||_F^2`` (SPEC C.3)."""
        return mt.balancedness_defect(factors)


def _check_shape(shape) -> tuple[int, int]:
    try:
        pair = tuple(shape)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(d, Integral) and not isinstance(d, bool) and d >= 1 for d in pair):
        raise InvalidParameterError(f"The 'shape' parameter must be a pair of positive ints (d_y, d_x). Got {shape!r}.")
    return int(pair[0]), int(pair[1])
