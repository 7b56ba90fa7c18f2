"""Stiff factor flow of deep matrix completion: a Rosenbrock W-method with a Gauss-Newton matrix
solved in measurement space (SPEC C.1, C.13).

The factor flow is ``x' = F(x) = -J(x)^T r(x)`` with ``r = A(W_N...W_1) - y`` (``m`` observed
entries) and ``J`` the ``m x n`` Jacobian of the measurements with respect to the factors. Its
Jacobian is ``-(J^T J + sum_i r_i Hess r_i)``: the stiff part is the Gauss-Newton term ``J^T J``
(rank ``<= m``); the residual term is small in the tail. ROS34PW2 (Rang & Angermann 2005: four
stages, order 3, embedded order 2, L-stable, a *W-method*: its order conditions hold for any
stage matrix) runs with the stage matrix ``W = I/(h gamma) + J_0^T J_0``, ``J_0`` the Jacobian at
the last refresh, inverted exactly by Woodbury in measurement space,

    W^{-1} b = c (b - J_0^T (I/c + G)^{-1} J_0 b),   c = h gamma,   G = J_0 J_0^T,

with one symmetric eigendecomposition ``G = V diag(lam) V^T`` per refresh, so that every step size
reuses it. For an entry mask, entries ``i = (a_i, b_i)``,

    G_ij = sum_k (P_k P_k^T)[a_i, a_j] (Q_k^T Q_k)[b_i, b_j],  P_k = W_N...W_{k+1},  Q_k = W_{k-1}...W_1,

``O(N m^2)``; ``J_0 b`` and ``J_0^T v`` are products with the factors. The Jacobian is refreshed
after a rejected step taken with an old one, and whenever ``t`` has grown by :data:`REFRESH_GROWTH`
since the last refresh.
"""

from __future__ import annotations

import numpy as np

from .driver import StepFailure

# ROS34PW2 (Rang & Angermann 2005; coefficients as in PETSc's TSROSWRA34PW2), in the form
# k_i = h f(y + sum_j alpha_ij k_j) + h T sum_j gamma_ij k_j, y_new = y + sum_i b_i k_i.
GAMMA = 4.3586652150845900e-01
_ALPHA = np.array([[0, 0, 0, 0], [8.7173304301691801e-01, 0, 0, 0],
                   [8.4457060015369423e-01, -1.1299064236484185e-01, 0, 0], [0, 0, 1.0, 0]])
_GAMMAS = np.array([[GAMMA, 0, 0, 0], [-8.7173304301691801e-01, GAMMA, 0, 0],
                    [-9.0338057013044082e-01, 5.4180672388095326e-02, GAMMA, 0],
                    [2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01, GAMMA]])
_B = np.array([2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351020e+00, GAMMA])
_B_HAT = np.array([3.7810903145819369e-01, -9.6042292212423178e-02, 0.5, 2.1793326075422950e-01])
# Hairer & Wanner's transformed variables u_i = sum_j gamma_ij k_j (IV.7.23):
# (I/(h gamma) - T) u_i = f(y + sum_j A_ij u_j) + sum_j (C_ij / h) u_j, y_new = y + sum_j M_j u_j.
_GINV = np.linalg.inv(_GAMMAS)
STAGE_A = _ALPHA @ _GINV
STAGE_C = np.diag(np.diag(_GINV)) - _GINV
WEIGHTS = _B @ _GINV
ERROR_WEIGHTS = (_B - _B_HAT) @ _GINV
ORDER, EMBEDDED_ORDER = 3, 2

# Step-size control: h_new = h * clip(SAFETY err^(-1/(EMBEDDED_ORDER + 1)), FAC_MIN, FAC_MAX).
SAFETY, FAC_MIN, FAC_MAX = 0.9, 0.2, 5.0
# Refresh the Gauss-Newton matrix when t has grown by this factor since the last refresh. Measured on
# 100 x 100 rank-5 completion, depth 3, to residual 1e-6 (2 loaded cores): growth 1.2 / 1.4 / 2 / 4 took
# 2965 / 3194 / 4295 / 6905 steps and 70 / 56 / 60 / 89 s (a stale matrix shrinks the steps; each
# refresh is one 2000 x 2000 eigendecomposition, ~1-2 s).
REFRESH_GROWTH = 1.4


