"""Convex programs that a gradient-flow limit is compared with.

Every function takes float64 numpy arrays (or, for the matrix references, a
:class:`~implicit_bias.problems.MatrixRecovery`) and returns numpy arrays or floats. The linear
programs go to HiGHS through :func:`scipy.optimize.linprog`; the smooth Bregman projection goes
to Clarabel and the nuclear-norm program to SCS through cvxpy, which is imported lazily (only
when those functions are called).

Equation numbers refer to SPEC.md.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from implicit_bias._validation import check_depth as _check_depth
from implicit_bias._validation import float_array
from implicit_bias.errors import (
    InfeasibleProblemError,
    InvalidParameterError,
    InvalidProblemError,
    SolverError,
)

__all__ = [
    "min_l1",
    "min_weighted_l1",
    "l1_optimum",
    "min_l2",
    "bregman_projection_cvxpy",
    "min_nuclear_norm",
    "min_frobenius",
]

# HiGHS accepts feasibility tolerances down to 1e-10; downstream comparisons are at 1e-6.
_HIGHS_OPTIONS = {
    "primal_feasibility_tolerance": 1e-10,
    "dual_feasibility_tolerance": 1e-10,
    "ipm_optimality_tolerance": 1e-12,
}
# A returned point must satisfy ||Az - y|| <= _FEAS_RTOL * (||A||_F ||z|| + ||y||); this is far
# looser than what HiGHS/Clarabel achieve on sane problems and only catches silent failures.
_FEAS_RTOL = 1e-7


# ----------------------------------------------------------------------------- validation


def _as_system(A, y) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(A, y)`` as float64 arrays of shapes (m, n) and (m,), or raise."""
    A = float_array(A, "A")
    y = float_array(y, "y")
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] == 0:
        raise InvalidProblemError(
            f"A must be a non-empty 2-D array of shape (m, n). Got an array of shape {A.shape}."
        )
    m, _ = A.shape
    if y.shape != (m,):
        raise InvalidProblemError(
            f"y must be a 1-D array of shape (m,) = ({m},) to match A of shape {A.shape}. "
            f"Got an array of shape {y.shape}."
        )
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(y))):
        raise InvalidProblemError("A and y must be finite; got NaN or inf entries.")
    return A, y


def _as_vector(name: str, v, n: int, *, positive: bool) -> np.ndarray:
    """Return ``v`` as a finite float64 vector of shape (n,) (entries > 0 if ``positive``)."""
    v = float_array(v, name, InvalidParameterError)
    if v.shape != (n,):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a 1-D array of shape (n,) = ({n},). "
            f"Got an array of shape {v.shape}."
        )
    if not np.all(np.isfinite(v)):
        raise InvalidParameterError(f"The '{name}' parameter must be finite. Got NaN or inf.")
    if positive and not np.all(v > 0):
        raise InvalidParameterError(
            f"The '{name}' parameter must have entries in the range (0, inf). "
            f"Got min {name} = {v.min()!r}."
        )
    return v


def _check_residual(A: np.ndarray, y: np.ndarray, z: np.ndarray, what: str) -> None:
    res = np.linalg.norm(A @ z - y)
    scale = np.linalg.norm(A) * np.linalg.norm(z) + np.linalg.norm(y)
    if not np.isfinite(res) or res > _FEAS_RTOL * max(scale, 1.0):
        raise SolverError(
            f"{what}: the solver reported success but ||Az - y|| = {res:.3e} "
            f"(relative {res / max(scale, 1e-300):.3e}); the problem is probably badly scaled."
        )


# ----------------------------------------------------------------------------- l1 programs


