"""Input validation and small helpers shared across the package (one copy each)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import InvalidParameterError, InvalidProblemError


# Dense arrays above this many float64 entries (8 GiB) are refused before any allocation: a typo
# such as n = 10**12 must fail at once with a clear message, not thrash or die in the allocator.
MAX_DENSE_ENTRIES = 2**30


def float_array(value, name: str, error: type = InvalidProblemError) -> np.ndarray:
    """``value`` as a float64 array; strings, objects, ragged lists and complex numbers raise ``error``
    (numpy would silently drop an imaginary part)."""
    try:
        complex_ = isinstance(value, (str, bytes)) or np.iscomplexobj(value)
        array = None if complex_ else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise error(f"{name} must be a real numeric array; got {type(value).__name__}: {exc}") from exc
    if complex_:
        raise error(f"{name} must be a real numeric array; got {type(value).__name__} {value!r:.60}.")
    return array


def check_dense_size(entries, what: str, hint: str) -> None:
    """Refuse an array of ``entries`` float64 numbers above :data:`MAX_DENSE_ENTRIES`, naming its memory."""
    if entries > MAX_DENSE_ENTRIES:
        gib = 8.0 * float(min(entries, 10**300)) / 2**30
        raise InvalidProblemError(
            f"{what} would need {gib:.3g} GiB of memory ({float(min(entries, 10**300)):.3g} float64 entries; the limit is "
            f"{MAX_DENSE_ENTRIES * 8 // 2**30} GiB); {hint}."
        )


def is_real(value, finite: bool = False) -> bool:
    """True for a real number (Python or numpy int/float; with ``finite``, not NaN/inf and within
    float range), False for bools, strings, arrays and None."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        return not finite or math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools, floats with a fraction, NaN, strings rejected)."""
    integral = isinstance(value, numbers.Integral) or (is_real(value, finite=True) and value == int(value))
    if isinstance(value, (bool, np.bool_)) or not integral or value < minimum:
        raise InvalidParameterError(f"The '{name}' parameter must be an int >= {minimum}. Got {value!r}.")
    return int(value)


def check_seed(seed, name: str = "seed") -> int | None:
    """``seed`` as None or an int >= 0 (what ``numpy.random.default_rng`` accepts), else a typed error."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidParameterError(f"The '{name}' parameter must be None or an int >= 0. Got {seed!r}.")
    return int(seed)


def as_finite_array(value, name: str, ndim: int) -> np.ndarray:
    """Return ``value`` as a float64 array of ``ndim`` dimensions, or raise a clear error."""
    array = float_array(value, name)
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
