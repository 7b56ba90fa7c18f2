"""The one outcome vocabulary of implicit-bias.

Every result (:class:`~implicit_bias.dynamics.Result`, ``MatrixResult``, :class:`~implicit_bias.limits.Limit`,
``WNLimit``), the CLI's JSON, the sweep store and the report say how a computation ended with one
of these words, defined here and nowhere else. ``converged`` always means that the tolerance the
caller asked for held; every other word says what went wrong and the record says how far it got.
"""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal["converged", "budget_exhausted", "stalled", "diverged", "underflow", "failed"]

STATUSES: tuple[str, ...] = get_args(Status)

NEXT_STEP: dict[str, str] = {
    "converged": "the stated tolerance held: the numbers can be used.",
    "budget_exhausted": "a budget (evaluations, time, wall clock, iterations) ran out before the tolerance "
                        "held: raise the budget or loosen the tolerance.",
    "stalled": "the method stopped making progress above the tolerance (rounding or a degenerate problem): "
               "read the achieved residual/KKT values, loosen the tolerance, or try another method.",
    "diverged": "the iterates blew up (step size too large): use the suggested step or a smaller one.",
    "underflow": "a quantity left float64's range (e.g. an effective initialisation below 1e-290): "
                 "the result is its limiting case; use a larger scale to compute it exactly.",
    "failed": "the computation broke (integrator failure, non-finite values, an error in a sweep trial): "
              "read the message; rerun with --debug for a traceback.",
}


def check_status(value: str) -> Status:
    """``value`` if it is one of :data:`STATUSES`, else ``ValueError`` (a programming error)."""
    if value not in STATUSES:
        raise ValueError(f"unknown status {value!r}; the vocabulary is {STATUSES}")
    return value  # type: ignore[return-value]