def _weighted_l1_lp(A, y, h, nonneg: bool) -> tuple[np.ndarray, float]:
    """Solve min sum_k h_k |z_k| s.t. Az = y (z >= 0 if ``nonneg``); return (z, optimum)."""
    from scipy.optimize import linprog

    if not isinstance(nonneg, (bool, np.bool_)):
        raise InvalidParameterError(f"The 'nonneg' parameter must be True or False. Got {nonneg!r}.")
    m, n = A.shape
    if nonneg:
        c, A_eq = h, A
    else:  # z = p - q with p, q >= 0; at the optimum p_k q_k = 0 since h > 0.
        c, A_eq = np.concatenate([h, h]), np.hstack([A, -A])
    res = linprog(c, A_eq=A_eq, b_eq=y, bounds=(0, None), method="highs", options=_HIGHS_OPTIONS)
    if res.status == 2:
        if nonneg:
            raise InfeasibleProblemError(
                "There is no nonnegative z with Az = y (the LP min ||z||_1 s.t. Az = y, z >= 0 "
                "is infeasible), so an unsigned (positive) model cannot interpolate y. "
                "Use the signed model (`signed=True`, CLI `--signed`) instead."
            )
        raise InfeasibleProblemError(
            f"Az = y has no solution: y is not in the range of A (A has shape {A.shape}, "
            f"rank {np.linalg.matrix_rank(A)})."
        )
    if res.status != 0 or res.x is None:
        raise SolverError(
            f"HiGHS failed on the l1 linear program (status {res.status}): {res.message}"
        )
    z = res.x if nonneg else res.x[:n] - res.x[n:]
    _check_residual(A, y, z, "min_l1")
    return z, float(res.fun)


def min_l1(A, y, *, nonneg: bool = False) -> np.ndarray:
    """Return argmin ||z||_1 s.t. Az = y (z >= 0 if ``nonneg``) (SPEC §0: Q, Q_+).

    Solved as a linear program with HiGHS (signed case: z = p - q, p, q >= 0).
    Raises InfeasibleProblemError if no (nonnegative) solution of Az = y exists, SolverError on
    other solver failures. The minimiser need not be unique; HiGHS returns a vertex.
    """
    A, y = _as_system(A, y)
    return _weighted_l1_lp(A, y, np.ones(A.shape[1]), nonneg)[0]


def min_weighted_l1(A, y, h, *, nonneg: bool = False) -> np.ndarray:
    """Return argmin sum_k h_k |z_k| s.t. Az = y (z >= 0 if ``nonneg``), h > 0 (SPEC A.17, A.18).

    With h from :func:`implicit_bias.theory.weights_general_init` this is the small-scale limit of
    gradient flow from a non-uniform positive initialisation (SPEC §A.6), and its optimal value
    is Q_h.
    """
    A, y = _as_system(A, y)
    h = _as_vector("h", h, A.shape[1], positive=True)
    return _weighted_l1_lp(A, y, h, nonneg)[0]


def l1_optimum(A, y, *, nonneg: bool = False) -> float:
    """Return Q = min_{Az=y} ||z||_1, or Q_+ = min_{Az=y, z>=0} ||z||_1 if ``nonneg`` (SPEC §0)."""
    A, y = _as_system(A, y)
    return _weighted_l1_lp(A, y, np.ones(A.shape[1]), nonneg)[1]


# ----------------------------------------------------------------------------- l2


def min_l2(A, y, x0=None) -> np.ndarray:
    """Return x0 + A^+ (y - A x0), the gradient-flow limit of the linear model from x0 (SPEC E.1).

    From x0 = 0 (the default) this is argmin_{Az=y} ||z||_2. If y is not in the range of A the
    same formula gives the least-squares point closest to x0, which is also the flow's limit.
    """
    A, y = _as_system(A, y)
    n = A.shape[1]
    x0 = np.zeros(n) if x0 is None else _as_vector("x0", x0, n, positive=False)
    step, *_ = np.linalg.lstsq(A, y - A @ x0, rcond=None)  # minimum-norm solution = pinv
    return x0 + step


# ----------------------------------------------------------------------------- Bregman


