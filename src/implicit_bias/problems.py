"""Measurement problems and their seeded generators (SPEC §0).

A :class:`SparseRecovery` problem is the underdetermined linear system ``A x = y`` with
``m < n``: it has infinitely many exact solutions, and the question of the library is which
one a gradient method picks.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ._validation import (
    as_finite_array,
    check_count,
    check_dense_size,
    check_seed,
    is_real,
)
from .errors import InvalidParameterError, InvalidProblemError


@dataclass(frozen=True, eq=False)
class SparseRecovery:
    """The problem ``A x = y`` (SPEC 0.1) with an optional ground truth ``x_true``.

    ``A`` is a dense array, a ``scipy.sparse`` matrix (kept sparse, as CSR) or a matrix-free
    :class:`~implicit_bias.sensing.DCTSensing`; the oracle and the mirror-space flow run matrix-free
    on the last two (:mod:`implicit_bias.sensing`). The loss is ``L(x) = 0.5 ||A x - y||^2`` with
    gradient ``A^T (A x - y)``.
    """

    A: np.ndarray
    y: np.ndarray
    x_true: np.ndarray | None = None
    name: str = field(default="sparse")

    def __post_init__(self) -> None:
        from .sensing import as_measurement

        A = as_measurement(self.A)
        A = as_finite_array(self.A, "A", 2) if A is None else A
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
        """Write ``A``, ``y`` (and ``x_true``) to an ``.npz`` file readable by :func:`load_problem` (dense ``A`` only)."""
        from .sensing import require_dense

        arrays = {"A": require_dense(self.A, "saving a problem", "Save its generator's settings instead (dct_sparse(n, m, s, seed))."), "y": self.y}
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
    n, m, s = check_sparse_settings(n, m, s, signed=signed, noise=noise)
    rng = np.random.default_rng(check_seed(seed))
    A = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(n)
    support = rng.choice(n, size=s, replace=False)
    magnitudes = 1.0 + np.abs(rng.standard_normal(s))
    signs = rng.choice([-1.0, 1.0], size=s) if signed else np.ones(s)
    x_true[support] = signs * magnitudes
    y = A @ x_true
    if noise > 0:
        y = _noisy(y, noise, rng.standard_normal(m) / np.sqrt(m))
    return SparseRecovery(A, y, x_true, name=f"gaussian_sparse(n={n}, m={m}, s={s}, {'signed' if signed else 'positive'}, seed={seed})")


# what a damaged or foreign file can raise while numpy reads it
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def read_npz(path, names: tuple[str, ...], hint: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` that the ``.npz`` archive at ``path`` holds, read without unpickling.

    Everything that can go wrong (not a path, no such file, a directory, text or random bytes, a
    single ``.npy`` array, a truncated archive, object arrays, an array too large for memory)
    raises :class:`InvalidProblemError` naming the file and ``hint``: what the archive should hold.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidProblemError(f"a problem file must be a path; got {type(path).__name__} {path!r:.40}.")
    if os.path.isdir(path):
        raise InvalidProblemError(f"problem file {path} is a directory; pass an .npz file ({hint}).")
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InvalidProblemError(f"problem file {path} not found; pass an existing .npz file ({hint}).") from None
    except _READ_ERRORS:  # numpy's own text would suggest unpickling; pickles are never loaded here
        raise InvalidProblemError(
            f"cannot read problem file {path}: it is not an .npz archive (empty, text, pickled or damaged);"
            f" write one with numpy.savez ({hint})."
        ) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InvalidProblemError(f"cannot read problem file {path}: it holds one bare array, not an .npz archive ({hint}).")
    with data:
        out = {}
        for name in names:
            if name not in data.files:
                continue
            try:
                info = data.zip.getinfo(f"{name}.npy")
                check_dense_size(info.file_size // 8, f"array {name!r} of {path}", "use a smaller problem")
                out[name] = data[name]
            except _READ_ERRORS:
                raise InvalidProblemError(
                    f"cannot read problem file {path}: array {name!r} is unreadable (damaged, or Python objects that"
                    f" are never unpickled); arrays must hold plain numbers ({hint})."
                ) from None
        out["__files__"] = sorted(data.files)
    return out


def _noisy(y: np.ndarray, noise: float, draw: np.ndarray) -> np.ndarray:
    """``y + noise * draw``, or :class:`InvalidParameterError` if a huge ``noise`` overflows float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        noisy = y + noise * draw
    if not np.all(np.isfinite(noisy)):
        raise InvalidParameterError(f"The 'noise' parameter {noise:g} overflows the measurements; use a noise level near 1 or below.")
    return noisy


