"""The theorems' quantities: l1-excess bounds, weights, curvature and step sizes.

Pure functions of floats and float64 arrays. Equation numbers refer to SPEC.md. A bound whose
hypothesis fails is returned as ``math.inf`` ("the theorem says nothing"), never as an error;
errors are reserved for inputs outside the functions' domain.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from implicit_bias._validation import check_depth as _check_depth
from implicit_bias._validation import float_array
from implicit_bias.errors import InvalidParameterError, InvalidProblemError

__all__ = [
    "beta_constants",
    "epsilon_bound",
    "epsilon_bound_simple",
    "weighted_epsilon_bound",
    "weights_general_init",
    "lambda_max_at",
    "stable_step_size",
    "bound_holds",
    "log_magnification_factor",
    "magnification_factor",
    "wn_beta_constants",
    "wn_epsilon_bound",
    "wn_paper_hypotheses",
]


# ----------------------------------------------------------------------------- validation


def _check_real(name: str, value, *, low: float = 0.0, high: float = math.inf,
                low_closed: bool = False, high_name: str | None = None) -> float:
    """Return ``value`` as a float in (low, high] (or [low, high] if ``low_closed``), or raise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (v >= low if low_closed else v > low) and v <= high and math.isfinite(v)
    if not inside:
        hi = f"{high_name} = {high:g}" if high_name else f"{high:g}"
        interval = f"{'[' if low_closed else '('}{low:g}, {hi}{']' if math.isfinite(high) else ')'}"
        raise InvalidParameterError(
            f"The '{name}' parameter must be a float in the range {interval}. Got {value!r}."
        )
    return v


def _check_vector(name: str, v, *, n: int | None = None, positive: bool = False,
                  nonneg: bool = False) -> np.ndarray:
    v = float_array(v, name, InvalidParameterError)
    if v.ndim != 1 or v.size == 0 or (n is not None and v.shape != (n,)):
        expected = f"(n,) = ({n},)" if n is not None else "(n,) with n >= 1"
        raise InvalidParameterError(
            f"The '{name}' parameter must be a 1-D array of shape {expected}. "
            f"Got an array of shape {v.shape}."
        )
    if not np.all(np.isfinite(v)):
        raise InvalidParameterError(f"The '{name}' parameter must be finite. Got NaN or inf.")
    if positive and not np.all(v > 0):
        raise InvalidParameterError(
            f"The '{name}' parameter must have entries in the range (0, inf). Got min {v.min()!r}."
        )
    if nonneg and not np.all(v >= 0):
        raise InvalidParameterError(
            f"The '{name}' parameter must have entries in the range [0, inf). Got min {v.min()!r}."
        )
    return v


def _check_matrix(A) -> np.ndarray:
    A = float_array(A, "A")
    if A.ndim != 2 or A.size == 0:
        raise InvalidProblemError(
            f"A must be a non-empty 2-D array of shape (m, n). Got an array of shape {A.shape}."
        )
    if not np.all(np.isfinite(A)):
        raise InvalidProblemError("A must be finite; got NaN or inf entries.")
    return A


# ----------------------------------------------------------------------------- l1 bounds


def beta_constants(x0_product) -> tuple[float, float]:
    """Return (beta_1, beta_min) = (||x0||_1, min_k x0_k) of a positive init (SPEC C2, A.19).

    Under (C2), x0 = alpha^N 1 gives (n alpha^N, alpha^N). For the signed model pass the
    concatenation (u0^N, v0^N) of length 2n; this gives (2n alpha^N, alpha^N) as in (A.19).
    """
    x0 = _check_vector("x0_product", x0_product, positive=True)
    return float(np.sum(x0)), float(np.min(x0))


