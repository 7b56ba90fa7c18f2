"""Exact predicted limits of gradient flow: Bregman projections solved in the dual (SPEC A.1, A.4, A.6).

The limit of the flow from ``z0`` is ``argmin {D_F(z, z0) : Bz = y, z >= 0}``. Its dual is the
smooth convex ``m``-dimensional problem ``min_λ D(λ) = F*(φ0 - B^T λ) + ⟨y, λ⟩`` (see
:mod:`implicit_bias.mirror`); the primal solution is ``z = (∇F)^{-1}(φ0 - B^T λ*)``.
It is solved by damped Newton on ``D``: the Hessian is ``B H(z)^{-1} B^T = A diag(w) A^T`` with
per-column weights ``w = N z^(2-2/N)`` (summed over the two halves of ``z`` for the signed model,
SPEC A.4), solved by :class:`~implicit_bias.dual_linalg.NewtonMatrix` for a dense ``A`` and, for an
operator ``A`` (a ``scipy.sparse`` matrix or the DCT of :mod:`implicit_bias.sensing`), matrix-free by
the projected conjugate gradients of :class:`~implicit_bias.krylov.KrylovNewton` (no ``m x m`` matrix). Each step changes ``log z``
by at most a trust radius (the flow escapes from ``alpha^N`` over many orders of magnitude), and
Armijo backtracking on ``D`` guards descent. The mirror state ``φ`` is updated per coordinate,
never recomputed as ``φ0 - B^T λ``, so that coordinates far from ``φ0`` keep their relative precision.

``converged`` means that both stated tolerances held at the returned ``z``: the relative residual
``||Bz - y|| / ||y|| <= tol`` and the KKT residual (the distance of ``∇F(z) - ∇F(z0)`` from
``range(B^T)``, SPEC A.3 (i), recomputed from ``z``) ``<= kkt_tol``. Otherwise the status is
``stalled`` (no more progress) or ``budget_exhausted`` (``max_iter`` Newton steps), with the
achieved values in the :class:`Limit`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ._arguments import check_limit_arguments
from ._blas import pinned_blas
from ._validation import check_count, is_real, require
from .dual_linalg import NewtonMatrix, range_residual
from .errors import InfeasibleProblemError, SolverError
from .krylov import GramPCG, KrylovNewton
from .mirror import MirrorMap
from .models import Hadamard, Init
from .problems import SparseRecovery
from .sensing import is_matrix_free
from .status import Status

# Default tolerances, from the values the oracle reaches when it polishes to _POLISH or stalls
# (predict_limit at its former fixed target 1e-12, which is the present _POLISH; largest values):
#   every predict_limit call of the test suite (94: n <= 200, N = 2..4, alpha 0.5 .. 1e-12,
#   uniform, general and weight-normalised inits, degenerate problems)   residual 3.0e-12  kkt 1.2e-13
#   gaussian_sparse(n, n/4, n/40), N = 2, 3, 4, alpha = 1e-1 .. 1e-12, positive and signed:
#     n = 200,  seeds 0-2 (126 solves)                                     residual 1.2e-12  kkt 2.3e-14
#     n = 1000, seeds 0-1 (84 solves)                                      residual 9.7e-13  kkt 2.0e-14
#     n = 5000, seed 0, alpha 1e-2 and 1e-12 (12 solves)                   residual 9.0e-13  kkt 9.7e-15
# 5 of these 316 solves stopped by stalling (at 1.2e-12 .. 3.0e-12), the others at _POLISH; none of the
# test-suite, n = 200 and n = 1000 solves needed a steepest-descent step.
# The KKT value is the rounding of ∇F(z) - ∇F(z0): φ stays in φ0 + range(B^T) by construction.
DEFAULT_TOL = 1e-10  # 30x above the largest residual measured: all 316 solves converge
DEFAULT_KKT_TOL = 1e-8  # about 1e5x above the largest KKT residual measured
_POLISH = 1e-12  # Newton continues to this relative residual even under a looser tol (its last steps are cheap)
_STALL_LEVEL = 1e-10  # below max(tol, this), a residual that did not halve in _STALL_STEPS Newton steps has stalled
_STALL_STEPS = 10
_TRUST_LOG = 8.0  # max change of log z per Newton step (z moves by at most a factor e^8 ~ 3000)
_ARMIJO = 1e-4
_HALVINGS = 60  # backtracking steps of the line search


@dataclass(frozen=True, eq=False)
class Limit:
    """The predicted limit and how well it was computed.

    ``status`` is ``converged`` exactly when ``residual <= tol`` and ``kkt <= kkt_tol``.
    ``steepest_steps`` counts the Newton steps that fell back to steepest descent on the dual
    (the Newton direction failed: a non-descent or non-finite direction, or a singular system).
    """

    x: np.ndarray
    z: np.ndarray  # lifted product (u^N, v^N) for the signed model
    status: Status  # converged | stalled | budget_exhausted
    residual: float  # ||Bz - y|| / ||y||
    kkt: float  # relative distance of ∇F(z) - ∇F(z0) from range(B^T), recomputed from z
    tol: float
    kkt_tol: float
    iterations: int
    matvecs: int
    wall_s: float
    steepest_steps: int = 0
    message: str = ""
    dual: np.ndarray = field(default=None, repr=False)


@dataclass(frozen=True)
class _Newton:
    """What the dual Newton run returned: its iterate, why it stopped, and its cost."""

    z: np.ndarray
    lam: np.ndarray
    stop: str  # "target" | "stall" | "line search" | "dual overflow" | "budget"
    iterations: int
    matvecs: int
    steepest_steps: int
    message: str


@pinned_blas
def predict_limit(
    problem: SparseRecovery,
    model: Hadamard,
    init: Init,
    *,
    tol: float = DEFAULT_TOL,
    kkt_tol: float = DEFAULT_KKT_TOL,
    max_iter: int = 500,
) -> Limit:
    """The exact gradient-flow limit of ``model`` on ``problem`` from ``init`` (Theorems A.1, A.4, E.1).

    ``tol`` bounds the relative residual ``||Bz - y|| / ||y||`` and ``kkt_tol`` the relative KKT
    residual of SPEC A.3 (i); both must hold for ``status == "converged"``.
    """
    check_limit_arguments(problem, model, init)
    max_iter = _check_tolerances(tol, kkt_tol, max_iter)
    start = time.perf_counter()
    factors = model.require_identical(init, problem.n, "predict_limit")
    z0 = factors[0] ** model.depth if model.depth > 1 else factors[0].copy()
    B = model.lift(problem.A)
    if model.depth == 1:
        z, lam = _project_affine(B, problem.y, z0)
        run = _Newton(z, lam, "target", 1, 4, 0, "closed form (SPEC E.1)")
    else:
        run = _dual_newton(B, problem.y, z0, model.depth, tol, max_iter)
    residual = float(np.linalg.norm(B.matvec(run.z) - problem.y) / np.linalg.norm(problem.y))
    kkt = range_residual(B, MirrorMap(model.depth), run.z, z0, witness=None if run.lam is None else -run.lam)
    status = _status(residual, kkt, tol, kkt_tol, run.stop)
    message = run.message
    if status != "converged":
        message += f"; {status}: residual {residual:.2e} (tol {tol:.0e}), KKT {kkt:.2e} (kkt_tol {kkt_tol:.0e})"
    return Limit(
        x=model.x_from_z(run.z), z=run.z, status=status, residual=residual, kkt=kkt, tol=tol, kkt_tol=kkt_tol,
        iterations=run.iterations, matvecs=run.matvecs, wall_s=time.perf_counter() - start,
        steepest_steps=run.steepest_steps, message=message, dual=run.lam,
    )


def _check_tolerances(tol, kkt_tol, max_iter) -> int:
    """Typed errors for bad tolerances; ``max_iter`` as an int."""
    for name, value in (("tol", tol), ("kkt_tol", kkt_tol)):
        require(is_real(value) and 0 < value < 1, name, "a float in the range (0, 1)", value)
    return check_count(max_iter, "max_iter")


def _status(residual: float, kkt: float, tol: float, kkt_tol: float, stop: str) -> Status:
    """``converged`` iff both tolerances held; else why the solver stopped short of them."""
    if residual <= tol and kkt <= kkt_tol:
        return "converged"
    return "budget_exhausted" if stop == "budget" else "stalled"


def _project_affine(B, y: np.ndarray, z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z0 + B^+ (y - B z0)``: the limit of the linear model (SPEC E.1); for an operator ``A`` by
    conjugate gradients on ``B B^T λ = y - B z0`` to a relative residual of 1e-13."""
    if is_matrix_free(B.A):
        pcg = GramPCG(B.A, max_columns=0)
        pcg.prepare(np.full(B.n, 2.0 if B.signed else 1.0))  # B B^T = A diag(1 or 2) A^T
        lam = pcg.solve(y - B.matvec(z0), 1e-13, max_iter=10 * B.m)[0]
    else:
        dense = B.dense()
        lam, *_ = np.linalg.lstsq(dense @ dense.T, y - B.matvec(z0), rcond=None)
    z = z0 + B.rmatvec(lam)
    if np.linalg.norm(B.matvec(z) - y) > 1e-8 * np.linalg.norm(y):
        raise InfeasibleProblemError(
            "y is not in the range of A: no exact solution exists, so there is no interpolating limit. "
            "Check the problem (rank of A, noise) or use m <= rank(A)."
        )
    return z, -lam