def check_sparse_settings(n, m, s, *, signed=False, noise=0.0, dense=True) -> tuple[int, int, int]:
    """``(n, m, s)`` as ints if :func:`gaussian_sparse` (``dense``) or :func:`dct_sparse` can build the
    problem (cheap: no allocation), else :class:`InvalidProblemError`; sweeps call it to refuse a bad
    spec before any trial runs."""
    for name, value in (("n", n), ("m", m), ("s", s)):
        try:
            check_count(value, name)
        except InvalidParameterError:
            raise InvalidProblemError(f"{name} must be a positive integer; got {value!r}.") from None
    n, m, s = int(n), int(m), int(s)
    if m >= n:
        raise InvalidProblemError(f"need m < n for an underdetermined problem; got m={m}, n={n}.")
    if s > m:
        raise InvalidProblemError(f"sparsity s={s} exceeds the number of measurements m={m}; recovery is hopeless. Use s <= m.")
    if not is_real(noise, finite=True) or noise < 0:
        raise InvalidProblemError(f"noise must be a finite number >= 0; got {noise!r}.")
    if not isinstance(signed, (bool, np.bool_)):
        raise InvalidProblemError(f"signed must be True or False; got {signed!r}.")
    if dense:
        check_dense_size(m * n, f"an m x n = {m} x {n} Gaussian matrix", "use smaller n and m, or the DCT operator")
    return n, m, s


def load_problem(path: str | os.PathLike) -> SparseRecovery:
    """Load a problem from an ``.npz`` file with arrays ``A``, ``y`` and optionally ``x_true``."""
    hint = "arrays 'A' (m x n) and 'y' (m), optionally 'x_true' (n)"
    arrays = read_npz(path, ("A", "y", "x_true"), hint)
    missing = [key for key in ("A", "y") if key not in arrays]
    if missing:
        raise InvalidProblemError(
            f"{path}: missing array(s) {missing}; an .npz problem needs {hint}. Found {arrays['__files__']}."
        )
    return _from_file(path, SparseRecovery, arrays["A"], arrays["y"], arrays.get("x_true"), name=os.path.basename(str(path)))


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


def low_rank_matrix(n1: int, n2: int, rank: int, *, spectrum=None, condition: float = 1.0, seed: int = 0) -> np.ndarray:
    """A seeded ``n1 x n2`` matrix ``U diag(sigma) V^T`` of exact rank ``rank`` with Haar ``U``, ``V``.

    ``spectrum``: the ``rank`` singular values, taken as given. Otherwise they are geometric from
    ``1`` down to ``1/condition`` and scaled to ``||W||_F = sqrt(n1 n2)`` (entries of RMS 1, the
    convention of Arora et al. 2019).
    """
    n1, n2, rank = check_count(n1, "n1"), check_count(n2, "n2"), check_count(rank, "rank")
    check_dense_size(n1 * n2, f"an n1 x n2 = {n1} x {n2} matrix", "use smaller n1 and n2")
    seed = check_seed(seed)
    if rank > min(n1, n2):
        raise InvalidParameterError(
            f"The 'rank' parameter must be <= min(n1, n2) = {min(n1, n2)} for a {n1} x {n2} matrix. Got {rank}."
        )
    if spectrum is None:
        if not is_real(condition, finite=True) or condition < 1:
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

    m, seed = check_count(m, "m"), check_count(seed, "seed", minimum=0)
    if not is_real(noise, finite=True) or noise < 0:
        raise InvalidParameterError(f"The 'noise' parameter must be a finite float >= 0. Got {noise!r}.")
    W_true = low_rank_matrix(n1, n2, rank, spectrum=spectrum, condition=condition, seed=seed)
    check_dense_size(m * W_true.size, f"{m} Gaussian {n1} x {n2} sensing matrices", "use smaller m, n1, n2")
    operator = GaussianSensing((n1, n2), m, seed=seed + 1)
    y = operator.apply(W_true)
    if noise > 0:
        y = _noisy(y, noise, np.linalg.norm(y) / np.sqrt(m) * np.random.default_rng(seed + 2).standard_normal(m))
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
    seed = check_count(seed, "seed", minimum=0)
    W_true = low_rank_matrix(n1, n2, rank, spectrum=spectrum, condition=condition, seed=seed)
    if count is not None:
        operator = EntryMask.uniform((n1, n2), count, seed=seed + 1)
    else:
        operator = EntryMask.bernoulli((n1, n2), p, seed=seed + 1)
    y = operator.apply(W_true)
    label = f"count={count}" if count is not None else f"p={p}"
    return MatrixRecovery(operator, y, W_true, name=f"matrix_completion({n1}x{n2}, rank={rank}, {label}, seed={seed})")


