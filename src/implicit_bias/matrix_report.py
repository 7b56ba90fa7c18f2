"""Reproduce the deep-matrix-factorisation figures (SPEC C) for :func:`implicit_bias.report.reproduce_all`.

Four sections, each a PNG plus a table in the summary:

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

import math
import time
from dataclasses import dataclass

import numpy as np

from . import plots
from .dynamics import GradientFlow, Stop, simulate
from .matrix_theory import effective_rank, log_volume
from .models import DeepFactorization, MatrixInit
from .problems import matrix_completion, matrix_sensing
from .references import min_nuclear_norm

__all__ = ["MatrixReproConfig", "matrix_sections", "matrix_markdown", "MATRIX_FIGURES"]

MATRIX_FIGURES = {
    "g": "g_matrix_sensing.png",
    "h": "h_singular_values.png",
    "i": "i_matrix_completion.png",
    "j": "j_intrinsic_volume.png",
}


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


def _run(problem, depth: int, scale: float, cfg: MatrixReproConfig, save_at=None):
    """Simulate the factor flow (C.1) from ``W_j(0) = scale^(1/N) I`` (balanced, product ``scale * I``).

    The factor flow equals the product flow (C.5) here (balanced start; tested) and is the cheaper of
    the two per evaluation (no ``eigh``), see ``benchmarks/matrix.py``.
    """
    init = MatrixInit.balanced(scale ** (1.0 / depth))
    return simulate(problem, DeepFactorization(depth), GradientFlow(), init=init,
                    stop=Stop(tol=cfg.tol, max_wall=cfg.max_wall), save_at=save_at)


def _error_or_nan(problem, res) -> float:
    """The run's relative error; NaN when it failed or diverged (a spent budget still gives a usable W)."""
    return float(problem.relative_error(res.W)) if res.status in ("converged", "budget_exhausted") else float("nan")


def _row(problem, res, **extra) -> dict:
    sv = np.linalg.svd(res.W, compute_uv=False) if np.all(np.isfinite(res.W)) else None
    return dict(**extra, status=res.status, method=res.method, relative_error=problem.relative_error(res.W)
                if sv is not None else None, residual=res.residual, effective_rank=effective_rank(res.W)
                if sv is not None and sv[0] > 0 else None, grad_evals=res.grad_evals, t=res.t, wall_s=res.wall_s)


def _sensing(cfg: MatrixReproConfig, echo):
    n, r = cfg.sensing_n, cfg.sensing_rank
    curves = {depth: np.full((len(cfg.sensing_ms), cfg.sensing_seeds), np.nan) for depth in cfg.sensing_depths}
    nuclear = np.full((len(cfg.sensing_ms), cfg.sensing_seeds), np.nan)
    rows = []
    for i, m in enumerate(cfg.sensing_ms):
        for k in range(cfg.sensing_seeds):
            problem = matrix_sensing(n, n, r, m, seed=cfg.seed + k)
            W_nuc = min_nuclear_norm(problem)
            nuclear[i, k] = problem.relative_error(W_nuc)
            rows.append(dict(m=m, seed=cfg.seed + k, source="nuclear norm (SCS)", depth=None,
                             relative_error=nuclear[i, k]))
            for depth in cfg.sensing_depths:
                res = _run(problem, depth, cfg.sensing_scale, cfg)
                curves[depth][i, k] = _error_or_nan(problem, res)
                rows.append(_row(problem, res, m=m, seed=cfg.seed + k, source="simulated", depth=depth))
            echo(f"reproduce: (g) m={m} seed={cfg.seed + k}: nuclear {nuclear[i, k]:.2e}, "
                 + ", ".join(f"N={d} {curves[d][i, k]:.2e}" for d in cfg.sensing_depths))
    data = dict(m=list(cfg.sensing_ms), dof=r * (2 * n - r),
                curves=[dict(label=f"depth {d}" + (" (plain flow: min-Frobenius limit, E.1)" if d == 1 else
                                                    " (factor flow C.1)"), depth=d, error=curves[d])
                        for d in cfg.sensing_depths]
                + [dict(label="nuclear-norm minimisation (cvxpy/SCS)", depth=None, error=nuclear)])
    meta = dict(n=n, rank=r, scale=cfg.sensing_scale, seeds=cfg.sensing_seeds, tol=cfg.tol)
    return data, rows, meta