def bregman_projection_cvxpy(A, y, x0, depth: int) -> np.ndarray:
    """Return argmin_{z >= 0, Az = y} D_{F_N}(z, x0), the flow limit of Thm A.1 (SPEC A.13, A.14).

    Objectives (A.14): N = 2: sum kl_div(z, x0) = sum z log(z/x0) - z + x0 (twice D_{F_2});
    N > 2: sum 2 z x0^{2/N-1} - N z^{2/N} (2(N-2) D_{F_N} up to a constant). Solved with cvxpy +
    Clarabel (exponential / power cones) after rescaling z = s zhat, x0 = s x0hat, y = s yhat;
    both objectives are homogeneous in (z, x0), so the minimiser is unchanged. Clarabel's
    status at tight tolerances is erratic, so a cascade of tolerances and scalings is tried and
    the first *optimal* answer is returned (``_BREGMAN_TOLERANCES``, ``_bregman_scales``).
    Observed max-norm error relative to max(z) against an exact dual Newton solve (n <= 60,
    x0 = alpha^N * U[0.5, 2]): <= 1e-6 for x0 >= 1e-6 (typically 1e-9 to 1e-10), but up to
    7e-4 for N = 2 with x0 ~ 1e-8. For very small x0 (SPEC §F.3) use the dual solver in
    ``limits``.

    Raises InvalidParameterError (depth < 2, x0 not positive), InfeasibleProblemError (no
    z >= 0 with Az = y), SolverError (no attempt ended with status optimal).
    """
    import cvxpy as cp

    A, y = _as_system(A, y)
    n = A.shape[1]
    N = _check_depth(depth)
    x0 = _as_vector("x0", x0, n, positive=True)

    statuses = []
    for s in _bregman_scales(A, y, x0, N):
        x0h, yh = x0 / s, y / s
        z = cp.Variable(n, nonneg=True)
        if N == 2:
            objective = cp.sum(cp.kl_div(z, x0h))
        else:
            p = 2.0 / N
            h = x0h ** (p - 1.0)
            # Divide by mean(h) so the linear part has O(1) coefficients (same minimiser).
            c = float(np.mean(h))
            objective = 2.0 * (h / c) @ z - (N / c) * cp.sum(cp.power(z, p, approx=False))
        problem = cp.Problem(cp.Minimize(objective), [A @ z == yh])
        for tol in _BREGMAN_TOLERANCES:
            try:
                with warnings.catch_warnings():
                    # 'Solution may be inaccurate': handled below by trying the next setting.
                    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                    problem.solve(
                        solver=cp.CLARABEL,
                        tol_gap_abs=tol,
                        tol_gap_rel=tol,
                        tol_feas=tol,
                        max_iter=500,
                    )
            except cp.error.SolverError:
                statuses.append(f"solver error (scale {s:.3g}, tol {tol:g})")
                continue
            if problem.status == cp.INFEASIBLE and not _nonneg_feasible(A, y):
                raise InfeasibleProblemError(
                    "There is no nonnegative z with Az = y, so the Bregman projection (SPEC A.14) "
                    "does not exist and an unsigned (positive) model cannot interpolate y. Use the "
                    "signed model (`signed=True`, CLI `--signed`) instead."
                )
            if problem.status == cp.OPTIMAL and z.value is not None:
                result = s * np.maximum(np.asarray(z.value, dtype=np.float64), 0.0)
                _check_residual(A, y, result, "bregman_projection_cvxpy")
                return result
            statuses.append(f"{problem.status} (scale {s:.3g}, tol {tol:g})")
    raise SolverError(
        f"Clarabel did not solve the Bregman projection (depth {N}) to optimality; attempts: "
        + "; ".join(statuses)
        + ". For very small x0 use the dual solver in implicit_bias.limits."
    )


def _nonneg_feasible(A: np.ndarray, y: np.ndarray) -> bool:
    """Whether some z >= 0 has Az = y (HiGHS LP); Clarabel's infeasibility verdicts are not
    trusted on their own: it has called feasible Bregman problems infeasible."""
    try:
        _weighted_l1_lp(A, y, np.ones(A.shape[1]), nonneg=True)
    except InfeasibleProblemError:
        return False
    return True


# Clarabel gap/feasibility tolerances tried in order; the first status 'optimal' wins.
_BREGMAN_TOLERANCES = (1e-12, 1e-10, 1e-8)


