"""Section (j): the intrinsic volume ``log v(W(t))`` (SPEC C.11) and the effective rank along completion flows.

``v -> inf`` as ``W`` approaches lower rank, and ``v = 0`` at ``W(0) = alpha^N I`` (equal singular
values): the volume rises while the effective rank falls. The flows are those of section (i) at
``volume_count`` entries and ``volume_scale`` (simulated here when (i) did not run).
"""

from __future__ import annotations

import numpy as np

from ..matrix_theory import log_volume
from ..plots import plot_volume_paths
from ..problems import matrix_completion
from .base import Context, Section, register
from .matrix_common import MatrixReproConfig, run
from .render import md_table


def volume_run(res, depth: int, scale: float, true_rank: int) -> dict:
    """``log v`` (C.11) from the saved singular values (``v`` depends on ``W`` only through them)."""
    sv = res.path.singular_values
    logv = [log_volume(np.diag(s), depth) if s[-1] > 0 else np.nan for s in sv]
    return dict(depth=depth, label=f"depth {depth}, $\\|W(0)\\|_2$ = {scale:g}", t=res.path.t,
                log_volume=np.where(np.isfinite(logv), logv, np.nan), effective_rank=res.path.effective_rank,
                true_rank=true_rank)


def _tracked_runs(cfg: MatrixReproConfig, context: Context) -> list:
    """The saved completion flows of section (i), or the same flows simulated here."""
    earlier = context.results.get("i_matrix_completion")
    if earlier is not None:
        return earlier["tracked"]
    problem = matrix_completion(cfg.completion_n, cfg.completion_n, cfg.completion_rank, count=cfg.volume_count,
                                seed=cfg.seed)
    return [(run(problem, depth, cfg.volume_scale, cfg, save_at="steps"), depth, cfg.volume_scale)
            for depth in cfg.completion_depths]


def _first_finite(values):
    finite = [float(v) for v in values if np.isfinite(v)]
    return finite[0] if finite else None


def compute(cfg: MatrixReproConfig, context: Context) -> dict:
    runs = []
    for res, depth, scale in _tracked_runs(cfg, context):
        runs.append(dict(volume_run(res, depth, scale, cfg.completion_rank), status=res.status))
    return dict(runs=runs, meta=dict(count=cfg.volume_count, scale=cfg.volume_scale))


def rows(data: dict) -> list[dict]:
    return [dict(depth=r["depth"], status=r["status"], log_v_start=_first_finite(r["log_volume"]),
                 log_v_end=_first_finite(r["log_volume"][::-1]), effective_rank_end=float(r["effective_rank"][-1]),
                 saved=len(r["t"])) for r in data["runs"]]


def figure(data: dict, path, dpi: int):
    meta = data["meta"]
    return plot_volume_paths(
        data["runs"], path, dpi=dpi,
        title=(f"(j) Intrinsic volume along the SIMULATED completion flows ({meta['count']} entries, "
               f"$\\|W(0)\\|_2$ = {meta['scale']:g}): $\\log v(W)$ (SPEC C.11) rises while the effective rank falls\n"
               "($v \\to \\infty$ as $W$ approaches lower rank; $v = 0$ at $W(0) = \\alpha^N I$, whose singular values coincide)"))


def markdown(entry: dict) -> str:
    return md_table(entry["rows"], [("depth", "N"), ("status", "status"), ("log_v_start", "log v (first finite)"),
                                    ("log_v_end", "log v (end)"), ("effective_rank_end", "eff. rank (end)"),
                                    ("saved", "saved states")])


SECTION = register(Section(
    key="j_intrinsic_volume", title="intrinsic volume (SPEC C.11) along completion flows", group="matrix",
    source="simulated factor flow (C.5), v from C.11", compute=compute, rows=rows, figure=figure, markdown=markdown,
))
