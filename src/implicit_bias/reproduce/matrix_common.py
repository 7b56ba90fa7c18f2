"""What the deep-matrix-factorisation sections (g)-(j) share (SPEC C): their configuration and runs.

The four sections, each a PNG plus a table in the summary:

(g) ``g_matrix_sensing.png``: recovery of an ``n x n`` rank-``r`` matrix from Gaussian measurements
    by deep factorisations of depth 1-4 (simulated from a small balanced initialisation) versus
    nuclear-norm minimisation: relative error against the number of measurements ``m``;
(h) ``h_singular_values.png``: singular values of ``W(t)`` along simulated flows: incremental
    (saddle-to-saddle) learning, and how depth and initial scale change it;
(i) ``i_matrix_completion.png``: completion of a ``100 x 100`` rank-5 matrix from 2000 and 5000
    entries, depths 2-4 versus nuclear norm, error against the initial scale;
(j) ``j_intrinsic_volume.png``: ``log v(W(t))`` (SPEC C.11) and the effective rank together along
    completion flows.

Runs integrate the factor flow (C.1) from ``W_j(0) = alpha I`` (balanced, SPEC C.12 (i)), so the
product follows the Riemannian flow (C.5); depth 1 is the plain flow, whose limit from 0 is the
minimum-Frobenius solution (SPEC E.1). Runs stop at relative residual ``tol`` (default 1e-3) or at
``max_wall``: for N >= 3 the last small singular values decay only algebraically in t, so the
residual creeps down for a long time while the error to ``W*`` no longer moves (measured at 8 x 8:
residual 7e-4 -> 1.5e-4 over t = 143 -> 1750, error 3.1e-3 throughout). A run whose budget ran out
is still plotted; one that failed or diverged is not.
The initial scale reported is the product's, ``||W(0)||_2 = alpha^N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dynamics import GradientFlow, Stop, simulate
from ..matrix_theory import effective_rank
from ..models import DeepFactorization, MatrixInit
from .base import register_config


@dataclass(frozen=True)
class MatrixReproConfig:
    """Sizes, grids and budgets of sections (g)-(j); every draw is seeded by ``seed + k``."""

    seed: int = 0
    # (g) sensing, error vs m
    sensing_n: int = 20
    sensing_rank: int = 2
    sensing_ms: tuple[int, ...] = (40, 60, 80, 100, 120, 160, 200, 280)
    sensing_depths: tuple[int, ...] = (1, 2, 3, 4)
    sensing_scale: float = 1e-3
    sensing_seeds: int = 1
    # (h) singular-value paths: (depth, product scale) per panel
    paths_n: int = 20
    paths_spectrum: tuple[float, ...] = (12.0, 6.0, 3.0)
    paths_m: int = 200
    paths_runs: tuple[tuple[int, float], ...] = ((2, 1e-3), (3, 1e-3), (4, 1e-3), (3, 1e-6))
    # (i) completion, error vs scale; (j) volume along the completion flows at ``volume_scale``
    completion_n: int = 100
    completion_rank: int = 5
    completion_counts: tuple[int, ...] = (2000, 5000)
    completion_depths: tuple[int, ...] = (2, 3, 4)
    completion_scales: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
    volume_count: int = 2000
    volume_scale: float = 1e-2
    tol: float = 1e-3
    max_wall: float = 20.0

    @classmethod
    def quick(cls) -> "MatrixReproConfig":
        return cls()

    @classmethod
    def full(cls) -> "MatrixReproConfig":
        return cls(sensing_ms=(20, 40, 60, 80, 100, 120, 140, 160, 200, 240, 280, 340, 400), sensing_seeds=5,
                   paths_runs=((2, 1e-3), (3, 1e-3), (4, 1e-3), (3, 1e-6), (4, 1e-6)),
                   completion_scales=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4), tol=1e-4, max_wall=120.0)

    @classmethod
    def tiny(cls) -> "MatrixReproConfig":
        return cls(sensing_n=8, sensing_ms=(20, 40), sensing_depths=(1, 3), paths_n=8, paths_m=40,
                   paths_spectrum=(4.0, 1.0), paths_runs=((2, 1e-2), (3, 1e-3)), completion_n=12, completion_rank=2,
                   completion_counts=(80,), completion_depths=(2, 3), completion_scales=(1e-1, 1e-2), volume_count=80,
                   volume_scale=1e-2, tol=1e-3, max_wall=5.0)


def run(problem, depth: int, scale: float, cfg: MatrixReproConfig, save_at=None):
    """Simulate the factor flow (C.1) from ``W_j(0) = scale^(1/N) I`` (balanced, product ``scale * I``).

    The factor flow equals the product flow (C.5) here (balanced start; tested) and is the cheaper of
    the two per evaluation (no ``eigh``), see ``benchmarks/matrix.py``.
    """
    init = MatrixInit.balanced(scale ** (1.0 / depth))
    return simulate(problem, DeepFactorization(depth), GradientFlow(), init=init,
                    stop=Stop(tol=cfg.tol, max_wall=cfg.max_wall), save_at=save_at)


def error_or_nan(problem, res) -> float:
    """The run's relative error; NaN when it failed or diverged (a spent budget still gives a usable W)."""
    return float(problem.relative_error(res.W)) if res.status in ("converged", "budget_exhausted") else float("nan")


def row(problem, res, **extra) -> dict:
    """A table row of one run: its status, relative error, residual, effective rank and cost."""
    sv = np.linalg.svd(res.W, compute_uv=False) if np.all(np.isfinite(res.W)) else None
    return dict(**extra, status=res.status, method=res.method, relative_error=problem.relative_error(res.W)
                if sv is not None else None, residual=res.residual, effective_rank=effective_rank(res.W)
                if sv is not None and sv[0] > 0 else None, grad_evals=res.grad_evals, t=res.t, wall_s=res.wall_s)


register_config("matrix", MatrixReproConfig)