def _bregman_scales(A: np.ndarray, y: np.ndarray, x0: np.ndarray, N: int) -> list[float]:
    """Scales s (z = s zhat) to try, best first; chosen by experiment (see the docstring above).

    N = 2 works best with x0hat <= 1 (s = max x0, the log terms stay moderate); N > 2 with an
    O(1) solution (s = mean |A^+ y|). The other one is the fallback.
    """
    s_x0 = float(np.max(x0))
    s_sol = float(np.mean(np.abs(np.linalg.lstsq(A, y, rcond=None)[0])))
    if not s_sol > 0:  # y = 0
        s_sol = s_x0
    return [s_x0, s_sol] if N == 2 else [s_sol, s_x0]


# ----------------------------------------------------------------------------- matrices


def _matrix_problem(problem):
    """Return ``(operator, y)`` of a :class:`MatrixRecovery`-like object, or raise."""
    operator, y = getattr(problem, "operator", None), getattr(problem, "y", None)
    if operator is None or y is None or not all(hasattr(operator, a) for a in ("shape", "m", "apply", "adjoint")):
        raise InvalidProblemError(
            "expected a matrix recovery problem (implicit_bias.problems.MatrixRecovery, e.g. from "
            f"matrix_sensing or matrix_completion); got {type(problem).__name__}."
        )
    return operator, np.asarray(y, dtype=np.float64)


def _operator_matrix(operator) -> np.ndarray:
    """The ``m x (d_y d_x)`` matrix of a measurement map on row-major ``vec(W)``.

    Sensing operators expose their matrices ``A_l`` (one row each); anything else is probed
    with the ``d_y d_x`` unit matrices (one ``apply`` each).
    """
    d_y, d_x = operator.shape
    matrices = getattr(operator, "matrices", None)
    if matrices is not None:
        return np.asarray(matrices, dtype=np.float64).reshape(operator.m, d_y * d_x)
    if hasattr(operator, "index"):
        out = np.zeros((operator.m, d_y * d_x))
        out[np.arange(operator.m), np.ravel_multi_index(operator.index, (d_y, d_x))] = 1.0
        return out
    eye = np.eye(d_y * d_x)
    return np.stack([operator.apply(e.reshape(d_y, d_x)) for e in eye], axis=1)


def min_frobenius(problem, W0=None) -> np.ndarray:
    """Return ``W0 + A^+(y - A(W0))``, the minimum-Frobenius-norm interpolant from ``W0`` (SPEC E.1).

    With ``W0 = 0`` (the default) this is ``argmin ||W||_F s.t. A(W) = y``, the limit of gradient
    flow / GD on the unfactorised loss (C.2) from 0. For completion ``A A* = I``, so ``A^+ = A*``
    and the answer is the zero-filled observation matrix; for sensing it is a least-squares solve
    with the ``m x (d_y d_x)`` operator matrix (its minimum-norm solution = pseudo-inverse). If
    ``y`` is not in the range of ``A`` (more measurements than entries, noisy data) the same
    formula gives the least-squares point closest to ``W0``, which is also the flow's limit.
    """
    operator, y = _matrix_problem(problem)
    shape = tuple(operator.shape)
    if W0 is None:
        W0 = np.zeros(shape)
    else:
        W0 = np.asarray(W0, dtype=np.float64)
        if W0.shape != shape or not np.all(np.isfinite(W0)):
            raise InvalidParameterError(
                f"The 'W0' parameter must be a finite {shape[0]} x {shape[1]} matrix. Got shape {W0.shape}"
                + ("." if W0.shape != shape else " with NaN or inf entries.")
            )
    r = y - operator.apply(W0)
    if hasattr(operator, "index"):
        return W0 + operator.adjoint(r)
    step, *_ = np.linalg.lstsq(_operator_matrix(operator), r, rcond=None)
    return W0 + step.reshape(shape)


