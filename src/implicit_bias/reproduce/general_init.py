"""Section (d): a non-uniform initialisation ``x0 = lambda u`` (SPEC A.6, Theorem A.3).

As lambda -> 0 the limit tends to the weighted-l1 solution ``z_h`` with ``h = x0^(2/N-1)`` (A.17),
not to the plain l1 solution; the weighted bound (A.18) holds, while (A.15) evaluated with
``beta_1 = ||x0||_1`` (not a theorem for N > 2 and non-uniform x0) may fail. The problem uses the
first sparsity in ``general_s`` for which ``z_h`` and the l1 minimiser differ, so the figure can tell them apart.
"""

from __future__ import annotations

import numpy as np

from ..dynamics import GradientFlow, Stop, simulate
from ..experiments.sparse import compare
from ..limits import predict_limit
from ..models import Hadamard, Init
from ..plots import plot_general_init
from ..problems import gaussian_sparse
from ..theory import bound_holds, weighted_epsilon_bound, weights_general_init
from .base import Context, Section, register
from .render import md_table
from .sparse_common import ReproConfig, l1, l1_solution


def _problem(cfg: ReproConfig, h_u: np.ndarray):
    """The first sparsity of ``general_s`` whose weighted- and plain-l1 solutions differ (else the last)."""
    for s in cfg.general_s:
        problem = gaussian_sparse(cfg.general_n, cfg.general_m, s, signed=False, seed=cfg.seed)
        z_h, z_1 = l1_solution(problem, nonneg=True, h=h_u), l1_solution(problem, nonneg=True)
        separation = l1(z_h - z_1) / l1(z_1)
        if separation > 1e-3:
            break
    return s, problem, z_h, z_1, separation


def _limit_point(problem, model, lam: float, u, z_h, z_1) -> dict:
    """The oracle's limit from ``x0 = lam u``: weighted gap vs (A.18), plain gap vs (A.15) as if uniform."""
    x0, N = lam * u, model.depth
    limit = predict_limit(problem, model, Init.general(x0))
    h = weights_general_init(N, x0)
    Q_h, wnorm = float(h @ z_h), float(h @ np.abs(limit.x))
    eps_h = weighted_epsilon_bound(N, x0, Q_h)
    cmp = compare(problem, limit.x, limit.status, model=model, init=Init.general(x0), x_l1=z_1, predicted=limit.x)
    return dict(source="limit", lam=lam, B_1=float(np.sum(x0 ** (2.0 / N))), Q_h=Q_h, weighted_gap=(wnorm - Q_h) / Q_h,
                weighted_epsilon=eps_h, weighted_bound_holds=bound_holds(wnorm, Q_h, eps_h),
                dist_weighted=l1(limit.x - z_h), dist_l1=l1(limit.x - z_1), l1_gap=cmp["l1_gap"],
                naive_epsilon=cmp["epsilon_bound"], naive_bound_holds=cmp["bound_holds"], status=limit.status,
                residual=limit.residual, kkt=limit.kkt, x=limit.x)


def compute(cfg: ReproConfig, context: Context) -> dict:
    N = cfg.general_depth
    u = np.random.default_rng(cfg.u_seed).uniform(cfg.u_low, cfg.u_high, cfg.general_n)
    h_u = weights_general_init(N, u)  # the weights of x0 = lambda u differ by the factor lambda^(2/N-1)
    s, problem, z_h, z_1, separation = _problem(cfg, h_u)
    model = Hadamard(N, signed=False)
    limits = [_limit_point(problem, model, float(lam), u, z_h, z_1) for lam in sorted(cfg.lambdas, reverse=True)]
    sims = []
    for lam in map(float, cfg.sim_lambdas):
        init = Init.general(lam * u)
        result = simulate(problem, model, GradientFlow(), init=init, stop=Stop(tol=cfg.sim_tol, max_wall=cfg.max_wall))
        limit = predict_limit(problem, model, init)
        cmp = compare(problem, result.x, result.status, model=model, init=init, x_l1=z_1, predicted=limit.x)
        sims.append(dict(source="simulated", lam=lam, status=result.status, residual=result.residual,
                         dist_weighted=l1(result.x - z_h), dist_l1=l1(result.x - z_1),
                         dist_to_limit=cmp["dist_predicted"], t_end=result.t, wall_s=result.wall_s))
    Q_plus = l1(z_1)
    meta = dict(n=cfg.general_n, m=cfg.general_m, s=s, seed=cfg.seed, depth=N,
                u=f"U[{cfg.u_low}, {cfg.u_high}]^n, seed {cfg.u_seed}", weights="h = x0^(2/N-1) (A.17)", Q_plus=Q_plus,
                Q_h_of_u=float(h_u @ z_h), separation_weighted_vs_l1=separation,
                l1_min_equals_truth=bool(l1(z_1 - problem.x_true) <= 1e-6 * Q_plus),
                weighted_min_equals_truth=bool(l1(z_h - problem.x_true) <= 1e-6 * Q_plus))
    context.echo(f"reproduce: (d) N={N}, s={s}: ||z_h - z_l1||_1/||z_l1||_1 = {separation:.3g}; ||x_inf - z_h||_1 "
                 f"{limits[0]['dist_weighted']:.2e} (lambda={limits[0]['lam']:g}) -> {limits[-1]['dist_weighted']:.2e} "
                 f"(lambda={limits[-1]['lam']:g})")
    return dict(limits=limits, sims=sims, z_h=z_h, z_1=z_1, meta=meta, title=(
        f"(d) General init $x_0 = \\lambda u$, $u \\sim U[{cfg.u_low}, {cfg.u_high}]^n$, "
        f"N = {N}, positive model: LINES = exact limits from the oracle (predict_limit), "
        f"CIRCLES = simulated gradient flow; Gaussian A: n={cfg.general_n}, m={cfg.general_m}, s={s}\n"
        r"weighted-l1 solution $z_h = \arg\min_{S_+} \sum_k h_k z_k$ with "
        r"$h = x_0^{2/N-1}$ (SPEC A.17);  plain-l1 solution $z_{\ell_1} = \arg\min_{S_+} \|z\|_1$"))


