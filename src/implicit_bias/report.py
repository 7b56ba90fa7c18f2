"""Reproduce the talk's sparse-recovery figures (SPEC §A) into a folder: PNGs + a summary.

:func:`reproduce_all` computes four figures and writes ``summary.json`` (every number of every
figure, machine-readable) and ``summary.md`` (the same as tables a researcher can read):

(a) ``a_trajectories.png``: simulated gradient flow (positive model, Gaussian measurements),
    ``||x(t)||_1`` and the coordinates over time for N = 2, 3, 4, with ``Q_+`` marked;
(b) ``b_l1_gap_positive.png``: the relative l1 gap of the exact limit (oracle) versus alpha
    against the bound of Theorem A.2 (SPEC A.15), with simulated runs as markers;
(c) ``c_l1_gap_signed.png``: the same for the signed model (Theorem A.4, constants A.19);
(d) ``d_general_init.png``: a non-uniform initialisation ``x0 = lambda u`` (SPEC A.6): the limit
    versus the weighted-l1 and the plain-l1 solutions, and the weighted bound (A.18).

All random draws are seeded by :class:`ReproConfig`. Equation numbers refer to SPEC.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import plots
from ._validation import jsonable as _jsonable
from .dynamics import GradientFlow, Stop, simulate
from .errors import InvalidParameterError
from .limits import predict_limit
from .models import Hadamard, Init
from .problems import gaussian_sparse
from .references import min_l1, min_weighted_l1
from .matrix_report import MatrixReproConfig, matrix_markdown, matrix_sections
from .experiments.reproduction import PhaseConfig, flow_sample_spec, phase_specs, success_grid
from .theory import donoho_tanner_rho
from .theory import bound_holds, epsilon_bound, weighted_epsilon_bound, weights_general_init

__all__ = ["MatrixReproConfig", "ReproConfig", "WNReproConfig", "reproduce_all", "weight_norm_section", "write_html"]

FIGURES = {
    "a": "a_trajectories.png",
    "b": "b_l1_gap_positive.png",
    "c": "c_l1_gap_signed.png",
    "d": "d_general_init.png",
}


def _grid(lo_exp: float, hi_exp: float, num: int) -> tuple[float, ...]:
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
    lambdas: tuple[float, ...] = _grid(-9, -1, 17)
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
            alphas={2: _grid(-6, -0.5, 12), 3: _grid(-3.5, -0.5, 13), 4: _grid(-2.5, -0.5, 9)},
            sim_alphas={2: (1e-1, 1e-2, 1e-3), 3: (1e-1, 1e-2), 4: (1e-1, 3e-2)},
            traj_alpha={2: 1e-2, 3: 1e-2, 4: 1e-2},
        )

    @classmethod
    def full(cls) -> "ReproConfig":
        """n = 500, m = 150, s = 10 and finer grids (minutes)."""
        return cls(
            n=500, m=150, s=10,
            alphas={2: _grid(-7, -0.5, 27), 3: _grid(-4, -0.5, 22), 4: _grid(-3, -0.5, 16)},
            sim_alphas={2: (1e-1, 1e-2, 1e-3, 1e-4), 3: (1e-1, 3e-2, 1e-2), 4: (1e-1, 5e-2, 3e-2)},
            traj_n=200, traj_m=80, traj_s=8, traj_alpha={2: 1e-2, 3: 1e-2, 4: 1e-2}, traj_points=400,
            general_n=300, general_m=100, general_s=(50, 40, 60, 30),
            lambdas=_grid(-10, -1, 28), sim_lambdas=(1e-2, 1e-4, 1e-6),
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


def _refine_vertex(A: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
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


def _l1_solution(problem, *, nonneg: bool, h=None) -> np.ndarray:
    if h is None:
        z = min_l1(problem.A, problem.y, nonneg=nonneg)
    else:
        z = min_weighted_l1(problem.A, problem.y, h, nonneg=nonneg)
    return _refine_vertex(problem.A, problem.y, z)


def _finite(value):
    """JSON-safe float: ``inf``/``nan`` become ``None`` (the summary explains what None means)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value, spec: str = ".3g") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return "inf" if math.isinf(value) else format(value, spec)
    return str(value)


def _md_table(rows: list[dict], columns: list[tuple]) -> str:
    """``columns``: ``(key, label)`` or ``(key, label, format spec)``."""
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(row.get(c[0]), *c[2:]) for c in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _l1(x) -> float:
    return float(np.sum(np.abs(x)))


# ----------------------------------------------------------------------------- (a) trajectories


def _trajectories(cfg: ReproConfig, echo) -> tuple[list[dict], list[dict], dict]:
    problem = gaussian_sparse(cfg.traj_n, cfg.traj_m, cfg.traj_s, signed=False, seed=cfg.seed)
    z_l1 = _l1_solution(problem, nonneg=True)
    Q = _l1(z_l1)
    support = np.flatnonzero(z_l1 > 1e-9 * np.max(z_l1))
    runs, rows = [], []
    for N in cfg.depths:
        alpha = float(cfg.traj_alpha[N])
        model = Hadamard(N, signed=False)
        stop = Stop(tol=1e-8, max_wall=cfg.max_wall)
        started = time.perf_counter()
        # One run to find the horizon, one to save on a log-spaced grid up to it.
        probe = simulate(problem, model, GradientFlow(), init=alpha, stop=stop)
        t_end = probe.t
        times = np.geomspace(min(1e-2, 1e-3 * t_end), t_end, cfg.traj_points)
        result = simulate(problem, model, GradientFlow(), init=alpha, stop=stop, save_at=[float(t) for t in times])
        wall = time.perf_counter() - started
        t_path = np.asarray(result.path.t) if result.path is not None else np.empty(0)
        x_path = np.asarray(result.path.x) if result.path is not None else np.empty((0, problem.n))
        if t_path.size == 0 or t_path[-1] < result.t:
            t_path = np.append(t_path, result.t)
            x_path = np.vstack([x_path, result.x[None, :]])
        limit = predict_limit(problem, model, Init.uniform(alpha))
        l1_path = np.abs(x_path).sum(axis=1)
        reached = np.flatnonzero(l1_path >= 0.5 * Q)
        gap = (_l1(result.x) - Q) / Q
        runs.append(dict(depth=N, alpha=alpha, t=t_path, x=x_path, Q=Q, support=support, x_ref=z_l1,
                         status=result.status,
                         note=f"at t = {result.t:.2g}: " + r"$\|x\|_1/Q_+ - 1$" + f" = {gap:.1e}"))
        rows.append(dict(
            depth=N, alpha=alpha, status=result.status, t_end=float(result.t),
            t_half=float(t_path[reached[0]]) if reached.size else None,
            l1_final=_l1(result.x), Q_plus=Q, gap_final=gap, residual=float(result.residual),
            dist_to_limit=_l1(result.x - limit.x) / _l1(limit.x), saved_points=int(t_path.size),
            grad_evals=int(result.grad_evals), wall_s=wall, method=result.method,
        ))
        echo(f"  (a) N={N} alpha={alpha:g}: {result.status} at t={result.t:.3g}, "
             f"||x||_1={_l1(result.x):.6g} vs Q_+={Q:.6g} [{wall:.1f}s]")
    meta = dict(n=cfg.traj_n, m=cfg.traj_m, s=cfg.traj_s, seed=cfg.seed, Q_plus=Q, support=support.tolist())
    return runs, rows, meta


