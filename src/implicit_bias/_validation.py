"""Input validation shared by problems, operators and the matrix theory."""

from __future__ import annotations

import numpy as np

from .errors import InvalidProblemError


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
