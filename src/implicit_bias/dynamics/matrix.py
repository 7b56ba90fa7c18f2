"""Gradient flow, GD and SGD of deep matrix factorisations, and the product flow (SPEC C.1-C.5, D).

Reached through :func:`implicit_bias.dynamics.simulate` with a
:class:`~implicit_bias.problems.MatrixRecovery` and a :class:`~implicit_bias.models.DeepFactorization`:

- ``GradientFlow()``: every factor follows ``dW_j/dt = -grad_{W_j} L^N`` (SPEC C.1), integrated
  with scipy's explicit adaptive DOP853 (order 8), stepped by hand so that every accepted step is
  checked (finite, residual, budget); a long run whose steps sit at DOP853's stability bound (the
  stiff tail, a runaway singular value) switches to BDF with the exact dense Jacobian when the state
  has at most 1500 numbers (:mod:`.matrix_stiff`), and for larger completion states to a Rosenbrock
  W-method with a Gauss-Newton matrix solved in measurement space (:mod:`.matrix_wmethod`).
- ``ProductFlow()``: ``dW/dt = -A_W(grad L(W))`` (SPEC C.4-C.5) on ``W`` itself, valid for
  balanced initial factors (C.3) only, with ``A_W`` in the spectral form (C.6) from one SVD,
  :func:`implicit_bias.matrix_theory.product_operator_spectral`.
- ``GradientDescent(step)`` / ``SGD(step, batch, seed)``: factor GD (SPEC D.1) and mini-batch SGD
  with the unbiased ``m/q``-scaled estimator (SPEC D.2); the default step is SPEC D.3(ii) carried
  over to matrices, see :func:`default_matrix_step`.

Both flows run through the one driver (:mod:`implicit_bias.dynamics.driver`: saved times are landed
on by steps), GD/SGD through :func:`~.descent.descent_loop`. Statuses (:mod:`implicit_bias.status`)
and ``Stop`` semantics are those of the sparse runner: ``converged`` when the relative residual
``||A(W) - y|| / ||y||`` reaches ``stop.tol``, ``budget_exhausted``, ``stalled`` and ``diverged``
(GD/SGD), ``failed`` (integrator trouble); numerical trouble never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .. import matrix_theory as mt
from .._validation import require as _require
from ..errors import InvalidParameterError, UnsupportedError
from ..models.deep_factorization import DeepFactorization, MatrixInit
from ..problems import MatrixRecovery
from ..status import Status
from .base import SGD, GradientDescent, GradientFlow, Stop
from .descent import descent_loop, descent_plan
from .driver import Outcome, drive, save_schedule
from .flow import integrate_explicit
from .matrix_ops import (
    _batch_maps,
    _effective_rank,
    _finite,
    _rebuild_factors,
    balancedness_drift,
    default_matrix_step,
    minibatch_gradient,
    operator_norm,
    target_scale,
)
from .matrix_stiff import (
    StiffSwitchStepper,
    factor_jacobian,
    measurement_rows,
    use_stiff,
)
from .matrix_wmethod import CompletionGaussNewton, WMethodStepper
from .sparse import stopwatch

BALANCED_TOL = 1e-8  # largest balancedness defect (C.3) that ProductFlow accepts
PATH_W_LIMIT = 5_000_000  # the path keeps W itself while d_y * d_x * len(t) stays below this


@dataclass(frozen=True)
class ProductFlow:
    """The product flow ``dW/dt = -A_W(grad L(W))`` (SPEC C.5), integrated on ``W`` with DOP853
    (then BDF with a finite-difference Jacobian when stiff and small, as the factor flow).

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
# saved paths


def _snapshot(problem: MatrixRecovery):
    """``W -> (singular values, residual, W or None)`` for one run: ``W`` itself is kept only while
    the saved ``W``s hold at most :data:`PATH_W_LIMIT` numbers."""
    kept = [0]

    def snapshot(W: np.ndarray):
        finite = bool(np.all(np.isfinite(W)))
        s = np.linalg.svd(W, compute_uv=False) if finite else np.full(min(W.shape), np.nan)
        kept[0] += W.size
        return s, (problem.residual(W) if finite else float("inf")), (W.copy() if kept[0] <= PATH_W_LIMIT else None)

    return snapshot


def _matrix_path(saved) -> MatrixPath | None:
    """The :class:`MatrixPath` of saved ``(t, (s, residual, W or None))`` records."""
    if not saved:
        return None
    t, records = zip(*saved)
    s, residual, Ws = zip(*records)
    return MatrixPath(
        t=np.array(t), singular_values=np.array(s), effective_rank=np.array([_effective_rank(v) for v in s]),
        residual=np.array(residual), W=np.array(Ws) if all(W is not None for W in Ws) else None,
    )


# ---------------------------------------------------------------------------------------------
# flows, GD and SGD: each returns (outcome, factors or None, W)