def _singular_value_paths(cfg: MatrixReproConfig, echo):
    n = cfg.paths_n
    spectrum = np.asarray(cfg.paths_spectrum, float)
    problem = matrix_sensing(n, n, spectrum.size, cfg.paths_m, spectrum=spectrum, seed=cfg.seed)
    runs, rows = [], []
    for depth, scale in cfg.paths_runs:
        res = _run(problem, depth, scale, cfg, save_at="steps")
        path = res.path
        runs.append(dict(label=f"depth {depth}, $\\|W(0)\\|_2$ = {scale:g}: {res.status}", t=path.t,
                         sv=path.singular_values, true_sv=spectrum))
        rows.append(_row(problem, res, depth=depth, scale=scale, saved=len(path.t),
                         plateaus=_plateau_count(path.singular_values, spectrum)))
        echo(f"reproduce: (h) depth {depth}, scale {scale:g}: {res.status} in {res.wall_s:.1f}s")
    meta = dict(n=n, m=cfg.paths_m, spectrum=[float(v) for v in spectrum], rank=int(spectrum.size))
    return runs, rows, meta


def _plateau_count(sv: np.ndarray, spectrum: np.ndarray) -> int:
    """How many ground-truth singular values are learned one after another: ``sigma_i`` reaches half
    its target strictly before ``sigma_{i+1}`` does (saddle-to-saddle order)."""
    k = spectrum.size
    first = []
    for i in range(k):
        hit = np.nonzero(sv[:, i] >= 0.5 * spectrum[i])[0]
        first.append(int(hit[0]) if hit.size else math.inf)
    return int(sum(a < b for a, b in zip(first, first[1:])) + (first[0] < math.inf))


def _completion(cfg: MatrixReproConfig, echo):
    n, r = cfg.completion_n, cfg.completion_rank
    panels, rows, volume_runs = [], [], []
    for count in cfg.completion_counts:
        problem = matrix_completion(n, n, r, count=count, seed=cfg.seed)
        nuclear = problem.relative_error(min_nuclear_norm(problem))
        rows.append(dict(count=count, source="nuclear norm (SCS)", depth=None, scale=None, relative_error=nuclear))
        curves = []
        for depth in cfg.completion_depths:
            errors = []
            for scale in cfg.completion_scales:
                track = count == cfg.volume_count and math.isclose(scale, cfg.volume_scale)
                res = _run(problem, depth, scale, cfg, save_at="steps" if track else None)
                errors.append(_error_or_nan(problem, res))
                rows.append(_row(problem, res, count=count, source="simulated", depth=depth, scale=scale))
                echo(f"reproduce: (i) {count} entries, depth {depth}, scale {scale:g}: {res.status}, "
                     f"error {errors[-1]:.2e}")
                if track:
                    volume_runs.append(_volume_run(res, depth, scale, r))
            curves.append(dict(depth=depth, error=errors))
        panels.append(dict(count=count, scale=list(cfg.completion_scales), curves=curves, nuclear=nuclear))
    meta = dict(n=n, rank=r, counts=list(cfg.completion_counts), scales=list(cfg.completion_scales), tol=cfg.tol)
    return dict(panels=panels), rows, meta, volume_runs


def _volume_run(res, depth: int, scale: float, true_rank: int) -> dict:
    """``log v`` (C.11) from the saved singular values (``v`` depends on ``W`` only through them)."""
    sv = res.path.singular_values
    logv = [log_volume(np.diag(s), depth) if s[-1] > 0 else np.nan for s in sv]
    return dict(depth=depth, label=f"depth {depth}, $\\|W(0)\\|_2$ = {scale:g}", t=res.path.t,
                log_volume=np.where(np.isfinite(logv), logv, np.nan), effective_rank=res.path.effective_rank,
                true_rank=true_rank)