def _dual_newton(B, y: np.ndarray, z0: np.ndarray, depth: int, tol: float, max_iter: int) -> _Newton:
    """Damped Newton on the dual ``D(λ)`` of SPEC A.1 from ``λ = 0`` (``z = z0``).

    Stops at the relative residual ``min(tol, _POLISH)``; when the residual (below
    ``max(tol, _STALL_LEVEL)``) did not halve in ``_STALL_STEPS`` steps; when the line search
    finds no decrease; or after ``max_iter`` steps.
    """
    mirror = MirrorMap(depth)
    ynorm = float(np.linalg.norm(y))
    target, stall_level = min(tol, _POLISH) * ynorm, max(tol, _STALL_LEVEL) * ynorm
    phi, z, lam = mirror.phi(z0), z0.copy(), np.zeros(B.m)
    r = B.matvec(z) - y
    newton = KrylovNewton(B.A) if is_matrix_free(B.A) else NewtonMatrix(B.A)
    history: list[float] = []
    matvecs, steepest = 1, 0
    while True:
        rnorm = float(np.linalg.norm(r))
        stop = _stop_test(rnorm, history, target, stall_level, max_iter)
        if stop:
            break
        history.append(rnorm)
        d, Atd, slope, used = _direction(B, mirror, newton, z, r)
        steepest += used
        matvecs += used
        phi_new, z_new, t, cost = _line_search(B, y, mirror, phi, z, d, Atd, slope, rnorm)
        matvecs += cost
        if phi_new is None:
            stop = "line search"
            break
        phi, z, lam = phi_new, z_new, lam + t * d
        r = B.matvec(z) - y
        matvecs += 1
        if np.max(np.abs(lam)) > 1e300:
            stop = "dual overflow"
            break
    if stop not in ("target", "stall"):
        _raise_if_no_nonnegative_solution(B, y)
    iterations = len(history)
    work = (f"{newton.pcg.iterations} CG iterations (matrix-free)" if isinstance(newton, KrylovNewton)
            else f"{newton.rebuilds} Gram matrices, {newton.updated_columns} column updates")
    message = f"{_STOP_MESSAGES[stop]} after {iterations} Newton steps ({steepest} steepest-descent fallbacks); {work}"
    return _Newton(z, lam, stop, iterations, matvecs + round(newton.matvecs), steepest, message)