def _flow(problem, rhs, state0, to_W, *, rtol, atol, jac, stop, save_at, clock, wmethod=None) -> Outcome:
    """``state' = rhs(t, state)`` through the one driver; the observed point is ``W = to_W(state)``.

    Small states (:func:`~.matrix_stiff.use_stiff`) switch from DOP853 to scipy's BDF with the
    Jacobian ``jac`` (None: scipy's finite differences) once stiff; larger ones switch to the
    W-method built by ``wmethod(state, t, h)`` when given (completion, :mod:`.matrix_wmethod`),
    else stay on DOP853 (:mod:`.matrix_stiff` says why).
    """
    def residual(W):
        return problem.residual(W) if np.all(np.isfinite(W)) else float("inf")

    if not use_stiff(state0.size) and wmethod is None:
        return integrate_explicit(
            rhs, state0, observe=to_W, residual=residual, stop=stop, rtol=rtol, atol=atol, save_at=save_at, clock=clock,
            snapshot=_snapshot(problem),
        )
    stepper = StiffSwitchStepper(rhs, state0, rtol=rtol, atol=atol, observe=to_W, residual=residual, jac=jac,
                                 jac_cost=2 * state0.size if jac is None else 2 * problem.m,
                                 stiff=wmethod if not use_stiff(state0.size) else None)
    outcome = drive(stepper, stop=stop, clock=clock, save_at=save_at, snapshot=_snapshot(problem))
    if stepper.switched_at is None:
        return outcome
    stiff = "BDF" if use_stiff(state0.size) else "W-method ROS34PW2"
    return replace(outcome, message=f"{outcome.message} (DOP853, then {stiff} from t={stepper.switched_at:.3g})")


def _factor_flow(problem, model, factors0, dynamics: GradientFlow, *, stop, save_at, clock):
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

    measurements = measurement_rows(problem.operator) if use_stiff(sizes[-1]) else None

    def jac(t, state):
        factors = unpack(state)
        return factor_jacobian(factors, problem.gradient(model.product(factors)), measurements)

    state0 = np.concatenate([Wj.ravel() for Wj in factors0])
    rtol = dynamics.tolerance("factor")
    atol = min(dynamics.atol, 1e-2 * rtol * float(np.max(np.abs(state0))) or dynamics.atol)

    def to_W(state):
        return model.product(unpack(state))

    wmethod = None
    if not use_stiff(sizes[-1]) and hasattr(problem.operator, "index"):
        def wmethod(state, t, h):
            return WMethodStepper(rhs, state, CompletionGaussNewton(shapes, problem.operator.index), rtol=rtol,
                                  atol=atol, observe=to_W, residual=problem.residual, t0=t, first_step=h)
    outcome = _flow(problem, rhs, state0, to_W, rtol=rtol, atol=atol, jac=jac,
                    stop=stop, save_at=save_at, clock=clock, wmethod=wmethod)
    factors = tuple(Wj.copy() for Wj in unpack(outcome.state))
    return outcome, factors, "flow[factor]"


def _product_flow(problem, model, factors0, dynamics: ProductFlow, *, stop, save_at, clock):
    """``dW/dt = -A_W(grad L(W))`` (SPEC C.5) with ``A_W`` in the spectral form (C.6); depth 1: ``A_W = I``.

    The factors returned are balanced factors rebuilt from ``W`` (SPEC C.12 (ii)).
    """
    W0 = model.product(factors0)
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
    outcome = _flow(problem, rhs, state0, lambda s: s.reshape(shape), rtol=dynamics.rtol, atol=atol, jac=None,
                    stop=stop, save_at=save_at, clock=clock)
    W = outcome.state.reshape(shape).copy()
    return outcome, _rebuild_factors(model, W, problem.shape), "product_flow"


def _descend(problem, model, factors0, *, stop, save_at, clock, plan):
    """Factor GD (SPEC D.1) or SGD with ``plan.batch`` measurements per step (SPEC D.2)."""
    op, y = problem.operator, problem.y
    maps = _batch_maps(op) if plan.batch is not None else None

    def forward(factors):
        below = mt.partial_products(factors) if _finite(factors) else None
        return below if below is not None and np.all(np.isfinite(below[-1])) else None

    def update(factors, below, G, eta):
        return [Wj - eta * gj for Wj, gj in zip(factors, mt.chain_gradients(factors, G, below))]

    snapshot = _snapshot(problem)
    outcome = descent_loop(
        list(factors0), forward=forward, residual=lambda below: op.apply(below[-1]) - y,
        gradient=lambda below, r: op.adjoint(r),
        minibatch=lambda below, rows: minibatch_gradient(problem, below[-1], rows, maps), update=update,
        m=problem.m, ynorm=float(np.linalg.norm(y)), step_at=plan.step_at, stop=stop, clock=clock,
        snapshot=lambda below: snapshot(below[-1]), save_at=save_at, batch=plan.batch, rng=plan.rng,
    )
    return outcome, tuple(outcome.state), "gd" if plan.batch is None else f"sgd[q={plan.batch}]"