# ----------------------------------------------------------------------------- (b), (c) l1 gap


def _gap_curves(cfg: ReproConfig, signed: bool, echo) -> tuple[list[dict], list[dict], dict]:
    problem = gaussian_sparse(cfg.n, cfg.m, cfg.s, signed=signed, seed=cfg.seed)
    z_l1 = _l1_solution(problem, nonneg=not signed)
    Q = _l1(z_l1)
    lifted = 2 * cfg.n if signed else cfg.n  # beta_1 = 2 n alpha^N (A.19) or n alpha^N (C2)
    tag = "(c)" if signed else "(b)"
    curves, rows = [], []
    for N in cfg.depths:
        model = Hadamard(N, signed=signed)
        alphas = np.array(sorted(cfg.alphas[N], reverse=True), dtype=float)
        gaps, epss = [], []
        for alpha in alphas:
            beta_1, beta_min = lifted * alpha**N, alpha**N
            limit = predict_limit(problem, model, Init.uniform(alpha))
            gap = (_l1(limit.x) - Q) / Q
            eps = epsilon_bound(N, beta_1, beta_min, Q)
            holds = bound_holds(_l1(limit.x), Q, eps)
            gaps.append(gap)
            epss.append(eps)
            rows.append(dict(source="limit", depth=N, alpha=float(alpha), beta_1=beta_1, beta_min=beta_min, Q=Q,
                             l1_norm=_l1(limit.x), gap=gap, epsilon=eps, bound_holds=holds, status=limit.status,
                             residual=limit.residual, kkt=limit.kkt))
        sim_alpha, sim_gap, sim_ok = [], [], []
        for alpha in cfg.sim_alphas[N]:
            alpha = float(alpha)
            result = simulate(problem, model, GradientFlow(), init=alpha,
                              stop=Stop(tol=cfg.sim_tol, max_wall=cfg.max_wall))
            limit = predict_limit(problem, model, Init.uniform(alpha))
            beta_1, beta_min = lifted * alpha**N, alpha**N
            eps = epsilon_bound(N, beta_1, beta_min, Q)
            gap = (_l1(result.x) - Q) / Q
            limit_gap = (_l1(limit.x) - Q) / Q
            sim_alpha.append(alpha)
            sim_gap.append(gap)
            sim_ok.append(result.converged)
            rows.append(dict(source="simulated", depth=N, alpha=alpha, beta_1=beta_1, beta_min=beta_min, Q=Q,
                             l1_norm=_l1(result.x), gap=gap, epsilon=eps,
                             bound_holds=bound_holds(_l1(result.x), Q, eps) if result.converged else None,
                             status=result.status, residual=result.residual, limit_gap=limit_gap,
                             dist_to_limit=_l1(result.x - limit.x) / _l1(limit.x), t_end=result.t,
                             wall_s=result.wall_s))
        crit = (Q / lifted) ** (1.0 / N)  # beta_1 = Q
        curves.append(dict(depth=N, alpha=alphas, gap=np.array(gaps), epsilon=np.array(epss), alpha_critical=crit,
                           sim_alpha=np.array(sim_alpha), sim_gap=np.array(sim_gap), sim_converged=np.array(sim_ok)))
        applicable = [r for r in rows if r["depth"] == N and r["source"] == "limit" and r["bound_holds"] is not None]
        echo(f"  {tag} N={N}: gap {min(gaps):.2e}..{max(gaps):.2e}; bound holds in "
             f"{sum(r['bound_holds'] for r in applicable)}/{len(applicable)} applicable limits; "
             f"{sum(sim_ok)}/{len(sim_ok)} simulations converged")
    meta = dict(n=cfg.n, m=cfg.m, s=cfg.s, seed=cfg.seed, signed=signed, Q=Q,
                error_l1_min_vs_truth=_l1(z_l1 - problem.x_true) / _l1(problem.x_true),
                beta_1="2 n α^N (A.19)" if signed else "n α^N (C2)", beta_min="α^N")
    return curves, rows, meta


# ----------------------------------------------------------------------------- (d) general init


