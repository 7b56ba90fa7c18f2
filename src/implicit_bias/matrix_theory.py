"""Deep matrix factorisation: the product operator, its metric and volume (SPEC C.1-C.12).

Factors are ordered ``(W_1, ..., W_N)`` with ``W_j`` of shape ``(d_j, d_{j-1})``; the product is
``W = W_N ... W_1`` of shape ``(d_y, d_x)``. All functions are pure and work in float64.

Numerical rank. A singular value below ``max(d_y, d_x) * eps * sigma_max`` (numpy's
``matrix_rank`` tolerance) is treated as zero, and so is an eigenvalue of ``W W^T`` or ``W^T W``
below ``max(d_y, d_x) * eps * ||W||_2^2``: ``eigh`` cannot resolve smaller ones, and their
fractional powers (``(1e-16)^(1/7) ~ 5e-3``) would otherwise pollute ``A_W`` of a rank-deficient ``W``.
"""

from __future__ import annotations

from functools import reduce
from numbers import Integral, Real

import numpy as np
from scipy import integrate

from .errors import InvalidParameterError, InvalidProblemError
from ._validation import as_finite_array, check_depth as _check_depth

# ---------------------------------------------------------------------------------------------
# validation and small helpers


def _check_like(Z, W: np.ndarray, name: str) -> np.ndarray:
    Z = as_finite_array(Z, name, 2)
    if Z.shape != W.shape:
        raise InvalidProblemError(f"{name} must have the shape of W, {W.shape}; got shape {Z.shape}.")
    return Z


def _rtol(W: np.ndarray) -> float:
    return max(W.shape) * np.finfo(np.float64).eps


def numerical_rank(W) -> int:
    """Number of singular values above ``max(d_y, d_x) * eps * sigma_max``."""
    W = as_finite_array(W, "W", 2)
    s = np.linalg.svd(W, compute_uv=False)
    return int(np.sum(s > _rtol(W) * s[0])) if s.size and s[0] > 0 else 0


def _check_rank(rank, W: np.ndarray) -> int:
    if rank is None:
        return numerical_rank(W)
    top = min(W.shape)
    if not isinstance(rank, Integral) or isinstance(rank, bool) or not (0 <= rank <= top):
        raise InvalidParameterError(f"The 'rank' parameter must be an int in the range [0, {top}]. Got {rank!r}.")
    return int(rank)


def _full_svd(W: np.ndarray, rank: int | None = None):
    """Full SVD ``W = U diag V^T`` with singular values padded by zeros to length ``d_y`` (rows) and ``d_x`` (cols).

    Singular values past ``rank`` (default: the numerical rank) are set to exactly zero.
    """
    k = _check_rank(rank, W)
    U, s, Vt = np.linalg.svd(W)
    s = np.where(np.arange(s.size) < k, s, 0.0)
    s_rows = np.zeros(W.shape[0])
    s_cols = np.zeros(W.shape[1])
    s_rows[: s.size] = s
    s_cols[: s.size] = s
    return U, s_rows, s_cols, Vt.T, k


def _psd_power(S: np.ndarray, p: float, floor: float) -> np.ndarray:
    """``S^p`` for a symmetric PSD ``S`` via ``eigh``; eigenvalues ``<= floor`` become 0; ``p = 0`` is the identity."""
    if p == 0:
        return np.eye(S.shape[0])
    lam, Q = np.linalg.eigh(S)
    lam = np.where(lam > floor, lam, 0.0)
    return (Q * lam**p) @ Q.T


def factor_product(factors) -> np.ndarray:
    """``W_N ... W_1`` for ``factors = (W_1, ..., W_N)``."""
    factors = _check_factors(factors)
    return reduce(lambda acc, Wj: Wj @ acc, factors[1:], factors[0])