def epsilon_bound(depth: int, beta_1: float, beta_min: float, Q: float) -> float:
    """Return epsilon of Theorem A.2 (SPEC A.15): ||x_inf||_1 - Q <= epsilon Q.

    N = 2: log(beta_1/beta_min) / log(Q/beta_1);
    N > 2: (N/2) (beta_1^{1-2/N} - beta_min^{1-2/N}) / (Q^{1-2/N} - beta_1^{1-2/N}).
    Q is Q_+ for the positive model and Q for the signed one (A.19). Returns ``math.inf`` when
    the hypothesis beta_1 < Q fails: the theorem then gives no bound. For N > 2 the bound is
    proved for uniform initialisation only (SPEC §A.5); use :func:`weighted_epsilon_bound`
    otherwise.
    """
    N = _check_depth(depth)
    beta_1 = _check_real("beta_1", beta_1)
    beta_min = _check_real("beta_min", beta_min, high=beta_1, high_name="beta_1")
    Q = _check_real("Q", Q, low_closed=True)
    if not beta_1 < Q:
        return math.inf
    if N == 2:
        return math.log(beta_1 / beta_min) / math.log(Q / beta_1)
    p = 1.0 - 2.0 / N
    return 0.5 * N * (beta_1**p - beta_min**p) / (Q**p - beta_1**p)


def epsilon_bound_simple(depth: int, beta_1: float, Q: float) -> float:
    """Return the simplified bound N (beta_1/Q)^{1-2/N} of (SPEC A.16), which dominates (A.15).

    Valid only for N > 2 and beta_1^{1-2/N} <= Q^{1-2/N} / 2; returns ``math.inf`` otherwise
    (including N = 2, where (A.16) is not stated).
    """
    N = _check_depth(depth)
    beta_1 = _check_real("beta_1", beta_1)
    Q = _check_real("Q", Q, low_closed=True)
    p = 1.0 - 2.0 / N
    if N == 2 or not beta_1**p <= 0.5 * Q**p:
        return math.inf
    return N * (beta_1 / Q) ** p


def weights_general_init(depth: int, x0) -> np.ndarray:
    """Return the weights h of the small-scale limit from a positive initialisation x0 (SPEC A.17).

    h = x0^{2/N-1} for N > 2 and h = log(1/x0) for N = 2, which needs x0 < 1 (entrywise) so
    that h > 0. The limit is then close to the minimiser of sum_k h_k z_k over S_+.
    """
    N = _check_depth(depth)
    x0 = _check_vector("x0", x0, positive=True)
    if N > 2:
        return x0 ** (2.0 / N - 1.0)
    if not np.all(x0 < 1.0):
        raise InvalidParameterError(
            "The 'x0' parameter must have entries in the range (0, 1) for depth 2, where the "
            f"weights are log(1/x0) (SPEC A.17). Got max {x0.max()!r}."
        )
    return -np.log(x0)


def weighted_epsilon_bound(depth: int, x0, Q_h: float) -> float:
    """Return epsilon_h of Theorem A.3 (SPEC A.18): ||x_inf||_h <= (1 + epsilon_h) Q_h, N > 2.

    h = x0^{2/N-1} (A.17), Q_h = min_{S_+} ||z||_h (e.g. the optimal value of
    ``min_weighted_l1(A, y, weights_general_init(depth, x0), nonneg=True)``),
    B_1 = sum_k x0_k^{2/N} = ||x0||_h, B_min = min_k x0_k^{2/N}, and
    epsilon_h = (N/2) (B_1^{1-2/N} - B_min^{1-2/N}) / (Q_h^{1-2/N} - B_1^{1-2/N}).
    Returns ``math.inf`` when the hypothesis B_1 < Q_h fails. For uniform x0 it equals (A.15).
    """
    N = _check_depth(
        depth, minimum=3,
        hint=" (Theorem A.3 is for N > 2; for N = 2 use epsilon_bound, which holds for any "
        "positive initialisation)",
    )
    x0 = _check_vector("x0", x0, positive=True)
    Q_h = _check_real("Q_h", Q_h, low_closed=True)
    b = x0 ** (2.0 / N)
    B_1, B_min = float(np.sum(b)), float(np.min(b))
    if not B_1 < Q_h:
        return math.inf
    p = 1.0 - 2.0 / N
    return 0.5 * N * (B_1**p - B_min**p) / (Q_h**p - B_1**p)