def _general_init(cfg: ReproConfig, echo) -> tuple[dict, list[dict], dict]:
    N = cfg.general_depth
    n, m = cfg.general_n, cfg.general_m
    u = np.random.default_rng(cfg.u_seed).uniform(cfg.u_low, cfg.u_high, n)
    h_u = weights_general_init(N, u)  # the weights of x0 = lambda u differ by the factor lambda^(2/N-1)
    chosen = None
    for s in cfg.general_s:
        problem = gaussian_sparse(n, m, s, signed=False, seed=cfg.seed)
        z_h = _l1_solution(problem, nonneg=True, h=h_u)
        z_1 = _l1_solution(problem, nonneg=True)
        separation = _l1(z_h - z_1) / _l1(z_1)
        chosen = (s, problem, z_h, z_1, separation)
        if separation > 1e-3:
            break
    s, problem, z_h, z_1, separation = chosen
    Q_plus = _l1(z_1)
    model = Hadamard(N, signed=False)
    lams = np.array(sorted(cfg.lambdas, reverse=True), dtype=float)
    rows, limits = [], {}
    for lam in lams:
        x0 = lam * u
        limit = predict_limit(problem, model, Init.general(x0))
        limits[float(lam)] = limit.x
        h = weights_general_init(N, x0)
        Q_h = float(h @ z_h)
        wnorm = float(h @ np.abs(limit.x))
        eps_h = weighted_epsilon_bound(N, x0, Q_h)
        naive = epsilon_bound(N, float(np.sum(x0)), float(np.min(x0)), Q_plus)
        l1_norm = _l1(limit.x)
        rows.append(dict(
            source="limit", lam=float(lam), B_1=float(np.sum(x0 ** (2.0 / N))), Q_h=Q_h,
            weighted_gap=(wnorm - Q_h) / Q_h, weighted_epsilon=eps_h, weighted_bound_holds=bound_holds(wnorm, Q_h, eps_h),
            dist_weighted=_l1(limit.x - z_h), dist_l1=_l1(limit.x - z_1),
            l1_gap=(l1_norm - Q_plus) / Q_plus, naive_epsilon=naive, naive_bound_holds=bound_holds(l1_norm, Q_plus, naive),
            status=limit.status, residual=limit.residual, kkt=limit.kkt,
        ))
    sim_lam, sim_dist = [], []
    for lam in cfg.sim_lambdas:
        lam = float(lam)
        x0 = lam * u
        result = simulate(problem, model, GradientFlow(), init=Init.general(x0),
                          stop=Stop(tol=cfg.sim_tol, max_wall=cfg.max_wall))
        limit = predict_limit(problem, model, Init.general(x0))
        sim_lam.append(lam)
        sim_dist.append(_l1(result.x - z_h))
        rows.append(dict(source="simulated", lam=lam, status=result.status, residual=result.residual,
                         dist_weighted=_l1(result.x - z_h), dist_l1=_l1(result.x - z_1),
                         dist_to_limit=_l1(result.x - limit.x) / _l1(limit.x), t_end=result.t, wall_s=result.wall_s))
    stem_lam = float(lams.min())
    lim_rows = [r for r in rows if r["source"] == "limit"]
    data = dict(
        depth=N, lam=lams,
        dist_weighted=[r["dist_weighted"] for r in lim_rows], dist_l1=[r["dist_l1"] for r in lim_rows],
        weighted_gap=[r["weighted_gap"] for r in lim_rows], weighted_epsilon=[r["weighted_epsilon"] for r in lim_rows],
        l1_gap=[r["l1_gap"] for r in lim_rows], naive_epsilon=[r["naive_epsilon"] for r in lim_rows],
        sim_lam=sim_lam, sim_dist_weighted=sim_dist,
        stem_lam=stem_lam, x_limit=limits[stem_lam], z_weighted=z_h, z_l1=z_1,
        l1_note="= x_true" if _l1(z_1 - problem.x_true) <= 1e-6 * Q_plus else "",
    )
    meta = dict(n=n, m=m, s=s, seed=cfg.seed, depth=N, u=f"U[{cfg.u_low}, {cfg.u_high}]^n, seed {cfg.u_seed}",
                weights="h = x0^(2/N-1) (A.17)", Q_plus=Q_plus, Q_h_of_u=float(h_u @ z_h),
                separation_weighted_vs_l1=separation, l1_min_equals_truth=bool(_l1(z_1 - problem.x_true) <= 1e-6 * Q_plus),
                weighted_min_equals_truth=bool(_l1(z_h - problem.x_true) <= 1e-6 * Q_plus))
    echo(f"  (d) N={N}, s={s}: ||z_h - z_l1||_1/||z_l1||_1 = {separation:.3g}; ||x_inf - z_h||_1 "
         f"{lim_rows[0]['dist_weighted']:.2e} (lambda={lams[0]:g}) -> {lim_rows[-1]['dist_weighted']:.2e} (lambda={lams[-1]:g})")
    return data, rows, meta


# ----------------------------------------------------------------------------- summary


_GAP_COLUMNS = [("source", "source"), ("depth", "N"), ("alpha", "α"), ("beta_1", "β₁"), ("l1_norm", "‖x∞‖₁", ".10g"),
                ("gap", "gap (‖x∞‖₁−Q)/Q"), ("epsilon", "ε bound"), ("bound_holds", "gap ≤ ε"),
                ("status", "status"), ("residual", "rel. residual"), ("dist_to_limit", "‖x_sim−x_lim‖₁/‖x_lim‖₁")]


