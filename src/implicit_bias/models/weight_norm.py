"""Weight-normalised Hadamard model ``w = r v / ||v||``, ``x = w^N`` (SPEC B.1-B.4).

The signed model applies weight normalisation to the *lifted* vector ``w = (u, v) ∈ R^{2n}``
with one radius ``r`` for the whole lifted vector: ``z = w^N = (u^N, v^N)`` and
``x = u^N - v^N`` is the positive model on ``B = [A, -A]`` (SPEC A.7). Every formula below is
therefore written for the lifted positive problem with ``n' = n`` or ``2n`` coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import require as _require
from ..errors import InvalidParameterError
from .hadamard import LiftedModel, LiftedOperator


@dataclass(frozen=True, eq=False)
class WNInit:
    """Initial radius ``r0 > 0`` and direction ``v0`` (default ``n'^{-1/2} 1``, SPEC B.3).

    ``v0`` must be nonzero (the direction ``v/||v||`` is undefined at 0) and, for depth ``N >= 2``,
    strictly positive: the Hadamard flow never leaves the positive orthant.
    """

    r0: float = 1.0
    v0: np.ndarray | None = None

    def __post_init__(self) -> None:
        r0 = self.r0
        _require(
            isinstance(r0, (int, float, np.floating, np.integer)) and not isinstance(r0, bool)
            and np.isfinite(r0) and r0 > 0,
            "r0", "a float in the range (0, inf)", r0,
        )
        object.__setattr__(self, "r0", float(r0))
        if self.v0 is not None:
            v0 = np.asarray(self.v0, dtype=np.float64)
            if v0.ndim != 1 or v0.size == 0 or not np.all(np.isfinite(v0)):
                raise InvalidParameterError(f"The 'v0' parameter must be a finite 1-d vector. Got shape {v0.shape}.")
            if not np.any(v0):
                raise InvalidParameterError(
                    "The 'v0' parameter is the zero vector: the direction v/||v|| of weight normalisation "
                    "(SPEC B.1) is undefined. Pass a nonzero (for depth >= 2: positive) direction."
                )
            object.__setattr__(self, "v0", v0)

    def describe(self) -> str:
        return f"r0={self.r0:g}" + ("" if self.v0 is None else ", explicit v0")


@dataclass(frozen=True)
class WeightNormalized(LiftedModel):
    """``x = (r v/||v||)^(⊙N)`` (positive) or its lifted signed version (SPEC B.1).

    ``eta_r > 0`` is the rate of the radius ``r`` relative to the direction ``v`` (SPEC B.3);
    ``eta_r << 1`` separates the scales and magnifies the implicit bias by ``rho`` (B.7).
    """

    depth: int = 2
    eta_r: float = 0.01
    signed: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or int(self.depth) != self.depth or self.depth < 2:
            raise InvalidParameterError(
                f"The 'depth' parameter must be an int >= 2 (SPEC B, Theorem B.1). Got {self.depth!r}."
            )
        object.__setattr__(self, "depth", int(self.depth))
        eta = self.eta_r
        _require(
            isinstance(eta, (int, float, np.floating, np.integer)) and not isinstance(eta, bool)
            and np.isfinite(eta) and eta > 0,
            "eta_r", "a float in the range (0, inf) (the rate of r, SPEC B.3)", eta,
        )
        object.__setattr__(self, "eta_r", float(eta))

    @property
    def name(self) -> str:
        return f"WeightNormalized(depth={self.depth}, eta_r={self.eta_r:g}, {'signed' if self.signed else 'positive'})"


    def as_init(self, init) -> WNInit:
        """A :class:`WNInit` from a ``WNInit`` or a float ``r0``."""
        if isinstance(init, WNInit):
            return init
        if isinstance(init, (int, float, np.floating, np.integer)) and not isinstance(init, bool):
            return WNInit(r0=float(init))
        raise InvalidParameterError(
            f"{self.name} is initialised by WNInit(r0, v0) or a float r0; got {type(init).__name__}."
        )

    def initial_state(self, init, n: int) -> tuple[float, np.ndarray]:
        """``(r0, v0)`` with ``v0`` of length ``n'``; ``||v0|| = 1`` by default (SPEC B.3)."""
        init = self.as_init(init)
        width = self.lifted_width(n)
        if init.v0 is None:
            return init.r0, np.full(width, width ** -0.5)
        v0 = init.v0
        if self.signed and v0.shape == (n,):
            v0 = np.concatenate([v0, v0])
        if v0.shape != (width,):
            raise InvalidParameterError(f"v0 must have {width} entries for {self.name} on n={n}; got shape {v0.shape}.")
        if np.any(v0 <= 0):
            raise InvalidParameterError(
                "v0 must be strictly positive for depth >= 2: w = r v/||v|| starts in the positive orthant (SPEC B.1)."
            )
        return init.r0, v0.copy()

    def initial_product(self, init, n: int) -> np.ndarray:
        """``z(0) = (r0 v0/||v0||)^N``; ``(r0/sqrt(n'))^N 1`` by default (SPEC B.6)."""
        r0, v0 = self.initial_state(init, n)
        return weights(r0, v0) ** self.depth

    def equivalent_alpha(self, init, n: int) -> float:
        """The factor-level scale ``alpha = r0 / sqrt(n')`` of plain flow from the same ``z(0)`` (SPEC B)."""
        return self.as_init(init).r0 / np.sqrt(self.lifted_width(n))


def weights(r: float, v: np.ndarray) -> np.ndarray:
    """``w = r v / ||v||`` (SPEC B.1)."""
    norm = np.linalg.norm(v)
    if not norm > 0:
        raise InvalidParameterError("the direction vector v is zero: w = r v/||v|| is undefined (SPEC B.1).")
    return r * v / norm


def pulled_gradient(w: np.ndarray, g: np.ndarray, depth: int) -> np.ndarray:
    """``G(w) = N w^(N-1) ⊙ g(w^N)``: the gradient of ``L(w^N)`` in ``w`` (SPEC B.2)."""
    return depth * w ** (depth - 1) * g


def wn_gradients(r: float, v: np.ndarray, g_of_z, depth: int) -> tuple[float, np.ndarray]:
    """``(∇_r L~, ∇_v L~)`` of SPEC (B.2), with ``g_of_z(z) = B^T(Bz - y)``.

    ``∇_r = <G, v̄>`` and ``∇_v = (r/||v||)(I - v̄ v̄^T) G``.
    """
    norm = np.linalg.norm(v)
    if not norm > 0:
        raise InvalidParameterError("the direction vector v is zero: w = r v/||v|| is undefined (SPEC B.1).")
    vbar = v / norm
    w = r * vbar
    G = pulled_gradient(w, g_of_z(w ** depth), depth)
    gr = float(G @ vbar)
    return gr, (r / norm) * (G - gr * vbar)


def wn_loss(r: float, v: np.ndarray, B: LiftedOperator, y: np.ndarray, depth: int) -> float:
    """``L~(r, v) = ½ ||B (r v/||v||)^N - y||^2`` (SPEC B.1)."""
    res = B.matvec(weights(r, v) ** depth) - y
    return 0.5 * float(res @ res)
