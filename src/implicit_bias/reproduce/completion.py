"""Section (i): matrix completion, relative error vs the initial scale (SPEC C).

Depths 2-4 against nuclear-norm minimisation: from few entries the deep flows beat the nuclear
norm; from many, the nuclear norm is exact and the flows stop at their residual tolerance. The runs
at ``volume_count`` entries and ``volume_scale`` save their path for section (j).
"""

from __future__ import annotations

import math

from ..plots import plot_completion_vs_scale
from ..problems import matrix_completion
from ..references import min_nuclear_norm
from .base import Context, Section, register
from .matrix_common import MatrixReproConfig, error_or_nan, row, run
from .matrix_sensing import COMMON_COLUMNS
from .render import md_table


def compute(cfg: MatrixReproConfig, context: Context) -> dict:
    n, r = cfg.completion_n, cfg.completion_rank
    panels, table, tracked = [], [], []
    for count in cfg.completion_counts:
        problem = matrix_completion(n, n, r, count=count, seed=cfg.seed)
        nuclear = problem.relative_error(min_nuclear_norm(problem))
        table.append(dict(count=count, source="nuclear norm (SCS)", depth=None, scale=None, relative_error=nuclear))
        curves = []
        for depth in cfg.completion_depths:
            errors = []
            for scale in cfg.completion_scales:
                track = count == cfg.volume_count and math.isclose(scale, cfg.volume_scale)
                res = run(problem, depth, scale, cfg, save_at="steps" if track else None)
                errors.append(error_or_nan(problem, res))
                table.append(row(problem, res, count=count, source="simulated", depth=depth, scale=scale))
                context.echo(f"reproduce: (i) {count} entries, depth {depth}, scale {scale:g}: {res.status}, "
                             f"error {errors[-1]:.2e}")
                if track:
                    tracked.append((res, depth, scale))
            curves.append(dict(depth=depth, error=errors))
        panels.append(dict(count=count, scale=list(cfg.completion_scales), curves=curves, nuclear=nuclear))
    meta = dict(n=n, rank=r, counts=list(cfg.completion_counts), scales=list(cfg.completion_scales), tol=cfg.tol)
    return dict(panels=panels, table=table, tracked=tracked, meta=meta)


def figure(data: dict, path, dpi: int):
    meta = data["meta"]
    return plot_completion_vs_scale(
        dict(panels=data["panels"]), path, dpi=dpi,
        title=(f"(i) Matrix completion of a {meta['n']}x{meta['n']} rank-{meta['rank']} matrix (entries RMS 1): SIMULATED "
               "factor flows from $W_j(0) = \\alpha I$ vs nuclear-norm minimisation\nfew entries: depth 3-4 beat the "
               f"nuclear norm; many entries: the nuclear norm is exact, the flows stop at relative residual {meta['tol']:g}"))


def markdown(entry: dict) -> str:
    return md_table(entry["rows"], [("count", "entries"), ("source", "source"), ("depth", "N"), ("scale", "‖W(0)‖₂")]
                    + COMMON_COLUMNS)


SECTION = register(Section(
    key="i_matrix_completion", title="matrix completion vs init scale", group="matrix",
    source="simulated factor flow + nuclear norm (SCS)", compute=compute, rows=lambda data: data["table"],
    figure=figure, markdown=markdown,
))
