"""What the sparse-recovery sections (a)-(d) share: their configuration and the polished l1 solutions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidParameterError
from ..references import min_l1, min_weighted_l1
from .base import register_config


def grid(lo_exp: float, hi_exp: float, num: int) -> tuple[float, ...]:
    return tuple(float(v) for v in np.logspace(hi_exp, lo_exp, num))


@dataclass(frozen=True)
class ReproConfig:
    """Every size, grid and seed of the reproduction. ``quick()``, ``full()`` and ``tiny()`` are presets.

    ``alphas[N]``: the alpha grid of the oracle curves in (b), (c); ``sim_alphas[N]``: where gradient
    flow is also simulated; ``traj_alpha[N]``: the alpha of the trajectory in (a); ``lambdas``: the
    scales of (d), whose problem uses the first sparsity in ``general_s`` for which the weighted-
    and the plain-l1 solutions differ (so the figure can tell them apart).
    """

    n: int = 100
    m: int = 40
    s: int = 4
    seed: int = 0
    depths: tuple[int, ...] = (2, 3, 4)
    alphas: dict = field(default_factory=dict)
    sim_alphas: dict = field(default_factory=dict)
    traj_n: int = 100
    traj_m: int = 40
    traj_s: int = 4
    traj_alpha: dict = field(default_factory=dict)
    traj_points: int = 300
    general_n: int = 100
    general_m: int = 40
    general_s: tuple[int, ...] = (20, 15, 25, 10)
    general_depth: int = 3
    lambdas: tuple[float, ...] = grid(-9, -1, 17)
    sim_lambdas: tuple[float, ...] = (1e-3, 1e-6)
    u_low: float = 0.2
    u_high: float = 5.0
    u_seed: int = 1
    sim_tol: float = 1e-10
    max_wall: float = 60.0
    dpi: int = 110

    def __post_init__(self) -> None:
        if self.general_depth < 3:
            raise InvalidParameterError(
                f"The 'general_depth' parameter must be an int >= 3 (Theorem A.3 is for N > 2). Got {self.general_depth!r}."
            )
        for name in ("alphas", "sim_alphas", "traj_alpha"):
            missing = [N for N in self.depths if N not in getattr(self, name)]
            if missing:
                raise InvalidParameterError(f"ReproConfig.{name} has no entry for depth(s) {missing}.")

    @classmethod
    def quick(cls) -> "ReproConfig":
        """n = 100, m = 40, s = 4 (seconds to a minute)."""
        return cls(
            alphas={2: grid(-6, -0.5, 12), 3: grid(-3.5, -0.5, 13), 4: grid(-2.5, -0.5, 9)},
            sim_alphas={2: (1e-1, 1e-2, 1e-3), 3: (1e-1, 1e-2), 4: (1e-1, 3e-2)},
            traj_alpha={2: 1e-2, 3: 1e-2, 4: 1e-2},
        )

    @classmethod
    def full(cls) -> "ReproConfig":
        """n = 500, m = 150, s = 10 and finer grids (minutes)."""
        return cls(
            n=500, m=150, s=10,
            alphas={2: grid(-7, -0.5, 27), 3: grid(-4, -0.5, 22), 4: grid(-3, -0.5, 16)},
            sim_alphas={2: (1e-1, 1e-2, 1e-3, 1e-4), 3: (1e-1, 3e-2, 1e-2), 4: (1e-1, 5e-2, 3e-2)},
            traj_n=200, traj_m=80, traj_s=8, traj_alpha={2: 1e-2, 3: 1e-2, 4: 1e-2}, traj_points=400,
            general_n=300, general_m=100, general_s=(50, 40, 60, 30),
            lambdas=grid(-10, -1, 28), sim_lambdas=(1e-2, 1e-4, 1e-6),
            max_wall=120.0,
        )

    @classmethod
    def tiny(cls) -> "ReproConfig":
        """A few seconds: for tests."""
        return cls(
            n=40, m=16, s=2,
            alphas={2: (1e-1, 1e-2, 1e-3, 1e-4), 3: (1e-1, 3e-2, 1e-2), 4: (1.5e-1, 7e-2, 3e-2)},
            sim_alphas={2: (1e-2,), 3: (1e-1,), 4: (1.5e-1,)},
            traj_n=30, traj_m=12, traj_s=2, traj_alpha={2: 1e-2, 3: 3e-2, 4: 5e-2}, traj_points=60,
            general_n=40, general_m=16, general_s=(8, 6, 10, 4),
            lambdas=(1e-2, 1e-4, 1e-6, 1e-8), sim_lambdas=(1e-3,),
            max_wall=20.0, dpi=60,
        )


# ----------------------------------------------------------------------------- helpers


def refine_vertex(A: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Polish an LP vertex ``z`` by solving ``A_S z_S = y`` on its support ``S``.

    HiGHS returns the vertex to its feasibility tolerance (~1e-10); the relative l1 gaps of
    figures (b)-(d) go down to ~1e-10, so ``Q`` must be exact to rounding. The polished point is
    kept only if it solves the system, keeps the signs of ``z`` and moves it by < 1e-6.
    """
    scale = float(np.max(np.abs(z))) if z.size else 0.0
    support = np.flatnonzero(np.abs(z) > 1e-9 * scale)
    if scale == 0 or support.size == 0 or support.size > A.shape[0]:
        return z
    sol, *_ = np.linalg.lstsq(A[:, support], y, rcond=None)
    refined = np.zeros_like(z)
    refined[support] = sol
    ok = (
        np.linalg.norm(A @ refined - y) <= 1e-12 * np.linalg.norm(y)
        and np.all(np.sign(sol) == np.sign(z[support]))
        and np.max(np.abs(refined - z)) <= 1e-6 * scale
    )
    return refined if ok else z


def l1_solution(problem, *, nonneg: bool, h=None) -> np.ndarray:
    """The (weighted, with weights ``h``) l1 minimiser of ``problem`` by the HiGHS LP, polished by :func:`refine_vertex`."""
    if h is None:
        z = min_l1(problem.A, problem.y, nonneg=nonneg)
    else:
        z = min_weighted_l1(problem.A, problem.y, h, nonneg=nonneg)
    return refine_vertex(problem.A, problem.y, z)


def l1(x) -> float:
    """``||x||_1``."""
    return float(np.sum(np.abs(x)))


register_config("sparse", ReproConfig, optional=False)