def _markdown(summary: dict) -> str:
    f = summary["figures"]
    a, b, c, d = f["a_trajectories"], f["b_l1_gap_positive"], f["c_l1_gap_signed"], f["d_general_init"]
    lines = [
        "# implicit-bias reproduction: sparse recovery (SPEC §A)",
        "",
        f"Preset: **{summary['preset']}**; total wall time {summary['wall_s']:.1f} s. "
        "α is the factor-level initial scale (the product starts at α^N, SPEC C2); t is flow time in factor time (SPEC C1). "
        "`limit` rows come from the exact limit oracle (`predict_limit`, dual Newton); `simulated` rows from "
        "integrating gradient flow (`simulate`, GradientFlow). ε = inf / – means the theorem's hypothesis β₁ < Q fails, "
        "so it gives no bound.",
        "",
        f"**Checks:** {summary['checks']['bounds_hold']} of {summary['checks']['bounds_applicable']} applicable bounds hold "
        f"(figures b–d); gaps shrink monotonically as α shrinks: {_fmt(summary['checks']['gaps_monotone'])}; "
        f"largest simulation-vs-limit distance (relative l1): {_fmt(summary['checks']['max_sim_vs_limit'])}.",
        "",
        f"## (a) {FIGURES['a']}: simulated gradient-flow trajectories",
        "",
        f"Positive model, Gaussian A (n={a['meta']['n']}, m={a['meta']['m']}, s={a['meta']['s']}, seed {a['meta']['seed']}); "
        f"Q₊ = {a['meta']['Q_plus']:.6g}. t½ is the first saved time with ‖x(t)‖₁ ≥ Q₊/2.",
        "",
        _md_table(a["rows"], [("depth", "N"), ("alpha", "α"), ("status", "status"), ("t_half", "t½"), ("t_end", "t_end"),
                              ("l1_final", "‖x(t_end)‖₁", ".10g"), ("gap_final", "gap"), ("residual", "rel. residual"),
                              ("dist_to_limit", "‖x−x_lim‖₁/‖x_lim‖₁"), ("wall_s", "wall s")]),
        "",
        f"## (b) {FIGURES['b']}: l1 gap vs α, positive model (Theorem A.2, SPEC A.15)",
        "",
        f"n={b['meta']['n']}, m={b['meta']['m']}, s={b['meta']['s']}, seed {b['meta']['seed']}; Q₊ = {b['meta']['Q']:.6g}; "
        f"β₁ = {b['meta']['beta_1']}, β_min = α^N.",
        "",
        _md_table(b["rows"], _GAP_COLUMNS),
        "",
        f"## (c) {FIGURES['c']}: l1 gap vs α, signed model (Theorem A.4, SPEC A.19)",
        "",
        f"n={c['meta']['n']}, m={c['meta']['m']}, s={c['meta']['s']}, seed {c['meta']['seed']}; Q = {c['meta']['Q']:.6g}; "
        f"β₁ = {c['meta']['beta_1']}, β_min = α^N.",
        "",
        _md_table(c["rows"], _GAP_COLUMNS),
        "",
        f"## (d) {FIGURES['d']}: general initialisation x0 = λu (SPEC A.6, Theorem A.3)",
        "",
        f"N = {d['meta']['depth']}, n={d['meta']['n']}, m={d['meta']['m']}, s={d['meta']['s']}, u ~ {d['meta']['u']}; "
        f"weights {d['meta']['weights']}. ‖z_h − z_l1‖₁/‖z_l1‖₁ = {d['meta']['separation_weighted_vs_l1']:.3g} "
        f"(plain l1 recovers the truth: {_fmt(d['meta']['l1_min_equals_truth'])}; weighted l1 does: "
        f"{_fmt(d['meta']['weighted_min_equals_truth'])}). The 'naive ε' column is (A.15) evaluated with "
        "β₁ = ‖x0‖₁, β_min = min x0: not a theorem for N > 2 with non-uniform x0 (SPEC §A.5).",
        "",
        _md_table(d["rows"], [("source", "source"), ("lam", "λ"), ("dist_weighted", "‖x∞−z_h‖₁"), ("dist_l1", "‖x∞−z_l1‖₁"),
                              ("weighted_gap", "(‖x∞‖_h−Q_h)/Q_h"), ("weighted_epsilon", "ε_h (A.18)"),
                              ("weighted_bound_holds", "≤ ε_h"), ("l1_gap", "(‖x∞‖₁−Q₊)/Q₊"),
                              ("naive_epsilon", "naive ε"), ("naive_bound_holds", "≤ naive ε"), ("status", "status"),
                              ("dist_to_limit", "‖x_sim−x_lim‖₁/‖x_lim‖₁")]),
        "",
    ]
    return "\n".join(lines)


def _checks(b_rows, c_rows, d_rows) -> dict:
    applicable = [r["bound_holds"] for r in b_rows + c_rows if r["source"] == "limit" and r["bound_holds"] is not None]
    applicable += [r["weighted_bound_holds"] for r in d_rows if r["source"] == "limit"
                   and r["weighted_bound_holds"] is not None]
    monotone = True
    for rows in (b_rows, c_rows):
        for N in sorted({r["depth"] for r in rows}):
            gaps = [r["gap"] for r in sorted((r for r in rows if r["depth"] == N and r["source"] == "limit"),
                                             key=lambda r: -r["alpha"]) if r["gap"] > plots.GAP_FLOOR]
            monotone &= all(g2 < g1 for g1, g2 in zip(gaps, gaps[1:]))
    sims = [r["dist_to_limit"] for r in b_rows + c_rows + d_rows if r["source"] == "simulated"]
    return dict(bounds_applicable=len(applicable), bounds_hold=int(sum(applicable)), gaps_monotone=bool(monotone),
                max_sim_vs_limit=max(sims) if sims else None)


# ----------------------------------------------------------------------------- entry point


