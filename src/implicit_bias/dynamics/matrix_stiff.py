"""Stiff integration of the deep-matrix flows: scipy's BDF with a dense Jacobian (SPEC C.1, C.5).

In the tail of a low-rank recovery, and while a singular value runs away (completion with an
unbounded interpolant), the factor flow is stiff: the directions that touch the large singular
values relax at rates ``~ N ||A||^2 sigma_1^(2-2/N)`` while the residual decays only polynomially
in ``t`` (the small singular values move at rates ``~ sigma^(2-2/N)``, C.6; measured on 100 x 100
completion, depth 3: residual ``~ (t + 88)^(-0.74)``; 2 x 2 runaway: ``|W11| ~ 1/W22`` grows like
``t^(1/3)``). An
explicit method's step stays at its stability bound ``~ 1/lambda_max`` for ever (measured: DOP853
on the 2 x 2 runaway completion spent 500k evaluations at ``h ~ 0.1`` while the run needs
``t ~ 5e6``); BDF's steps grow with ``t``.

- Factor flow: the exact Jacobian ``d(-grad L^N)/d(W_1..W_N) = -(D^T A^*A D + H_R)``, with ``D``
  the Jacobian of the product map (``D_j = P_j ⊗ Q_j^T``, ``P_j = W_N...W_{j+1}``,
  ``Q_j = W_{j-1}...W_1``) and ``H_R`` the second-order term of ``<R, W_N...W_1>``,
  ``R = A^*(A(W) - y)`` (:func:`factor_jacobian`).
- Product flow: scipy's finite-difference Jacobian (the derivative of ``A_W`` through the SVD,
  C.6, has no closed form worth keeping).

Why scipy's BDF and not diffrax (measured on this 2-core machine, under load): diffrax's Kvaerno5
with a dense Newton solve reached residual 1e-3 on the 2 x 2 runaway case in 0.04 s plus 2 s of
JIT compilation per problem shape, but on 20 x 20 sensing (1200 numbers) it refactorised the
Jacobian at every Newton iteration and did not reach ``t = 100`` in 10 minutes; with lineax GMRES
(matrix-free JVPs, no preconditioner) on 100 x 100 completion it took 470 s to reach ``t = 10``,
where DOP853 needs 2 s: the Newton matrix ``I + h gamma Hess`` has condition ``~ h lambda_max ~ 1e5``.
scipy's BDF reuses one Jacobian and one LU over many steps and needs no compilation.

Dense Jacobians fit small states only: above :data:`STIFF_STATE_LIMIT` numbers the factor flow of
a completion problem switches instead to the ROS34PW2 W-method of :mod:`.matrix_wmethod`, whose
stage matrix ``I/(h gamma) + J^T J`` (Gauss-Newton) is inverted in measurement space (measured on
100 x 100 rank-5 completion, m = 2000, depth 3, under load on 2 cores: residual 1e-6 at t = 8.2e3
in 56 s, 3194 steps, where DOP853 alone sat at h = 0.044); other large states (Gaussian sensing,
the product flow) stay on DOP853.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import BDF, DOP853

from .flow import ScipyStepper

# Largest state (numbers) integrated with a dense Jacobian: an LU of (n x n) per step-size change.
STIFF_STATE_LIMIT = 1500


def measurement_rows(operator) -> tuple[str, np.ndarray]:
    """``("mask", flat indices)`` for an entry mask, else ``("dense", m x (d_y d_x) matrix)`` of ``A``."""
    d_y, d_x = operator.shape
    if hasattr(operator, "index"):
        return "mask", np.ravel_multi_index(operator.index, (d_y, d_x))
    if hasattr(operator, "matrices"):
        return "dense", np.asarray(operator.matrices).reshape(operator.m, -1)
    basis = np.eye(d_y * d_x)
    return "dense", np.stack([operator.apply(basis[k].reshape(d_y, d_x)) for k in range(d_y * d_x)], axis=1)


def _chain(mats, size: int) -> np.ndarray:
    """``mats[-1] @ ... @ mats[0]``, the ``size x size`` identity when empty."""
    out = np.eye(size)
    for M in mats:
        out = M @ out
    return out


def factor_jacobian(factors, R: np.ndarray, measurements: tuple[str, np.ndarray]) -> np.ndarray:
    """Jacobian of the factor flow ``-grad L^N`` (SPEC C.1) w.r.t. the row-major factors ``(W_1, ..., W_N)``.

    ``-(D^T A^*A D + H_R)``: the Gauss-Newton part, and the second derivative of ``<R, W_N...W_1>``
    whose block ``(j, i)``, ``i < j``, is ``X[p, s] B[q, r]`` at ``((p, q), (r, s))`` with
    ``X = P_j^T R Q_i^T`` and ``B = W_{j-1}...W_{i+1}``.
    """
    N = len(factors)
    d_x = factors[0].shape[1]
    P = [_chain(factors[j + 1:], factors[j].shape[0]) for j in range(N)]  # W_N ... W_{j+1}
    Q = [_chain(factors[:j], d_x) for j in range(N)]  # W_{j-1} ... W_1
    D = np.hstack([np.kron(P[j], Q[j].T) for j in range(N)])
    kind, rows = measurements
    AD = D[rows] if kind == "mask" else rows @ D
    H = AD.T @ AD
    offsets = np.cumsum([0] + [Wj.size for Wj in factors])
    for j in range(1, N):
        for i in range(j):
            X = P[j].T @ R @ Q[i].T
            B = _chain(factors[i + 1:j], factors[i].shape[0])
            block = np.einsum("ps,qr->pqrs", X, B).reshape(factors[j].size, factors[i].size)
            H[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] += block
            H[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] += block.T
    return -H


def use_stiff(state_size: int) -> bool:
    """Whether a flow with ``state_size`` numbers may switch to BDF with a dense Jacobian."""
    return state_size <= STIFF_STATE_LIMIT


# Stiffness test: every CHECK_EVERY explicit steps, POWER_ITERATIONS finite-difference Jacobian-vector
# products estimate |lambda_max|; h |lambda_max| above STIFF_RATIO means DOP853 sits at its stability
# bound (its real stability interval is about [-6, 0]; an accuracy-limited step at rtol <= 1e-6 has
# h |lambda_max| < 1), and the run switches to BDF for good, but not before MIN_EXPLICIT_STEPS steps:
# short runs are cheapest on DOP853 even when stability-limited (measured: 20 x 20 sensing, depth 3,
# tol 1e-5: DOP853 0.6 s, a switch to BDF at the first stiff test 70 s; BDF's LUs of the 1200 x 1200
# Newton matrix at rtol 1e-10 cost more than the explicit steps they save when the run is short).
CHECK_EVERY, POWER_ITERATIONS, STIFF_RATIO, MIN_EXPLICIT_STEPS = 20, 8, 2.5, 1000


def spectral_radius(rhs, state: np.ndarray, f0: np.ndarray, iterations: int = POWER_ITERATIONS) -> float:
    """Power-iteration estimate of ``max |eigenvalue|`` of ``d rhs / d state`` by finite differences."""
    v = np.random.default_rng(0).standard_normal(state.size)
    v /= np.linalg.norm(v)
    eps = np.sqrt(np.finfo(float).eps) * max(1.0, float(np.linalg.norm(state)))
    radius = 0.0
    for _ in range(iterations):
        w = (rhs(0.0, state + eps * v) - f0) / eps
        radius = float(np.linalg.norm(w))
        if not (np.isfinite(radius) and radius > 0):
            return 0.0
        v = w / radius
    return radius


class StiffSwitchStepper:
    """A stepper of :func:`~.driver.drive`: DOP853 while the flow is not stiff, then BDF with ``jac``.

    The escape phase (saddle to saddle) is accuracy-limited, where an order-8 explicit method is
    cheapest (BDF at rtol 1e-10 measured 100x slower there); the tail is stability-limited, where
    BDF's steps grow with ``t``. The switch is one-way, tested by :func:`spectral_radius`.
    ``jac=None`` takes scipy's finite-difference Jacobian. ``stiff(state, t, h)``, when given,
    builds the stiff stepper instead of BDF (the W-method of :mod:`.matrix_wmethod` for large
    completion states).
    """

    def __init__(self, rhs, state0, *, rtol, atol, jac, jac_cost, observe, residual,
                 min_explicit_steps: int = MIN_EXPLICIT_STEPS, stiff_ratio: float = STIFF_RATIO, stiff=None):
        self._rhs, self._min_steps, self._ratio, self._stiff_factory = rhs, min_explicit_steps, stiff_ratio, stiff
        self._stiff_options = {"rtol": rtol, "atol": atol, "jac": jac, "jac_cost": jac_cost, "observe": observe,
                               "residual": residual, "residual_matvecs": 1}
        self.current = ScipyStepper(DOP853, rhs, state0, rtol=rtol, atol=atol, observe=observe, residual=residual,
                                    residual_matvecs=1)
        self.explicit, self.switched_at, self._probe_evals = self.current, None, 0

    t = property(lambda self: self.current.t)
    state = property(lambda self: self.current.state)
    steps = property(lambda self: self.current.steps + (self.explicit.steps if self.current is not self.explicit else 0))

    @property
    def evals(self) -> int:
        done = self.explicit.evals if self.current is not self.explicit else 0
        return self.current.evals + done + self._probe_evals

    @property
    def matvecs(self) -> int:
        done = self.explicit.matvecs if self.current is not self.explicit else 0
        return self.current.matvecs + done + 2 * self._probe_evals

    def point(self):
        return self.current.point()

    def residual(self) -> float:
        return self.current.residual()

    def advance(self, target: float) -> None:
        self.current.advance(target)
        due = self.explicit.steps >= self._min_steps and (self.explicit.steps - self._min_steps) % CHECK_EVERY == 0
        if self.current is self.explicit and due and self._stiff():
            explicit = self.explicit
            self.switched_at = explicit.t
            if self._stiff_factory is not None:
                self.current = self._stiff_factory(explicit.state, explicit.t, explicit.solver.step_size)
                return
            stiff = ScipyStepper(BDF, self._rhs, explicit.state, **self._stiff_options)
            stiff.t = explicit.t
            self.current = stiff

    def _stiff(self) -> bool:
        solver = self.explicit.solver
        self._probe_evals += POWER_ITERATIONS
        return solver.step_size * spectral_radius(self._rhs, solver.y, solver.f) > self._ratio
