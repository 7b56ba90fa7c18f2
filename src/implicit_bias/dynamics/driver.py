"""The one integrator driver: every gradient flow of :func:`implicit_bias.dynamics.simulate` runs here.

A *stepper* wraps one integrator (Rosenbrock in mirror space for the sparse and the
weight-normalised flows, scipy's BDF in factor or ``(r, v)`` space, and for matrix factors and the
product flow DOP853 switching to a stiff method when the run becomes stiff) and exposes

- ``t``: the current time; ``steps``, ``evals``, ``matvecs``: its costs so far;
- ``point()``: the observed end-to-end point (``z`` or ``W``) of the current state;
- ``residual()``: the relative residual ``||A(point) - y|| / ||y||`` of the current state;
- ``advance(target)``: one accepted step toward ``target``, never past it, ending exactly on
  ``target`` when it is reachable in that step; :class:`StepFailure` when the integrator breaks;
- ``state``: what the runner turns into factors at the end.

:func:`drive` owns everything else: saving, the stopping rule (``Stop.outcome``) and failures.

Save-time policy (the same for every integrator): **saved times are landed on by steps, never
interpolated.** The driver's target is the next save time (or ``stop.max_time``), and the stepper
shortens its step to end there: every saved state is an error-controlled node of the integration,
and a saved path of a gradient flow is monotone in the loss up to the integrator's tolerance.
``save_at="steps"`` records every accepted step instead. GD and SGD take the same
:class:`Outcome` from :func:`implicit_bias.dynamics.descent.descent_loop`, where iterations land on
save iterations trivially.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from .._arguments import check_save_at
from ..status import Status


class StepFailure(Exception):
    """An integrator could not take a step; the message says where and why."""


@dataclass(frozen=True, eq=False)
class Outcome:
    """How a run ended: what :func:`drive` and ``descent_loop`` give every runner.

    ``saved`` holds ``(t, record)`` pairs, ``record`` being ``snapshot(point)`` at that time;
    ``state`` is the stepper's (or the descent loop's) final state.
    """

    status: Status
    message: str
    t: float
    steps: int
    evals: int
    matvecs: int
    saved: tuple
    state: Any


class Stepper(Protocol):
    t: float
    steps: int
    evals: float
    matvecs: float
    state: Any

    def point(self) -> np.ndarray: ...

    def residual(self) -> float: ...

    def advance(self, target: float) -> None: ...


def save_schedule(save_at) -> tuple[np.ndarray | None, bool]:
    """``(sorted times or None, every_step)`` from ``save_at`` = None, ``"steps"`` or a sequence of
    times (GD/SGD: iterations); bad values raise :class:`InvalidParameterError`."""
    save_at = check_save_at(save_at)
    if save_at is None or isinstance(save_at, str):
        return None, save_at is not None
    return save_at, False


def drive(
    stepper: Stepper,
    *,
    stop,
    clock: Callable[[], float],
    save_at=None,
    snapshot: Callable[[np.ndarray], Any] = np.copy,
) -> Outcome:
    """Advance ``stepper`` until ``stop`` says converged or a budget is spent, or the integrator fails.

    Each round: record the saves due at the current time, test the residual (non-finite: ``failed``)
    and ``stop.outcome``, then take one step toward the next save time or ``stop.max_time``.
    """
    times, every_step = save_schedule(save_at)
    saved: list[tuple[float, Any]] = []
    index = 0
    status, message = "budget_exhausted", ""
    while True:
        if every_step:
            saved.append((float(stepper.t), snapshot(stepper.point())))
        while times is not None and index < times.size and times[index] <= stepper.t:
            saved.append((float(times[index]), snapshot(stepper.point())))
            index += 1
        residual = stepper.residual()
        if not np.isfinite(residual):
            status, message = "failed", f"non-finite residual at t={stepper.t:.3g}"
            break
        ended = stop.outcome(stepper.evals, stepper.t, clock(), residual)
        if ended:
            status, message = ended
            break
        target = min(float(times[index]) if times is not None and index < times.size else np.inf, stop.max_time)
        try:
            stepper.advance(target)
        except StepFailure as exc:
            status, message = "failed", str(exc)
            break
    return Outcome(
        status=status, message=message, t=float(stepper.t), steps=int(stepper.steps),
        evals=int(np.ceil(stepper.evals)), matvecs=int(np.ceil(stepper.matvecs)), saved=tuple(saved),
        state=stepper.state,
    )