def reproduce_all(out_dir, *, quick: bool = True, echo: Callable[[str], None] = print,
                  config: ReproConfig | None = None, phase: "PhaseConfig | None" = None, workers: int = 1,
                  scheduler: str | None = None, weight_norm: "WNReproConfig | None" = None,
                  matrix: "MatrixReproConfig | None" = None) -> list[Path]:
    """Compute figures (a)-(d) of SPEC §A, write them and a summary into ``out_dir``; return the paths.

    ``quick`` selects :meth:`ReproConfig.quick` (n=100, about a minute) or :meth:`ReproConfig.full`
    (n=500, finer grids); ``config`` overrides both (e.g. :meth:`ReproConfig.tiny` in tests).
    The returned list holds the four PNGs, ``summary.json`` and ``summary.md``.

    Section (f), weight normalisation (SPEC B), runs after the existing figures with
    ``weight_norm`` (default: :meth:`WNReproConfig.quick`/``full()`` matching ``quick`` when
    ``config`` is None; skipped for a custom ``config`` unless ``weight_norm`` is given). Its
    PNG is returned after ``report.html``.

    Sections (g)-(j), deep matrix factorisation (SPEC C, :mod:`implicit_bias.matrix_report`), follow
    with ``matrix`` (default: ``MatrixReproConfig.quick()``/``full()`` when ``config`` is None;
    skipped for a custom ``config`` unless given); their PNGs are returned last.
    """
    from threadpoolctl import threadpool_limits

    cfg = config if config is not None else (ReproConfig.quick() if quick else ReproConfig.full())
    preset = "custom" if config is not None else ("quick" if quick else "full")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths: list[Path] = []
    # The problems are small (m <= a few hundred): multithreaded BLAS only adds contention
    # (measured 10x slower Cholesky with 2 OpenBLAS threads on a busy 2-core machine).
    with threadpool_limits(limits=1):
        echo(f"reproduce ({preset}): (a) simulated trajectories")
        t0 = time.perf_counter()
        runs, a_rows, a_meta = _trajectories(cfg, echo)
        paths.append(plots.plot_trajectories(
            runs, out / FIGURES["a"], dpi=cfg.dpi,
            title=(f"(a) SIMULATED gradient flow (simulate, GradientFlow), positive Hadamard model $x = w^{{\\odot N}}$, "
                   f"Gaussian A: n={cfg.traj_n}, m={cfg.traj_m}, s={cfg.traj_s}, seed {cfg.seed}\n"
                   r"top: $\|x(t)\|_1$ approaches the l1 optimum $Q_+$ (dashed); bottom: the coordinates escape from "
                   r"$\alpha^N$ one after another, the off-support ones (grey) stay small"),
        ))
        a_wall = time.perf_counter() - t0

        echo("reproduce: (b) l1 gap vs alpha, positive model")
        t0 = time.perf_counter()
        b_curves, b_rows, b_meta = _gap_curves(cfg, False, echo)
        paths.append(plots.plot_l1_gap_vs_alpha(
            b_curves, out / FIGURES["b"], dpi=cfg.dpi, q_symbol=r"Q_+",
            bound_label=r"$\epsilon$ bound, Thm A.2 (SPEC A.15), $\beta_1 = n\alpha^N$, $\beta_{\min} = \alpha^N$",
            title=(f"(b) Positive model $x = w^{{\\odot N}}$: LINES = exact limits from the oracle (predict_limit), "
                   f"CIRCLES = simulated gradient flow\nGaussian A: n={cfg.n}, m={cfg.m}, s={cfg.s}, seed {cfg.seed}; "
                   f"$Q_+$ = {b_meta['Q']:.4g}"),
        ))
        b_wall = time.perf_counter() - t0

        echo("reproduce: (c) l1 gap vs alpha, signed model")
        t0 = time.perf_counter()
        c_curves, c_rows, c_meta = _gap_curves(cfg, True, echo)
        paths.append(plots.plot_l1_gap_vs_alpha(
            c_curves, out / FIGURES["c"], dpi=cfg.dpi, q_symbol="Q",
            bound_label=r"$\epsilon$ bound, Thm A.4 (SPEC A.19), $\beta_1 = 2n\alpha^N$, $\beta_{\min} = \alpha^N$",
            title=(f"(c) Signed model $x = u^{{\\odot N}} - v^{{\\odot N}}$: LINES = exact limits from the oracle (predict_limit), "
                   f"CIRCLES = simulated gradient flow\nGaussian A: n={cfg.n}, m={cfg.m}, s={cfg.s}, seed {cfg.seed}; "
                   f"Q = {c_meta['Q']:.4g}"),
        ))
        c_wall = time.perf_counter() - t0

        echo("reproduce: (d) general initialisation")
        t0 = time.perf_counter()
        d_data, d_rows, d_meta = _general_init(cfg, echo)
        paths.append(plots.plot_general_init(
            d_data, out / FIGURES["d"], dpi=cfg.dpi,
            title=(f"(d) General init $x_0 = \\lambda u$, $u \\sim U[{cfg.u_low}, {cfg.u_high}]^n$, "
                   f"N = {cfg.general_depth}, positive model: LINES = exact limits from the oracle (predict_limit), "
                   f"CIRCLES = simulated gradient flow; Gaussian A: n={cfg.general_n}, m={cfg.general_m}, "
                   f"s={d_meta['s']}\n" r"weighted-l1 solution $z_h = \arg\min_{S_+} \sum_k h_k z_k$ with "
                   r"$h = x_0^{2/N-1}$ (SPEC A.17);  plain-l1 solution $z_{\ell_1} = \arg\min_{S_+} \|z\|_1$"),
        ))
        d_wall = time.perf_counter() - t0

    summary = dict(
        preset=preset, wall_s=time.perf_counter() - started, config=asdict(cfg),
        checks=_checks(b_rows, c_rows, d_rows),
        figures=dict(
            a_trajectories=dict(file=FIGURES["a"], data="simulated", meta=a_meta, rows=a_rows, wall_s=a_wall),
            b_l1_gap_positive=dict(file=FIGURES["b"], data="limit oracle (lines) + simulated (markers)",
                                   meta=b_meta, rows=b_rows, wall_s=b_wall),
            c_l1_gap_signed=dict(file=FIGURES["c"], data="limit oracle (lines) + simulated (markers)",
                                 meta=c_meta, rows=c_rows, wall_s=c_wall),
            d_general_init=dict(file=FIGURES["d"], data="limit oracle (lines) + simulated (markers)",
                                meta=d_meta, rows=d_rows, wall_s=d_wall),
        ),
    )
    phase_cfg = phase if phase is not None else (PhaseConfig.quick() if quick else PhaseConfig.full())
    e_path, e_section = _phase_diagrams(phase_cfg, out, cfg.dpi, echo, workers, scheduler)
    paths.append(e_path)
    summary["figures"]["e_phase_diagrams"] = e_section
    wn_cfg = weight_norm if weight_norm is not None else (
        None if config is not None else (WNReproConfig.quick() if quick else WNReproConfig.full()))
    f_path = None
    if wn_cfg is not None:
        echo("reproduce: (f) weight normalisation")
        with threadpool_limits(limits=1):
            f_path, f_section = weight_norm_section(wn_cfg, out, cfg.dpi, echo)
        summary["figures"]["f_weight_norm"] = f_section
    matrix_cfg = matrix if matrix is not None else (
        None if config is not None else (MatrixReproConfig.quick() if quick else MatrixReproConfig.full()))
    matrix_paths = []
    if matrix_cfg is not None:
        with threadpool_limits(limits=1):
            matrix_paths, matrix_summary = matrix_sections(matrix_cfg, out, cfg.dpi, echo)
        summary["figures"].update(matrix_summary)
        summary["matrix_config"] = asdict(matrix_cfg)
    summary["wall_s"] = time.perf_counter() - started
    json_path = out / "summary.json"
    json_path.write_text(json.dumps(_jsonable(summary), indent=1, allow_nan=False) + "\n")
    md_path = out / "summary.md"
    md_path.write_text(_markdown(summary) + ("\n" + _weight_norm_markdown(summary["figures"]["f_weight_norm"])
                                             if f_path is not None else "")
                       + ("\n" + matrix_markdown(summary["figures"], _md_table) if matrix_paths else ""))
    paths += [json_path, md_path, write_html(summary, out)]
    if f_path is not None:
        paths.append(f_path)
    paths += matrix_paths
    checks = summary["checks"]
    echo(f"reproduce: {checks['bounds_hold']}/{checks['bounds_applicable']} applicable bounds hold; "
         f"gaps monotone in alpha: {checks['gaps_monotone']}; total {summary['wall_s']:.1f}s")
    return paths


