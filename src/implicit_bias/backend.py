"""The array backend: numpy/scipy (the reference) or JAX in float64, selected per call.

A :class:`Backend` is a small frozen object with the few things batched numerics need:

- ``xp``: the array namespace (``numpy`` or ``jax.numpy``) that kernels are written against;
- :meth:`Backend.asarray` / :meth:`Backend.to_numpy`: move arrays to the backend's device (the
  first GPU when JAX sees one, else the CPU) and back to numpy on the host;
- :meth:`Backend.kernel`: a kernel ``fn(xp, *arrays)`` bound to ``xp``; on JAX it is compiled once
  by ``jax.jit`` and cached in a registry keyed by the function (recompiled by JAX only for new
  shapes), so every caller (the batched limit oracle now, network training later) shares one
  compiled copy.

JAX is imported only when a JAX backend is first asked for, and ``jax_enable_x64`` is switched on
then: every backend computes in float64, so JAX on the CPU returns numpy's numbers to rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import InvalidParameterError

BACKENDS = ("numpy", "jax")


@dataclass(frozen=True)
class Backend:
    """One array backend (see the module docstring). Build it with :func:`get_backend`."""

    name: str
    xp: object  # numpy or jax.numpy
    device: object = None  # the jax.Device arrays are placed on (None for numpy)

    @property
    def platform(self) -> str:
        """``cpu`` or ``gpu``/``cuda`` (where the arrays live)."""
        return "cpu" if self.device is None else str(self.device.platform)

    def asarray(self, value) -> object:
        """``value`` as a float64 array of this backend, on its device."""
        array = np.asarray(value, dtype=np.float64)
        if self.name == "numpy":
            return array
        import jax

        return jax.device_put(array, self.device)

    def to_numpy(self, value) -> np.ndarray:
        """A host numpy copy of a backend array (a no-op for numpy arrays)."""
        return np.asarray(value)

    def kernel(self, fn: Callable) -> Callable:
        """``fn(xp, *args)`` as a function of ``*args`` on this backend (jit-compiled and cached on JAX)."""
        if self.name == "numpy":
            return functools.partial(fn, np)
        return _jitted(fn)


@functools.cache
def _jitted(fn: Callable) -> Callable:
    """The registry of compiled kernels: one ``jax.jit`` per kernel function."""
    import jax

    return jax.jit(functools.partial(fn, _jax_numpy()))


@functools.cache
def _jax_numpy():
    """``jax.numpy`` with float64 enabled (done once, before any JAX array exists)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp


@functools.cache
def _jax_backend(device: str | None) -> Backend:
    jnp = _jax_numpy()
    import jax

    if device is None:
        chosen = jax.devices()[0]  # JAX lists an accelerator first when it has one
    else:
        try:
            chosen = jax.devices(device)[0]
        except RuntimeError as exc:
            raise InvalidParameterError(
                f"JAX has no {device!r} device here ({exc}). Use device='cpu', or install the CUDA build "
                "(pip install 'implicit-bias[gpu]') on a machine with an NVIDIA GPU."
            ) from None
    return Backend("jax", jnp, chosen)


_NUMPY = Backend("numpy", np)


def get_backend(backend: str | Backend = "numpy", device: str | None = None) -> Backend:
    """The backend named ``backend`` (``"numpy"`` or ``"jax"``); a :class:`Backend` is returned as is.

    ``device`` (JAX only): ``"cpu"`` or ``"gpu"``; by default the first device JAX lists (a GPU
    when the CUDA build sees one).
    """
    if isinstance(backend, Backend):
        return backend
    if backend not in BACKENDS:
        raise InvalidParameterError(f"The 'backend' parameter must be one of {list(BACKENDS)}. Got {backend!r}.")
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise InvalidParameterError(f"The numpy backend runs on the CPU only. Got device={device!r}; use backend='jax'.")
        return _NUMPY
    return _jax_backend(device)


def gpu_available() -> bool:
    """Whether JAX sees a GPU (imports JAX)."""
    try:
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False
