"""The limit oracle for K trials at once: :func:`predict_limit` batched (SPEC A.1, A.4).

The K problems share the shape ``m x n``, the depth and the sign; their matrices, data and
initialisations differ. The dual Newton iteration of :mod:`implicit_bias.limits` runs on
stacked arrays: the same stop tests, trust radius, Armijo line search and tolerances, per trial.
Only the Newton system ``A diag(w + ν) A^T d = r`` is solved differently, by batched
preconditioned conjugate gradients on the matrix-free product ``A (w ⊙ A^T d)`` with a stacked
``K x m x m`` Cholesky factorisation of ``A diag(q) A^T`` as the preconditioner, refreshed for a
trial when any of its weights left ``[q/2, 2q]`` (measured fastest at n = 200: CG then takes a
few iterations; refreshing only past ``m/4`` moved columns took up to 50). The products and the
factorisations are kernels of a :class:`~implicit_bias.backend.Backend` (numpy, or JAX in
float64 on the CPU or a GPU). On a CPU only shapes with ``m^2 n <= 1e6`` batch (:data:`_CPU_BATCH_GRAM`);
the rest, and trials still running after :data:`_HAND_OFF` Newton steps, go one at a time.

A trial whose batched run does not converge (a failed line search, a non-descent direction, the
budget, a diverging dual) is handed to :func:`~implicit_bias.limits.predict_limit`, so every
returned :class:`~implicit_bias.limits.Limit` is converged to the same tolerances or is exactly
the one-at-a-time answer. The limit is unique (a strictly convex Bregman projection), so the two
paths agree to the rounding left by those tolerances.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ._arguments import check_limit_arguments
from ._blas import pinned_blas
from .backend import get_backend
from .dual_linalg import damped_cholesky, range_residual, solve_psd
from .limits import (
    _ARMIJO,
    _HALVINGS,
    _POLISH,
    _STALL_LEVEL,
    _STOP_MESSAGES,
    _TRUST_LOG,
    DEFAULT_KKT_TOL,
    DEFAULT_TOL,
    Limit,
    _check_tolerances,
    _status,
    _stop_test,
    predict_limit,
)
from .mirror import MirrorMap

_DAMPING = 1e-16  # ν = _DAMPING max(w), the Levenberg-Marquardt damping of limits' Newton matrix
_FORCING = 1e-3  # relative residual of each Newton direction (as in limits)
_MAX_CG = 50  # CG iterations per direction before the trial's preconditioner is refreshed
_BAND = 2.0  # weights within this factor of the factorised ones are left to CG
_STALE = 0.0  # share of m: more moved columns than this refresh a trial's preconditioner (0: any; measured best at n = 200)
# A trial still running after this many Newton steps goes to predict_limit: the few slow trials of
# a batch (79-196 steps where most take 12-30 at n = 200, m = 100) would otherwise keep it alive
# for one or two trials, each step paying the batch's fixed costs.
_HAND_OFF = 40
# On a CPU the batch forms a fresh m x m Gram matrix per Newton step where predict_limit updates one
# (rank-k, Woodbury, GMRES): batching pays only while m^2 n is small next to the Python overhead it
# saves. Measured (one BLAS thread, under load): 1.8-9x faster for m^2 n <= 2.5e5, about even at
# 5e5-1e6, 0.2-0.6x slower at m^2 n >= 2e6 (n = 200, m >= 100; n = 1000, m = 250). Larger problems
# go one at a time on a CPU; a GPU batches every shape.
_CPU_BATCH_GRAM = 1e6
_GRAM_FLOPS = 2e9  # above m^2 n flops the KKT check is the reference's (CGLS)


# ----------------------------------------------------------------------------- kernels (fn(xp, ...))

def _matvec(xp, A, x):
    return xp.matmul(A, x[..., None])[..., 0]


def _rmatvec(xp, A, r):
    return xp.matmul(r[:, None, :], A)[:, 0, :]


def _gram(xp, A, w):
    return xp.matmul(A * w[:, None, :], xp.swapaxes(A, 1, 2))


def _hess_apply(xp, A, w, d):
    return _matvec(xp, A, w * _rmatvec(xp, A, d))


def _precondition(xp, Linv, r):
    """``(L L^T)^{-1} r = L^{-T} L^{-1} r`` from the stacked inverse factors ``L^{-1}``."""
    return xp.matmul(xp.matmul(Linv, r[..., None])[..., 0][:, None, :], Linv)[:, 0, :]


def _cholesky_inverse(xp, H):
    """Stacked ``L^{-1}`` with ``L L^T = H`` (NaN where a factorisation failed: JAX does not raise)."""
    import jax.scipy.linalg

    L = xp.linalg.cholesky(H)
    return jax.scipy.linalg.solve_triangular(L, xp.broadcast_to(xp.eye(H.shape[-1]), H.shape), lower=True)


def _numpy_gram(A: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``A_k diag(w_k) A_k^T`` trial by trial by a symmetric rank-k update (half a product's flops)."""
    out = np.empty((A.shape[0], A.shape[1], A.shape[1]))
    scaled = np.empty(A.shape[1:])
    for k in range(A.shape[0]):
        np.multiply(A[k], np.sqrt(w[k]), out=scaled)
        lower = scipy.linalg.blas.dsyrk(1.0, scaled.T, trans=1, lower=1)  # scaled.T is Fortran-ordered: no copy
        out[k] = np.tril(lower) + np.tril(lower, -1).T
    return out


