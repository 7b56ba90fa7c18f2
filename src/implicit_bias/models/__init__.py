"""Parametrizations: how the vector ``x`` is built from factors (SPEC A.1).

Every model is reduced to one *lifted* positive problem: the signed model ``x = prod u - prod v``
on ``A`` is the positive model on ``B = [A, -A]`` with ``z = (prod u, prod v)`` (SPEC A.7).
The dynamics and the limit oracle therefore only ever see factors of shape ``(N, n')``,
their product ``z`` and the lifted operator ``B``.
"""

from .hadamard import Hadamard, Init, LiftedOperator

__all__ = ["Hadamard", "Init", "LiftedOperator"]