# ----------------------------------------------------------------------------- (e) phase diagrams


def _phase_diagrams(pcfg: PhaseConfig, out: Path, dpi: int, echo, workers: int, scheduler: str | None):
    """Run the phase sweeps into ``out/store.sqlite`` (resuming), aggregate and plot them."""
    from .experiments import DaskExecutor, SerialExecutor, SQLiteStore, run_sweep

    store_path = out / "store.sqlite"
    specs = phase_specs(pcfg)
    sample = flow_sample_spec(pcfg)
    executor = DaskExecutor(workers=workers, scheduler=scheduler) if (workers > 1 or scheduler) else SerialExecutor()
    t0 = time.perf_counter()
    counts = dict(total=0, skipped=0, done=0, failed=0)
    try:
        for label, signed, spec in specs + [("flow sample", False, sample)]:
            summary = run_sweep(spec, store_path=str(store_path), executor=executor, progress=False)
            for key in counts:
                counts[key] += getattr(summary, key)
            echo(f"reproduce: (e) {'signed' if signed else 'positive'} {label}: {summary.total} trials "
                 f"({summary.skipped} from the store)")
    finally:
        executor.close()
    with SQLiteStore(store_path) as store:
        frame = store.dataframe("phase")
    panels = []
    rows = []
    for signed in (False, True):
        row = []
        for label, sign, spec in specs:
            if sign != signed:
                continue
            fixed = spec.fixed
            part = frame[(frame["signed"] == signed) & (frame["method"] == fixed["method"]) & (frame["n"] == pcfg.n)]
            if fixed["method"] == "limit":
                part = part[(part["depth"] == fixed["depth"]) & (part["alpha"] == fixed["alpha"])]
            grid = success_grid(part, pcfg.deltas, pcfg.rhos)
            row.append(dict(label=label, deltas=pcfg.deltas, rhos=pcfg.rhos, success=grid, signed=signed))
            for i, rho in enumerate(pcfg.rhos):
                for j, delta in enumerate(pcfg.deltas):
                    rows.append(dict(signed=signed, method=label, delta=delta, rho=rho, success=grid[i, j],
                                     dt_rho=donoho_tanner_rho(float(delta), signed)))
        panels.append(row)
    path = plots.plot_phase_diagrams(
        panels, out / "e_phase_diagrams.png", dpi=dpi, dt_curve=donoho_tanner_rho,
        title=(f"(e) Phase transitions of recovery, Gaussian A, n={pcfg.n}, {pcfg.seeds} seeds per pixel; success = "
               f"relative l2 error ≤ {pcfg.threshold:g}.\nFlow panels: exact limits from the ORACLE (predict_limit); "
               "the flow itself is SIMULATED on a sample of points (table) and agrees. Dashed: the l1 transition."),
    )
    flow = frame[frame["method"] == "flow"]
    sample_rows = [dict(delta=r["delta"], rho=r["rho"], n=r["n"], m=r["m"], s=r["s"], status=r["solver_status"],
                        error_flow=r["error_true"], error_limit=r.get("error_true_of_limit"),
                        dist_flow_to_limit=r.get("dist_to_limit")) for _, r in flow.iterrows()]
    section = dict(file=path.name, data="limit oracle (flow panels), LP / pseudo-inverse (l1, l2); flow simulated on a sample",
                   meta=dict(n=pcfg.n, deltas=list(pcfg.deltas), rhos=list(pcfg.rhos), seeds=pcfg.seeds,
                             threshold=pcfg.threshold, store=str(store_path), trials=counts),
                   rows=rows, sample=sample_rows, wall_s=time.perf_counter() - t0)
    return path, section


# ----------------------------------------------------------------------------- report.html


def _html_table(rows: list[dict], limit: int = 400) -> str:
    import pandas as pd

    if not rows:
        return "<p><em>no rows</em></p>"
    frame = pd.DataFrame(rows[:limit])
    note = f"<p><em>{len(rows) - limit} more rows in summary.json</em></p>" if len(rows) > limit else ""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0, classes="data") + note


def write_html(summary: dict, out: Path) -> Path:
    """A self-contained ``report.html``: figures embedded, a table per figure, parameters, version, timings."""
    import base64
    import html
    import platform

    from .experiments.store import package_version

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>implicit-bias reproduction</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}",
        "img{max-width:100%;border:1px solid #ddd}table.data{border-collapse:collapse;font-size:12px;margin:1em 0}",
        "table.data td,table.data th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}",
        "details{margin:1em 0}code{background:#f4f4f4;padding:1px 4px}</style></head><body>",
        "<h1>implicit-bias: reproduction of the sparse-recovery numerics</h1>",
        f"<p>Package version <code>{html.escape(package_version())}</code>; Python {platform.python_version()}; "
        f"preset <b>{html.escape(str(summary['preset']))}</b>; total wall time {summary['wall_s']:.1f} s.</p>",
        f"<p><b>Checks:</b> {summary['checks']['bounds_hold']} of {summary['checks']['bounds_applicable']} applicable "
        f"ε bounds hold; l1 gaps shrink monotonically with α: {summary['checks']['gaps_monotone']}; largest distance "
        f"between a simulated flow and the oracle's limit: {summary['checks']['max_sim_vs_limit']:.2e}.</p>",
        "<p>α is the factor-level initial scale (the product starts at α<sup>N</sup>); t is flow time in factor time. "
        "Equation numbers refer to SPEC.md.</p>",
    ]
    for name, section in summary["figures"].items():
        image = (out / section["file"]).read_bytes()
        parts.append(f"<h2>{html.escape(name)}</h2><p>Data: {html.escape(section['data'])}; "
                     f"computed in {section['wall_s']:.1f} s.</p>")
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(image).decode()}'>")
        if section.get("sample"):
            parts.append("<h3>Oracle vs simulated flow on a sample of points</h3>" + _html_table(section["sample"]))
        parts.append("<h3>Table</h3>" + _html_table(section["rows"]))
        parts.append("<details><summary>parameters</summary><pre>"
                     + html.escape(json.dumps(_jsonable(section.get("meta", {})), indent=1)) + "</pre></details>")
    parts.append("<details><summary>full configuration</summary><pre>"
                 + html.escape(json.dumps(_jsonable(summary["config"]), indent=1)) + "</pre></details></body></html>")
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text("".join(parts))
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- plots of any store

