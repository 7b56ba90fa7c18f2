"""Section (g): deep matrix sensing, relative error vs the number of measurements (SPEC C.13, E.1).

Deep factorisations of depth 1-4, simulated from a small balanced initialisation, against
nuclear-norm minimisation (cvxpy/SCS); depth 1 is the plain flow, whose limit is the minimum-Frobenius
solution (E.1).
"""

from __future__ import annotations

import numpy as np

from ..plots import plot_matrix_recovery
from ..problems import matrix_sensing
from ..references import min_nuclear_norm
from .base import Context, Section, register
from .matrix_common import MatrixReproConfig, error_or_nan, row, run
from .render import md_table

COMMON_COLUMNS = [("status", "status"), ("relative_error", "‖W−W*‖/‖W*‖"), ("residual", "rel. residual"),
                  ("effective_rank", "eff. rank"), ("grad_evals", "grad evals"), ("wall_s", "wall s")]


def compute(cfg: MatrixReproConfig, context: Context) -> dict:
    n, r = cfg.sensing_n, cfg.sensing_rank
    curves = {depth: np.full((len(cfg.sensing_ms), cfg.sensing_seeds), np.nan) for depth in cfg.sensing_depths}
    nuclear = np.full((len(cfg.sensing_ms), cfg.sensing_seeds), np.nan)
    table = []
    for i, m in enumerate(cfg.sensing_ms):
        for k in range(cfg.sensing_seeds):
            problem = matrix_sensing(n, n, r, m, seed=cfg.seed + k)
            nuclear[i, k] = problem.relative_error(min_nuclear_norm(problem))
            table.append(dict(m=m, seed=cfg.seed + k, source="nuclear norm (SCS)", depth=None,
                              relative_error=nuclear[i, k]))
            for depth in cfg.sensing_depths:
                res = run(problem, depth, cfg.sensing_scale, cfg)
                curves[depth][i, k] = error_or_nan(problem, res)
                table.append(row(problem, res, m=m, seed=cfg.seed + k, source="simulated", depth=depth))
            context.echo(f"reproduce: (g) m={m} seed={cfg.seed + k}: nuclear {nuclear[i, k]:.2e}, "
                         + ", ".join(f"N={d} {curves[d][i, k]:.2e}" for d in cfg.sensing_depths))
    plotted = dict(m=list(cfg.sensing_ms), dof=r * (2 * n - r),
                   curves=[dict(label=f"depth {d}" + (" (plain flow: min-Frobenius limit, E.1)" if d == 1 else
                                                       " (factor flow C.1)"), depth=d, error=curves[d])
                           for d in cfg.sensing_depths]
                   + [dict(label="nuclear-norm minimisation (cvxpy/SCS)", depth=None, error=nuclear)])
    meta = dict(n=n, rank=r, scale=cfg.sensing_scale, seeds=cfg.sensing_seeds, tol=cfg.tol)
    return dict(plotted=plotted, table=table, meta=meta)


def figure(data: dict, path, dpi: int):
    meta = data["meta"]
    return plot_matrix_recovery(
        data["plotted"], path, dpi=dpi,
        title=(f"(g) Deep matrix factorisation $W = W_N\\cdots W_1$: recovery of a {meta['n']}x{meta['n']} rank-{meta['rank']} "
               f"matrix from m Gaussian measurements (SPEC C.13)\nSIMULATED factor flows from $W_j(0) = \\alpha I$, "
               f"$\\|W(0)\\|_2 = \\alpha^N$ = {meta['scale']:g},\nstopped at relative residual {meta['tol']:g} (the floor "
               "of the deep curves); nuclear norm solved to SCS precision"))


def markdown(entry: dict) -> str:
    meta = entry["meta"]
    return "\n".join([
        f"{meta['n']}x{meta['n']} rank {meta['rank']}, product scale {meta['scale']:g}.",
        "",
        md_table(entry["rows"], [("m", "m"), ("seed", "seed"), ("source", "source"), ("depth", "N")] + COMMON_COLUMNS),
    ])


SECTION = register(Section(
    key="g_matrix_sensing", title="deep matrix sensing, error vs m (SPEC C)", group="matrix",
    source="simulated factor flow + nuclear norm (SCS)", compute=compute, rows=lambda data: data["table"],
    figure=figure, markdown=markdown,
))