_STOP_MESSAGES = {
    "target": "Newton reached its target residual",
    "stall": "Newton stalled (the residual stopped halving)",
    "line search": "the line search failed: the dual made no progress (degenerate or infeasible problem)",
    "dual overflow": "the dual iterate diverged (|λ| > 1e300: the problem looks infeasible)",
    "budget": "Newton stopped at max_iter",
}


def _stop_test(rnorm: float, history: list[float], target: float, stall_level: float, max_iter: int) -> str | None:
    """Why Newton stops at residual ``rnorm`` after the steps whose residuals are ``history``, or None."""
    if rnorm <= target:
        return "target"
    if len(history) >= _STALL_STEPS and rnorm <= stall_level and rnorm > 0.5 * history[-_STALL_STEPS]:
        # The last digits of the residual live in directions where the Hessian is below the
        # rounding level of its largest entries (coordinates near alpha^N); Newton creeps there.
        return "stall"
    if len(history) >= max_iter:
        return "budget"
    return None


def _direction(B, mirror: MirrorMap, newton: NewtonMatrix, z: np.ndarray, r: np.ndarray):
    """``(d, A^T d, r·d, steepest)``: the Newton direction ``H d = r = -∇D`` for ``λ``, or steepest
    descent ``d = r`` (``steepest = 1``) when the Newton system fails or gives no descent even on a
    freshly formed Newton matrix (an updated one can lose the digits a direction needs near the
    optimum: 480 steepest-descent steps at n = 100, m = 90, N = 3 before this retry)."""
    h = mirror.dz_dphi(z)
    w = h[: B.n] + h[B.n :] if B.signed else h
    if np.max(w) > 0 and np.all(np.isfinite(w)):
        for attempt in range(2):
            if attempt:
                if newton.fresh:
                    break  # already fresh: retrying would give the same direction
                newton.forget()
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    newton.prepare(w)
                    d, Atd = newton.solve(r)
            except (SolverError, np.linalg.LinAlgError, ValueError):
                continue  # a diverging dual (no solution)
            slope = float(r @ d)
            if np.isfinite(slope) and slope > 0 and np.all(np.isfinite(Atd)):
                return d, Atd, slope, 0
    return r, B.A.T @ r, float(r @ r), 1


