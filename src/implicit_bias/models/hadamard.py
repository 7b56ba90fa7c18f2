"""Hadamard (diagonal linear network) factorizations of any depth (SPEC A.1-A.8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_depth, float_array, is_real
from ..errors import InvalidParameterError, UnsupportedError


def _check_positive_vector(values: np.ndarray, name: str) -> np.ndarray:
    values = float_array(values, name, InvalidParameterError)
    if values.ndim != 1:
        raise InvalidParameterError(f"{name} must be a 1-d vector; got shape {values.shape}.")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InvalidParameterError(
            f"{name} must be finite and strictly positive (the flow never leaves the positive orthant); "
            f"got min {np.nanmin(values) if values.size else 'n/a'}."
        )
    return values


@dataclass(frozen=True, eq=False)
class Init:
    """How the factors start (SPEC convention C2 and A.6).

    Exactly one of:
    - ``alpha``: every factor equals ``alpha * 1``; the product starts at ``alpha^N * 1``.
    - ``product``: a positive product-level vector ``x0``; the factors are identical, ``x0^(1/N)``.
      For the signed model pass ``x0`` of length ``n`` (then ``u0^N = v0^N = x0``) or ``2n``
      (``(u0^N, v0^N)``). For depth 1 any real vector is allowed (the linear model).
    - ``factors``: explicit factors of shape ``(N, n)`` (positive) or ``(N, 2n)`` (signed: the
      ``u`` columns first, then the ``v`` columns). They need not be identical.
    """

    alpha: float | None = None
    product: np.ndarray | None = None
    factors: np.ndarray | None = None

    def __post_init__(self) -> None:
        given = [value is not None for value in (self.alpha, self.product, self.factors)]
        if sum(given) != 1:
            raise InvalidParameterError("Init takes exactly one of alpha, product, factors.")
        if self.alpha is not None and (not is_real(self.alpha, finite=True) or self.alpha <= 0):
            raise InvalidParameterError(
                f"The 'alpha' parameter must be a float in the range (0, inf). Got {self.alpha!r}."
            )

    @classmethod
    def uniform(cls, alpha: float) -> "Init":
        return cls(alpha=float(alpha) if is_real(alpha, finite=True) else alpha)

    @classmethod
    def general(cls, x0) -> "Init":
        return cls(product=float_array(x0, "x0", InvalidParameterError))

    @classmethod
    def explicit(cls, factors) -> "Init":
        return cls(factors=float_array(factors, "factors", InvalidParameterError))

    def describe(self) -> str:
        if self.alpha is not None:
            return f"alpha={self.alpha:g}"
        if self.product is not None:
            return "general product init"
        return "explicit factors"


class LiftedOperator:
    """The operator ``B`` of the lifted positive problem: ``A`` or ``[A, -A]`` (SPEC A.7).

    Products with ``B`` are computed from ``A`` without forming ``[A, -A]``.
    """

    def __init__(self, A: np.ndarray, signed: bool):
        self.A = A
        self.signed = signed
        self.m, self.n = A.shape
        self.width = 2 * self.n if signed else self.n

    def matvec(self, z: np.ndarray) -> np.ndarray:
        if self.signed:
            return self.A @ (z[: self.n] - z[self.n :])
        return self.A @ z

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        g = self.A.T @ r
        return np.concatenate([g, -g]) if self.signed else g

    def weighted_gram(self, d: np.ndarray, rel_cutoff: float = 0.0) -> np.ndarray:
        """``B diag(d) B^T`` (an ``m x m`` matrix) for ``d >= 0``.

        Columns with ``d_k < rel_cutoff * max(d)`` are left out: callers that regularise the
        result at a relative level above ``n * rel_cutoff`` lose nothing, and skipping them avoids
        both the work and the slow subnormal arithmetic of weights near underflow.
        """
        if self.signed:
            d = d[: self.n] + d[self.n :]
        if rel_cutoff > 0:
            keep = d >= rel_cutoff * np.max(d)
            if not np.all(keep):
                A = self.A[:, keep]
                return (A * d[keep]) @ A.T
        return (self.A * d) @ self.A.T

    def rows(self, index: np.ndarray) -> "LiftedOperator":
        """The operator restricted to the measurements ``index`` (for mini-batches)."""
        return LiftedOperator(self.A[index], self.signed)

    def dense(self) -> np.ndarray:
        return np.hstack([self.A, -self.A]) if self.signed else self.A


class LiftedModel:
    """The lifting shared by the Hadamard-type models (SPEC A.7): signed = positive on ``[A, -A]``.

    Subclasses are dataclasses with a ``signed`` field.
    """

    signed: bool

    def lift(self, A: np.ndarray) -> LiftedOperator:
        return LiftedOperator(A, self.signed)

    def lifted_width(self, n: int) -> int:
        return 2 * n if self.signed else n

    def x_from_z(self, z: np.ndarray) -> np.ndarray:
        """The model's vector ``x`` from the lifted product ``z``."""
        if self.signed:
            n = z.shape[-1] // 2
            return z[..., :n] - z[..., n:]
        return z