def rows(data: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "x"} for row in data["limits"]] + list(data["sims"])


def figure(data: dict, path, dpi: int):
    lims, meta = data["limits"], data["meta"]
    column = {key: [np.inf if r[key] is None else r[key] for r in lims]
              for key in ("dist_weighted", "dist_l1", "weighted_gap", "weighted_epsilon", "l1_gap", "naive_epsilon")}
    plotted = dict(depth=meta["depth"], lam=np.array([r["lam"] for r in lims]), **column,
                   sim_lam=[r["lam"] for r in data["sims"]], sim_dist_weighted=[r["dist_weighted"] for r in data["sims"]],
                   stem_lam=lims[-1]["lam"], x_limit=lims[-1]["x"], z_weighted=data["z_h"], z_l1=data["z_1"],
                   l1_note="= x_true" if meta["l1_min_equals_truth"] else "")
    return plot_general_init(plotted, path, dpi=dpi, title=data["title"])


def checks(data: dict) -> dict:
    return dict(bounds=[r["weighted_bound_holds"] for r in data["limits"]],
                sim_vs_limit=[r["dist_to_limit"] for r in data["sims"]])


def markdown(entry: dict) -> str:
    meta = entry["meta"]
    return "\n".join([
        f"N = {meta['depth']}, n={meta['n']}, m={meta['m']}, s={meta['s']}, u ~ {meta['u']}; weights {meta['weights']}. "
        f"‖z_h − z_l1‖₁/‖z_l1‖₁ = {meta['separation_weighted_vs_l1']:.3g} (plain l1 recovers the truth: "
        f"{'yes' if meta['l1_min_equals_truth'] else 'NO'}; weighted l1 does: "
        f"{'yes' if meta['weighted_min_equals_truth'] else 'NO'}). The 'naive ε' column is (A.15) evaluated with "
        "β₁ = ‖x0‖₁, β_min = min x0: not a theorem for N > 2 with non-uniform x0 (SPEC §A.5).",
        "",
        md_table(entry["rows"], [("source", "source"), ("lam", "λ"), ("dist_weighted", "‖x∞−z_h‖₁"),
                                 ("dist_l1", "‖x∞−z_l1‖₁"), ("weighted_gap", "(‖x∞‖_h−Q_h)/Q_h"),
                                 ("weighted_epsilon", "ε_h (A.18)"), ("weighted_bound_holds", "≤ ε_h"),
                                 ("l1_gap", "(‖x∞‖₁−Q₊)/Q₊"), ("naive_epsilon", "naive ε"),
                                 ("naive_bound_holds", "≤ naive ε"), ("status", "status"),
                                 ("dist_to_limit", "‖x_sim−x_lim‖₂/‖x_lim‖₂")]),
    ])


SECTION = register(Section(
    key="d_general_init", title="general initialisation x0 = λu (SPEC A.6, Theorem A.3)", group="sparse",
    source="limit oracle (lines) + simulated (markers)", compute=compute, rows=rows, figure=figure,
    markdown=markdown, checks=checks,
))