def _chain(mats, size: int) -> np.ndarray:
    out = np.eye(size)
    for M in mats:
        out = M @ out
    return out


class CompletionGaussNewton:
    """The measurement Jacobian ``J`` of an entry mask at given factors, and ``(I/c + J^T J)^{-1}``.

    ``shapes``: the factor shapes ``(W_1, ..., W_N)``; ``index``: the mask's ``(rows, cols)``.
    """

    def __init__(self, shapes, index):
        self.shapes = [tuple(s) for s in shapes]
        self.sizes = np.cumsum([0] + [a * b for a, b in self.shapes])
        self.rows, self.cols = (np.asarray(a) for a in index)
        self.d_y, self.d_x = self.shapes[-1][0], self.shapes[0][1]
        self.lam = self.V = None

    def unpack(self, vector: np.ndarray) -> list[np.ndarray]:
        return [vector[self.sizes[k]:self.sizes[k + 1]].reshape(self.shapes[k]) for k in range(len(self.shapes))]

    def at(self, factors) -> CompletionGaussNewton:
        """Set ``P_k`` and ``Q_k`` from ``factors`` (the Gram matrix is left to :meth:`factorize`)."""
        N = len(factors)
        self.P = [_chain(factors[k + 1:], factors[k].shape[0]) for k in range(N)]
        self.Q = [_chain(factors[:k], self.d_x) for k in range(N)]
        return self

    def gram(self) -> np.ndarray:
        """``G = J J^T`` by the entry formula (module docstring)."""
        a, b = self.rows, self.cols
        G = np.zeros((a.size, a.size))
        for P, Q in zip(self.P, self.Q):  # gathers of the small d_y x d_y and d_x x d_x Grams
            G += (P @ P.T)[np.ix_(a, a)] * (Q.T @ Q)[np.ix_(b, b)]
        return G

    def factorize(self) -> None:
        self.lam, self.V = np.linalg.eigh(self.gram())

    def jvp(self, vector: np.ndarray) -> np.ndarray:
        """``J v``: the observed entries of ``sum_k P_k dW_k Q_k``."""
        dW = sum(P @ D @ Q for P, D, Q in zip(self.P, self.unpack(vector), self.Q))
        return dW[self.rows, self.cols]

    def vjp(self, r: np.ndarray) -> np.ndarray:
        """``J^T r``: the factor blocks ``P_k^T E Q_k^T``, ``E`` the zero-filled ``r``."""
        E = np.zeros((self.d_y, self.d_x))
        E[self.rows, self.cols] = r
        return np.concatenate([(P.T @ E @ Q.T).ravel() for P, Q in zip(self.P, self.Q)])

    def solve(self, b: np.ndarray, c: float) -> np.ndarray:
        """``(I/c + J^T J)^{-1} b`` by Woodbury with the eigendecomposition of ``G``."""
        w = self.V.T @ self.jvp(b)
        w /= 1.0 / c + self.lam
        return c * (b - self.vjp(self.V @ w))


def _first_step(rhs, state, f0, rtol, atol) -> float:
    """Hairer's starting step: ``0.01 ||y|| / ||f||`` in the error norm."""
    scale = atol + rtol * np.abs(state)
    d0, d1 = np.sqrt(np.mean((state / scale) ** 2)), np.sqrt(np.mean((f0 / scale) ** 2))
    return 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1