def _check_factors(factors) -> list[np.ndarray]:
    try:
        mats = [as_finite_array(Wj, f"factors[{j}]", 2) for j, Wj in enumerate(factors)]
    except TypeError as exc:
        raise InvalidProblemError(f"factors must be a sequence of 2-d arrays (W_1, ..., W_N); got {factors!r}.") from exc
    if not mats:
        raise InvalidProblemError("factors is empty; pass at least one factor W_1.")
    for j in range(len(mats) - 1):
        if mats[j + 1].shape[1] != mats[j].shape[0]:
            raise InvalidProblemError(
                f"factors[{j + 1}] has {mats[j + 1].shape[1]} columns but factors[{j}] has {mats[j].shape[0]} rows;"
                " W_{j+1} must be d_{j+1} x d_j."
            )
    return mats


# ---------------------------------------------------------------------------------------------
# gradients and balancedness (C.1-C.3)


def factor_gradients(factors, grad_W) -> tuple[np.ndarray, ...]:
    """``grad_{W_j} L^N = (W_N...W_{j+1})^T grad_W (W_{j-1}...W_1)^T`` for every ``j`` (SPEC C.1).

    ``grad_W`` is the gradient of the end-to-end loss at ``W = W_N...W_1``; empty products are identities.
    """
    mats = _check_factors(factors)
    d_y, d_x = mats[-1].shape[0], mats[0].shape[1]
    G = as_finite_array(grad_W, "grad_W", 2)
    if G.shape != (d_y, d_x):
        raise InvalidProblemError(f"grad_W must have the product's shape {(d_y, d_x)}; got shape {G.shape}.")
    return chain_gradients(mats, G, partial_products(mats))


def partial_products(mats) -> list[np.ndarray]:
    """``[W_1, W_2 W_1, ..., W_N ... W_1]`` for validated factors (no checks: the inner loop of GD and flows)."""
    out = [mats[0]]
    for Wj in mats[1:]:
        out.append(Wj @ out[-1])
    return out


