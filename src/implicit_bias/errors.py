"""Typed errors of implicit-bias.

Every error says what was wrong, what was received, and how to fix it. All derive from
:class:`ImplicitBiasError`; input errors also derive from :class:`ValueError` so that callers
catching ``ValueError`` keep working.
"""


class ImplicitBiasError(Exception):
    """Base class of every error raised by implicit-bias."""


class InvalidProblemError(ImplicitBiasError, ValueError):
    """The measurement problem is malformed: shapes, NaN/inf, an impossible generator setting."""


class InvalidParameterError(ImplicitBiasError, ValueError):
    """A model, dynamics or stopping parameter is out of its allowed range."""


class InfeasibleProblemError(ImplicitBiasError, ValueError):
    """The problem has no exact solution of the kind the model can reach (e.g. no x >= 0 with Ax = y)."""


class UnsupportedError(ImplicitBiasError, ValueError):
    """The requested combination (model, initialisation, method) is not covered by the theory or code."""


class DivergenceError(ImplicitBiasError, ArithmeticError):
    """An iteration produced non-finite values or a growing loss."""


class SolverError(ImplicitBiasError, RuntimeError):
    """A numerical solver (Newton, ODE integrator, LP, cvxpy) failed to reach its tolerance."""
