"""Type checks of the entry points' arguments (``simulate``, ``predict_limit``) before any work.

A wrong object passed as a problem, model, initialisation or stopping rule raises a typed
:class:`~implicit_bias.errors.InvalidParameterError` naming the argument, not an AttributeError
from deep inside a solver.
"""

from __future__ import annotations

import numpy as np

from ._validation import float_array
from .errors import InvalidParameterError


def check_simulate_arguments(stop, save_at):
    """Raise :class:`InvalidParameterError` unless ``stop`` is a ``Stop``; return ``save_at`` as None,
    ``"steps"`` or a sorted 1-d array of finite times >= 0. (The problem and model types are checked
    by :func:`implicit_bias.dynamics.runner_for`, which knows which model fits which problem.)"""
    from .dynamics.base import Stop

    if not isinstance(stop, Stop):
        raise InvalidParameterError(f"The 'stop' parameter must be a Stop. Got {type(stop).__name__}.")
    return check_save_at(save_at)


def check_limit_arguments(problem, model, init) -> None:
    """``predict_limit``'s problem, model and initialisation have the right types (SPEC A.1, A.6)."""
    from .models import Hadamard, Init
    from .problems import SparseRecovery

    for name, value, kind, hint in (
        ("problem", problem, SparseRecovery, "a SparseRecovery (gaussian_sparse, load_problem)"),
        ("model", model, Hadamard, "a Hadamard model"),
        ("init", init, Init, "an Init (Init.uniform(alpha), Init.general(x0))"),
    ):
        if not isinstance(value, kind):
            raise InvalidParameterError(f"The '{name}' parameter must be {hint}. Got {type(value).__name__}.")


def check_save_at(save_at):
    """``save_at``: None, ``"steps"``, or flow times / iteration numbers (a sorted 1-d float array)."""
    if save_at is None or (isinstance(save_at, str) and save_at == "steps"):
        return save_at
    times = float_array(save_at, "save_at", InvalidParameterError) if not isinstance(save_at, str) else None
    if times is None or times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise InvalidParameterError(
            f"The 'save_at' parameter must be None, 'steps' or a non-empty sequence of finite times >= 0. Got {save_at!r:.60}."
        )
    return np.sort(times)
