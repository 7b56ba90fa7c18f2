"""Measurement problems and their seeded generators (SPEC §0).

A :class:`SparseRecovery` problem is the underdetermined linear system ``A x = y`` with
``m < n``: it has infinitely many exact solutions, and the question of the library is which
one a gradient method picks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ._validation import as_finite_array
from .errors import InvalidParameterError, InvalidProblemError


@dataclass(frozen=True, eq=False)
class SparseRecovery:
    """The problem ``A x = y`` (SPEC 0.1) with an optional ground truth ``x_true``.

    The loss is ``L(x) = 0.5 ||A x - y||^2`` with gradient ``A^T (A x - y)``.
    """

    A: np.ndarray
    y: np.ndarray
    x_true: np.ndarray | None = None
    name: str = field(default="sparse")

    def __post_init__(self) -> None:
        A = as_finite_array(self.A, "A", 2)
        y = as_finite_array(self.y, "y", 1)
        if A.shape[0] != y.shape[0]:
            raise InvalidProblemError(
                f"A has {A.shape[0]} rows but y has {y.shape[0]} entries; they must match (A is m x n, y has m)."
            )
        if A.shape[0] == 0 or A.shape[1] == 0:
            raise InvalidProblemError(f"A must be non-empty; got shape {A.shape}.")
        if not np.any(y):
            raise InvalidProblemError("y is identically zero; every method trivially returns x = 0.")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "y", y)
        if self.x_true is not None:
            x_true = as_finite_array(self.x_true, "x_true", 1)
            if x_true.shape[0] != A.shape[1]:
                raise InvalidProblemError(
                    f"x_true has {x_true.shape[0]} entries but A has {A.shape[1]} columns; they must match."
                )
            object.__setattr__(self, "x_true", x_true)

    @property
    def m(self) -> int:
        return self.A.shape[0]

    @property
    def n(self) -> int:
        return self.A.shape[1]

    def residual(self, x: np.ndarray) -> float:
        """Relative residual ``||A x - y|| / ||y||``."""
        return float(np.linalg.norm(self.A @ x - self.y) / np.linalg.norm(self.y))

    def loss(self, x: np.ndarray) -> float:
        """``0.5 ||A x - y||^2`` (SPEC 0.1)."""
        r = self.A @ x - self.y
        return 0.5 * float(r @ r)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """``A^T (A x - y)`` (SPEC 0.1)."""
        return self.A.T @ (self.A @ x - self.y)

    def error_true(self, x: np.ndarray) -> float | None:
        """Relative error ``||x - x_true|| / ||x_true||``, or None without a ground truth."""
        if self.x_true is None:
            return None
        norm = np.linalg.norm(self.x_true)
        return float(np.linalg.norm(x - self.x_true) / (norm if norm > 0 else 1.0))

    def save(self, path: str | os.PathLike) -> None:
        """Write ``A``, ``y`` (and ``x_true``) to an ``.npz`` file readable by :func:`load_problem`."""
        arrays = {"A": self.A, "y": self.y}
        if self.x_true is not None:
            arrays["x_true"] = self.x_true
        np.savez(path, **arrays)


def gaussian_sparse(
    n: int, m: int, s: int, *, signed: bool = False, noise: float = 0.0, seed: int = 0
) -> SparseRecovery:
    """A Gaussian compressed-sensing problem (SPEC A.8).

    ``A`` has i.i.d. ``N(0, 1/m)`` entries; ``x_true`` has ``s`` nonzeros on a uniformly random
    support with magnitudes ``1 + |N(0,1)|`` (bounded away from 0 so that recovery is
    well-posed), random signs when ``signed``; ``y = A x_true + noise * N(0, I_m)/sqrt(m)``.
    """
    for name, value in (("n", n), ("m", m), ("s", s)):
        if int(value) != value or value < 1:
            raise InvalidProblemError(f"{name} must be a positive integer; got {value!r}.")
    if m >= n:
        raise InvalidProblemError(f"need m < n for an underdetermined problem; got m={m}, n={n}.")
    if s > m:
        raise InvalidProblemError(f"sparsity s={s} exceeds the number of measurements m={m}; recovery is hopeless. Use s <= m.")
    if not np.isfinite(noise) or noise < 0:
        raise InvalidProblemError(f"noise must be a finite number >= 0; got {noise!r}.")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(n)
    support = rng.choice(n, size=s, replace=False)
    magnitudes = 1.0 + np.abs(rng.standard_normal(s))
    signs = rng.choice([-1.0, 1.0], size=s) if signed else np.ones(s)
    x_true[support] = signs * magnitudes
    y = A @ x_true
    if noise > 0:
        y = y + noise * rng.standard_normal(m) / np.sqrt(m)
    return SparseRecovery(A, y, x_true, name=f"gaussian_sparse(n={n}, m={m}, s={s}, {'signed' if signed else 'positive'}, seed={seed})")


def load_problem(path: str | os.PathLike) -> SparseRecovery:
    """Load a problem from an ``.npz`` file with arrays ``A``, ``y`` and optionally ``x_true``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("A", "y") if key not in data.files]
            if missing:
                raise InvalidProblemError(
                    f"{path}: missing array(s) {missing}; an .npz problem needs 'A' (m x n) and 'y' (m), optionally 'x_true' (n). Found {data.files}."
                )
            x_true = data["x_true"] if "x_true" in data.files else None
            return SparseRecovery(data["A"], data["y"], x_true, name=os.path.basename(str(path)))
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidProblemError):
            raise
        raise InvalidProblemError(f"cannot read problem file {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# low-rank matrix recovery (SPEC C.2, C.13)


@dataclass(frozen=True, eq=False)
class MatrixRecovery:
    """Recover a ``d_y x d_x`` matrix from ``y = A(W)`` (SPEC C.2), with an optional ground truth.

    ``operator`` is a linear map with ``shape``, ``m``, ``apply(W)`` and ``adjoint(r)``
    (:class:`~implicit_bias.operators.GaussianSensing`, :class:`~implicit_bias.operators.DenseSensing`
    or :class:`~implicit_bias.operators.EntryMask` for completion). The loss is
    ``L(W) = 0.5 ||A(W) - y||^2`` with gradient ``A*(A(W) - y)``.
    """

    operator: object
    y: np.ndarray
    W_true: np.ndarray | None = None
    name: str = field(default="matrix")

    def __post_init__(self) -> None:
        for attribute in ("shape", "m", "apply", "adjoint"):
            if not hasattr(self.operator, attribute):
                raise InvalidProblemError(
                    f"operator must be a measurement map with shape, m, apply and adjoint; {type(self.operator).__name__} has no '{attribute}'."
                )
        y = as_finite_array(self.y, "y", 1)
        if y.shape[0] != self.operator.m:
            raise InvalidProblemError(
                f"y has {y.shape[0]} entries but the operator takes {self.operator.m} measurements; they must match."
            )
        if not np.any(y):
            raise InvalidProblemError("y is identically zero; every method trivially returns W = 0.")
        object.__setattr__(self, "y", y)
        if self.W_true is not None:
            W_true = as_finite_array(self.W_true, "W_true", 2)
            if W_true.shape != tuple(self.operator.shape):
                raise InvalidProblemError(
                    f"W_true has shape {W_true.shape} but the operator acts on {tuple(self.operator.shape)} matrices."
                )
            object.__setattr__(self, "W_true", W_true)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.operator.shape)

    @property
    def m(self) -> int:
        return int(self.operator.m)

    @property
    def measurement(self) -> str:
        """``"completion"`` for an entry mask, ``"gaussian"`` otherwise."""
        return "completion" if hasattr(self.operator, "index") else "gaussian"

    def residual(self, W: np.ndarray) -> float:
        """Relative residual ``||A(W) - y|| / ||y||``."""
        return float(np.linalg.norm(self.operator.apply(W) - self.y) / np.linalg.norm(self.y))

    def loss(self, W: np.ndarray) -> float:
        """``0.5 ||A(W) - y||^2`` (SPEC C.2)."""
        r = self.operator.apply(W) - self.y
        return 0.5 * float(r @ r)

    def gradient(self, W: np.ndarray) -> np.ndarray:
        """``A*(A(W) - y)`` (SPEC C.2)."""
        return self.operator.adjoint(self.operator.apply(W) - self.y)

    def relative_error(self, W: np.ndarray) -> float | None:
        """``||W - W_true||_F / ||W_true||_F``, or None without a ground truth."""
        if self.W_true is None:
            return None
        norm = np.linalg.norm(self.W_true)
        return float(np.linalg.norm(W - self.W_true) / (norm if norm > 0 else 1.0))

    def save(self, path: str | os.PathLike) -> None:
        """Write the problem to an ``.npz`` file readable by :func:`load_matrix_problem`.

        Sensing stores ``matrices`` ``(m, d_y, d_x)``; completion stores ``rows``, ``cols`` and ``shape``.
        """
        if self.measurement == "completion":
            rows, cols = self.operator.index
            arrays = {"rows": rows, "cols": cols, "shape": np.array(self.shape)}
        else:
            arrays = {"matrices": np.asarray(self.operator.matrices)}
        arrays["y"] = self.y
        if self.W_true is not None:
            arrays["W_true"] = self.W_true
        np.savez(path, **arrays)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise InvalidParameterError(f"The '{name}' parameter must be an int >= 1. Got {value!r}.")
    return int(value)


