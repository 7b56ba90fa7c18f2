"""The vocabulary of :func:`implicit_bias.dynamics.simulate`: methods, stopping rules and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

from .._validation import check_seed, is_real
from .._validation import require as _require
from ..status import Status


@dataclass(frozen=True)
class GradientFlow:
    """Gradient flow in factor time (SPEC C1), integrated by an adaptive stiff method.

    ``space``: ``"mirror"`` integrates the reduced flow of identical factors, the mirror state
    ``φ' = -B^T(B z(φ) - y)`` (SPEC A.10, A.12), by a Rosenbrock method (RODAS5P) with the exact
    ``m x m`` Jacobian (:mod:`implicit_bias.dynamics.rosenbrock`); ``rtol`` bounds each
    coordinate's relative error in ``φ`` per step (``atol`` is unused there). ``"factor"``
    integrates every factor (SPEC A.2) with BDF, as needed for non-identical factors; ``"auto"``
    picks mirror whenever the factors are identical. Deep matrix factorisations start with DOP853 and
    switch to a stiff method once the run is stiff (:mod:`implicit_bias.dynamics.matrix_stiff`). Every integrator runs through the one
    driver of :mod:`implicit_bias.dynamics.driver` (saved times are landed on by steps); a failing
    integrator ends the run ``failed``, no other method is substituted.
    """

    space: Literal["auto", "mirror", "factor"] = "auto"
    rtol: float | None = None
    atol: float = 1e-12

    def __post_init__(self) -> None:
        _require(isinstance(self.space, str) and self.space in ("auto", "mirror", "factor"), "space",
                 "one of 'auto', 'mirror', 'factor'", self.space)
        _require(self.rtol is None or (is_real(self.rtol) and 0 < self.rtol < 1), "rtol",
                 "None or a float in the range (0, 1)", self.rtol)
        _require(is_real(self.atol, finite=True) and self.atol > 0, "atol", "a float in the range (0, inf)", self.atol)

    def tolerance(self, space: str) -> float:
        """Default ``rtol``: 1e-6 in mirror space, where integration error moves the trajectory but
        not the limit (``φ - φ0`` stays in ``range(B^T)`` by construction), 1e-10 in factor space."""
        if self.rtol is not None:
            return self.rtol
        return 1e-6 if space == "mirror" else 1e-10


StepSchedule = Callable[[int], float]


@dataclass(frozen=True)
class GradientDescent:
    """Factor gradient descent (SPEC D.1) with a fixed step or a schedule ``k -> eta_k``.

    ``step=None`` takes the safe default of SPEC D.3(ii) at the predicted limit.
    """

    step: float | StepSchedule | None = None

    def __post_init__(self) -> None:
        if self.step is not None and not callable(self.step):
            _require(is_real(self.step, finite=True) and self.step > 0, "step", "a float in the range (0, inf) or a schedule", self.step)


@dataclass(frozen=True)
class SGD:
    """Mini-batch SGD with ``batch`` rows drawn without replacement each step (SPEC D.2)."""

    step: float | StepSchedule | None = None
    batch: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.step is not None and not callable(self.step):
            _require(is_real(self.step, finite=True) and self.step > 0, "step", "a float in the range (0, inf) or a schedule",
                     self.step)
        _require(isinstance(self.batch, (int, np.integer)) and not isinstance(self.batch, bool) and self.batch >= 1,
                 "batch", "an int >= 1", self.batch)
        check_seed(self.seed)


@dataclass(frozen=True)
class MirrorDescent:
    """Exact discrete mirror descent ``∇F_N(z_{k+1}) = ∇F_N(z_k) - eta_k B^T(B z_k - y)`` (SPEC A.0, A.12).

    The exact discretisation of the mirror flow of identical factors (SPEC A.10): for ``N = 2``
    ``z_{k+1} = z_k ⊙ exp(-2 eta g_k)`` (SPEC D.3(iii)); ``N = 1`` is plain GD on ``z``. Every
    iterate keeps ``∇F(z_k) - ∇F(z_0)`` in ``range(B^T)``, so a converged run is the Bregman limit
    (A.14) to rounding. ``step=None`` takes the GD default of SPEC D.3(ii): the step's linear
    stability at the limit is governed by the same ``λ_max`` (D.3).
    """

    step: float | StepSchedule | None = None

    def __post_init__(self) -> None:
        if self.step is not None and not callable(self.step):
            _require(is_real(self.step, finite=True) and self.step > 0, "step", "a float in the range (0, inf) or a schedule",
                     self.step)


Dynamics = GradientFlow | GradientDescent | SGD | MirrorDescent


@dataclass(frozen=True)
class Stop:
    """When to stop: relative residual ``||Ax - y|| / ||y|| <= tol``, or a budget.

    ``max_evals`` counts gradient evaluations (full-gradient equivalents for SGD),
    ``max_time`` the flow time (or ``k * eta`` for GD), ``max_wall`` seconds.
    """

    tol: float = 1e-8
    max_evals: int = 200_000
    max_time: float = np.inf
    max_wall: float = np.inf

    def __post_init__(self) -> None:
        _require(is_real(self.tol) and 0 < self.tol < 1, "tol", "a float in the range (0, 1)", self.tol)
        _require(is_real(self.max_evals) and self.max_evals >= 1, "max_evals", "an int >= 1", self.max_evals)
        _require(is_real(self.max_time) and self.max_time > 0, "max_time", "a float in the range (0, inf]", self.max_time)
        _require(is_real(self.max_wall) and self.max_wall > 0, "max_wall", "a float in the range (0, inf]", self.max_wall)

    def outcome(self, evals: float, t: float, wall: float, residual: float) -> tuple[str, str] | None:
        """``("converged", why)`` at ``residual <= tol``, ``("budget_exhausted", why)`` when a budget is
        spent, else None: the stopping test of every integrator and descent loop."""
        if residual <= self.tol:
            return "converged", f"relative residual {residual:.2e} <= tol {self.tol:g}"
        spent = self.exhausted(evals, t, wall, residual)
        return ("budget_exhausted", spent) if spent else None

    def exhausted(self, evals: float, t: float, wall: float, residual: float) -> str | None:
        """The message of the first budget that is spent, or None."""
        if evals >= self.max_evals:
            return f"gradient-evaluation budget {self.max_evals} exhausted at residual {residual:.2e}"
        if t >= self.max_time:
            return f"time budget t={self.max_time:g} reached at residual {residual:.2e}"
        if wall >= self.max_wall:
            return f"wall-clock budget {self.max_wall:g}s exhausted at residual {residual:.2e}"
        return None


@dataclass(frozen=True, eq=False)
class Path:
    """A saved trajectory: times (factor time; ``k * eta`` for GD/SGD), iterations, and ``x``."""

    t: np.ndarray
    x: np.ndarray  # shape (len(t), n)
    residual: np.ndarray


@dataclass(frozen=True, eq=False)
class Result:
    """What a simulation produced. ``status`` (a word of :mod:`implicit_bias.status`) says whether
    ``x`` may be trusted; ``method`` names the integrator or loop that produced it."""

    x: np.ndarray
    status: Status
    message: str
    method: str
    residual: float
    grad_evals: int
    matvecs: int  # total cost in products with A (a gradient is 2, an m x m Jacobian is m)
    steps: int
    t: float
    wall_s: float
    factors: np.ndarray = field(repr=False)
    invariant_drift: dict = field(default_factory=dict)
    path: Path | None = field(default=None, repr=False)
    step: float | None = None
    suggested_step: float | None = None

    @property
    def converged(self) -> bool:
        return self.status == "converged"