def bound_holds(l1_norm: float, Q: float, eps: float, rtol: float = 1e-9) -> bool | None:
    """Return whether ||x||_1 - Q <= eps Q (Theorems A.2, A.4, B.1), or None if eps is inf.

    ``None`` means the theorem's hypothesis failed, so it makes no claim.
    """
    l1_norm = _check_real("l1_norm", l1_norm, low_closed=True)
    Q = _check_real("Q", Q, low_closed=True)
    rtol = _check_real("rtol", rtol, low_closed=True)
    if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and math.isinf(eps) and eps > 0:
        return None
    eps = _check_real("eps", eps, low_closed=True)
    # ||x||_1 and Q come from two different solvers (ODE / Newton limit, HiGHS LP), each accurate
    # to ~1e-10 relative, so a true excess of exactly 0 (or exactly eps Q) can show up as
    # +1e-10 Q. rtol * Q absorbs that rounding; it is far below any eps the theorems produce
    # for sensible initialisations, so it cannot hide a real violation.
    return bool(l1_norm - Q <= eps * Q + rtol * Q)


# ----------------------------------------------------------------------------- step sizes


def lambda_max_at(A, x, depth: int) -> float:
    """Return N ||A diag(x^{1-1/N})||_2^2, the top Hessian eigenvalue of the factor loss (SPEC D.3).

    x is a nonnegative product vector with Ax = y; the loss is that of N identical diagonal
    factors w = x^{1/N}, each a separate variable. Depth 1 gives ||A||_2^2.
    """
    A = _check_matrix(A)
    N = _check_depth(depth, minimum=1)
    x = _check_vector("x", x, n=A.shape[1], nonneg=True)
    return float(N * np.linalg.norm(A * x ** (1.0 - 1.0 / N), 2) ** 2)


def stable_step_size(A, x_target, depth: int, c: float = 0.5) -> float:
    """Return c * 2 / (N ||A||_2^2 ||x_target||_inf^{2-2/N}), the default GD step (SPEC D.3(ii)).

    A heuristic, not a convergence guarantee: N ||A||_2^2 ||x||_inf^{2-2/N} bounds (D.3) from
    above for every interpolant with ||x||_inf <= ||x_target||_inf. Depth 1 gives c * 2 / ||A||_2^2.
    """
    A = _check_matrix(A)
    N = _check_depth(depth, minimum=1)
    x_target = _check_vector("x_target", x_target, n=A.shape[1])
    c = _check_real("c", c)
    norm_A = float(np.linalg.norm(A, 2))
    if norm_A == 0.0:
        raise InvalidProblemError("A must be nonzero to define a step size; got A = 0.")
    if N == 1:
        return 2.0 * c / norm_A**2
    scale = float(np.max(np.abs(x_target)))
    if scale == 0.0:
        raise InvalidParameterError(
            f"The 'x_target' parameter must be nonzero for depth {N} (its max-norm sets the "
            "curvature scale). Got the zero vector."
        )
    return 2.0 * c / (N * norm_A**2 * scale ** (2.0 - 2.0 / N))


def donoho_tanner_rho(delta: float, signed: bool = True) -> float:
    """The asymptotic l1 phase transition rho(delta), rho = s/m, delta = m/n (Donoho-Tanner,
    equivalently the minimax/AMP formula of Donoho-Maleki-Montanari):

    ``rho(delta) = max_z [1 - (k/delta) psi(z)] / [1 + z^2 - k psi(z)]`` with
    ``psi(z) = (1+z^2) Phi(-z) - z phi(z)``, ``k = 2`` for signed and ``1`` for nonnegative signals.
    """
    from scipy.optimize import minimize_scalar
    from scipy.stats import norm

    delta = _check_real("delta", delta, low=0.0, high=1.0)
    kappa = 2.0 if signed else 1.0

    def negative_rho(z: float) -> float:
        psi = (1 + z * z) * norm.cdf(-z) - z * norm.pdf(z)
        return -(1 - kappa / delta * psi) / (1 + z * z - kappa * psi)

    best = minimize_scalar(negative_rho, bounds=(0.0, 12.0), method="bounded", options={"xatol": 1e-12})
    return float(min(1.0, max(0.0, -best.fun)))


# ----------------------------------------------------------------------------- weight normalisation (SPEC B)


def log_magnification_factor(r0: float, r_inf: float, eta_r: float) -> float:
    """Return ``log rho = log(r0/r_inf) + (r_inf^2 - r0^2) / (2 eta_r)`` (SPEC B.7, corrected).

    The log is returned because ``rho`` overflows float64 already for moderate ``eta_r``.
    """
    r0 = _check_real("r0", r0)
    r_inf = _check_real("r_inf", r_inf)
    eta_r = _check_real("eta_r", eta_r)
    return math.log(r0 / r_inf) + (r_inf**2 - r0**2) / (2.0 * eta_r)