def _line_search(B, y, mirror: MirrorMap, phi, z, d, Atd, slope: float, rnorm: float):
    """``(φ_new, z_new, t, matvecs)`` of the first ``t = t_max 2^-k`` with sufficient decrease, or
    ``(None, None, 0, matvecs)``. ``t_max`` keeps ``log z`` within the trust radius; the merit is
    ``D`` (Armijo) or, where the decrease of ``D`` is below its rounding, ``||r||``."""
    delta = np.concatenate([-Atd, Atd]) if B.signed else -Atd  # φ moves by t·delta = -t B^T d
    t = mirror.log_scale_limit(phi, delta, _TRUST_LOG, z)
    matvecs = 0
    for _ in range(_HALVINGS):
        phi_new = phi + t * delta
        if mirror.in_domain(phi_new):
            z_new = mirror.z(phi_new)
            # D(new) - D(old), summed per coordinate to avoid cancellation
            decrease = float(np.sum(mirror.conjugate_terms(z_new) - mirror.conjugate_terms(z)) + t * (y @ d))
            if np.isfinite(decrease) and decrease <= -_ARMIJO * t * slope:
                return phi_new, z_new, t, matvecs
            # Near the optimum the decrease of D drops below its rounding error (it is
            # quadratic in the residual): there, a sufficient decrease of ||r|| is the merit.
            matvecs += 1
            if np.linalg.norm(B.matvec(z_new) - y) <= (1 - _ARMIJO * t) * rnorm:
                return phi_new, z_new, t, matvecs
        t *= 0.5
    return None, None, 0.0, matvecs


def _raise_if_no_nonnegative_solution(B, y) -> None:
    """:class:`InfeasibleProblemError` when HiGHS finds no ``z >= 0`` with ``Bz = y`` (dense or sparse ``A``;
    a DCT operator is not checked: its LP is as large as the problem)."""
    import scipy.sparse
    from scipy.optimize import linprog

    if scipy.sparse.issparse(B.A):
        dense = scipy.sparse.hstack([B.A, -B.A]).tocsr() if B.signed else B.A
    elif is_matrix_free(B.A):
        return
    else:
        dense = B.dense()
    result = linprog(np.zeros(dense.shape[1]), A_eq=dense, b_eq=y, bounds=(0, None), method="highs")
    if result.status == 2:
        hint = " Use the signed model (--signed)." if not B.signed else ""
        raise InfeasibleProblemError(
            "the problem has no nonnegative solution z >= 0 with Bz = y, so the positive flow cannot interpolate."
            + hint
        )




@dataclass(frozen=True, eq=False)
class WNLimit:
    """The weight-normalised limit predicted by (B.8) from the effective init ``rho^{-N} z(0)``.

    ``status`` is ``underflow`` when ``rho^{-N} z(0)`` leaves float64 (no limit computed), else
    that of the inner :class:`Limit`, whose residual and KKT values it repeats.
    """

    limit: Limit | None  # None when rho^{-N} z(0) underflows float64
    log_rho: float
    effective_scale: float  # rho^{-N} (0.0 on underflow)
    status: Status  # converged | stalled | budget_exhausted | underflow
    message: str = ""

    @property
    def x(self):
        return None if self.limit is None else self.limit.x

    @property
    def residual(self) -> float:
        return float("nan") if self.limit is None else self.limit.residual

    @property
    def kkt(self) -> float:
        return float("nan") if self.limit is None else self.limit.kkt