class WMethodStepper:
    """ROS34PW2 with the Gauss-Newton stage matrix, a stepper of :func:`~.driver.drive`.

    ``rhs(t, state)`` is the factor flow, ``model`` a :class:`CompletionGaussNewton`;
    ``observe``/``residual`` as for :class:`~.flow.ScipyStepper`. ``refresh="adaptive"`` refreshes as
    the module docstring says, ``"never"`` keeps the Jacobian of the first step (for the W-method
    order test), ``"always"`` refreshes every step.
    """

    def __init__(self, rhs, state0, model, *, rtol, atol, observe, residual, t0=0.0, first_step=None,
                 refresh: str = "adaptive", fixed_step: float | None = None):
        self._rhs, self.model, self.rtol, self.atol = rhs, model, rtol, atol
        self._observe, self._residual, self._refresh, self._fixed = observe, residual, refresh, fixed_step
        self.state, self.t, self.steps, self.evals, self.matvecs = np.array(state0, float), float(t0), 0, 1, 0
        self.rejected = self.refreshes = 0
        self._f = rhs(self.t, self.state)
        self.h = fixed_step or first_step or _first_step(rhs, self.state, self._f, rtol, atol)
        self._point, self._t_jac = observe(self.state), None

    def point(self) -> np.ndarray:
        return self._point

    def residual(self) -> float:
        self.matvecs += 1
        return self._residual(self._point) if self._point is not None else float("inf")

    def _update_jacobian(self) -> None:
        self.model.at(self.model.unpack(self.state)).factorize()
        self._t_jac, self.refreshes = self.t, self.refreshes + 1
        self.matvecs += self.model.rows.size

    def _attempt(self, h: float):
        """One ROS34PW2 step of size ``h``: ``(increment, error estimate)``."""
        c, us = h * GAMMA, []
        for i in range(STAGE_A.shape[0]):
            f = self._f if i == 0 else self._rhs(self.t, self.state + sum(STAGE_A[i, j] * us[j] for j in range(i)))
            rhs = f + sum((STAGE_C[i, j] / h) * us[j] for j in range(i))
            us.append(self.model.solve(rhs, c))
        self.evals += STAGE_A.shape[0] - 1
        self.matvecs += 2 * STAGE_A.shape[0] + 2 * (STAGE_A.shape[0] - 1)
        return sum(w * u for w, u in zip(WEIGHTS, us)), sum(w * u for w, u in zip(ERROR_WEIGHTS, us))

    def _error(self, increment, estimate) -> float:
        scale = self.atol + self.rtol * np.maximum(np.abs(self.state), np.abs(self.state + increment))
        return float(np.sqrt(np.mean((estimate / scale) ** 2)))

    def advance(self, target: float) -> None:
        """One accepted step toward ``target``, landing on it when reachable."""
        fresh = False
        while True:
            if self._t_jac is None or self._refresh == "always" or (
                    self._refresh == "adaptive" and self.t > REFRESH_GROWTH * max(self._t_jac, 1.0)):
                self._update_jacobian()
                fresh = True
            h = min(self.h, target - self.t)
            with np.errstate(over="ignore", invalid="ignore"):
                increment, estimate = self._attempt(h)
                err = self._error(increment, estimate) if self._fixed is None else 0.0
            if not np.isfinite(err):
                err = np.inf
            if err <= 1.0:
                break
            self.rejected += 1
            self.h = h * FAC_MIN if not np.isfinite(err) else h * max(FAC_MIN, SAFETY * err ** (-1 / (EMBEDDED_ORDER + 1)))
            if self._refresh == "adaptive" and not fresh:
                self._t_jac = None
            if self.h < 1e-14 * max(1.0, abs(self.t)):
                raise StepFailure(f"W-method step size underflow at t={self.t:.3g}")
        self._accept(h, increment, err, target if h == target - self.t else None)

    def _accept(self, h, increment, err, target) -> None:
        landed = target is not None
        state = self.state + increment
        point = self._observe(state) if np.all(np.isfinite(state)) else None
        if point is None:
            raise StepFailure(f"the W-method left the finite states at t={self.t:.3g}")
        self.state, self._point, self.steps = state, point, self.steps + 1
        self.t = target if landed else self.t + h
        self._f = self._rhs(self.t, self.state)
        self.evals += 1
        self.matvecs += 2
        if self._fixed is None:
            grow = FAC_MAX if err == 0 else min(FAC_MAX, SAFETY * err ** (-1 / (EMBEDDED_ORDER + 1)))
            if not landed or grow < 1:
                self.h = h * max(FAC_MIN, grow)