def matrix_sections(cfg: MatrixReproConfig, out, dpi: int, echo) -> tuple[list, dict]:
    """Compute sections (g)-(j), write their PNGs into ``out``; return the paths and summary sections."""
    sections, paths = {}, []
    t0 = time.perf_counter()
    echo("reproduce: (g) deep matrix sensing, error vs m")
    data, rows, meta = _sensing(cfg, echo)
    paths.append(plots.plot_matrix_recovery(
        data, out / MATRIX_FIGURES["g"], dpi=dpi,
        title=(f"(g) Deep matrix factorisation $W = W_N\\cdots W_1$: recovery of a {meta['n']}x{meta['n']} rank-{meta['rank']} "
               f"matrix from m Gaussian measurements (SPEC C.13)\nSIMULATED factor flows from $W_j(0) = \\alpha I$, "
               f"$\\|W(0)\\|_2 = \\alpha^N$ = {meta['scale']:g},\nstopped at relative residual {cfg.tol:g} (the floor "
               "of the deep curves); nuclear norm solved to SCS precision")))
    sections["g_matrix_sensing"] = dict(file=MATRIX_FIGURES["g"], data="simulated factor flow + nuclear norm (SCS)",
                                        meta=meta, rows=rows, wall_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    echo("reproduce: (h) singular-value trajectories")
    runs, rows, meta = _singular_value_paths(cfg, echo)
    paths.append(plots.plot_singular_value_paths(
        runs, out / MATRIX_FIGURES["h"], dpi=dpi,
        title=(f"(h) Incremental learning: singular values of the SIMULATED factor flow (C.1; the product follows C.5), "
               f"Gaussian sensing (m = {meta['m']}) of a {meta['n']}x{meta['n']} matrix\nwith singular values "
               f"{', '.join(f'{v:g}' for v in meta['spectrum'])}: they are learned one after another (saddle to saddle); "
               "smaller init and larger depth sharpen and separate the plateaus")))
    sections["h_singular_values"] = dict(file=MATRIX_FIGURES["h"], data="simulated factor flow (C.5)", meta=meta,
                                         rows=rows, wall_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    echo("reproduce: (i) matrix completion vs init scale")
    data, rows, meta, volume_runs = _completion(cfg, echo)
    paths.append(plots.plot_completion_vs_scale(
        data, out / MATRIX_FIGURES["i"], dpi=dpi,
        title=(f"(i) Matrix completion of a {meta['n']}x{meta['n']} rank-{meta['rank']} matrix (entries RMS 1): SIMULATED "
               "factor flows from $W_j(0) = \\alpha I$ vs nuclear-norm minimisation\nfew entries: depth 3-4 beat the "
               f"nuclear norm; many entries: the nuclear norm is exact, the flows stop at relative residual {cfg.tol:g}")))
    sections["i_matrix_completion"] = dict(file=MATRIX_FIGURES["i"], data="simulated factor flow + nuclear norm (SCS)",
                                           meta=meta, rows=rows, wall_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    paths.append(plots.plot_volume_paths(
        volume_runs, out / MATRIX_FIGURES["j"], dpi=dpi,
        title=(f"(j) Intrinsic volume along the SIMULATED completion flows ({cfg.volume_count} entries, "
               f"$\\|W(0)\\|_2$ = {cfg.volume_scale:g}): $\\log v(W)$ (SPEC C.11) rises while the effective rank falls\n"
               "($v \\to \\infty$ as $W$ approaches lower rank; $v = 0$ at $W(0) = \\alpha^N I$, whose singular values coincide)")))
    vol_rows = [dict(depth=r["depth"], log_v_start=_first_finite(r["log_volume"]),
                     log_v_end=_last_finite(r["log_volume"]), effective_rank_end=float(r["effective_rank"][-1]),
                     saved=len(r["t"])) for r in volume_runs]
    sections["j_intrinsic_volume"] = dict(file=MATRIX_FIGURES["j"], data="simulated factor flow (C.5), v from C.11",
                                          meta=dict(count=cfg.volume_count, scale=cfg.volume_scale), rows=vol_rows,
                                          wall_s=time.perf_counter() - t0)
    return paths, sections


def _first_finite(values):
    finite = [float(v) for v in values if np.isfinite(v)]
    return finite[0] if finite else None


def _last_finite(values):
    finite = [float(v) for v in values if np.isfinite(v)]
    return finite[-1] if finite else None


def matrix_markdown(sections: dict, table) -> str:
    """Markdown for sections (g)-(j); ``table(rows, columns)`` renders a table."""
    g, h, i, j = (sections[k] for k in ("g_matrix_sensing", "h_singular_values", "i_matrix_completion",
                                         "j_intrinsic_volume"))
    common = [("status", "status"), ("relative_error", "‖W−W*‖/‖W*‖"), ("residual", "rel. residual"),
              ("effective_rank", "eff. rank"), ("grad_evals", "grad evals"), ("wall_s", "wall s")]
    return "\n".join([
        f"## (g) {g['file']}: deep matrix sensing, error vs m (SPEC C)",
        "",
        f"{g['meta']['n']}x{g['meta']['n']} rank {g['meta']['rank']}, product scale {g['meta']['scale']:g}.",
        "",
        table(g["rows"], [("m", "m"), ("seed", "seed"), ("source", "source"), ("depth", "N")] + common),
        "",
        f"## (h) {h['file']}: singular-value trajectories",
        "",
        table(h["rows"], [("depth", "N"), ("scale", "‖W(0)‖₂"), ("plateaus", "σ learned in order")] + common),
        "",
        f"## (i) {i['file']}: matrix completion vs init scale",
        "",
        table(i["rows"], [("count", "entries"), ("source", "source"), ("depth", "N"), ("scale", "‖W(0)‖₂")] + common),
        "",
        f"## (j) {j['file']}: intrinsic volume (SPEC C.11) along completion flows",
        "",
        table(j["rows"], [("depth", "N"), ("log_v_start", "log v (first finite)"), ("log_v_end", "log v (end)"),
                          ("effective_rank_end", "eff. rank (end)"), ("saved", "saved states")]),
        "",
    ])