# ---------------------------------------------------------------------------------------------
# entry point


def _check_matrix_inputs(problem, model, dynamics, stop, save_at) -> None:
    """Input errors of :func:`simulate_matrix`, raised before any work."""
    if not isinstance(problem, MatrixRecovery):
        raise UnsupportedError(
            f"DeepFactorization needs a MatrixRecovery problem (matrix_sensing, matrix_completion); got {type(problem).__name__}."
        )
    if not isinstance(model, DeepFactorization):
        raise UnsupportedError(f"a MatrixRecovery problem needs a DeepFactorization model; got {type(model).__name__}.")
    if not isinstance(dynamics, (GradientFlow, GradientDescent, SGD, ProductFlow)):
        raise InvalidParameterError(
            f"dynamics must be GradientFlow, ProductFlow, GradientDescent or SGD; got {type(dynamics).__name__}."
        )
    if not isinstance(stop, Stop):
        raise InvalidParameterError(f"stop must be a Stop; got {type(stop).__name__}.")
    save_schedule(save_at)
    if isinstance(dynamics, GradientFlow) and dynamics.space == "mirror":
        raise UnsupportedError("GradientFlow(space='mirror') is for Hadamard models; use GradientFlow() or ProductFlow().")
    if isinstance(dynamics, SGD) and dynamics.batch > problem.m:
        raise InvalidParameterError(f"The 'batch' parameter must be <= m = {problem.m}. Got {dynamics.batch}.")


@np.errstate(over="ignore", invalid="ignore")  # overflow is reported in the status, not as warnings
def simulate_matrix(problem, model, dynamics, *, init, stop: Stop = Stop(), save_at=None) -> MatrixResult:
    """Run ``dynamics`` on the deep factorisation ``model`` fitted to ``problem`` from ``init``.

    ``init``: a :class:`MatrixInit` or a float ``alpha`` (:meth:`MatrixInit.balanced`).
    ``save_at``: flow times (GD/SGD: iteration numbers) at which to record the spectrum of ``W``,
    or ``"steps"`` for every accepted step. Input errors raise before any work; numerical
    trouble is reported in ``status``.
    """
    _check_matrix_inputs(problem, model, dynamics, stop, save_at)
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
    clock, plan = stopwatch(), None
    run = {"stop": stop, "save_at": save_at, "clock": clock}
    if isinstance(dynamics, ProductFlow):
        outcome, factors, method = _product_flow(problem, model, factors0, dynamics, **run)
    elif isinstance(dynamics, GradientFlow):
        outcome, factors, method = _factor_flow(problem, model, factors0, dynamics, **run)
    else:
        plan = descent_plan(dynamics, problem.m, lambda batch: default_matrix_step(problem, model, init, batch=batch))
        outcome, factors, method = _descend(problem, model, factors0, plan=plan, **run)
    if isinstance(dynamics, ProductFlow):
        W = outcome.state.reshape(problem.shape).copy()
    else:
        W = model.product(factors) if _finite(factors) else np.full(problem.shape, np.nan)
    return _matrix_result(problem, model, init, outcome, W, factors, factors0, method, clock, plan)


def _matrix_result(problem, model, init, outcome: Outcome, W, factors, factors0, method, clock, plan) -> MatrixResult:
    """The :class:`MatrixResult` of ``outcome``; a diverged GD/SGD run gets a smaller suggested step."""
    message, step, suggested = outcome.message, (plan.step if plan is not None else None), None
    if outcome.status == "diverged" and plan is not None:
        safe = default_matrix_step(problem, model, init, batch=plan.batch)
        suggested = safe if step is None or step > safe else step / 4
        message += f"; try a step <= {suggested:.3g} (SPEC D.3(ii))"
    finite = bool(np.all(np.isfinite(W)))
    usable = factors is not None and _finite(factors)
    return MatrixResult(
        W=W, status=outcome.status, message=message, method=method,
        residual=problem.residual(W) if finite else float("inf"), grad_evals=outcome.evals, steps=outcome.steps,
        t=outcome.t, wall_s=clock(), factors=factors,
        balancedness_defect=model.balancedness_defect(factors) if usable else None,
        balancedness_drift=balancedness_drift(factors0, factors) if method != "product_flow" and factors is not None else None,
        step=step, suggested_step=suggested, relative_error=problem.relative_error(W) if finite else None,
        path=_matrix_path(outcome.saved),
    )


__all__ = [
    "ProductFlow", "MatrixResult", "MatrixPath", "simulate_matrix", "default_matrix_step", "minibatch_gradient",
    "operator_norm", "target_scale", "balancedness_drift", "BALANCED_TOL",
]
