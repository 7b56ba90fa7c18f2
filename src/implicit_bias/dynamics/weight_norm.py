"""Gradient flow, GD and SGD of the weight-normalised model in ``(r, v)`` (SPEC B.2-B.5).

The flow (``GradientFlow()``, space ``auto``/``mirror``) runs as the time-rescaled mirror flow of
:mod:`.wn_mirror`: an ``m``-dimensional dual ODE with ``r`` and ``v`` in closed form, integrated by
RODAS5P through the one driver. ``GradientFlow(space="factor")`` integrates the ``(1+n')``-dimensional
state ``s = (r, v)`` itself: :class:`WNSystem` by BDF (:func:`implicit_bias.dynamics.flow.integrate`)
with an analytic dense Jacobian (size ``(1+n')^2``, meant for ``n'`` up to a few thousand), the
independent check of the mirror path. GD/SGD take ``r <- r - η η_r ∇_r``, ``v <- v - η ∇_v``
(the same rates as the flow, SPEC B.3, discretised).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from ..models.weight_norm import pulled_gradient
from .base import SGD, GradientDescent, GradientFlow, Result
from .descent import DescentPlan, descent_loop, descent_plan, minibatch_gradient
from .driver import Outcome, StepFailure, drive
from .flow import integrate
from .sparse import sparse_result, stopwatch
from .wn_mirror import RodasWNFlow, WNCoordinates

WN_ATOL = 1e-100  # absolute tolerance of the (r, v) flow: coordinates of w above ~1e3 * WN_ATOL are resolved


def resolved_floor(depth: int) -> float:
    """The smallest product coordinate ``z = w^N`` that the flow resolves in relative terms."""
    return (1e3 * WN_ATOL) ** depth


class WNSystem:
    """``ṙ = -η_r <G, v̄>``, ``v̇ = -(r/||v||)(I - v̄v̄^T) G`` (SPEC B.3), a system for :func:`.flow.integrate`."""

    def __init__(self, B, y, depth: int, eta_r: float, r0: float, v0: np.ndarray):
        self.B, self.y, self.depth, self.eta_r = B, y, depth, eta_r
        self.state0 = np.concatenate([[r0], v0])
        self._gram = None

    def initial(self) -> np.ndarray:
        return self.state0.copy()

    def split(self, state: np.ndarray):
        r, v = state[0], state[1:]
        norm = np.linalg.norm(v)
        return r, v, norm, v / norm

    def z(self, state: np.ndarray) -> np.ndarray:
        r, _, _, vbar = self.split(state)
        return (r * vbar) ** self.depth

    def _G(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.B.rmatvec(self.B.matvec(w ** self.depth) - self.y)
        return pulled_gradient(w, g, self.depth), g

    def rhs(self, t: float, state: np.ndarray) -> np.ndarray:
        r, _, norm, vbar = self.split(state)
        G, _ = self._G(r * vbar)
        gr = float(G @ vbar)
        out = np.empty_like(state)
        out[0] = -self.eta_r * gr
        out[1:] = -(r / norm) * (G - gr * vbar)
        return out

    def jac(self, t: float, state: np.ndarray) -> np.ndarray:
        """Analytic Jacobian of :meth:`rhs` (checked against finite differences in the tests).

        With ``J_G = dG/dw = N(N-1) diag(w^(N-2) g) + N^2 diag(w^(N-1)) B^T B diag(w^(N-1))``,
        ``P = I - v̄v̄^T``, ``dw/dr = v̄`` and ``dw/dv = (r/ν) P``.
        """
        N = self.depth
        r, _, nu, vbar = self.split(state)
        w = r * vbar
        G, g = self._G(w)
        if self._gram is None:
            dense = self.B.dense()
            self._gram = dense.T @ dense
        d = N * w ** (N - 1)
        JG = d[:, None] * self._gram * d[None, :]
        JG[np.diag_indices_from(JG)] += N * (N - 1) * w ** (N - 2) * g
        gr = float(G @ vbar)
        PG = G - gr * vbar
        JGv = JG @ vbar
        vJG = JGv  # J_G is symmetric
        vJGP = vJG - (vbar @ JGv) * vbar  # v̄^T J_G P
        n1 = state.size
        J = np.empty((n1, n1))
        J[0, 0] = -self.eta_r * float(vbar @ JGv)
        J[0, 1:] = -self.eta_r * ((r / nu) * vJGP + PG / nu)
        PJGv = JGv - (vbar @ JGv) * vbar
        J[1:, 0] = -(PG / nu) - (r / nu) * PJGv
        # P J_G P
        JP = JG - np.outer(JGv, vbar)
        PJP = JP - np.outer(vbar, vbar @ JP)
        dPG = (r / nu) * PJP - (gr / nu) * (np.eye(n1 - 1) - np.outer(vbar, vbar)) - np.outer(vbar, PG) / nu
        J[1:, 1:] = (r / nu**2) * np.outer(PG, vbar) - (r / nu) * dPG
        return J

    def jac_cost(self) -> int:
        return self.state0.size

    def observe(self, state: np.ndarray) -> np.ndarray | None:
        """The product ``z = (r v̄)^N``, or None outside the domain (non-finite, ``r <= 0`` or ``v = 0``)."""
        if not np.all(np.isfinite(state)) or state[0] <= 0 or not np.any(state[1:]):
            return None
        return self.z(state)


def wn_descend(B, y, depth, eta_r, r0, v0, *, plan: DescentPlan, stop, save_at, clock) -> Outcome:
    """GD or mini-batch SGD (``plan``) on ``(r, v)`` (SPEC B.3 discretised, D.1, D.2); the final state
    is ``(r, v)`` and saved records are ``z``."""

    def forward(state):
        r, v = state
        nu = np.linalg.norm(v)
        if not (np.isfinite(r) and np.isfinite(nu) and nu > 0):
            return None
        vbar = v / nu
        w = r * vbar
        return w, vbar, nu, w ** depth

    def update(state, snap, g, eta):
        r, v = state
        w, vbar, nu, _ = snap
        G = pulled_gradient(w, g, depth)
        gr = float(G @ vbar)
        return r - eta * eta_r * gr, v - eta * (r / nu) * (G - gr * vbar)

    return descent_loop(
        (float(r0), v0.copy()), forward=forward, residual=lambda snap: B.matvec(snap[3]) - y,
        gradient=lambda snap, res: B.rmatvec(res), minibatch=lambda snap, rows: minibatch_gradient(B, y, snap[3], rows),
        update=update, m=B.m, ynorm=float(np.linalg.norm(y)), step_at=plan.step_at, stop=stop, clock=clock,
        snapshot=lambda snap: snap[3].copy(), save_at=save_at, batch=plan.batch, rng=plan.rng,
    )


def _slow_flow_note(model, r0: float, r: float) -> str:
    """Why a weight-normalised run may not reach ``S_+`` in the budget (SPEC B, practical note)."""
    from ..theory import log_magnification_factor

    log_rho = log_magnification_factor(r0, r, model.eta_r)
    note = (
        f"; weight normalisation (eta_r={model.eta_r:g}) has magnified the bias by rho(t) = exp({log_rho:.3g}) so far "
        f"(SPEC B.7 with the current r={r:.6g}), i.e. the effective initial scale is rho^-N = exp({-model.depth * log_rho:.3g})"
    )
    if model.depth > 2:
        note += (
            "; for N > 2 the flow from an effective initialisation that small escapes in a time growing like "
            "(rho^-N)^-(1-2/N) (SPEC A.2, B practical note), so the run is outside S_+ and x is NOT the limit: "
            "raise eta_r, lower the depth, or raise the budget"
        )
    else:
        note += "; x is the last iterate, not the limit: raise the budget or loosen tol"
    return note


def simulate_weight_norm(problem, model, dynamics, *, init, stop, save_at) -> Result:
    """:func:`implicit_bias.dynamics.simulate` for :class:`~implicit_bias.models.WeightNormalized`.

    ``init`` is a ``WNInit`` or a float ``r0``. ``Result.factors`` holds the single weight vector
    ``w = r v/||v||`` (shape ``(1, n')``), so ``r = ||w||`` and ``z = w^N``;
    ``invariant_drift['v_norm_B4']`` is ``| ||v(T)|| - ||v(0)|| |`` relative to ``||v(0)||``
    (SPEC B.4; exact for the flow, ``O(η^2)`` per step for GD/SGD).
    """
    init = model.as_init(init)
    r0, v0 = model.initial_state(init, problem.n)
    B, y = model.lift(problem.A), problem.y
    clock = stopwatch()
    plan = None
    if isinstance(dynamics, GradientFlow):
        outcome, method = _wn_flow(B, y, model, dynamics, r0, v0, stop=stop, save_at=save_at, clock=clock)
        r, v = float(outcome.state[0]), outcome.state[1:].copy()
    elif isinstance(dynamics, (GradientDescent, SGD)):
        plan = descent_plan(dynamics, problem.m, lambda batch: default_wn_step(problem, model, init, batch=batch))
        outcome = wn_descend(B, y, model.depth, model.eta_r, r0, v0, plan=plan, stop=stop, save_at=save_at, clock=clock)
        (r, v), method = outcome.state, ("wn-gd" if plan.batch is None else f"wn-sgd[q={plan.batch}]")
    else:
        raise InvalidParameterError(
            f"dynamics must be GradientFlow, GradientDescent or SGD; got {type(dynamics).__name__}."
        )
    nu, nu0 = float(np.linalg.norm(v)), float(np.linalg.norm(v0))
    finite = bool(np.isfinite(r) and np.isfinite(nu) and nu > 0)
    w = r * v / nu if finite else np.full(v.shape, np.nan)
    slow = finite and outcome.status in ("budget_exhausted", "failed")
    return sparse_result(
        problem, model, outcome, w[None, :], method, clock, z=w ** model.depth, plan=plan,
        drift={"v_norm_B4": abs(nu - nu0) / nu0} if finite else {},
        suggest=lambda: default_wn_step(problem, model, init, batch=plan.batch),
        note=_slow_flow_note(model, r0, r) if slow else "",
    )


def _wn_flow(B, y, model, dynamics: GradientFlow, r0: float, v0: np.ndarray, *, stop, save_at, clock):
    """``(outcome, method)`` of the flow: the dual mirror flow (:mod:`.wn_mirror`, ``space`` auto or
    mirror) or BDF on ``(r, v)`` (``space='factor'``); both end with the state ``(r, v)``."""
    if dynamics.space == "factor":
        # Tiny coordinates of v carry the implicit bias (SPEC B.8): control their relative error
        # down to WN_ATOL (measured: 1e-30 left log c* off by 0.4-2 at rho^-N ~ 1e-80; 1e-100 costs ~+50% evals).
        outcome = integrate(
            WNSystem(B, y, model.depth, model.eta_r, r0, v0), B=B, y=y, stop=stop, save_at=save_at, clock=clock,
            rtol=dynamics.rtol if dynamics.rtol is not None else 1e-11, atol=min(dynamics.atol, WN_ATOL),
        )
        return outcome, "wn-flow[factor]"
    rtol = dynamics.tolerance("mirror")  # 1e-6 by default, as plain flow: the error of log z per step
    try:
        stepper = RodasWNFlow(B, y, WNCoordinates(model.depth, model.eta_r, r0), v0, rtol)
    except StepFailure as exc:
        raise InvalidParameterError(f"{exc}; use a larger r0") from exc
    return drive(stepper, stop=stop, clock=clock, save_at=save_at), "wn-flow[mirror]"


def default_wn_step(problem, model, init, *, batch: int | None = None) -> float:
    """A safe GD step for ``(r, v)``: ``1/λ`` with ``λ`` bounding the curvature in ``v``.

    ``∇²_v L~ ≈ r² P J_G P`` with ``||J_G|| <= N²||B||² ||w||_∞^(2N-2) + N(N-1)||w||_∞^(N-2)||g||_∞``
    (SPEC B.2); ``λ`` is its maximum over the initialisation and the l1 minimiser (the limit is
    close to it when the bias works), i.e. half the classical ``2/λ`` (SPEC D.3). SGD: ``× q/m``.
    """
    from ..references import min_l1

    N = model.depth
    B = model.lift(problem.A)
    r0, v0 = model.initial_state(init, problem.n)
    norm_B = float(np.linalg.norm(B.dense(), 2))
    x_l1 = min_l1(problem.A, problem.y, nonneg=not model.signed)
    z_t = np.concatenate([np.maximum(x_l1, 0), np.maximum(-x_l1, 0)]) if model.signed else np.maximum(x_l1, 0)
    curvatures = []
    for w in (r0 * v0 / np.linalg.norm(v0), z_t ** (1.0 / N)):
        r = float(np.linalg.norm(w))
        g = B.rmatvec(B.matvec(w ** N) - problem.y)
        wmax = float(np.max(w))
        lam = N**2 * norm_B**2 * wmax ** (2 * N - 2) + N * (N - 1) * wmax ** (N - 2) * float(np.max(np.abs(g)))
        curvatures.append(max(r, r0) ** 2 * lam + model.eta_r * lam)
    eta = 1.0 / max(curvatures)
    return eta * (batch / problem.m if batch is not None else 1.0)