def check_matrix_settings(n1, n2, rank, m, measurement: str = "gaussian") -> None:
    """Raise a typed error unless :func:`matrix_sensing` (``measurement="gaussian"``) or
    :func:`matrix_completion` (``count=m``) can build the problem; cheap, no allocation."""
    n1, n2, rank, m = (check_count(v, name) for v, name in ((n1, "n1"), (n2, "n2"), (rank, "rank"), (m, "m")))
    if rank > min(n1, n2):
        raise InvalidParameterError(f"The 'rank' parameter must be <= min(n1, n2) = {min(n1, n2)}. Got {rank}.")
    check_dense_size(n1 * n2, f"an n1 x n2 = {n1} x {n2} matrix", "use smaller n1 and n2")
    if measurement == "gaussian":
        check_dense_size(m * n1 * n2, f"{m} Gaussian {n1} x {n2} sensing matrices", "use smaller m, n1, n2")
    elif m > n1 * n2:
        raise InvalidParameterError(f"The 'm' parameter (observed entries) must be <= the number of entries d_y*d_x = {n1 * n2}. Got {m}.")


def load_matrix_problem(path: str | os.PathLike) -> MatrixRecovery:
    """Load a :class:`MatrixRecovery` from ``.npz``: ``y`` and either ``matrices`` ``(m, d_y, d_x)``
    (sensing) or ``rows``, ``cols``, ``shape`` (completion); optionally ``W_true``."""
    from .operators import DenseSensing, EntryMask

    hint = "'y' and either 'matrices' (m x d_y x d_x) or 'rows', 'cols', 'shape'; optionally 'W_true'"
    arrays = read_npz(path, ("y", "matrices", "rows", "cols", "shape", "W_true"), hint)
    files = set(arrays)
    if "y" not in files or not ({"matrices"} <= files or {"rows", "cols", "shape"} <= files):
        raise InvalidProblemError(f"{path}: a matrix problem needs {hint}. Found {arrays['__files__']}.")
    if "matrices" in files:
        operator = _from_file(path, DenseSensing, arrays["matrices"])
    else:
        shape = arrays["shape"]
        if shape.shape != (2,) or not np.issubdtype(shape.dtype, np.integer) or np.any(shape < 1):
            raise InvalidProblemError(f"{path}: 'shape' must hold two positive ints (d_y, d_x); got {shape!r:.60}.")
        check_dense_size(int(shape[0]) * int(shape[1]), f"a {shape[0]} x {shape[1]} matrix", "use a smaller problem")
        operator = _from_file(path, EntryMask, (int(shape[0]), int(shape[1])), (arrays["rows"], arrays["cols"]))
    return _from_file(path, MatrixRecovery, operator, arrays["y"], arrays.get("W_true"), name=os.path.basename(str(path)))


def _from_file(path, build, *args, **kwargs):
    """``build(*args, **kwargs)``, with the file named in its error message."""
    try:
        return build(*args, **kwargs)
    except InvalidProblemError as exc:
        raise InvalidProblemError(f"problem file {path}: {exc}") from None
