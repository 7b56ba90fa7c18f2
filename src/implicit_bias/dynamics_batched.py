"""GD and SGD of K Hadamard trials at once (SPEC D.1, D.2): :func:`simulate_batch`.

The K problems share ``m x n``; their matrices, data, initialisations, step sizes (SPEC D.3 per
trial) and SGD seeds differ. The loop is :func:`implicit_bias.dynamics.descent.descent_loop`'s,
on stacked factors ``(N, K, width)``: every product with ``A_k`` is one stacked ``matmul`` (numpy
computes it trial by trial with the same BLAS call as ``A_k @ z_k``) and every other operation is
elementwise, so each trial's iterates are bit for bit those of :func:`~implicit_bias.dynamics.simulate`.
What is shared is the Python overhead of a step, paid once for K trials. A trial stops on its own
(converged, diverged, stalled, budget); ``max_wall`` counts the batch's wall time.

Gradient flow (an adaptive Rosenbrock integrator: per-trial step sizes and rejections) and mirror
descent run one trial at a time through ``simulate``.
"""

from __future__ import annotations

import numpy as np

from .dynamics import SGD, GradientDescent, Stop, simulate
from .dynamics.descent import (
    _DIVERGENCE_FACTOR,
    STALL_WINDOW,
    _StallWatch,
    descent_plan,
)
from .dynamics.driver import Outcome
from .dynamics.sparse import default_step, invariant_drift, sparse_result, stopwatch
from .models import Hadamard, Init
from .models.hadamard import leave_one_out_products


def _lifted_matvec(A: np.ndarray, z: np.ndarray, signed: bool) -> np.ndarray:
    n = A.shape[2]
    x = z[:, :n] - z[:, n:] if signed else z
    return np.matmul(A, x[..., None])[..., 0]


def _lifted_rmatvec(A: np.ndarray, r: np.ndarray, signed: bool) -> np.ndarray:
    g = np.matmul(r[:, None, :], A)[:, 0, :]
    return np.concatenate([g, -g], axis=1) if signed else g


def _norms(R: np.ndarray) -> np.ndarray:
    """Row norms, bit for bit ``np.linalg.norm`` of each row (``sqrt`` of the same BLAS dot)."""
    return np.sqrt(np.matmul(R[:, None, :], R[:, :, None])[:, 0, 0])


class _Batch:
    """The running trials of a batch, kept compact (rows removed as trials end), and every
    trial's bookkeeping of :func:`descent_loop` (time, costs, residual, status, stall watch)."""

    def __init__(self, A, y, state, plans):
        count = A.shape[0]
        self.index, self.A, self.y, self.state, self.plans = np.arange(count), A, y, state, list(plans)
        self.ynorm = np.array([float(np.linalg.norm(v)) for v in y])
        self.t, self.evals, self.matvecs = np.zeros(count), np.zeros(count), np.zeros(count)
        self.step = 0  # every running trial has made the same number of steps
        self.rel = np.full(count, np.inf)
        self.R = np.zeros(y.shape)
        self.status: list = [None] * count
        self.message = [""] * count
        self.stall = [_StallWatch() for _ in range(count)]
        self.final: list = [None] * count
        self.steps = np.zeros(count, dtype=int)

    def end(self, rows: np.ndarray, why) -> None:
        """End the running trials at positions ``rows`` (``why(j)`` -> (status, message)); compact."""
        for j in rows:
            k = self.index[j]
            self.status[k], self.message[k] = why(j)
            self.final[k], self.steps[k] = self.state[:, j].copy(), self.step
        keep = np.setdiff1d(np.arange(self.index.size), rows)
        self.index, self.A, self.y, self.state = self.index[keep], self.A[keep], self.y[keep], self.state[:, keep]
        self.R, self.ynorm = self.R[keep], self.ynorm[keep]
        self.plans = [self.plans[j] for j in keep]


def _check(run: _Batch, z: np.ndarray, stop: Stop, clock, signed: bool, sgd: bool, check_every: int) -> None:
    """descent_loop's tests of a step, in its order: non-finite, residual (divergence), stop, stall."""
    step, index = run.step, run.index
    bad = np.flatnonzero(~np.all(np.isfinite(z), axis=1))
    if bad.size:
        run.end(bad, lambda j: ("diverged", f"non-finite parameters at step {step} (step size too large)"))
        z = np.delete(z, bad, axis=0)
        index = run.index
    if not sgd or step % check_every == 0:
        run.R = _lifted_matvec(run.A, z, signed) - run.y
        run.rel[index] = _norms(run.R) / run.ynorm
        run.matvecs[index] += 1
        run.evals[index] += 0.5 if sgd else 0.0
        rel = run.rel[index]
        off = np.flatnonzero(~np.isfinite(rel) | (rel > _DIVERGENCE_FACTOR))
        if off.size:
            run.end(off, lambda j: ("diverged", f"residual {run.rel[run.index[j]]:.3g} at step {step} (step size too large)"))
            index = run.index
    wall = clock()
    hit = np.flatnonzero((run.rel[index] <= stop.tol) | (run.evals[index] >= stop.max_evals)
                         | (run.t[index] >= stop.max_time) | (wall >= stop.max_wall))
    if hit.size:
        outcomes = {j: stop.outcome(run.evals[index[j]], run.t[index[j]], wall, run.rel[index[j]]) for j in hit}
        run.end(np.array([j for j in hit if outcomes[j]], dtype=int), lambda j: outcomes[j])
    if step % STALL_WINDOW == 0 and run.index.size:
        stalled = np.array([j for j, k in enumerate(run.index) if run.stall[k].check(step, run.state[:, j])], dtype=int)
        if stalled.size:
            run.end(stalled, lambda j: ("stalled", _StallWatch.message(step, run.rel[run.index[j]])))


