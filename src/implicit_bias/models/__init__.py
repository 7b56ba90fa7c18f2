"""Parametrizations: how the vector ``x`` is built from factors (SPEC A.1, B.1).

Every model is reduced to one *lifted* positive problem: the signed model ``x = prod u - prod v``
on ``A`` is the positive model on ``B = [A, -A]`` with ``z = (prod u, prod v)`` (SPEC A.7).
The dynamics and the limit oracle therefore only ever see factors of shape ``(N, n')``,
their product ``z`` and the lifted operator ``B``. :class:`WeightNormalized` (SPEC B) applies
``w = r v/||v||`` to the lifted vector, with one radius ``r``. :class:`DeepFactorization` (SPEC C)
builds a matrix ``W = W_N ... W_1`` from matrix factors.
"""

from .deep_factorization import DeepFactorization, MatrixInit
from .hadamard import Hadamard, Init, LiftedOperator
from .weight_norm import WeightNormalized, WNInit

__all__ = ["DeepFactorization", "Hadamard", "Init", "LiftedOperator", "MatrixInit", "WeightNormalized", "WNInit"]