PLOT_KINDS = ("phase", "l1-gap")


def plot_store(store_path, kind: str, out) -> Path:
    """Plot the trials of a store: ``phase`` (success over delta x rho, one panel per
    signal kind and method) or ``l1-gap`` (relative l1 gap of ``sparse`` trials vs alpha per depth,
    with the epsilon bound of A.15)."""
    from .experiments import SQLiteStore

    if kind not in PLOT_KINDS:
        raise InvalidParameterError(f"The 'kind' parameter must be one of {PLOT_KINDS}. Got {kind!r}.")
    with SQLiteStore(store_path, create=False) as store:
        frame = store.dataframe("phase" if kind == "phase" else "sparse")
    if frame.empty:
        raise InvalidParameterError(f"store {store_path} has no '{'phase' if kind == 'phase' else 'sparse'}' trials to plot")
    frame = frame[frame["status"] == "done"]
    if kind == "phase":
        panels = []
        for signed, by_sign in frame.groupby("signed"):
            row = []
            for (method, depth, alpha, n), part in by_sign.groupby(["method", "depth", "alpha", "n"]):
                deltas, rhos = sorted(part["delta"].unique()), sorted(part["rho"].unique())
                label = f"{method}, n={n}" + (f", N={depth}, α={alpha:g}" if method in ("limit", "flow") else "")
                row.append(dict(label=label, deltas=deltas, rhos=rhos, success=success_grid(part, deltas, rhos),
                                signed=bool(signed)))
            panels.append(row)
        return plots.plot_phase_diagrams(panels, out, dt_curve=donoho_tanner_rho,
                                         title=f"Phase diagrams from {Path(store_path).name} (mean success over seeds)")
    curves = []
    for (depth, signed), part in frame.groupby(["depth", "signed"]):
        means = part.groupby("alpha")[["l1_gap", "epsilon_bound"]].mean().sort_index()
        curves.append(dict(depth=int(depth), alpha=np.asarray(means.index, float), gap=means["l1_gap"].to_numpy(float),
                           epsilon=means["epsilon_bound"].fillna(np.inf).to_numpy(float)))
    return plots.plot_l1_gap_vs_alpha(curves, out, title=f"l1 gap vs alpha from {Path(store_path).name} "
                                      "(mean over stored trials; dashed: ε bound A.15)")


# ----------------------------------------------------------------------------- (f) weight normalisation


@dataclass(frozen=True)
class WNReproConfig:
    """Section (f), weight normalisation (SPEC B), N = ``depth``: grids of ``r0`` and ``eta_r``."""

    n: int = 100
    m: int = 40
    s: int = 4
    seed: int = 0
    depth: int = 2
    r0s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    eta_rs: tuple[float, ...] = (0.03, 0.1, 0.3)
    rho_r0: float = 2.0
    rho_eta_rs: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    tol: float = 1e-6
    max_wall: float = 5.0

    @classmethod
    def quick(cls) -> "WNReproConfig":
        return cls()

    @classmethod
    def full(cls) -> "WNReproConfig":
        return cls(n=200, m=80, s=8, r0s=(0.25, 0.5, 1.0, 2.0, 4.0), eta_rs=(0.01, 0.03, 0.1, 0.3),
                   rho_eta_rs=(0.01, 0.03, 0.1, 0.3, 1.0), max_wall=30.0)

    @classmethod
    def tiny(cls) -> "WNReproConfig":
        return cls(n=40, m=16, s=2, r0s=(1.0, 2.0), eta_rs=(0.1,), rho_eta_rs=(0.1, 1.0), max_wall=3.0)


def _wn_run(problem, Q, cfg: WNReproConfig, eta_r: float, r0: float) -> dict:
    from .dynamics.weight_norm import resolved_floor
    from .limits import fit_effective_scale, predict_limit_weight_norm
    from .models import WeightNormalized
    from .theory import log_magnification_factor, wn_beta_constants, wn_epsilon_bound

    model = WeightNormalized(cfg.depth, eta_r)
    res = simulate(problem, model, GradientFlow(rtol=1e-9), init=r0, stop=Stop(tol=cfg.tol, max_wall=cfg.max_wall))
    w = res.factors[0]
    r_inf = float(np.linalg.norm(w))
    log_rho = log_magnification_factor(r0, r_inf, eta_r)
    log_c_fit, _ = fit_effective_scale(model.lift(problem.A), w ** cfg.depth, model.initial_product(r0, problem.n), cfg.depth,
                                       floor=resolved_floor(cfg.depth))
    row = dict(eta_r=eta_r, r0=r0, status=res.status, converged=res.converged, t=res.t, grad_evals=res.grad_evals,
               wall_s=res.wall_s, r_inf=r_inf, log_rho=log_rho, log_c_b7=-cfg.depth * log_rho,
               log_c_fit=log_c_fit if np.isfinite(log_c_fit) else None,
               log_c_slide=-cfg.depth * (math.log(r0 / r_inf) + (r_inf**2 - r0**2) / eta_r),
               v_norm_drift=res.invariant_drift.get("v_norm_B4"), gap=None, epsilon=None, bound_holds=None,
               dist_to_oracle=None, explanation="converged" if res.converged else res.message)
    if res.converged:
        beta_1, beta_min = wn_beta_constants(r0, problem.n, cfg.depth)
        eps = wn_epsilon_bound(cfg.depth, beta_1, beta_min, Q, log_rho)
        oracle = predict_limit_weight_norm(problem, model, r0, r_inf)
        x = oracle.x if oracle.x is not None else res.x  # the oracle's limit is exact; the run stops at tol
        row.update(gap=(_l1(x) - Q) / Q, epsilon=float(eps) if math.isfinite(eps) else None,
                   bound_holds=bound_holds(_l1(x), Q, eps) if math.isfinite(eps) else None,
                   dist_to_oracle=None if oracle.x is None else _l1(res.x - oracle.x) / _l1(oracle.x))
    return row


