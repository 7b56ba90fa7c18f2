"""Gradient flow, GD and SGD of deep matrix factorisations, and the product flow (SPEC C.1-C.5, D).

Reached through :func:`implicit_bias.dynamics.simulate` with a
:class:`~implicit_bias.problems.MatrixRecovery` and a :class:`~implicit_bias.models.DeepFactorization`:

- ``GradientFlow()``: every factor follows ``dW_j/dt = -grad_{W_j} L^N`` (SPEC C.1), integrated
  with scipy's explicit adaptive DOP853 (order 8, no Jacobian: the state has ``sum d_j d_{j-1}``
  numbers), stepped by hand so that every accepted step is checked (finite, residual, budget).
- ``ProductFlow()``: ``dW/dt = -A_W(grad L(W))`` (SPEC C.4-C.5) on ``W`` itself, valid for
  balanced initial factors (C.3) only, with ``A_W`` in the spectral form (C.6) from one SVD,
  :func:`implicit_bias.matrix_theory.product_operator_spectral`.
- ``GradientDescent(step)`` / ``SGD(step, batch, seed)``: factor GD (SPEC D.1) and mini-batch SGD
  with the unbiased ``m/q``-scaled estimator (SPEC D.2); the default step is SPEC D.3(ii) carried
  over to matrices, see :func:`default_matrix_step`.

Statuses and ``Stop`` semantics are those of the sparse engine: ``converged`` when the relative
residual ``||A(W) - y|| / ||y||`` reaches ``stop.tol``, ``budget_exhausted``, ``diverged`` (GD/SGD),
``failed`` (integrator trouble); numerical trouble never raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import DOP853
from scipy.sparse.linalg import LinearOperator, svds

from .. import matrix_theory as mt
from ..errors import ImplicitBiasError, InvalidParameterError, UnsupportedError
from ..models.deep_factorization import DeepFactorization, MatrixInit
from ..problems import MatrixRecovery
from .base import SGD, GradientDescent, GradientFlow, Status, Stop, _require
from .descent import descent_loop

BALANCED_TOL = 1e-8  # largest balancedness defect (C.3) that ProductFlow accepts
PATH_W_LIMIT = 5_000_000  # the path keeps W itself while d_y * d_x * len(t) stays below this


@dataclass(frozen=True)
class ProductFlow:
    """The product flow ``dW/dt = -A_W(grad L(W))`` (SPEC C.5), integrated on ``W`` with DOP853.

    Equal to the factor flow's product when the initial factors are balanced (C.3); refused otherwise.
    ``atol=None`` takes ``1e-2 * rtol * max|W(0)|`` (the initial product may be tiny).
    ``A_W`` is evaluated in its spectral form (C.6, one SVD of ``W``,
    :func:`~implicit_bias.matrix_theory.product_operator_spectral`), not by the ``eigh`` powers of C.4:
    ``eigh(W W^T)`` resolves eigenvalues only to ``eps ||W||^2``, so singular values below about
    ``sqrt(eps) ||W||`` (1e-7 here) were lost to rounding and then zeroed, which left a noisy
    right-hand side in exactly the slow directions (measured: 20 x 20 sensing, depth 3, the eigh form
    never reached residual 1e-5 in 320k evaluations; the SVD form tracks the factor flow to 1e-12 and
    is 1.3-4x cheaper per evaluation).
    """

    rtol: float = 1e-10
    atol: float | None = None

    def __post_init__(self) -> None:
        _require(0 < self.rtol < 1, "rtol", "a float in the range (0, 1)", self.rtol)
        _require(self.atol is None or self.atol > 0, "atol", "None or a float in the range (0, inf)", self.atol)


@dataclass(frozen=True, eq=False)
class MatrixPath:
    """A saved trajectory: times (``k * eta`` for GD/SGD) and spectral summaries of ``W(t)``.

    ``singular_values`` is ``len(t) x min(d_y, d_x)``, descending; ``W`` is kept only while
    ``d_y * d_x * len(t) <= 5e6``, else None.
    """

    t: np.ndarray
    singular_values: np.ndarray
    effective_rank: np.ndarray
    residual: np.ndarray
    W: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class MatrixResult:
    """What a matrix simulation produced. ``status`` says whether ``W`` may be trusted.

    ``balancedness_defect`` is that of the final factors (SPEC C.3); ``balancedness_drift`` is
    ``max_j ||D_j(T) - D_j(0)||_F / max_j max(||W_j(0)||_F^2, ||W_j(T)||_F^2)`` with
    ``D_j = W_{j+1}^T W_{j+1} - W_j W_j^T`` (None for ProductFlow, which tracks no factors; its
    ``factors`` are balanced factors rebuilt from ``W`` by SPEC C.12 (ii), so they match the factor
    flow's only up to rotations of the hidden layers).
    """

    W: np.ndarray
    status: Status
    message: str
    method: str
    residual: float
    grad_evals: int
    steps: int
    t: float
    wall_s: float
    factors: tuple | None = field(default=None, repr=False)
    balancedness_defect: float | None = None
    balancedness_drift: float | None = None
    step: float | None = None
    suggested_step: float | None = None
    relative_error: float | None = None
    path: MatrixPath | None = field(default=None, repr=False)

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    @property
    def singular_values(self) -> np.ndarray:
        """Singular values of the final ``W``, descending (NaN if ``W`` is not finite)."""
        if not np.all(np.isfinite(self.W)):
            return np.full(min(self.W.shape), np.nan)
        return np.linalg.svd(self.W, compute_uv=False)

    @property
    def effective_rank(self) -> float:
        """Effective rank of the final ``W`` (:func:`implicit_bias.matrix_theory.effective_rank`); 0 for ``W = 0``."""
        return _effective_rank(self.singular_values)


# ---------------------------------------------------------------------------------------------
# helpers


def _effective_rank(s: np.ndarray) -> float:
    """``exp(H(s / ||s||_1))`` from given singular values, as :func:`matrix_theory.effective_rank` (0 for zero)."""
    if not np.all(np.isfinite(s)):
        return float("nan")
    total = float(np.sum(s))
    if total <= 0.0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _finite(mats) -> bool:
    return all(bool(np.all(np.isfinite(Wj))) for Wj in mats)


def balancedness_drift(factors0, factors) -> float | None:
    """``max_j ||D_j(T) - D_j(0)||_F / max_j max(||W_j(0)||_F^2, ||W_j(T)||_F^2)``, ``D_j`` of SPEC C.3.

    Scaled by the larger of the initial and the final factor norms: from a small initialisation
    the factors grow by orders of magnitude, and an integrator's error is relative to the current size.
    """
    if not _finite(factors):
        return None
    if len(factors) == 1:
        return 0.0

    def D(mats):
        return [B.T @ B - A @ A.T for A, B in zip(mats, mats[1:])]

    drift = max(float(np.linalg.norm(b - a)) for a, b in zip(D(factors0), D(factors)))
    scale = max(float(np.linalg.norm(Wj)) ** 2 for Wj in (*factors0, *factors))
    return drift / scale if scale > 0 else 0.0


def _batch_maps(operator):
    """``rows -> (apply_J, adjoint_J)`` for the measurements ``J = rows`` of ``operator``."""
    d_y, d_x = operator.shape
    if hasattr(operator, "index"):  # EntryMask
        rows_idx, cols_idx = operator.index

        def maps(rows):
            ri, ci = rows_idx[rows], cols_idx[rows]

            def adjoint(r):
                out = np.zeros((d_y, d_x))
                out[ri, ci] = r
                return out

            return (lambda W: W[ri, ci]), adjoint

        return maps
    if hasattr(operator, "matrices"):  # GaussianSensing, DenseSensing
        flat = np.asarray(operator.matrices).reshape(operator.m, -1)

        def maps(rows):
            sub = flat[rows]
            return (lambda W: sub @ W.ravel()), (lambda r: (r @ sub).reshape(d_y, d_x))

        return maps

    def maps(rows):  # any other operator: full products, then restrict / zero-pad
        def adjoint(r):
            full = np.zeros(operator.m)
            full[rows] = r
            return operator.adjoint(full)

        return (lambda W: operator.apply(W)[rows]), adjoint

    return maps


def minibatch_gradient(problem: MatrixRecovery, W: np.ndarray, rows, _maps=None) -> np.ndarray:
    """Unbiased estimator ``(m/q) A_J^*(A_J(W) - y_J)`` of ``grad L(W) = A^*(A(W) - y)`` (SPEC D.2)."""
    rows = np.asarray(rows)
    apply_J, adjoint_J = (_maps or _batch_maps(problem.operator))(rows)
    return (problem.m / rows.size) * adjoint_J(apply_J(W) - problem.y[rows])


def operator_norm(operator) -> float:
    """``||A||_op``: 1 for an entry mask, else the top singular value (dense SVD when small, Lanczos otherwise)."""
    if hasattr(operator, "index"):
        return 1.0
    d_y, d_x = operator.shape
    n, m = d_y * d_x, operator.m
    if hasattr(operator, "matrices") and n * m <= 4_000_000:
        return float(np.linalg.norm(np.asarray(operator.matrices).reshape(m, n), 2))
    if min(n, m) <= 2:
        basis = np.eye(n)
        dense = np.stack([operator.apply(basis[k].reshape(d_y, d_x)) for k in range(n)], axis=1)
        return float(np.linalg.norm(dense, 2))
    lin = LinearOperator(
        (m, n), matvec=lambda v: operator.apply(np.reshape(v, (d_y, d_x))),
        rmatvec=lambda r: operator.adjoint(np.ravel(r)).ravel(), dtype=np.float64,
    )
    return float(svds(lin, k=1, tol=1e-6, return_singular_vectors=False, random_state=0)[0])


def _frobenius_sq(operator) -> float:
    """``||A||_F^2 = sum_l ||A_l||_F^2`` (``m`` for an entry mask)."""
    if hasattr(operator, "index"):
        return float(operator.m)
    if hasattr(operator, "matrices"):
        return float(np.sum(np.asarray(operator.matrices) ** 2))
    rng = np.random.default_rng(0)  # Hutchinson: E ||A(G)||^2 = ||A||_F^2 for Gaussian G
    return float(np.mean([np.sum(operator.apply(rng.standard_normal(operator.shape)) ** 2) for _ in range(32)]))


def target_scale(problem: MatrixRecovery) -> float:
    """Spectral-norm estimate ``||A^*(y)||_2 * d_y d_x / ||A||_F^2`` of the target.

    ``E[A^* A] = (||A||_F^2 / (d_y d_x)) I`` for Gaussian sensing and uniform completion, so the
    rescaled back-projection is an unbiased estimate of ``W_true``; its spectral norm exceeds
    ``||W_true||_2`` by the back-projection noise, which makes it an upper estimate in practice.
    """
    op = problem.operator
    d_y, d_x = op.shape
    back = op.adjoint(problem.y) * (d_y * d_x / _frobenius_sq(op))
    return float(np.linalg.norm(back, 2))


def default_matrix_step(problem: MatrixRecovery, model: DeepFactorization, init=None, *, batch: int | None = None) -> float:
    """Safe GD step, SPEC D.3(ii) for matrices: ``0.5 * 2 / (N ||A||_op^2 s^(2-2/N))``.

    ``N ||A||^2 s^(2-2/N)`` bounds the top Hessian eigenvalue ``||A||^2 lambda_max(A_W)`` (C.6) at
    balanced interpolants with ``||W||_2 <= s``; ``s`` is the larger of :func:`target_scale` and
    ``||W(0)||_2``. SGD with batch ``q`` scales the step by ``q/m`` (the estimator's curvature
    is up to ``m/q`` times larger).
    """
    N = model.depth
    s = target_scale(problem)
    if init is not None:
        s = max(s, float(np.linalg.norm(model.product(model.initial_factors(init, problem.shape)), 2)))
    eta = 0.5 * 2.0 / (N * operator_norm(problem.operator) ** 2 * s ** (2.0 - 2.0 / N))
    return eta * (batch / problem.m if batch is not None else 1.0)


class _Recorder:
    """Collects ``(t, W)`` snapshots as singular values, effective rank, residual (and ``W`` while small)."""

    def __init__(self, problem: MatrixRecovery):
        self.problem = problem
        self.t, self.sv, self.er, self.res, self.Ws = [], [], [], [], []
        self.keep_W = True

    def add(self, t: float, W: np.ndarray) -> None:
        finite = bool(np.all(np.isfinite(W)))
        s = np.linalg.svd(W, compute_uv=False) if finite else np.full(min(W.shape), np.nan)
        self.t.append(float(t))
        self.sv.append(s)
        self.er.append(_effective_rank(s))
        self.res.append(self.problem.residual(W) if finite else float("inf"))
        if self.keep_W and W.size * len(self.t) <= PATH_W_LIMIT:
            self.Ws.append(W.copy())
        else:
            self.keep_W, self.Ws = False, []

    def path(self) -> MatrixPath | None:
        if not self.t:
            return None
        return MatrixPath(
            t=np.array(self.t), singular_values=np.array(self.sv), effective_rank=np.array(self.er),
            residual=np.array(self.res), W=np.array(self.Ws) if self.keep_W else None,
        )


def _save_schedule(save_at):
    """``(times or None, every_step)`` from ``save_at`` = None, ``"steps"`` or a sequence of times/iterations."""
    if save_at is None:
        return None, False
    if isinstance(save_at, str):
        if save_at != "steps":
            raise InvalidParameterError(f"The 'save_at' parameter must be None, 'steps' or a sequence of times. Got {save_at!r}.")
        return None, True
    times = np.sort(np.asarray(save_at, dtype=np.float64).ravel())
    if times.size == 0 or not np.all(np.isfinite(times)) or times[0] < 0:
        raise InvalidParameterError(f"The 'save_at' parameter must hold finite times >= 0. Got {save_at!r}.")
    return times, False


def _rebuild_factors(model: DeepFactorization, W: np.ndarray, shape) -> tuple | None:
    """Balanced factors with product ``W`` (SPEC C.12 (ii)), or None when ``W`` does not fit the widths.

    The product flow keeps ``rank W <= r = min_j d_j`` in exact arithmetic; rounding leaves
    singular values past ``r`` at about ``1e-15 sigma_1``, which are cut below ``1e-8 sigma_1``.
    """
    if model.depth == 1:
        return (W.copy(),)
    if not np.all(np.isfinite(W)):
        return None
    widths = model.dims(shape)[1:-1]
    r = min(widths)
    if r < min(W.shape):
        U, s, Vt = np.linalg.svd(W, full_matrices=False)
        if s[r] > 1e-8 * s[0]:
            return None
        W = (U[:, :r] * s[:r]) @ Vt[:r]
    return mt.balanced_factors(W, model.depth, widths)


# ---------------------------------------------------------------------------------------------
# flows


def _integrate(rhs, state0, to_W, *, problem, stop, rtol, atol, save_at, clock, recorder):
    """Step DOP853 on ``state' = rhs(state)`` until ``stop``; every accepted step is checked.

    Returns ``(state, status, message, t, steps, nfev)``.
    """
    times, every_step = _save_schedule(save_at)
    ynorm = np.linalg.norm(problem.y)
    idx = 0
    if times is not None:
        while idx < times.size and times[idx] <= 0:
            recorder.add(times[idx], to_W(state0))
            idx += 1
    elif every_step:
        recorder.add(0.0, to_W(state0))
    state, steps = state0, 0
    try:
        solver = DOP853(rhs, 0.0, state0, np.inf, rtol=rtol, atol=atol)
    except (ImplicitBiasError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return state, "failed", f"integrator failed at t=0: {exc}", 0.0, 0, 0
    status, message = "budget_exhausted", ""
    while True:
        t_old = solver.t
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # trial stages may overshoot; checked below
                error = solver.step()
        except (ImplicitBiasError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            status, message = "failed", f"integrator failed at t={t_old:.3g}: {exc}"
            break
        steps += 1
        if solver.status == "failed" or not np.all(np.isfinite(solver.y)):
            status, message = "failed", f"integrator failed at t={t_old:.3g}: {error or 'non-finite state'}"
            break
        state = solver.y
        W = to_W(state)
        if times is not None and idx < times.size and times[idx] <= solver.t:
            dense = solver.dense_output()
            while idx < times.size and times[idx] <= solver.t:
                recorder.add(times[idx], to_W(dense(times[idx])))
                idx += 1
        if every_step:
            recorder.add(solver.t, W)
        residual = np.linalg.norm(problem.operator.apply(W) - problem.y) / ynorm
        ended = stop.outcome(solver.nfev, solver.t, clock(), residual)
        if ended:
            status, message = ended
            break
    return state, status, message, float(solver.t), steps, int(solver.nfev)


def _factor_flow(problem, model, factors0, dynamics: GradientFlow, stop, save_at, clock, recorder):
    """Gradient flow on the factors, ``dW_j/dt = -grad_{W_j} L^N`` (SPEC C.1)."""
    shapes = [Wj.shape for Wj in factors0]
    sizes = np.cumsum([0] + [a * b for a, b in shapes])

    def unpack(state):
        return [state[sizes[j]:sizes[j + 1]].reshape(shapes[j]) for j in range(len(shapes))]

    def rhs(t, state):
        factors = unpack(state)
        below = mt.partial_products(factors)
        grads = mt.chain_gradients(factors, problem.gradient(below[-1]), below)
        return -np.concatenate([g.ravel() for g in grads])

    state0 = np.concatenate([Wj.ravel() for Wj in factors0])
    rtol = dynamics.tolerance("factor")
    atol = min(dynamics.atol, 1e-2 * rtol * float(np.max(np.abs(state0))) or dynamics.atol)
    state, status, message, t, steps, nfev = _integrate(
        rhs, state0, lambda s: model.product(unpack(s)), problem=problem, stop=stop, rtol=rtol, atol=atol,
        save_at=save_at, clock=clock, recorder=recorder,
    )
    return tuple(Wj.copy() for Wj in unpack(state)), status, message, t, steps, nfev


def _product_flow(problem, model, W0, dynamics: ProductFlow, stop, save_at, clock, recorder):
    """``dW/dt = -A_W(grad L(W))`` (SPEC C.5) with ``A_W`` by ``eigh`` powers (C.4); depth 1: ``A_W = I``."""
    shape, N = W0.shape, model.depth

    # The flow stays on the manifold M_k of W(0)'s rank (C.9): singular values past k are exactly 0,
    # not the integrator's rounding (whose 1/N-th powers, (1e-24)^(1/3) = 1e-8, would leak into A_W).
    rank = mt.numerical_rank(W0) if N > 1 and np.all(np.isfinite(W0)) else None

    def rhs(t, state):
        W = state.reshape(shape)
        G = problem.gradient(W)
        return -(G if N == 1 else mt.product_operator_spectral(W, N, G, rank)).ravel()

    state0 = W0.ravel().copy()
    # the initial size of W, or of its velocity A^*(y) when W(0) = 0 (depth 1 from zero)
    size = float(np.max(np.abs(state0))) or float(np.max(np.abs(problem.gradient(W0))))
    atol = dynamics.atol if dynamics.atol is not None else 1e-2 * dynamics.rtol * size
    state, status, message, t, steps, nfev = _integrate(
        rhs, state0, lambda s: s.reshape(shape), problem=problem, stop=stop, rtol=dynamics.rtol, atol=atol,
        save_at=save_at, clock=clock, recorder=recorder,
    )
    return state.reshape(shape).copy(), status, message, t, steps, nfev


# ---------------------------------------------------------------------------------------------
# GD and SGD


def _descend(problem, model, factors, *, step_at, stop, save_at, clock, recorder, batch=None, rng=None):
    """Factor GD (``batch=None``, SPEC D.1) or SGD with ``batch`` measurements per step (SPEC D.2).

    Returns ``(factors, status, message, t, steps, grad_evals)``.
    """
    op, y = problem.operator, problem.y
    maps = _batch_maps(op) if batch is not None else None

    def forward(factors):
        below = mt.partial_products(factors) if _finite(factors) else None
        return below if below is not None and np.all(np.isfinite(below[-1])) else None

    def update(factors, below, G, eta):
        return [Wj - eta * gj for Wj, gj in zip(factors, mt.chain_gradients(factors, G, below))]

    factors, status, message, t, k, evals, _ = descent_loop(
        list(factors), forward=forward, residual=lambda below: op.apply(below[-1]) - y,
        gradient=lambda below, r: op.adjoint(r),
        minibatch=lambda below, rows: minibatch_gradient(problem, below[-1], rows, maps), update=update,
        m=problem.m, ynorm=float(np.linalg.norm(y)), step_at=step_at, stop=stop, clock=clock,
        save=lambda t, below: recorder.add(t, below[-1]), save_at=_check_save_at(save_at), batch=batch, rng=rng,
    )
    return tuple(factors), status, message, t, k, evals


def _check_save_at(save_at):
    """``save_at`` validated by :func:`_save_schedule` (GD reads it as iteration numbers)."""
    times, every_step = _save_schedule(save_at)
    return "steps" if every_step else (None if times is None else times)


# ---------------------------------------------------------------------------------------------
# entry point


@np.errstate(over="ignore", invalid="ignore")  # overflow is reported in the status, not as warnings
def simulate_matrix(problem, model, dynamics, *, init, stop: Stop = Stop(), save_at=None) -> MatrixResult:
    """Run ``dynamics`` on the deep factorisation ``model`` fitted to ``problem`` from ``init``.

    ``init``: a :class:`MatrixInit` or a float ``alpha`` (:meth:`MatrixInit.balanced`).
    ``save_at``: flow times (GD/SGD: iteration numbers) at which to record the spectrum of ``W``,
    or ``"steps"`` for every accepted step. Input errors raise before any work; numerical
    trouble is reported in ``status``.
    """
    if not isinstance(problem, MatrixRecovery):
        raise UnsupportedError(
            f"DeepFactorization needs a MatrixRecovery problem (matrix_sensing, matrix_completion); got {type(problem).__name__}."
        )
    if not isinstance(model, DeepFactorization):
        raise UnsupportedError(
            f"a MatrixRecovery problem needs a DeepFactorization model; got {type(model).__name__}."
        )
    if not isinstance(dynamics, (GradientFlow, GradientDescent, SGD, ProductFlow)):
        raise InvalidParameterError(
            f"dynamics must be GradientFlow, ProductFlow, GradientDescent or SGD; got {type(dynamics).__name__}."
        )
    if not isinstance(stop, Stop):
        raise InvalidParameterError(f"stop must be a Stop; got {type(stop).__name__}.")
    _save_schedule(save_at)
    if isinstance(dynamics, GradientFlow) and dynamics.space == "mirror":
        raise UnsupportedError("GradientFlow(space='mirror') is for Hadamard models; use GradientFlow() or ProductFlow().")
    if isinstance(dynamics, SGD) and dynamics.batch > problem.m:
        raise InvalidParameterError(f"The 'batch' parameter must be <= m = {problem.m}. Got {dynamics.batch}.")
    if not isinstance(init, MatrixInit):
        init = MatrixInit.balanced(init)
    factors0 = model.initial_factors(init, problem.shape)
    defect0 = model.balancedness_defect(factors0)
    if isinstance(dynamics, ProductFlow) and defect0 > BALANCED_TOL:
        raise UnsupportedError(
            f"ProductFlow needs balanced initial factors (SPEC C.3), but {init.describe()} has balancedness defect"
            f" {defect0:.2e} > {BALANCED_TOL:g}; use GradientFlow() on the factors, or a balanced init"
            " (MatrixInit.balanced / MatrixInit.product)."
        )

    started = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - started

    recorder = _Recorder(problem)
    step = suggested = None
    factors = None
    if isinstance(dynamics, ProductFlow):
        W, status, message, t, steps, evals = _product_flow(
            problem, model, model.product(factors0), dynamics, stop, save_at, clock, recorder
        )
        method = "product_flow"
        factors = _rebuild_factors(model, W, problem.shape)
    elif isinstance(dynamics, GradientFlow):
        factors, status, message, t, steps, evals = _factor_flow(
            problem, model, factors0, dynamics, stop, save_at, clock, recorder
        )
        method = "flow[factor]"
    else:
        batch = dynamics.batch if isinstance(dynamics, SGD) else None
        base = dynamics.step if dynamics.step is not None else default_matrix_step(problem, model, init, batch=batch)
        step_at = base if callable(base) else (lambda k, eta=float(base): eta)
        step = None if callable(base) else float(base)
        rng = np.random.default_rng(dynamics.seed) if batch is not None else None
        factors, status, message, t, steps, evals = _descend(
            problem, model, factors0, step_at=step_at, stop=stop, save_at=save_at, clock=clock,
            recorder=recorder, batch=batch, rng=rng,
        )
        if status == "diverged":
            safe = default_matrix_step(problem, model, init, batch=batch)
            suggested = safe if step is None or step > safe else step / 4
            message += f"; try a step <= {suggested:.3g} (SPEC D.3(ii))"
        method = "gd" if batch is None else f"sgd[q={batch}]"
    if factors is not None and isinstance(dynamics, (GradientFlow, GradientDescent, SGD)):
        with np.errstate(over="ignore", invalid="ignore"):
            W = model.product(factors) if _finite(factors) else np.full(problem.shape, np.nan)
    finite = bool(np.all(np.isfinite(W)))
    residual = problem.residual(W) if finite else float("inf")
    defect = model.balancedness_defect(factors) if factors is not None and _finite(factors) else None
    drift = None
    if not isinstance(dynamics, ProductFlow) and factors is not None:
        drift = balancedness_drift(factors0, factors)
    return MatrixResult(
        W=W, status=status, message=message, method=method, residual=residual, grad_evals=int(evals),
        steps=int(steps), t=float(t), wall_s=clock(), factors=factors, balancedness_defect=defect,
        balancedness_drift=drift, step=step, suggested_step=suggested,
        relative_error=problem.relative_error(W) if finite else None, path=recorder.path(),
    )


__all__ = [
    "ProductFlow", "MatrixResult", "MatrixPath", "simulate_matrix", "default_matrix_step", "minibatch_gradient",
    "operator_norm", "target_scale", "balancedness_drift", "BALANCED_TOL",
]