# ----------------------------------------------------------------------------- the batched solve

@dataclass
class _Batch:
    """The state of K dual Newton runs (host arrays; ``A`` also on the backend's device)."""

    A: np.ndarray  # K x m x n (host)
    y: np.ndarray
    z0: np.ndarray
    signed: bool
    mirror: MirrorMap
    phi: np.ndarray
    z: np.ndarray
    lam: np.ndarray
    r: np.ndarray
    L: np.ndarray  # K x m x m: inverse Cholesky factors L^{-1} of the preconditioners
    q: np.ndarray  # K x n: the weights they were formed with (NaN: none yet)
    matvecs: np.ndarray


def _fold(batch: _Batch, h: np.ndarray) -> np.ndarray:
    """Per-column weights of ``A`` from those of the lifted ``B`` (the two halves summed when signed)."""
    n = batch.A.shape[2]
    return h[:, :n] + h[:, n:] if batch.signed else h


def _x(batch: _Batch, z: np.ndarray) -> np.ndarray:
    n = batch.A.shape[2]
    return z[:, :n] - z[:, n:] if batch.signed else z


def _lifted(batch: _Batch, g: np.ndarray) -> np.ndarray:
    return np.concatenate([g, -g], axis=1) if batch.signed else g


class _Kernels:
    """The backend's kernels, called on the rows ``rows`` of a batch (host arrays in and out).

    On JAX the rows are padded (repeating the last one) to a power of two on the CPU and to the
    whole batch on a GPU, so that a batch whose trials finish one by one compiles each kernel for
    a few shapes only (one on a GPU)."""

    def __init__(self, bk, A: np.ndarray):
        self.bk, self.A = bk, A
        self.A_dev = bk.asarray(A)
        self.matvec, self.rmatvec = bk.kernel(_matvec), bk.kernel(_rmatvec)
        self.gram_kernel, self.hess, self.precond = bk.kernel(_gram), bk.kernel(_hess_apply), bk.kernel(_precondition)
        self.cholinv = None if bk.name == "numpy" else bk.kernel(_cholesky_inverse)
        self._cached = (None, None)

    def _rows_of_A(self, rows: np.ndarray):
        key = rows.tobytes()
        if self._cached[0] != key:
            if rows.size == self.A.shape[0] and np.all(rows == np.arange(rows.size)):
                selected = self.A_dev
            else:
                selected = self.A_dev[rows]
            self._cached = (key, selected)
        return self._cached[1]

    def run(self, kernel, rows: np.ndarray, *args, with_A: bool = True) -> np.ndarray:
        size = rows.size
        if self.bk.name != "numpy":  # a GPU computes every row (one shape per kernel); a CPU a power of two
            full = self.A.shape[0]
            bucket = full if self.bk.platform != "cpu" else min(full, 1 << max(size - 1, 0).bit_length())
            pad = np.full(bucket - size, size - 1)
            rows = np.concatenate([rows, rows[pad]])
            args = tuple(np.concatenate([a, a[pad]]) for a in args)
            args = tuple(self.bk.asarray(a) for a in args)
        out = kernel(self._rows_of_A(rows), *args) if with_A else kernel(*args)
        return self.bk.to_numpy(out)[:size]

    def gram(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.bk.name == "numpy":
            return _numpy_gram(self._rows_of_A(rows), w)
        return self.run(self.gram_kernel, rows, w)

    def factorise(self, H: np.ndarray) -> np.ndarray:
        """Stacked ``L^{-1}``; a trial whose plain factorisation fails gets limits' damped one."""
        if self.bk.name == "numpy":
            try:
                L = np.linalg.cholesky(H)
                bad = np.zeros(0, dtype=int)
            except np.linalg.LinAlgError:  # some trial failed: each on its own
                L, bad = np.empty_like(H), np.arange(H.shape[0])
            Linv = np.empty_like(H)
            for k in range(H.shape[0]):
                if k not in bad:
                    Linv[k] = scipy.linalg.lapack.dtrtri(L[k], lower=1)[0]
        else:
            Linv = self.run(self.cholinv, np.arange(H.shape[0]), H, with_A=False)
            bad = np.flatnonzero(~np.all(np.isfinite(Linv), axis=(1, 2)))
        for k in bad:
            factor, _ = damped_cholesky(H[k])
            Linv[k] = np.nan if factor is None else scipy.linalg.lapack.dtrtri(np.tril(factor), lower=1)[0]
        return Linv


def _refresh(batch: _Batch, K: _Kernels, rows: np.ndarray, wp: np.ndarray) -> None:
    """A fresh preconditioner ``A diag(wp) A^T`` for the trials ``rows``."""
    H = K.gram(rows, wp)
    batch.L[rows] = K.factorise(H)
    batch.q[rows] = wp
    batch.matvecs[rows] += batch.A.shape[1] / 2


def _pcg(batch: _Batch, K: _Kernels, rows: np.ndarray, wp: np.ndarray, r: np.ndarray):
    """``(d, ok)``: CG on ``A_k diag(wp_k) A_k^T d = r_k`` to the forcing tolerance, per row."""
    L = batch.L[rows]
    diag = np.diagonal(L, axis1=1, axis2=2)
    broken = ~np.all(np.isfinite(L), axis=(1, 2)) | ~np.all(diag > 0, axis=1)
    if broken.any():  # no usable factorisation: these rows get no direction from the batch
        L = L.copy()
        L[broken] = np.eye(L.shape[1])
    d = np.zeros_like(r)
    res = r.copy()
    s = K.run(K.precond, rows, L, res, with_A=False)
    p, rs = s.copy(), np.einsum("ki,ki->k", res, s)
    goal = _FORCING * np.linalg.norm(r, axis=1)
    live = np.linalg.norm(res, axis=1) > goal
    for _ in range(_MAX_CG):
        if not live.any():
            break
        Hp = K.run(K.hess, rows, wp, p)
        batch.matvecs[rows] += 2 * live
        pHp = np.einsum("ki,ki->k", p, Hp)
        step = np.where(live & (pHp > 0), rs / np.where(pHp > 0, pHp, 1.0), 0.0)
        d += step[:, None] * p
        res -= step[:, None] * Hp
        live &= (pHp > 0) & (np.linalg.norm(res, axis=1) > goal)
        s = K.run(K.precond, rows, L, res, with_A=False)
        rs_new = np.einsum("ki,ki->k", res, s)
        p = s + np.where(live, rs_new / np.where(rs > 0, rs, 1.0), 0.0)[:, None] * p
        rs = rs_new
    ok = ~live & ~broken & np.all(np.isfinite(d), axis=1) & (np.einsum("ki,ki->k", r, d) > 0)
    return d, ok


def _directions(batch: _Batch, K: _Kernels, rows: np.ndarray):
    """``(d, ok)``: Newton directions of the trials ``rows``; ``ok`` False where none was found
    even with a fresh preconditioner."""
    w = _fold(batch, batch.mirror.dz_dphi(batch.z[rows]))
    wp = w + _DAMPING * np.max(w, axis=1, keepdims=True)
    q = batch.q[rows]
    moved = np.count_nonzero((wp > _BAND * q) | (wp < q / _BAND), axis=1)
    stale = (moved > batch.A.shape[1] * _STALE) | np.isnan(q[:, 0])  # NaN q: no preconditioner yet
    if stale.any():
        _refresh(batch, K, rows[stale], wp[stale])
    d, ok = _pcg(batch, K, rows, wp, batch.r[rows])
    retry = ~ok & ~stale
    if retry.any():  # a stale preconditioner: once more from a fresh one
        _refresh(batch, K, rows[retry], wp[retry])
        d[retry], ok[retry] = _pcg(batch, K, rows[retry], wp[retry], batch.r[rows[retry]])
    return d, ok & np.all(np.isfinite(w), axis=1) & (np.max(w, axis=1) > 0)


def _trust(mirror: MirrorMap, phi, delta, z) -> np.ndarray:
    """Row-wise :meth:`MirrorMap.log_scale_limit` (largest ``t <= 1`` keeping ``|Δ log z| <= _TRUST_LOG``)."""
    N = mirror.depth
    shrinking = delta < 0 if N == 2 else delta * phi > 0
    live = ~((z < np.finfo(float).tiny) & shrinking)
    if N == 2:
        peak = np.max(np.where(live, np.abs(delta), 0.0), axis=1)
        return np.where(peak == 0, 1.0, np.minimum(1.0, 0.5 * _TRUST_LOG / np.where(peak == 0, 1.0, peak)))
    c = _TRUST_LOG * (N - 2) / N
    rate = np.where(live, delta / phi, 0.0)
    grow = np.max(np.where(rate > 0, rate, 0.0), axis=1)
    shrink = np.max(np.where(rate < 0, -rate, 0.0), axis=1)
    t = np.ones(phi.shape[0])
    t = np.where(grow > 0, np.minimum(t, np.expm1(c) / np.where(grow > 0, grow, 1.0)), t)
    return np.where(shrink > 0, np.minimum(t, -np.expm1(-c) / np.where(shrink > 0, shrink, 1.0)), t)


def _in_domain(mirror: MirrorMap, phi: np.ndarray) -> np.ndarray:
    finite = np.all(np.isfinite(phi), axis=1)
    if mirror.depth == 2:
        return finite & np.all(phi < 300.0, axis=1)
    N = mirror.depth
    return finite & np.all(-(N - 2) * phi > 10.0 ** (-150.0 * (N - 2) / N), axis=1)


def _line_search(batch: _Batch, K: _Kernels, rows: np.ndarray, d: np.ndarray, rnorm: np.ndarray) -> np.ndarray:
    """The Armijo search of limits (merit ``D``, or ``||r||`` below its rounding) for every row at
    once; updates the accepted trials in place and returns which were accepted."""
    mirror, y = batch.mirror, batch.y[rows]
    Atd = K.run(K.rmatvec, rows, d)
    delta = _lifted(batch, -Atd)
    phi, z = batch.phi[rows], batch.z[rows]
    slope = np.einsum("ki,ki->k", batch.r[rows], d)
    t = _trust(mirror, phi, delta, z)
    accepted = np.zeros(rows.size, bool)
    searching = np.ones(rows.size, bool)
    conj_old = np.sum(mirror.conjugate_terms(z), axis=1)
    for _ in range(_HALVINGS):
        idx = np.flatnonzero(searching)
        if not idx.size:
            break
        phi_new = phi[idx] + t[idx, None] * delta[idx]
        inside = _in_domain(mirror, phi_new)
        with np.errstate(over="ignore", invalid="ignore"):
            z_new = mirror.z(phi_new)
            decrease = np.sum(mirror.conjugate_terms(z_new), axis=1) - conj_old[idx] + t[idx] * np.einsum("ki,ki->k", y[idx], d[idx])
            good = inside & np.isfinite(decrease) & (decrease <= -_ARMIJO * t[idx] * slope[idx])
        check = inside & ~good
        if check.any():
            sub = idx[check]
            res = K.run(K.matvec, rows[sub], _x(batch, z_new[check])) - y[sub]
            batch.matvecs[rows[sub]] += 1
            good[check] = np.linalg.norm(res, axis=1) <= (1 - _ARMIJO * t[sub]) * rnorm[sub]
        take = idx[good]
        batch.phi[rows[take]], batch.z[rows[take]] = phi_new[good], z_new[good]
        batch.lam[rows[take]] += t[take, None] * d[take]
        accepted[take], searching[take] = True, False
        t[idx[~good]] *= 0.5
    return accepted


def _newton(batch: _Batch, K: _Kernels, tol: float, max_iter: int) -> tuple[list[str], np.ndarray]:
    """Damped Newton on every trial's dual (limits._dual_newton's stop rules); ``(stops, iterations)``."""
    count = batch.A.shape[0]
    ynorm = np.linalg.norm(batch.y, axis=1)
    target, stall = min(tol, _POLISH) * ynorm, max(tol, _STALL_LEVEL) * ynorm
    history: list[list[float]] = [[] for _ in range(count)]
    stops: list[str | None] = [None] * count
    while True:
        rnorm = np.linalg.norm(batch.r, axis=1)
        for k in range(count):
            if stops[k] is None:
                stops[k] = _stop_test(float(rnorm[k]), history[k], target[k], stall[k], max_iter)
                if stops[k] is None and len(history[k]) >= _HAND_OFF:
                    stops[k] = "hand off"
                if stops[k] is None:
                    history[k].append(float(rnorm[k]))
        rows = np.array([k for k in range(count) if stops[k] is None], dtype=int)
        if not rows.size:
            break
        d, ok = _directions(batch, K, rows)
        for k in rows[~ok]:
            stops[k] = "direction"
        rows, d = rows[ok], d[ok]
        accepted = _line_search(batch, K, rows, d, rnorm[rows])
        for k in rows[~accepted]:
            stops[k] = "line search"
        rows = rows[accepted]
        if rows.size:
            batch.r[rows] = K.run(K.matvec, rows, _x(batch, batch.z[rows])) - batch.y[rows]
            batch.matvecs[rows] += 2
            for k in rows[np.max(np.abs(batch.lam[rows]), axis=1) > 1e300]:
                stops[k] = "dual overflow"
    return stops, np.array([len(h) for h in history])


def _kkt(batch: _Batch, K: _Kernels) -> np.ndarray:
    """limits' KKT residual (SPEC A.3 (i), :func:`range_residual`) of every trial, the Gram matrices stacked."""
    mirror, count = batch.mirror, batch.A.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = mirror.phi(batch.z) - mirror.phi(batch.z0)
    keep = np.isfinite(v) & (np.abs(batch.z) >= np.finfo(float).tiny)
    v = np.where(keep, v, 0.0)
    everyone = np.arange(count)
    G = K.gram(everyone, _fold(batch, keep.astype(float)))
    rhs = K.run(K.matvec, everyone, _x(batch, v))
    out = np.zeros(count)
    for k in range(count):
        norm = np.linalg.norm(v[k])
        if norm > 0:
            coef = solve_psd(G[k], rhs[k])
            out[k] = np.linalg.norm((v[k] - _lifted(batch, (coef @ batch.A[k])[None])[0]) * keep[k]) / norm
    return out


@pinned_blas
def _solve_group(problems, model, z0: np.ndarray, tol, kkt_tol, max_iter, bk) -> list[Limit]:
    """The limits of problems of one shape (``z0``: K x width initial products)."""
    started = time.perf_counter()
    A = np.stack([p.A for p in problems])
    y = np.stack([p.y for p in problems])
    mirror = MirrorMap(model.depth)
    count, m, n = A.shape
    batch = _Batch(A, y, z0, model.signed, mirror, mirror.phi(z0), z0.copy(), np.zeros((count, m)),
                   None, np.empty((count, m, m)), np.full((count, n), np.nan), np.ones(count))
    K = _Kernels(bk, A)
    everyone = np.arange(count)
    batch.r = K.run(K.matvec, everyone, _x(batch, z0)) - y
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging trial stops on its own
        stops, iterations = _newton(batch, K, tol, max_iter)
    residual = np.linalg.norm(K.run(K.matvec, everyone, _x(batch, batch.z)) - y, axis=1) / np.linalg.norm(y, axis=1)
    if float(m) ** 2 * z0.shape[1] <= _GRAM_FLOPS:
        kkt = _kkt(batch, K)
    else:
        kkt = np.array([range_residual(model.lift(A[k]), mirror, batch.z[k], z0[k], witness=-batch.lam[k])
                        for k in range(count)])
    wall = (time.perf_counter() - started) / count
    limits = []
    for k, problem in enumerate(problems):
        status = _status(float(residual[k]), float(kkt[k]), tol, kkt_tol, stops[k] if stops[k] in _STOP_MESSAGES else "stall")
        if stops[k] not in ("target", "stall") or status != "converged":
            limits.append(None)  # handed to the one-at-a-time oracle
            continue
        message = (f"{_STOP_MESSAGES[stops[k]]} after {iterations[k]} Newton steps (batched: {count} trials, "
                   f"backend {bk.name}, preconditioned CG)")
        limits.append(Limit(x=model.x_from_z(batch.z[k]), z=batch.z[k].copy(), status=status,
                            residual=float(residual[k]), kkt=float(kkt[k]), tol=tol, kkt_tol=kkt_tol,
                            iterations=int(iterations[k]), matvecs=round(batch.matvecs[k]), wall_s=wall,
                            message=message, dual=batch.lam[k].copy()))
    return limits


def predict_limits(problems, model, init, *, tol: float = DEFAULT_TOL, kkt_tol: float = DEFAULT_KKT_TOL,
                   max_iter: int = 500, backend="numpy") -> list[Limit]:
    """:func:`~implicit_bias.limits.predict_limit` for each of ``problems``, batched (Theorems A.1, A.4).

    ``init``: one :class:`~implicit_bias.models.Init` for all, or one per problem. Problems of the
    same shape ``(m, n)`` are solved together on ``backend`` (``"numpy"`` or ``"jax"``, or a
    :class:`~implicit_bias.backend.Backend`); depth 1 (a closed form) and trials the batched run
    does not converge go to ``predict_limit`` one at a time, and so do, on a CPU, shapes with
    ``m^2 n > 1e6`` (where the batch measured slower). Returns one ``Limit`` per problem, in order.
    """
    problems = list(problems)
    inits = list(init) if isinstance(init, (list, tuple)) else [init] * len(problems)
    if len(inits) != len(problems):
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"'init' must be one Init or one per problem ({len(problems)}); got {len(inits)}.")
    for problem, one in zip(problems, inits):
        check_limit_arguments(problem, model, one)
    max_iter = _check_tolerances(tol, kkt_tol, max_iter)
    bk = get_backend(backend)
    out: list[Limit | None] = [None] * len(problems)
    if model.depth > 1:
        groups: dict[tuple, list[int]] = {}
        for i, problem in enumerate(problems):
            groups.setdefault(problem.A.shape, []).append(i)
        for (rows, cols), index in groups.items():
            if bk.platform == "cpu" and float(rows) ** 2 * cols > _CPU_BATCH_GRAM:
                continue  # one at a time pays better on a CPU (see _CPU_BATCH_GRAM)
            z0 = np.stack([model.require_identical(inits[i], problems[i].n, "predict_limits")[0] ** model.depth
                           for i in index])
            for i, limit in zip(index, _solve_group([problems[i] for i in index], model, z0, tol, kkt_tol,
                                                    max_iter, bk)):
                out[i] = limit
    return [limit if limit is not None else predict_limit(problem, model, one, tol=tol, kkt_tol=kkt_tol,
                                                          max_iter=max_iter)
            for limit, problem, one in zip(out, problems, inits)]