def _descend_batch(A, y, factors0, signed: bool, plans, stop: Stop, clock) -> list[Outcome]:
    """descent_loop + descend (SPEC D.1, D.2) for every trial; ``factors0``: ``(N, K, width)``."""
    count, m = A.shape[0], A.shape[1]
    batch = plans[0].batch
    sgd, check_every = batch is not None, 1 if batch is None else max(1, m // batch)
    run = _Batch(A, y, factors0.copy(), plans)
    with np.errstate(over="ignore", invalid="ignore"):
        while run.index.size:
            _check(run, np.prod(run.state, axis=0), stop, clock, signed, sgd, check_every)
            if not run.index.size:
                break
            index, z = run.index, np.prod(run.state, axis=0)
            eta = np.array([plan.step_at(run.step) for plan in run.plans])
            if sgd:
                rows = np.stack([plan.rng.choice(m, size=batch, replace=False) for plan in run.plans])
                sub = np.take_along_axis(run.A, rows[:, :, None], axis=1)
                res = _lifted_matvec(sub, z, signed) - np.take_along_axis(run.y, rows, axis=1)
                g = (m / batch) * _lifted_rmatvec(sub, res, signed)
                run.evals[index] += batch / m
                run.matvecs[index] += 2 * batch / m
            else:
                g = _lifted_rmatvec(run.A, run.R, signed)
                run.evals[index] += 1
                run.matvecs[index] += 1
            run.state = run.state - eta[None, :, None] * (leave_one_out_products(run.state) * g[None])
            run.t[index] += eta
            run.step += 1
    return [Outcome(status=run.status[k], message=run.message[k], t=float(run.t[k]),
                    steps=int(run.steps[k]), evals=int(np.ceil(run.evals[k])), matvecs=int(np.ceil(run.matvecs[k])),
                    saved=(), state=run.final[k]) for k in range(count)]


def simulate_batch(problems, model: Hadamard, dynamics, *, init, stop: Stop = Stop()) -> list:
    """:func:`~implicit_bias.dynamics.simulate` for each of ``problems`` (one :class:`Result` each, in order).

    GD and SGD of a Hadamard model on problems of one shape run together (bit for bit the
    one-at-a-time iterates); ``init`` and ``dynamics``: one for all or one per problem (SGD seeds
    may differ; the kind, step and batch must agree). Other dynamics, models or mixed shapes run
    one at a time.
    """
    problems = list(problems)
    inits = list(init) if isinstance(init, (list, tuple)) else [init] * len(problems)
    inits = [one if isinstance(one, Init) else Init.uniform(one) for one in inits]
    dynamics = list(dynamics) if isinstance(dynamics, (list, tuple)) else [dynamics] * len(problems)
    shapes = {p.A.shape for p in problems}
    kinds = {(type(d), d.step, getattr(d, "batch", None)) for d in dynamics}
    if (not isinstance(model, Hadamard) or not all(isinstance(d, (GradientDescent, SGD)) for d in dynamics)
            or len(shapes) != 1 or len(kinds) != 1 or len(problems) < 2):
        return [simulate(p, model, d, init=one, stop=stop) for p, d, one in zip(problems, dynamics, inits)]
    clock = stopwatch()
    factors0 = [model.initial_factors(one, p.n) for p, one in zip(problems, inits)]
    plans = [descent_plan(d, p.m, lambda batch, p=p, one=one: default_step(p, model, one, batch=batch))
             for p, d, one in zip(problems, dynamics, inits)]
    A, y = np.stack([p.A for p in problems]), np.stack([p.y for p in problems])
    outcomes = _descend_batch(A, y, np.stack(factors0, axis=1), model.signed, plans, stop, clock)
    method = "gd" if plans[0].batch is None else f"sgd[q={plans[0].batch}]"
    return [sparse_result(p, model, out, out.state, method, clock, drift=invariant_drift(model, f0, out.state),
                          plan=plan, suggest=lambda p=p, one=one, plan=plan: default_step(p, model, one, batch=plan.batch))
            for p, one, f0, out, plan in zip(problems, inits, factors0, outcomes, plans)]


