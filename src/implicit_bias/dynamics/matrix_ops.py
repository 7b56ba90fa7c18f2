"""Measurement-operator helpers of the matrix dynamics: norms, the default GD step, mini-batches,
balancedness (SPEC C.3, C.6, C.12, D.2, D.3)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from scipy.sparse.linalg import LinearOperator, svds

from .. import matrix_theory as mt
from ..models.deep_factorization import DeepFactorization
from ..problems import MatrixRecovery


def _effective_rank(s: np.ndarray) -> float:
    """``exp(H(s / ||s||_1))`` from given singular values, as :func:`matrix_theory.effective_rank` (0 for zero)."""
    if not np.all(np.isfinite(s)):
        return float("nan")
    total = float(np.sum(s))
    if total <= 0.0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _finite(mats) -> bool:
    return all(bool(np.all(np.isfinite(Wj))) for Wj in mats)


def balancedness_drift(factors0, factors) -> float | None:
    """``max_j ||D_j(T) - D_j(0)||_F / max_j max(||W_j(0)||_F^2, ||W_j(T)||_F^2)``, ``D_j`` of SPEC C.3.

    Scaled by the larger of the initial and the final factor norms: from a small initialisation
    the factors grow by orders of magnitude, and an integrator's error is relative to the current size.
    """
    if not _finite(factors):
        return None
    if len(factors) == 1:
        return 0.0

    def D(mats):
        return [B.T @ B - A @ A.T for A, B in pairwise(mats)]

    drift = max(float(np.linalg.norm(b - a)) for a, b in zip(D(factors0), D(factors)))
    scale = max(float(np.linalg.norm(Wj)) ** 2 for Wj in (*factors0, *factors))
    return drift / scale if scale > 0 else 0.0


def _batch_maps(operator):
    """``rows -> (apply_J, adjoint_J)`` for the measurements ``J = rows`` of ``operator``."""
    d_y, d_x = operator.shape
    if hasattr(operator, "index"):  # EntryMask
        rows_idx, cols_idx = operator.index

        def maps(rows):
            ri, ci = rows_idx[rows], cols_idx[rows]

            def adjoint(r):
                out = np.zeros((d_y, d_x))
                out[ri, ci] = r
                return out

            return (lambda W: W[ri, ci]), adjoint

        return maps
    if hasattr(operator, "matrices"):  # GaussianSensing, DenseSensing
        flat = np.asarray(operator.matrices).reshape(operator.m, -1)

        def maps(rows):
            sub = flat[rows]
            return (lambda W: sub @ W.ravel()), (lambda r: (r @ sub).reshape(d_y, d_x))

        return maps

    def maps(rows):  # any other operator: full products, then restrict / zero-pad
        def adjoint(r):
            full = np.zeros(operator.m)
            full[rows] = r
            return operator.adjoint(full)

        return (lambda W: operator.apply(W)[rows]), adjoint

    return maps


def minibatch_gradient(problem: MatrixRecovery, W: np.ndarray, rows, _maps=None) -> np.ndarray:
    """Unbiased estimator ``(m/q) A_J^*(A_J(W) - y_J)`` of ``grad L(W) = A^*(A(W) - y)`` (SPEC D.2)."""
    rows = np.asarray(rows)
    apply_J, adjoint_J = (_maps or _batch_maps(problem.operator))(rows)
    return (problem.m / rows.size) * adjoint_J(apply_J(W) - problem.y[rows])


def operator_norm(operator) -> float:
    """``||A||_op``: 1 for an entry mask, else the top singular value (dense SVD when small, Lanczos otherwise)."""
    if hasattr(operator, "index"):
        return 1.0
    d_y, d_x = operator.shape
    n, m = d_y * d_x, operator.m
    if hasattr(operator, "matrices") and n * m <= 4_000_000:
        return float(np.linalg.norm(np.asarray(operator.matrices).reshape(m, n), 2))
    if min(n, m) <= 2:
        basis = np.eye(n)
        dense = np.stack([operator.apply(basis[k].reshape(d_y, d_x)) for k in range(n)], axis=1)
        return float(np.linalg.norm(dense, 2))
    lin = LinearOperator(
        (m, n), matvec=lambda v: operator.apply(np.reshape(v, (d_y, d_x))),
        rmatvec=lambda r: operator.adjoint(np.ravel(r)).ravel(), dtype=np.float64,
    )
    return float(svds(lin, k=1, tol=1e-6, return_singular_vectors=False, random_state=0)[0])


def _frobenius_sq(operator) -> float:
    """``||A||_F^2 = sum_l ||A_l||_F^2`` (``m`` for an entry mask)."""
    if hasattr(operator, "index"):
        return float(operator.m)
    if hasattr(operator, "matrices"):
        return float(np.sum(np.asarray(operator.matrices) ** 2))
    rng = np.random.default_rng(0)  # Hutchinson: E ||A(G)||^2 = ||A||_F^2 for Gaussian G
    return float(np.mean([np.sum(operator.apply(rng.standard_normal(operator.shape)) ** 2) for _ in range(32)]))


def target_scale(problem: MatrixRecovery) -> float:
    """Spectral-norm estimate ``||A^*(y)||_2 * d_y d_x / ||A||_F^2`` of the target.

    ``E[A^* A] = (||A||_F^2 / (d_y d_x)) I`` for Gaussian sensing and uniform completion, so the
    rescaled back-projection is an unbiased estimate of ``W_true``; its spectral norm exceeds
    ``||W_true||_2`` by the back-projection noise, which makes it an upper estimate in practice.
    """
    op = problem.operator
    d_y, d_x = op.shape
    back = op.adjoint(problem.y) * (d_y * d_x / _frobenius_sq(op))
    return float(np.linalg.norm(back, 2))


def default_matrix_step(problem: MatrixRecovery, model: DeepFactorization, init=None, *, batch: int | None = None) -> float:
    """Safe GD step, SPEC D.3(ii) for matrices: ``0.5 * 2 / (N ||A||_op^2 s^(2-2/N))``.

    ``N ||A||^2 s^(2-2/N)`` bounds the top Hessian eigenvalue ``||A||^2 lambda_max(A_W)`` (C.6) at
    balanced interpolants with ``||W||_2 <= s``; ``s`` is the larger of :func:`target_scale` and
    ``||W(0)||_2``. SGD with batch ``q`` scales the step by ``q/m`` (the estimator's curvature
    is up to ``m/q`` times larger).
    """
    N = model.depth
    s = target_scale(problem)
    if init is not None:
        s = max(s, float(np.linalg.norm(model.product(model.initial_factors(init, problem.shape)), 2)))
    eta = 0.5 * 2.0 / (N * operator_norm(problem.operator) ** 2 * s ** (2.0 - 2.0 / N))
    return eta * (batch / problem.m if batch is not None else 1.0)


def _rebuild_factors(model: DeepFactorization, W: np.ndarray, shape) -> tuple | None:
    """Balanced factors with product ``W`` (SPEC C.12 (ii)), or None when ``W`` does not fit the widths.

    The product flow keeps ``rank W <= r = min_j d_j`` in exact arithmetic; rounding leaves
    singular values past ``r`` at about ``1e-15 sigma_1``, which are cut below ``1e-8 sigma_1``.
    """
    if model.depth == 1:
        return (W.copy(),)
    if not np.all(np.isfinite(W)):
        return None
    widths = model.dims(shape)[1:-1]
    r = min(widths)
    if r < min(W.shape):
        U, s, Vt = np.linalg.svd(W, full_matrices=False)
        if s[r] > 1e-8 * s[0]:
            return None
        W = (U[:, :r] * s[:r]) @ Vt[:r]
    return mt.balanced_factors(W, model.depth, widths)
