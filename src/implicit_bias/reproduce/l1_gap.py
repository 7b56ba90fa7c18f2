"""Sections (b) and (c): the relative l1 gap of the exact limit versus alpha, against the theorems' bound.

(b) the positive model, Theorem A.2 (SPEC A.15) with ``beta_1 = n alpha^N``; (c) the signed model,
Theorem A.4 with ``beta_1 = 2 n alpha^N`` (A.19). Lines come from the limit oracle along an alpha
grid; simulated gradient-flow runs at a few alphas are the markers. Every point is compared with the
LP's l1 minimiser by :func:`implicit_bias.experiments.sparse.compare`, the comparison of a sweep trial.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..dynamics import GradientFlow, Stop, simulate
from ..experiments.sparse import compare
from ..limits import predict_limit
from ..models import Hadamard, Init
from ..plots import GAP_FLOOR, plot_l1_gap_vs_alpha
from ..problems import gaussian_sparse
from .base import Context, Section, register
from .render import md_table
from .sparse_common import ReproConfig, l1, l1_solution


def compute(cfg: ReproConfig, context: Context, *, signed: bool) -> dict:
    problem = gaussian_sparse(cfg.n, cfg.m, cfg.s, signed=signed, seed=cfg.seed)
    z_l1 = l1_solution(problem, nonneg=not signed)
    lifted = 2 * cfg.n if signed else cfg.n  # beta_1 = 2 n alpha^N (A.19) or n alpha^N (C2)
    depths = []
    for N in cfg.depths:
        model = Hadamard(N, signed=signed)

        def oracle(alpha, model=model):
            limit = predict_limit(problem, model, Init.uniform(alpha))
            cmp = compare(problem, limit.x, limit.status, model=model, init=Init.uniform(alpha), x_l1=z_l1,
                          predicted=limit.x)
            return limit, cmp

        limits = [(float(alpha), *oracle(float(alpha))) for alpha in sorted(cfg.alphas[N], reverse=True)]
        sims = []
        for alpha in map(float, cfg.sim_alphas[N]):
            result = simulate(problem, model, GradientFlow(), init=alpha, stop=Stop(tol=cfg.sim_tol, max_wall=cfg.max_wall))
            limit, limit_cmp = oracle(alpha)
            sims.append((alpha, result, limit_cmp, compare(problem, result.x, result.status, model=model,
                                                           init=Init.uniform(alpha), x_l1=z_l1, predicted=limit.x)))
        depths.append(dict(depth=N, limits=limits, sims=sims, alpha_critical=(l1(z_l1) / lifted) ** (1.0 / N)))
        gaps = [cmp["l1_gap"] for _, _, cmp in limits]
        bounds = [cmp["bound_holds"] for _, _, cmp in limits if cmp["bound_holds"] is not None]
        context.echo(f"reproduce: ({'c' if signed else 'b'}) N={N}: gap {min(gaps):.2e}..{max(gaps):.2e}; bound holds "
                     f"in {sum(bounds)}/{len(bounds)} applicable limits; "
                     f"{sum(r.status == 'converged' for _, r, _, _ in sims)}/{len(sims)} simulations converged")
    meta = dict(n=cfg.n, m=cfg.m, s=cfg.s, seed=cfg.seed, signed=signed, Q=l1(z_l1),
                error_l1_min_vs_truth=l1(z_l1 - problem.x_true) / l1(problem.x_true),
                beta_1="2 n α^N (A.19)" if signed else "n α^N (C2)", beta_min="α^N")
    return dict(depths=depths, lifted=lifted, meta=meta)


def rows(data: dict) -> list[dict]:
    lifted, out = data["lifted"], []
    for d in data["depths"]:
        N = d["depth"]
        for alpha, limit, cmp in d["limits"]:
            out.append(dict(source="limit", depth=N, alpha=alpha, beta_1=lifted * alpha**N, beta_min=alpha**N,
                            Q=cmp["l1_min"], l1_norm=cmp["l1_norm"], gap=cmp["l1_gap"], epsilon=cmp["epsilon_bound"],
                            bound_holds=cmp["bound_holds"], status=limit.status, residual=limit.residual,
                            kkt=limit.kkt))
        for alpha, result, limit_cmp, cmp in d["sims"]:
            out.append(dict(source="simulated", depth=N, alpha=alpha, beta_1=lifted * alpha**N, beta_min=alpha**N,
                            Q=cmp["l1_min"], l1_norm=cmp["l1_norm"], gap=cmp["l1_gap"], epsilon=cmp["epsilon_bound"],
                            bound_holds=cmp["bound_holds"], status=result.status, residual=result.residual,
                            limit_gap=limit_cmp["l1_gap"], dist_to_limit=cmp["dist_predicted"], t_end=result.t,
                            wall_s=result.wall_s))
    return out


def _inf(value) -> float:
    return float("inf") if value is None else float(value)


def figure(data: dict, path, dpi: int, *, signed: bool):
    curves = [dict(depth=d["depth"], alpha=np.array([a for a, _, _ in d["limits"]]),
                   gap=np.array([_inf(c["l1_gap"]) for _, _, c in d["limits"]]),
                   epsilon=np.array([_inf(c["epsilon_bound"]) for _, _, c in d["limits"]]),
                   alpha_critical=d["alpha_critical"], sim_alpha=np.array([a for a, _, _, _ in d["sims"]]),
                   sim_gap=np.array([_inf(c["l1_gap"]) for _, _, _, c in d["sims"]]),
                   sim_converged=np.array([r.status == "converged" for _, r, _, _ in d["sims"]], dtype=bool))
              for d in data["depths"]]
    meta = data["meta"]
    q, name, model = ("Q", "Signed", "x = u^{\\odot N} - v^{\\odot N}") if signed else ("Q_+", "Positive", "x = w^{\\odot N}")
    bound = (r"$\epsilon$ bound, Thm A.4 (SPEC A.19), $\beta_1 = 2n\alpha^N$" if signed
             else r"$\epsilon$ bound, Thm A.2 (SPEC A.15), $\beta_1 = n\alpha^N$") + r", $\beta_{\min} = \alpha^N$"
    return plot_l1_gap_vs_alpha(
        curves, path, dpi=dpi, q_symbol=q, bound_label=bound,
        title=(f"({'c' if signed else 'b'}) {name} model ${model}$: LINES = exact limits from the oracle (predict_limit), "
               f"CIRCLES = simulated gradient flow\nGaussian A: n={meta['n']}, m={meta['m']}, s={meta['s']}, "
               f"seed {meta['seed']}; ${q}$ = {meta['Q']:.4g}"))


def checks(data: dict) -> dict:
    """Every applicable bound of the limits; gaps strictly shrinking with alpha (above rounding); sim vs oracle."""
    monotone = True
    for d in data["depths"]:
        gaps = [c["l1_gap"] for _, _, c in d["limits"] if c["l1_gap"] is not None and c["l1_gap"] > GAP_FLOOR]
        monotone &= all(g2 < g1 for g1, g2 in zip(gaps, gaps[1:]))
    return dict(bounds=[c["bound_holds"] for d in data["depths"] for _, _, c in d["limits"]], monotone=bool(monotone),
                sim_vs_limit=[c["dist_predicted"] for d in data["depths"] for _, _, _, c in d["sims"]])


_COLUMNS = [("source", "source"), ("depth", "N"), ("alpha", "α"), ("beta_1", "β₁"), ("l1_norm", "‖x∞‖₁", ".10g"),
            ("gap", "gap (‖x∞‖₁−Q)/Q"), ("epsilon", "ε bound"), ("bound_holds", "gap ≤ ε"),
            ("status", "status"), ("residual", "rel. residual"), ("dist_to_limit", "‖x_sim−x_lim‖₂/‖x_lim‖₂")]


def markdown(entry: dict, *, signed: bool) -> str:
    meta = entry["meta"]
    return "\n".join([
        f"n={meta['n']}, m={meta['m']}, s={meta['s']}, seed {meta['seed']}; {'Q' if signed else 'Q₊'} = {meta['Q']:.6g}; "
        f"β₁ = {meta['beta_1']}, β_min = α^N.",
        "",
        md_table(entry["rows"], _COLUMNS),
    ])


def _section(key: str, title: str, signed: bool) -> Section:
    return Section(key=key, title=title, group="sparse", source="limit oracle (lines) + simulated (markers)",
                   compute=partial(compute, signed=signed), rows=rows, figure=partial(figure, signed=signed),
                   markdown=partial(markdown, signed=signed), checks=checks)


POSITIVE = register(_section("b_l1_gap_positive", "l1 gap vs α, positive model (Theorem A.2, SPEC A.15)", False))
SIGNED = register(_section("c_l1_gap_signed", "l1 gap vs α, signed model (Theorem A.4, SPEC A.19)", True))
