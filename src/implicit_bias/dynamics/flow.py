"""Gradient flows integrated by scipy's solvers, stepped one accepted step at a time (SPEC A.2, B.3, C.1).

:class:`ScipyStepper` turns scipy's ``BDF`` (implicit, for the factor-space Hadamard flow and the
weight-normalised ``(r, v)`` flow) or ``DOP853`` (explicit, for deep matrix factors and the
product flow) into a stepper of :func:`implicit_bias.dynamics.driver.drive`: each ``advance``
is one accepted step, clipped to end exactly on the driver's target.

:class:`FactorSystem` is the factor-space flow for any factors: every factor follows its own
gradient (SPEC A.2); dense Jacobian of size ``(N n')^2``, meant for small problems and as an
independent check. Identical factors take the mirror-space Rosenbrock integrator of
:mod:`.rosenbrock` instead.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.integrate import BDF, DOP853

from ..errors import ImplicitBiasError
from ..models.hadamard import factor_gradient, leave_one_out_products, product
from .driver import Outcome, StepFailure, drive

# A solver whose step falls below this fraction of its own time is restarted at time 0 (with the
# offset kept aside): float64 cannot resolve steps below ~eps t, and BDF would give up.
RESTART_RATIO = 1e-9
_FAILURES = (ImplicitBiasError, ValueError, ArithmeticError, np.linalg.LinAlgError)


class FactorSystem:
    def __init__(self, B, y, factors0: np.ndarray):
        self.B, self.y = B, y
        self.shape = factors0.shape
        self.state0 = factors0.ravel().copy()
        self._gram = None

    def initial(self) -> np.ndarray:
        return self.state0

    def z(self, state: np.ndarray) -> np.ndarray:
        return product(state.reshape(self.shape))

    def rhs(self, t: float, state: np.ndarray) -> np.ndarray:
        factors = state.reshape(self.shape)
        g = self.B.rmatvec(self.B.matvec(product(factors)) - self.y)
        return -factor_gradient(factors, g).ravel()

    def jac(self, t: float, state: np.ndarray) -> np.ndarray:
        """Jacobian of ``-P_k ⊙ g`` with ``P_k = ⊙_{j≠k} w_j`` (SPEC A.2)."""
        factors = state.reshape(self.shape)
        depth, width = self.shape
        if self._gram is None:
            dense = self.B.dense()
            self._gram = dense.T @ dense
        g = self.B.rmatvec(self.B.matvec(product(factors)) - self.y)
        loo = leave_one_out_products(factors)
        J = np.empty((depth * width, depth * width))
        for k in range(depth):
            for j in range(depth):
                block = -(loo[k][:, None] * self._gram * loo[j][None, :])
                if j != k:
                    others = [i for i in range(depth) if i not in (j, k)]
                    pair = np.prod(factors[others], axis=0) if others else np.ones(width)
                    block[np.diag_indices(width)] -= pair * g
                J[k * width:(k + 1) * width, j * width:(j + 1) * width] = block
        return J

    def jac_cost(self) -> int:
        return self.shape[0] * self.shape[1]

    def observe(self, state: np.ndarray) -> np.ndarray | None:
        """The product ``z`` of the factors, or None when the state is not finite."""
        return self.z(state) if np.all(np.isfinite(state)) else None

    def factors(self, state: np.ndarray) -> np.ndarray:
        return state.reshape(self.shape).copy()


class ScipyStepper:
    """A scipy ``OdeSolver`` (``BDF`` or ``DOP853``) as a stepper of :func:`~.driver.drive`.

    ``observe(state)`` gives the end-to-end point (None outside the model's domain) and
    ``residual(point)`` its relative residual (``residual_matvecs`` products with ``A``). Landing:
    before each step the solver's ``t_bound`` is moved to the driver's target, so scipy clips the
    step to end there. Costs: ``evals`` right-hand sides; ``matvecs`` two per right-hand side,
    ``jac_cost`` per Jacobian and ``residual_matvecs`` per residual check.
    """

    def __init__(self, method, rhs, state0: np.ndarray, *, rtol: float, atol: float,
                 observe: Callable, residual: Callable, jac=None, jac_cost: int = 0, residual_matvecs: int = 2):
        options = {"rtol": rtol, "atol": atol} | ({"jac": jac} if jac is not None else {})
        self._new = lambda y0, first: method(rhs, 0.0, y0, np.inf, first_step=first, **options)
        self._observe, self._residual = observe, residual
        self._jac_cost, self._residual_matvecs = jac_cost, residual_matvecs
        self.solver, self.restart = None, True
        self.state, self.t, self.t_base, self.steps = state0, 0.0, 0.0, 0
        self._point = observe(state0)
        self._done_nfev = self._done_njev = self._checks = 0

    @property
    def evals(self) -> int:
        return self._done_nfev + (self.solver.nfev if self.solver is not None else 0)

    @property
    def matvecs(self) -> int:
        njev = self._done_njev + (self.solver.njev if self.solver is not None else 0)
        return 2 * self.evals + self._jac_cost * njev + self._residual_matvecs * self._checks

    def point(self) -> np.ndarray:
        return self._point

    def residual(self) -> float:
        self._checks += 1
        return self._residual(self._point) if self._point is not None else float("inf")

    def advance(self, target: float) -> None:
        if self.restart:
            first = None if self.solver is None else self.solver.step_size
            if self.solver is not None:
                self._done_nfev, self._done_njev = self.evals, self._done_njev + self.solver.njev
            self.t_base = self.t
            try:
                self.solver = self._new(self.state, first)
            except _FAILURES as exc:
                raise StepFailure(f"integrator failed at t={self.t:.3g}: {exc}") from exc
            self.restart = False
        solver = self.solver
        solver.t_bound, solver.status = target - self.t_base, "running"
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # trial steps may overshoot
                error = solver.step()
        except _FAILURES as exc:  # non-finite right-hand side or Jacobian, singular LU
            raise StepFailure(f"integrator failed at t={self.t:.3g}: {exc}") from exc
        self.steps += 1
        if solver.status == "failed":
            raise StepFailure(f"integrator failed at t={self.t:.3g}: {error}")
        point = self._observe(solver.y) if np.all(np.isfinite(solver.y)) else None
        if point is None:
            raise StepFailure(
                f"the integrator left the model's domain (non-finite or non-positive state) at "
                f"t={self.t_base + solver.t:.3g}; tighten rtol"
            )
        self.state, self._point = solver.y, point
        self.t = target if solver.status == "finished" else self.t_base + solver.t
        self.restart = solver.step_size < RESTART_RATIO * solver.t


def integrate(system, *, B, y, stop, rtol: float, atol: float, save_at, clock) -> Outcome:
    """BDF on ``system`` (``initial/rhs/jac/jac_cost/observe``) through :func:`~.driver.drive`;
    saved records are the product ``z``."""
    ynorm = float(np.linalg.norm(y))
    stepper = ScipyStepper(
        BDF, system.rhs, system.initial(), rtol=rtol, atol=atol, jac=system.jac, jac_cost=system.jac_cost(),
        observe=system.observe, residual=lambda z: float(np.linalg.norm(B.matvec(z) - y)) / ynorm,
    )
    return drive(stepper, stop=stop, clock=clock, save_at=save_at)


def integrate_explicit(rhs, state0, *, observe, residual, stop, rtol: float, atol: float, save_at, clock,
                       snapshot=np.copy) -> Outcome:
    """DOP853 on ``state' = rhs(t, state)`` through :func:`~.driver.drive` (matrix flows, SPEC C.1, C.5)."""
    stepper = ScipyStepper(DOP853, rhs, state0, rtol=rtol, atol=atol, observe=observe, residual=residual,
                           residual_matvecs=1)
    return drive(stepper, stop=stop, clock=clock, save_at=save_at, snapshot=snapshot)