def low_rank_matrix(n1: int, n2: int, rank: int, *, spectrum=None, condition: float = 1.0, seed: int = 0) -> np.ndarray:
    """A seeded ``n1 x n2`` matrix ``U diag(sigma) V^T`` of exact rank ``rank`` with Haar ``U``, ``V``.

    ``spectrum``: the ``rank`` singular values, taken as given. Otherwise they are geometric from
    ``1`` down to ``1/condition`` and scaled to ``||W||_F = sqrt(n1 n2)`` (entries of RMS 1, the
    convention of Arora et al. 2019).
    """
    n1, n2, rank = _check_count(n1, "n1"), _check_count(n2, "n2"), _check_count(rank, "rank")
    if rank > min(n1, n2):
        raise InvalidParameterError(
            f"The 'rank' parameter must be <= min(n1, n2) = {min(n1, n2)} for a {n1} x {n2} matrix. Got {rank}."
        )
    if spectrum is None:
        if not np.isfinite(condition) or condition < 1:
            raise InvalidParameterError(f"The 'condition' parameter must be a float >= 1. Got {condition!r}.")
        sigma = np.geomspace(1.0, 1.0 / condition, rank)
        sigma *= np.sqrt(n1 * n2) / np.linalg.norm(sigma)
    else:
        sigma = as_finite_array(spectrum, "spectrum", 1)
        if sigma.shape != (rank,) or np.any(sigma <= 0):
            raise InvalidParameterError(
                f"The 'spectrum' parameter must be {rank} positive singular values. Got {spectrum!r}."
            )
        sigma = np.sort(sigma)[::-1]
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n1, rank)))[0]
    V = np.linalg.qr(rng.standard_normal((n2, rank)))[0]
    return (U * sigma) @ V.T