def magnification_factor(r0: float, r_inf: float, eta_r: float) -> float:
    """Return ``rho = (r0/r_inf) exp((r_inf^2 - r0^2)/(2 eta_r))`` (SPEC B.7); ``inf`` on overflow.

    The effective initialisation of the limit (B.8) is ``rho^{-N} x(0)``. (The slide's exponent
    lacks the factor 2; SPEC §B and the tests show that it is wrong.)
    """
    log_rho = log_magnification_factor(r0, r_inf, eta_r)
    return math.exp(log_rho) if log_rho < 709.0 else math.inf


def wn_beta_constants(r0: float, n: int, depth: int) -> tuple[float, float]:
    """Return ``(beta_1, beta_min) = (r0^N n^{1-N/2}, r0^N n^{-N/2})`` (SPEC B.6).

    ``n`` is the lifted width: ``n`` (positive) or ``2n`` (signed, one radius for ``(u, v)``).
    """
    N = _check_depth(depth)
    r0 = _check_real("r0", r0)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise InvalidParameterError(f"The 'n' parameter must be an int >= 1. Got {n!r}.")
    return r0**N * float(n) ** (1.0 - N / 2.0), r0**N * float(n) ** (-N / 2.0)


def wn_epsilon_bound(depth: int, beta_1: float, beta_min: float, Q: float, log_rho: float) -> float:
    """Return epsilon of Theorem B.1 (SPEC B.9), the bound (A.15) at the effective init ``rho^{-N} x(0)``.

    N = 2: log(beta_1/beta_min) / log(rho^2 Q/beta_1);
    N > 2: (N/2) (beta_1^p - beta_min^p) / (rho^{N-2} Q^p - beta_1^p), p = 1 - 2/N.
    Computed from ``log_rho`` (see :func:`log_magnification_factor`). Returns ``math.inf`` when the
    hypothesis ``rho^{-N} beta_1 < Q`` fails.
    """
    N = _check_depth(depth)
    beta_1 = _check_real("beta_1", beta_1)
    beta_min = _check_real("beta_min", beta_min, high=beta_1, high_name="beta_1")
    Q = _check_real("Q", Q, low_closed=True)
    log_rho = _check_real("log_rho", log_rho, low=-math.inf)
    if Q == 0 or not math.log(beta_1) - N * log_rho < math.log(Q):
        return math.inf
    if N == 2:
        return math.log(beta_1 / beta_min) / (2.0 * log_rho + math.log(Q) - math.log(beta_1))
    p = 1.0 - 2.0 / N
    shrink = math.exp(-(N - 2) * log_rho) if -(N - 2) * log_rho < 709.0 else math.inf
    return 0.5 * N * shrink * (beta_1**p - beta_min**p) / (Q**p - shrink * beta_1**p)


def wn_paper_hypotheses(depth: int, beta_1: float, Q: float, A) -> dict:
    """The hypotheses under which the slide/paper states Theorem B.1 (SPEC §B), reported separately.

    ``c_N beta_1 < Q`` with ``c_2 = 1``, ``c_N = (N/2)^{N/(N-2)}``; and the kernel condition
    ``exists v > 0 with A v = 0`` (checked by the LP ``A v = 0, v >= 1``; for the signed model pass
    ``[A, -A]``, for which ``v = 1`` always works). SPEC derives (B.8)/(B.9) without them.
    """
    from scipy.optimize import linprog

    N = _check_depth(depth)
    beta_1 = _check_real("beta_1", beta_1)
    Q = _check_real("Q", Q, low_closed=True)
    A = _check_matrix(A)
    c_N = 1.0 if N == 2 else (N / 2.0) ** (N / (N - 2.0))
    lp = linprog(np.zeros(A.shape[1]), A_eq=A, b_eq=np.zeros(A.shape[0]), bounds=(1.0, None), method="highs")
    scale_ok = bool(c_N * beta_1 < Q)
    kernel_ok = bool(lp.status == 0)
    return {"c_N": c_N, "c_N_beta_1_lt_Q": scale_ok, "kernel_positive_vector": kernel_ok,
            "paper_hypotheses_hold": scale_ok and kernel_ok}
