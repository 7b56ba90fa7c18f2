"""Section (h): singular values of ``W(t)`` along simulated flows (SPEC C.1, C.5).

Incremental (saddle-to-saddle) learning: the ground truth's singular values are learned one after
another; smaller initial scale and larger depth sharpen and separate the plateaus.
"""

from __future__ import annotations

import math

import numpy as np

from ..plots import plot_singular_value_paths
from ..problems import matrix_sensing
from .base import Context, Section, register
from .matrix_common import MatrixReproConfig, row, run
from .matrix_sensing import COMMON_COLUMNS
from .render import md_table


def plateau_count(sv: np.ndarray, spectrum: np.ndarray) -> int:
    """How many ground-truth singular values are learned one after another: ``sigma_i`` reaches half
    its target strictly before ``sigma_{i+1}`` does (saddle-to-saddle order)."""
    first = []
    for i in range(spectrum.size):
        hit = np.nonzero(sv[:, i] >= 0.5 * spectrum[i])[0]
        first.append(int(hit[0]) if hit.size else math.inf)
    return int(sum(a < b for a, b in zip(first, first[1:])) + (first[0] < math.inf))


def compute(cfg: MatrixReproConfig, context: Context) -> dict:
    spectrum = np.asarray(cfg.paths_spectrum, float)
    problem = matrix_sensing(cfg.paths_n, cfg.paths_n, spectrum.size, cfg.paths_m, spectrum=spectrum, seed=cfg.seed)
    runs = []
    for depth, scale in cfg.paths_runs:
        res = run(problem, depth, scale, cfg, save_at="steps")
        runs.append(dict(depth=depth, scale=scale, result=res, row=row(
            problem, res, depth=depth, scale=scale, saved=len(res.path.t),
            plateaus=plateau_count(res.path.singular_values, spectrum))))
        context.echo(f"reproduce: (h) depth {depth}, scale {scale:g}: {res.status} in {res.wall_s:.1f}s")
    meta = dict(n=cfg.paths_n, m=cfg.paths_m, spectrum=[float(v) for v in spectrum], rank=int(spectrum.size))
    return dict(runs=runs, meta=meta)


def figure(data: dict, path, dpi: int):
    meta = data["meta"]
    runs = [dict(label=f"depth {r['depth']}, $\\|W(0)\\|_2$ = {r['scale']:g}: {r['result'].status}", t=r["result"].path.t,
                 sv=r["result"].path.singular_values, true_sv=np.asarray(meta["spectrum"])) for r in data["runs"]]
    return plot_singular_value_paths(
        runs, path, dpi=dpi,
        title=(f"(h) Incremental learning: singular values of the SIMULATED factor flow (C.1; the product follows C.5), "
               f"Gaussian sensing (m = {meta['m']}) of a {meta['n']}x{meta['n']} matrix\nwith singular values "
               f"{', '.join(f'{v:g}' for v in meta['spectrum'])}: they are learned one after another (saddle to saddle); "
               "smaller init and larger depth sharpen and separate the plateaus"))


def markdown(entry: dict) -> str:
    return md_table(entry["rows"], [("depth", "N"), ("scale", "‖W(0)‖₂"), ("plateaus", "σ learned in order")]
                    + COMMON_COLUMNS)


SECTION = register(Section(
    key="h_singular_values", title="singular-value trajectories", group="matrix", source="simulated factor flow (C.5)",
    compute=compute, rows=lambda data: [r["row"] for r in data["runs"]], figure=figure, markdown=markdown,
))