def chain_gradients(mats, G: np.ndarray, below: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The factor gradients (C.1) from ``below = partial_products(mats)``, top down: ``T_N = G``,
    ``grad_j = T_j (W_{j-1}...W_1)^T``, ``T_{j-1} = W_j^T T_j``; two products per factor, no identities."""
    N = len(mats)
    grads = [None] * N
    T = G
    for j in range(N - 1, -1, -1):
        grads[j] = T if j == 0 else T @ below[j - 1].T
        if j:
            T = mats[j].T @ T
    return tuple(grads)


def balancedness_defect(factors) -> float:
    """``max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F / max_j ||W_j||_F^2`` (SPEC C.3); 0 for one factor or all zero."""
    mats = _check_factors(factors)
    defect = max((np.linalg.norm(B.T @ B - A @ A.T) for A, B in zip(mats, mats[1:])), default=0.0)
    scale = max(np.linalg.norm(Wj) ** 2 for Wj in mats)
    return float(defect / scale) if scale > 0 else 0.0


def balanced_factors(W0, depth: int, widths=None, *, seed: int | None = None) -> tuple[np.ndarray, ...]:
    """Balanced ``(W_1, ..., W_N)`` with ``W_N...W_1 = W0``: ``W_j = Q_j diag(s)^{1/N} Q_{j-1}^T`` (SPEC C.12 (ii)).

    ``Q_N = U_k``, ``Q_0 = V_k`` from the SVD of ``W0`` (``k`` its numerical rank). ``widths`` are the
    hidden widths ``(d_1, ..., d_{N-1})``, default ``min(d_y, d_x)`` each, and must be ``>= k``. The
    hidden ``Q_j`` are the first ``k`` identity columns, or Haar-random when ``seed`` is given.
    """
    W0 = as_finite_array(W0, "W0", 2)
    N = _check_depth(depth)
    d_y, d_x = W0.shape
    if widths is None:
        widths = (min(d_y, d_x),) * (N - 1)
    widths = tuple(widths)
    if len(widths) != N - 1 or not all(isinstance(d, Integral) and not isinstance(d, bool) and d >= 1 for d in widths):
        raise InvalidParameterError(
            f"The 'widths' parameter must be {N - 1} positive ints (d_1, ..., d_{{N-1}}). Got {widths!r}."
        )
    U, s_rows, _, V, k = _full_svd(W0)
    if k > min(widths, default=k):
        raise InvalidParameterError(
            f"The 'widths' parameter must have every width >= rank(W0) = {k}. Got {widths!r}."
        )
    rng = None if seed is None else np.random.default_rng(seed)

    def hidden(d: int) -> np.ndarray:
        if rng is None:
            return np.eye(d, k)
        return np.linalg.qr(rng.standard_normal((d, k)))[0] if k else np.zeros((d, 0))

    Q = [V[:, :k]] + [hidden(int(d)) for d in widths] + [U[:, :k]]
    root = s_rows[:k] ** (1.0 / N)
    return tuple((Q[j] * root) @ Q[j - 1].T for j in range(1, N + 1))


def scaled_identity_factors(d: int, depth: int, alpha: float) -> tuple[np.ndarray, ...]:
    """``W_j(0) = alpha I_d`` for ``j = 1..N``: balanced, product ``alpha^N I_d`` (SPEC C.12 (i))."""
    if not isinstance(d, Integral) or isinstance(d, bool) or d < 1:
        raise InvalidParameterError(f"The 'd' parameter must be an int >= 1. Got {d!r}.")
    N = _check_depth(depth)
    if not isinstance(alpha, Real) or isinstance(alpha, bool) or not (0.0 < alpha < np.inf):
        raise InvalidParameterError(f"The 'alpha' parameter must be a float in the range (0, inf). Got {alpha!r}.")
    return tuple(float(alpha) * np.eye(int(d)) for _ in range(N))


# ---------------------------------------------------------------------------------------------
# the product operator A_W (C.4-C.6) and the tangent space


def product_operator(W, depth: int, Z) -> np.ndarray:
    """``A_W(Z) = sum_{j=1}^N (W W^T)^{(N-j)/N} Z (W^T W)^{(j-1)/N}`` via ``eigh`` powers (SPEC C.4)."""
    W = as_finite_array(W, "W", 2)
    N = _check_depth(depth)
    Z = _check_like(Z, W, "Z")
    floor = _rtol(W) * np.linalg.norm(W, 2) ** 2
    left, right = W @ W.T, W.T @ W
    return sum(_psd_power(left, (N - j) / N, floor) @ Z @ _psd_power(right, (j - 1) / N, floor) for j in range(1, N + 1))


def _lambda(a: np.ndarray, b: np.ndarray, N: int) -> np.ndarray:
    """``lambda = (a - b) / (a^{1/N} - b^{1/N})`` for ``a, b = sigma^2`` (SPEC C.6).

    Evaluated as the equal closed form ``sum_{k=0}^{N-1} a^{k/N} b^{(N-1-k)/N}`` (the quotient
    ``x^N - y^N = (x - y) sum x^k y^{N-1-k}``), free of cancellation when ``a ~ b``; it gives
    ``N sigma^{2-2/N}`` when ``a = b`` and 0 exactly when ``a = b = 0``.
    """
    x, y = a ** (1.0 / N), b ** (1.0 / N)
    return sum(x**k * y ** (N - 1 - k) for k in range(N))


def product_eigenvalues(W, depth: int, rank: int | None = None):
    """``(U, lam, V)`` with ``A_W(u_i v_j^T) = lam[i, j] u_i v_j^T`` for the full SVD ``W = U S V^T`` (SPEC C.6)."""
    W = as_finite_array(W, "W", 2)
    N = _check_depth(depth)
    U, s_rows, s_cols, V, _ = _full_svd(W, rank)
    return U, _lambda(s_rows[:, None] ** 2, s_cols[None, :] ** 2, N), V


def product_operator_spectral(W, depth: int, Z, rank: int | None = None) -> np.ndarray:
    """``A_W(Z) = U (lam * (U^T Z V)) V^T`` with ``lam_ij`` of SPEC (C.6).

    ``rank``: singular values past it are taken as exactly 0 (default: the numerical rank), so
    that ``A_W`` is that of the rank-``rank`` manifold ``M_k`` on which the flow stays (C.9).
    """
    W = as_finite_array(W, "W", 2)
    Z = _check_like(Z, W, "Z")
    U, lam, V = product_eigenvalues(W, depth, rank)
    return U @ (lam * (U.T @ Z @ V)) @ V.T


def tangent_projection(W, Z, rank: int | None = None) -> np.ndarray:
    """Orthogonal projection onto ``T_W M_k = {W A + B W}``: ``P_U Z + Z P_V - P_U Z P_V`` (Theorem C.1).

    ``k = rank`` (default: numerical rank); ``U_k``, ``V_k`` are the top ``k`` singular vectors.
    """
    W = as_finite_array(W, "W", 2)
    Z = _check_like(Z, W, "Z")
    U, _, _, V, k = _full_svd(W, rank)
    Uk, Vk = U[:, :k], V[:, :k]
    UZ = Uk.T @ Z
    return Uk @ UZ + (Z @ Vk) @ Vk.T - Uk @ (UZ @ Vk) @ Vk.T


# ---------------------------------------------------------------------------------------------
# the Riemannian metric (C.7-C.9)


def riemannian_metric(W, depth: int, Z1, Z2, rank: int | None = None) -> float:
    """``g_W(Z1, Z2) = sum_{lam_ij > 0} (U^T Z1 V)_ij (U^T Z2 V)_ij / lam_ij`` (SPEC C.7).

    The sum skips the ``(perp, perp)`` block, so this is ``g_W(P_T Z1, P_T Z2)`` for any ``Z1, Z2``.
    """
    W = as_finite_array(W, "W", 2)
    Z1, Z2 = _check_like(Z1, W, "Z1"), _check_like(Z2, W, "Z2")
    U, lam, V = product_eigenvalues(W, depth, rank)
    X = (U.T @ Z1 @ V) * (U.T @ Z2 @ V)
    keep = lam > 0
    return float(np.sum(X[keep] / lam[keep]))


def _resolvent_integral(a: float, b: float, N: int) -> float:
    """``int_0^inf t^{1/N} / ((t + a)(t + b)) dt`` by quadrature, for ``a, b >= 0`` not both 0.

    Scaled by ``c = max(a, b)`` (the integral is ``c^{1/N - 1}`` times that of ``(a/c, b/c)``) and
    substituted ``t = s^N``: the integrand ``N s^N / ((s^N + a)(s^N + b))`` is smooth at 0, decays
    like ``s^{-N}``, and is integrated on ``[0, m^{1/N}], [m^{1/N}, 1], [1, inf)`` with ``m = min/c``.
    """
    c = max(a, b)
    lo = min(a, b) / c
    f = lambda s: N * s**N / ((s**N + lo) * (s**N + 1.0))  # noqa: E731
    knot = lo ** (1.0 / N)
    pieces = [(0.0, knot), (knot, 1.0)] if 0.0 < knot < 1.0 else [(0.0, 1.0)]
    total = sum(integrate.quad(f, p, q, epsabs=0.0, epsrel=1e-13, limit=200)[0] for p, q in pieces if q > p)
    total += integrate.quad(f, 1.0, np.inf, epsabs=0.0, epsrel=1e-13, limit=200)[0]
    return c ** (1.0 / N - 1.0) * total


def riemannian_metric_integral(W, depth: int, Z1, Z2, rank: int | None = None) -> float:
    """``g_W(Z1, Z2)`` by quadrature of the integral representation (SPEC C.8).

    In the SVD basis the integrand is ``sum_ij X1_ij X2_ij / ((t + s_i^2)(t + s_j^2))`` with
    ``X = U^T Z V``; each distinct ``(s_i, s_j)`` pair is integrated once. The ``(perp, perp)``
    block is not integrable and is dropped (it is zero for tangent ``Z``), as SPEC says.
    """
    W = as_finite_array(W, "W", 2)
    N = _check_depth(depth)
    Z1, Z2 = _check_like(Z1, W, "Z1"), _check_like(Z2, W, "Z2")
    U, s_rows, s_cols, V, _ = _full_svd(W, rank)
    X = (U.T @ Z1 @ V) * (U.T @ Z2 @ V)
    a, b = s_rows**2, s_cols**2
    cache: dict[tuple[float, float], float] = {}
    total = 0.0
    for i in range(a.size):
        for j in range(b.size):
            if a[i] == 0.0 and b[j] == 0.0:
                continue
            key = (a[i], b[j]) if a[i] >= b[j] else (b[j], a[i])
            if key not in cache:
                cache[key] = _resolvent_integral(key[0], key[1], N)
            total += X[i, j] * cache[key]
    return float(np.sin(np.pi / N) / np.pi * total)


# ---------------------------------------------------------------------------------------------
# volume (C.10-C.11) and spectral summaries


def _square_full_rank_sigma(W) -> np.ndarray:
    W = as_finite_array(W, "W", 2)
    if W.shape[0] != W.shape[1]:
        raise InvalidProblemError(f"W must be square for the volume form (SPEC C.10); got shape {W.shape}.")
    s = np.linalg.svd(W, compute_uv=False)
    if s[-1] <= _rtol(W) * s[0]:
        raise InvalidProblemError(
            f"W is singular (sigma_min/sigma_max = {s[-1] / s[0] if s[0] else 0.0:.1e}); the volume form needs"
            " full rank (v(W) -> inf as sigma_min -> 0)."
        )
    return s


def sqrt_det_metric(W, depth: int) -> float:
    """``sqrt(det g_W) = N^{-n/2} det(S^2)^{(1-N)/(2N)} prod_{i<j} (s_i^{2/N} - s_j^{2/N}) / (s_i^2 - s_j^2)`` (SPEC C.10).

    Square full-rank ``W`` only; each quotient is ``1 / lam_ij`` of (C.6), so coinciding singular
    values are fine. Evaluated in log space.
    """
    N = _check_depth(depth)
    s = _square_full_rank_sigma(W)
    n = s.size
    iu = np.triu_indices(n, 1)
    a = s**2
    log_pairs = -np.log(_lambda(a[:, None], a[None, :], N)[iu])
    log_val = -0.5 * n * np.log(N) + (1 - N) / (2 * N) * np.sum(np.log(a)) + np.sum(log_pairs)
    return float(np.exp(log_val))


def log_volume(W, depth: int) -> float:
    """``log v(W) = n(n-1)/2 log N + (1-N)/N sum_i log s_i + sum_{i<j} log(s_i^{2/N} - s_j^{2/N})`` (SPEC C.11).

    Square full-rank ``W`` only; ``-inf`` when two singular values coincide (``v = 0``).
    """
    N = _check_depth(depth)
    s = _square_full_rank_sigma(W)  # descending
    n = s.size
    r = s ** (2.0 / N)
    gaps = (r[:, None] - r[None, :])[np.triu_indices(n, 1)]
    if np.any(gaps <= 0):
        return float("-inf")
    return float(0.5 * n * (n - 1) * np.log(N) + (1 - N) / N * np.sum(np.log(s)) + np.sum(np.log(gaps)))


def effective_rank(W) -> float:
    """Roy-Vetterli effective rank ``exp(H(p))``, ``p = sigma / ||sigma||_1``, ``H`` the Shannon entropy (nats).

    Lies in ``[1, rank W]``; equals ``k`` for ``k`` equal non-zero singular values.
    """
    W = as_finite_array(W, "W", 2)
    s = np.linalg.svd(W, compute_uv=False)
    if s.size == 0 or s[0] == 0.0:
        raise InvalidProblemError("W is zero; its effective rank is undefined.")
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def schatten_quasi_norm(W, p: float) -> float:
    """Schatten ``p`` (quasi-)norm ``(sum_i sigma_i^p)^{1/p}``, ``p`` in ``(0, inf]`` (a quasi-norm for ``p < 1``)."""
    W = as_finite_array(W, "W", 2)
    if not isinstance(p, Real) or isinstance(p, bool) or not (p > 0):
        raise InvalidParameterError(f"The 'p' parameter must be a float in the range (0, inf]. Got {p!r}.")
    s = np.linalg.svd(W, compute_uv=False)
    if s.size == 0 or s[0] == 0.0:
        return 0.0
    if np.isinf(p):
        return float(s[0])
    # scale by s_max so that s^p neither over- nor underflows
    return float(s[0] * np.sum((s / s[0]) ** p) ** (1.0 / p))