# SCS stopping tolerance (eps_abs = eps_rel). 1e-8 gives relative errors ~1e-9 against W_true
# on exact-recovery instances in about the same time as 1e-4 (SCS's default), because SCS
# converges linearly on these cones: 20 x 20 sensing m=160 0.04 s, 100 x 100 completion with
# 2000 / 5000 entries 0.9 / 0.5 s (measured on the 2-core development machine).
_NUCLEAR_EPS = 1e-8


def min_nuclear_norm(problem, *, solver: str = "SCS", eps: float = _NUCLEAR_EPS, delta: float = 0.0,
                     max_iters: int = 100_000) -> np.ndarray:
    """Return ``argmin ||W||_* s.t. A(W) = y`` (nuclear-norm minimisation, the convex reference of SPEC C).

    ``problem`` is a :class:`~implicit_bias.problems.MatrixRecovery`. Completion constrains the
    observed entries, ``W[Omega] = y``; sensing constrains ``A vec(W) = y`` with the operator
    matrix. For noisy data give ``delta > 0``: the constraint becomes
    ``||A(W) - y||_2 <= delta ||y||_2`` (a relative residual budget).

    Solved by cvxpy with ``solver`` (default SCS, far faster than Clarabel on the nuclear-norm
    SDP; ``eps`` is SCS's ``eps_abs`` and ``eps_rel``, or Clarabel's gap and feasibility
    tolerances). The returned matrix satisfies the constraints only to the solver's tolerance.

    Raises InvalidProblemError (not a matrix problem), InvalidParameterError (bad eps, delta,
    solver), InfeasibleProblemError (no W with A(W) = y: give delta > 0), SolverError (the
    solver failed or stopped inaccurate: raise max_iters, loosen eps, or try another solver).
    """
    import cvxpy as cp

    operator, y = _matrix_problem(problem)
    for name, value, positive in (("eps", eps, True), ("delta", delta, False)):
        finite = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not finite or value < 0 or (positive and value == 0):
            bound = "(0, inf)" if positive else "[0, inf)"
            raise InvalidParameterError(f"The '{name}' parameter must be a float in the range {bound}. Got {value!r}.")
    solver = str(solver).upper()
    if solver not in cp.installed_solvers():
        raise InvalidParameterError(
            f"The 'solver' parameter must be a cvxpy solver installed here, one of {cp.installed_solvers()}. Got {solver!r}."
        )

    X = cp.Variable(tuple(operator.shape))
    if hasattr(operator, "index"):
        measured = X[operator.index]
    else:
        measured = _operator_matrix(operator) @ cp.vec(X, order="C")
    if delta > 0:
        constraints = [cp.norm(measured - y, 2) <= delta * float(np.linalg.norm(y))]
    else:
        constraints = [measured == y]
    program = cp.Problem(cp.Minimize(cp.normNuc(X)), constraints)
    if solver == "SCS":
        options = {"eps_abs": eps, "eps_rel": eps, "max_iters": int(max_iters)}
    elif solver == "CLARABEL":
        options = {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "max_iter": int(max_iters)}
    else:
        options = {}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            program.solve(solver=solver, **options)
    except cp.error.SolverError as exc:
        raise SolverError(
            f"{solver} failed on the nuclear-norm program for a {operator.shape} matrix with {operator.m} "
            f"measurements: {exc}. Try solver='CLARABEL' or a looser eps (got {eps:g})."
        ) from exc
    if program.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleProblemError(
            f"no {operator.shape[0]} x {operator.shape[1]} matrix W has A(W) = y ({operator.m} measurements, "
            f"solver status {program.status}); for noisy data pass delta > 0 (a relative residual budget)."
        )
    if program.status != cp.OPTIMAL or X.value is None:
        raise SolverError(
            f"{solver} stopped with status {program.status!r} after {program.solver_stats.num_iters} iterations on "
            f"the nuclear-norm program (eps={eps:g}, max_iters={max_iters}); raise max_iters, loosen eps, or try "
            "solver='CLARABEL'."
        )
    return np.asarray(X.value, dtype=np.float64)