def weight_norm_section(cfg: WNReproConfig, out: Path, dpi: int, echo) -> tuple[Path, dict]:
    """Section (f): l1 gap vs r0 (plain vs WN, bound B.9), rho vs eta_r (B.7 vs fit), time vs r0."""
    t0 = time.perf_counter()
    problem = gaussian_sparse(cfg.n, cfg.m, cfg.s, seed=cfg.seed)
    Q = _l1(_l1_solution(problem, nonneg=True))
    plain_gap, times_plain, rows = [], [], []
    for r0 in cfg.r0s:
        alpha = r0 / math.sqrt(cfg.n)
        plain_gap.append((_l1(predict_limit(problem, Hadamard(cfg.depth), Init.uniform(alpha)).x) - Q) / Q)
        res = simulate(problem, Hadamard(cfg.depth), GradientFlow(), init=alpha, stop=Stop(tol=cfg.tol, max_wall=cfg.max_wall))
        times_plain.append(res.t if res.converged else float("nan"))
        rows.append(dict(kind="plain", eta_r=None, r0=r0, status=res.status, t=res.t, grad_evals=res.grad_evals,
                         gap=plain_gap[-1]))
    wn_rows = []
    for eta_r in cfg.eta_rs:
        for r0 in cfg.r0s:
            row = _wn_run(problem, Q, cfg, eta_r, r0)
            wn_rows.append(row)
            echo(f"reproduce: (f) WN eta_r={eta_r:g} r0={r0:g}: {row['status']}")
    rho_rows = [_wn_run(problem, Q, cfg, eta_r, cfg.rho_r0) for eta_r in cfg.rho_eta_rs]
    times = [dict(label="plain flow", r0=list(cfg.r0s), t=times_plain)]
    for eta_r in cfg.eta_rs:
        times.append(dict(label=f"WN flow, eta_r={eta_r:g}", eta_r=eta_r, r0=list(cfg.r0s),
                          t=[r["t"] if r["converged"] else float("nan") for r in wn_rows if r["eta_r"] == eta_r]))
    data = dict(r0=list(cfg.r0s), plain_gap=plain_gap, wn=wn_rows, rho=rho_rows, rho_r0=cfg.rho_r0, times=times)
    path = plots.plot_weight_norm(
        data, out / "f_weight_norm.png", dpi=dpi,
        title=(f"(f) Weight normalisation $w = r v/\\|v\\|$, N={cfg.depth} (SPEC B), Gaussian A: n={cfg.n}, m={cfg.m}, "
               f"s={cfg.s}; WN = SIMULATED (r, v) flow, gaps from the oracle (B.8) at the run's $r_\\infty$; "
               "runs that did not converge are marked x and give no limit"),
    )
    applicable = [r["bound_holds"] for r in wn_rows if r["bound_holds"] is not None]
    fits = [abs(math.expm1(r["log_c_fit"] - r["log_c_b7"])) for r in wn_rows + rho_rows
            if r["log_c_fit"] is not None and r["log_c_b7"] > math.log(1e-100)]
    meta = dict(n=cfg.n, m=cfg.m, s=cfg.s, seed=cfg.seed, depth=cfg.depth, Q=Q, tol=cfg.tol,
                bounds_applicable=len(applicable), bounds_hold=int(sum(applicable)),
                max_rel_err_fit_vs_rho=max(fits) if fits else None,
                not_converged=[dict(eta_r=r["eta_r"], r0=r["r0"], why=r["explanation"]) for r in wn_rows + rho_rows
                               if not r["converged"]])
    section = dict(file=path.name, data="simulated (r, v) flow + limit oracle (B.8) + plain-flow oracle",
                   meta=meta, rows=rows + [dict(kind="wn", **r) for r in wn_rows],
                   rho_rows=rho_rows, wall_s=time.perf_counter() - t0)
    return path, section


def _weight_norm_markdown(section: dict) -> str:
    meta = section["meta"]
    lines = [
        f"## (f) {section['file']}: weight normalisation (SPEC B)",
        "",
        f"N = {meta['depth']}, n={meta['n']}, m={meta['m']}, s={meta['s']}, seed {meta['seed']}; Q₊ = {meta['Q']:.6g}. "
        f"{meta['bounds_hold']} of {meta['bounds_applicable']} applicable (B.9) bounds hold; largest relative error of the "
        f"fitted effective scale vs ρ^-N (B.7), where ρ^-N > 1e-100: {_fmt(meta['max_rel_err_fit_vs_rho'])}.",
        "",
        _md_table([r for r in section["rows"]], [("kind", "kind"), ("eta_r", "η_r"), ("r0", "r₀"), ("status", "status"),
                                                ("t", "flow time"), ("grad_evals", "grad evals"), ("gap", "l1 gap"),
                                                ("epsilon", "ε (B.9)"), ("bound_holds", "≤ ε")]),
        "",
        _md_table(section["rho_rows"], [("eta_r", "η_r"), ("r0", "r₀"), ("status", "status"), ("r_inf", "r∞"),
                                        ("log_c_b7", "−N log ρ (B.7)"), ("log_c_fit", "log c* (fit)"),
                                        ("log_c_slide", "slide's −N log ρ")]),
        "",
    ]
    for item in meta["not_converged"]:
        lines.append(f"- η_r={item['eta_r']:g}, r₀={item['r0']:g}: no limit reported: {item['why']}")
    return "\n".join(lines) + "\n"
