"""Input validation and small helpers shared across the package (one copy each)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import InvalidParameterError, InvalidProblemError


def as_finite_array(value, name: str, ndim: int) -> np.ndarray:
    """Return ``value`` as a float64 array of ``ndim`` dimensions, or raise a clear error."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name} must be a numeric array; got {type(value).__name__}: {exc}") from exc
    if array.ndim != ndim:
        raise InvalidProblemError(f"{name} must be a {ndim}-d array; got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InvalidProblemError(f"{name} contains {bad} NaN/inf entries; clean the data before fitting.")
    return array


def require(condition: bool, name: str, allowed: str, got) -> None:
    """Raise :class:`InvalidParameterError` "The 'name' parameter must be allowed. Got got." unless ``condition``."""
    if not condition:
        raise InvalidParameterError(f"The '{name}' parameter must be {allowed}. Got {got!r}.")


def check_depth(depth, minimum: int = 2, hint: str = "") -> int:
    """``depth`` as an int ``>= minimum`` (bools rejected), or :class:`InvalidParameterError`."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < minimum:
        raise InvalidParameterError(f"The 'depth' parameter must be an int >= {minimum}{hint}. Got {depth!r}.")
    return int(depth)


def relative_distance(x, reference) -> float:
    """``||x - reference|| / ||reference||`` (Frobenius for matrices; the denominator floored at 1e-300)."""
    x, reference = np.asarray(x, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(x - reference) / max(np.linalg.norm(reference), 1e-300))


def jsonable(value):
    """A JSON-safe copy of ``value``: numpy scalars and arrays become Python numbers and lists, and
    non-finite floats become ``None`` (JSON has no NaN/inf)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