@pinned_blas
def predict_limit_weight_norm(problem: SparseRecovery, model, init, r_inf: float, *, tol: float = DEFAULT_TOL,
                              kkt_tol: float = DEFAULT_KKT_TOL, max_iter: int = 500) -> WNLimit:
    """The gradient-flow limit of ``WeightNormalized`` from ``init`` (Theorem B.1, SPEC B.7-B.8).

    ``r_inf`` is the run's final radius (``||w_∞||``): ``rho`` depends on it through (B.7), so the
    oracle needs it from a simulation (it cannot be predicted from the problem alone). The limit
    is the Bregman projection of :func:`predict_limit` from ``rho^{-N} z(0)``. When that underflows
    float64 (``rho^{-N} min z(0) < 1e-290``) the status is ``"underflow"`` and no limit is given.
    """
    from .theory import log_magnification_factor

    _check_tolerances(tol, kkt_tol, max_iter)
    z0 = model.initial_product(init, problem.n)
    log_rho = log_magnification_factor(model.as_init(init).r0, r_inf, model.eta_r)
    log_c = -model.depth * log_rho
    if log_c + np.log(np.min(z0)) < np.log(1e-290):
        return WNLimit(None, log_rho, float(np.exp(log_c)), "underflow",
                       f"rho^-N = exp({log_c:.4g}): the effective initialisation underflows float64; "
                       "the limit is then numerically the l1 minimiser of S_+ (SPEC B.9 with rho -> inf)")
    z_eff = np.exp(log_c + np.log(z0))
    base = Hadamard(model.depth, model.signed)
    limit = predict_limit(problem, base, Init.general(z_eff), tol=tol, kkt_tol=kkt_tol, max_iter=max_iter)
    return WNLimit(limit, log_rho, float(np.exp(log_c)), limit.status, limit.message)


def fit_effective_scale(B, z_inf: np.ndarray, z0: np.ndarray, depth: int, floor: float = 0.0) -> tuple[float, float]:
    """The scalar ``c*`` with ``∇F(z_∞) - ∇F(c* z0) ∈ range(B^T)`` in least squares (SPEC B, check).

    By homogeneity ``∇F_N(c z0) = ∇F_N(z0) + ½ log c`` (N = 2) or ``c^{2/N-1} ∇F_N(z0)`` (N > 2), so
    ``c*`` solves a least-squares problem in ``(c, μ)``: ``∇F(z_∞) - ∇F(c z0) = B^T μ``. Only the
    coordinates with ``z_∞ > floor`` enter (an integrator resolves coordinates below its absolute
    tolerance only in absolute terms: their logarithms are noise); at least ``m + 2`` must remain.
    Returns ``(log c*, relative residual of that fit)``; compare ``log c*`` with ``-N log rho`` (B.7, B.8).
    """
    mirror = MirrorMap(depth)
    keep = np.isfinite(z_inf) & (z_inf > max(floor, 0.0))
    dense = B.dense()
    if keep.sum() < dense.shape[0] + 2:
        return float("nan"), float("inf")
    Q, _ = np.linalg.qr(dense.T[keep])  # orthonormal basis of the restricted range(B^T)

    def perp(u):
        return u - Q @ (Q.T @ u)

    phi_inf, phi0 = perp(mirror.phi(z_inf[keep])), perp(mirror.phi(z0[keep]))
    if depth == 2:
        ones = perp(np.ones(int(keep.sum())))
        a = float((phi_inf - phi0) @ ones / (ones @ ones))  # a = ½ log c
        rest = phi_inf - phi0 - a * ones
        return 2.0 * a, float(np.linalg.norm(rest) / max(np.linalg.norm(phi_inf - phi0), 1e-300))
    s = float(phi_inf @ phi0 / (phi0 @ phi0))  # s = c^{2/N-1}
    if not s > 0:
        return float("nan"), float("inf")
    rest = phi_inf - s * phi0
    return float(np.log(s) * depth / (2.0 - depth)), float(np.linalg.norm(rest) / max(np.linalg.norm(phi_inf), 1e-300))