def matrix_sensing(
    n1: int, n2: int, rank: int, m: int, *, spectrum=None, condition: float = 1.0, noise: float = 0.0, seed: int = 0
) -> MatrixRecovery:
    """Gaussian matrix sensing of a rank-``rank`` ground truth (SPEC C.13): ``(A_l)_ij ~ N(0, 1/m)``.

    ``y = A(W_true) + noise * ||A(W_true)|| / sqrt(m) * N(0, I_m)`` (noise relative to the signal).
    """
    from .operators import GaussianSensing

    m = _check_count(m, "m")
    if not np.isfinite(noise) or noise < 0:
        raise InvalidParameterError(f"The 'noise' parameter must be a finite float >= 0. Got {noise!r}.")
    W_true = low_rank_matrix(n1, n2, rank, spectrum=spectrum, condition=condition, seed=seed)
    operator = GaussianSensing((n1, n2), m, seed=seed + 1)
    y = operator.apply(W_true)
    if noise > 0:
        y = y + noise * np.linalg.norm(y) / np.sqrt(m) * np.random.default_rng(seed + 2).standard_normal(m)
    return MatrixRecovery(operator, y, W_true, name=f"matrix_sensing({n1}x{n2}, rank={rank}, m={m}, seed={seed})")


def matrix_completion(
    n1: int, n2: int, rank: int, *, count: int | None = None, p: float | None = None, spectrum=None,
    condition: float = 1.0, seed: int = 0,
) -> MatrixRecovery:
    """Matrix completion of a rank-``rank`` ground truth (SPEC C.13).

    Observe ``count`` distinct entries drawn uniformly without replacement, or each entry with
    probability ``p`` (give exactly one of them).
    """
    from .operators import EntryMask

    if (count is None) == (p is None):
        raise InvalidParameterError("give exactly one of 'count' (observed entries) and 'p' (observation probability).")
    W_true = low_rank_matrix(n1, n2, rank, spectrum=spectrum, condition=condition, seed=seed)
    if count is not None:
        operator = EntryMask.uniform((n1, n2), count, seed=seed + 1)
    else:
        operator = EntryMask.bernoulli((n1, n2), p, seed=seed + 1)
    y = operator.apply(W_true)
    label = f"count={count}" if count is not None else f"p={p}"
    return MatrixRecovery(operator, y, W_true, name=f"matrix_completion({n1}x{n2}, rank={rank}, {label}, seed={seed})")


def load_matrix_problem(path: str | os.PathLike) -> MatrixRecovery:
    """Load a :class:`MatrixRecovery` from ``.npz``: ``y`` and either ``matrices`` ``(m, d_y, d_x)``
    (sensing) or ``rows``, ``cols``, ``shape`` (completion); optionally ``W_true``."""
    from .operators import DenseSensing, EntryMask

    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            if "y" not in files or not ({"matrices"} <= files or {"rows", "cols", "shape"} <= files):
                raise InvalidProblemError(
                    f"{path}: a matrix problem needs 'y' and either 'matrices' (m x d_y x d_x) or 'rows', 'cols', 'shape';"
                    f" optionally 'W_true'. Found {sorted(files)}."
                )
            if "matrices" in files:
                operator = DenseSensing(data["matrices"])
            else:
                shape = tuple(int(d) for d in data["shape"])
                operator = EntryMask(shape, (data["rows"], data["cols"]))
            W_true = data["W_true"] if "W_true" in files else None
            return MatrixRecovery(operator, data["y"], W_true, name=os.path.basename(str(path)))
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidProblemError):
            raise
        raise InvalidProblemError(f"cannot read problem file {path}: {exc}") from exc
