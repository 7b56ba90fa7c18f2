"""Measurement problems and their seeded generators (SPEC §0).

A :class:`SparseRecovery` problem is the underdetermined linear system ``A x = y`` with
``m < n``: it has infinitely many exact solutions, and the question of the library is which
one a gradient method picks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidProblemError


def as_finite_array(value, name: str, ndim: int) -> np.ndarray:
    """Return ``value`` as a float64 array of ``ndim`` dimensions, or raise a clear error."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name} must be a numeric array; got {type(value).__name__}: {exc}") from exc
    if array.ndim != ndim:
        raise InvalidProblemError(f"{name} must be a {ndim}-d array; got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InvalidProblemError(f"{name} contains {bad} NaN/inf entries; clean the data before fitting.")
    return array


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
