"""Section (a): simulated gradient-flow trajectories of the positive model (SPEC A.1, C1-C2).

``||x(t)||_1`` and the coordinates over flow time for each depth, with ``Q_+`` marked: the flow
leaves ``alpha^N`` coordinate by coordinate and ends at the oracle's limit, near the l1 minimiser.
"""

from __future__ import annotations

import time

import numpy as np

from ..dynamics import GradientFlow, Stop, simulate
from ..experiments.sparse import compare
from ..limits import predict_limit
from ..models import Hadamard, Init
from ..plots import plot_trajectories
from ..problems import gaussian_sparse
from .base import Context, Section, register
from .render import md_table
from .sparse_common import ReproConfig, l1, l1_solution


def _run(problem, N: int, alpha: float, cfg: ReproConfig):
    """Simulate to the stopping time once, then again saving on a log-spaced grid up to it."""
    model = Hadamard(N, signed=False)
    stop = Stop(tol=1e-8, max_wall=cfg.max_wall)
    started = time.perf_counter()
    probe = simulate(problem, model, GradientFlow(), init=alpha, stop=stop)
    times = np.geomspace(min(1e-2, 1e-3 * probe.t), probe.t, cfg.traj_points)
    result = simulate(problem, model, GradientFlow(), init=alpha, stop=stop, save_at=[float(t) for t in times])
    t_path = np.asarray(result.path.t) if result.path is not None else np.empty(0)
    x_path = np.asarray(result.path.x) if result.path is not None else np.empty((0, problem.n))
    if t_path.size == 0 or t_path[-1] < result.t:
        t_path = np.append(t_path, result.t)
        x_path = np.vstack([x_path, result.x[None, :]])
    return result, t_path, x_path, time.perf_counter() - started


def compute(cfg: ReproConfig, context: Context) -> dict:
    problem = gaussian_sparse(cfg.traj_n, cfg.traj_m, cfg.traj_s, signed=False, seed=cfg.seed)
    z_l1 = l1_solution(problem, nonneg=True)
    Q = l1(z_l1)
    support = np.flatnonzero(z_l1 > 1e-9 * np.max(z_l1))
    runs = []
    for N in cfg.depths:
        alpha = float(cfg.traj_alpha[N])
        result, t_path, x_path, wall = _run(problem, N, alpha, cfg)
        limit = predict_limit(problem, Hadamard(N), Init.uniform(alpha))
        cmp = compare(problem, result.x, result.status, model=Hadamard(N), init=Init.uniform(alpha), x_l1=z_l1,
                      predicted=limit.x)
        reached = np.flatnonzero(np.abs(x_path).sum(axis=1) >= 0.5 * Q)
        runs.append(dict(depth=N, alpha=alpha, t=t_path, x=x_path, Q=Q, support=support, x_ref=z_l1,
                         status=result.status, result=result, cmp=cmp, wall_s=wall,
                         t_half=float(t_path[reached[0]]) if reached.size else None))
        context.echo(f"reproduce: (a) N={N} alpha={alpha:g}: {result.status} at t={result.t:.3g}, "
                     f"||x||_1={l1(result.x):.6g} vs Q_+={Q:.6g} [{wall:.1f}s]")
    meta = dict(n=cfg.traj_n, m=cfg.traj_m, s=cfg.traj_s, seed=cfg.seed, Q_plus=Q, support=support.tolist())
    return dict(runs=runs, meta=meta, title=(
        f"(a) SIMULATED gradient flow (simulate, GradientFlow), positive Hadamard model $x = w^{{\\odot N}}$, "
        f"Gaussian A: n={cfg.traj_n}, m={cfg.traj_m}, s={cfg.traj_s}, seed {cfg.seed}\n"
        r"top: $\|x(t)\|_1$ approaches the l1 optimum $Q_+$ (dashed); bottom: the coordinates escape from "
        r"$\alpha^N$ one after another, the off-support ones (grey) stay small"))


def rows(data: dict) -> list[dict]:
    out = []
    for run in data["runs"]:
        result, cmp = run["result"], run["cmp"]
        out.append(dict(
            depth=run["depth"], alpha=run["alpha"], status=result.status, t_end=float(result.t), t_half=run["t_half"],
            l1_final=cmp["l1_norm"], Q_plus=cmp["l1_min"], gap_final=cmp["l1_gap"], epsilon=cmp["epsilon_bound"],
            bound_holds=cmp["bound_holds"], residual=float(result.residual), dist_to_limit=cmp["dist_predicted"],
            saved_points=int(run["t"].size), grad_evals=int(result.grad_evals), wall_s=run["wall_s"],
            method=result.method,
        ))
    return out


def figure(data: dict, path, dpi: int):
    runs = [dict(run, note=f"at t = {run['result'].t:.2g}: " + r"$\|x\|_1/Q_+ - 1$" + f" = {run['cmp']['l1_gap']:.1e}")
            for run in data["runs"]]
    return plot_trajectories(runs, path, dpi=dpi, title=data["title"])


def markdown(entry: dict) -> str:
    meta = entry["meta"]
    return "\n".join([
        f"Positive model, Gaussian A (n={meta['n']}, m={meta['m']}, s={meta['s']}, seed {meta['seed']}); "
        f"Q₊ = {meta['Q_plus']:.6g}. t½ is the first saved time with ‖x(t)‖₁ ≥ Q₊/2; ε is (A.15) at the run's α.",
        "",
        md_table(entry["rows"], [("depth", "N"), ("alpha", "α"), ("status", "status"), ("t_half", "t½"),
                                 ("t_end", "t_end"), ("l1_final", "‖x(t_end)‖₁", ".10g"), ("gap_final", "gap"),
                                 ("epsilon", "ε (A.15)"), ("residual", "rel. residual"),
                                 ("dist_to_limit", "‖x−x_lim‖₂/‖x_lim‖₂"), ("wall_s", "wall s")]),
    ])


SECTION = register(Section(
    key="a_trajectories", title="simulated gradient-flow trajectories", group="sparse", source="simulated",
    compute=compute, rows=rows, figure=figure, markdown=markdown,
))