@dataclass(frozen=True)
class Hadamard(LiftedModel):
    """``x = w^(N) ⊙ ... ⊙ w^(1)`` (positive) or ``x = ⊙u^(k) - ⊙v^(k)`` (signed), SPEC (A.1).

    ``depth = 1`` is the plain linear model ``x = w`` (or ``u - v``).
    """

    depth: int = 2
    signed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", check_depth(self.depth, minimum=1))
        if not isinstance(self.signed, (bool, np.bool_)):
            raise InvalidParameterError(f"The 'signed' parameter must be True or False. Got {self.signed!r}.")

    @property
    def name(self) -> str:
        return f"Hadamard(depth={self.depth}, {'signed' if self.signed else 'positive'})"


    def initial_factors(self, init: Init, n: int) -> np.ndarray:
        """Factors of shape ``(N, n')`` with ``n' = n`` (positive) or ``2n`` (signed)."""
        width = self.lifted_width(n)
        if init.alpha is not None:
            with np.errstate(over="ignore", under="ignore"):
                start = float(np.float64(init.alpha) ** self.depth)
            if not (0 < start < np.inf):  # alpha^N left float64's range: the flow has no defined start
                raise InvalidParameterError(
                    f"alpha={init.alpha:g} gives the product initialisation alpha^N = {start:g} at depth {self.depth}, "
                    "outside float64's range; choose alpha so that alpha^N is positive and finite."
                )
            return np.full((self.depth, width), init.alpha)
        if init.product is not None:
            x0 = np.asarray(init.product, dtype=np.float64)
            if self.signed and x0.shape == (n,):
                x0 = np.concatenate([x0, x0])
            if x0.shape != (width,):
                raise InvalidParameterError(
                    f"the product initialisation must have {width} entries for {self.name} on n={n}; got shape {x0.shape}."
                )
            if self.depth == 1:
                if not np.all(np.isfinite(x0)):
                    raise InvalidParameterError("the product initialisation contains NaN/inf.")
                return x0[None, :].copy()
            x0 = _check_positive_vector(x0, "the product initialisation")
            return np.tile(x0 ** (1.0 / self.depth), (self.depth, 1))
        factors = np.asarray(init.factors, dtype=np.float64)
        if factors.shape != (self.depth, width):
            raise InvalidParameterError(
                f"explicit factors must have shape (depth, n') = ({self.depth}, {width}) for {self.name}; got {factors.shape}."
            )
        if not np.all(np.isfinite(factors)):
            raise InvalidParameterError("explicit factors contain NaN/inf.")
        if self.depth > 1 and np.any(factors <= 0):
            raise InvalidParameterError("explicit factors must be strictly positive for depth >= 2 (SPEC A.1).")
        return factors.copy()

    def initial_product(self, init: Init, n: int) -> np.ndarray:
        """The lifted product ``z(0)`` (SPEC C2: ``alpha^N * 1`` for a uniform init)."""
        return product(self.initial_factors(init, n))

    def identical(self, factors: np.ndarray) -> bool:
        return bool(np.all(factors == factors[0]))

    def require_identical(self, init: Init, n: int, what: str) -> np.ndarray:
        factors = self.initial_factors(init, n)
        if not self.identical(factors):
            raise UnsupportedError(
                f"{what} needs identical factors (Init.uniform or Init.general); explicit non-identical factors "
                "have no closed-form limit. Simulate them with GradientFlow(space='factor')."
            )
        return factors

    def invariants(self, factors: np.ndarray, identical: bool | None = None) -> dict[str, np.ndarray]:
        """Conserved quantities of the flow: (A.3) ``w_j^2 - w_1^2`` and, signed with identical
        factors (``identical=None``: judged from ``factors``), (A.8) from the first factor."""
        out: dict[str, np.ndarray] = {}
        if self.depth >= 2:
            out["balancedness_A3"] = factors[1:] ** 2 - factors[0] ** 2
        identical = self.identical(factors) if identical is None else identical
        if self.signed and self.depth >= 2 and identical:
            n = factors.shape[1] // 2
            u, v = factors[0, :n], factors[0, n:]
            if self.depth == 2:
                out["uv_A8"] = u * v
            else:
                out["uv_A8"] = u ** (2.0 - self.depth) + v ** (2.0 - self.depth)
        return out


def product(factors: np.ndarray) -> np.ndarray:
    """``z = ⊙_k w^(k)`` over the first axis."""
    return np.prod(factors, axis=0)


def leave_one_out_products(factors: np.ndarray) -> np.ndarray:
    """``P[k] = ⊙_{j != k} w^(j)`` by prefix/suffix products (no division, safe at zeros)."""
    depth = factors.shape[0]
    prefix = np.ones_like(factors)
    suffix = np.ones_like(factors)
    for k in range(1, depth):
        prefix[k] = prefix[k - 1] * factors[k - 1]
        suffix[depth - 1 - k] = suffix[depth - k] * factors[depth - k]
    return prefix * suffix


def factor_gradient(factors: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient of ``L(⊙_k w^(k))`` with respect to every factor (SPEC A.2), given ``g = ∇L(z)``."""
    return leave_one_out_products(factors) * g
