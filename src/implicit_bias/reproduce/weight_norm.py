"""Section (f): weight normalisation ``w = r v/||v||`` (SPEC B).

l1 gap vs ``r0`` (plain flow vs the simulated (r, v) flow, bound B.9), the magnification factor
``rho`` vs ``eta_r`` (B.7 against the effective scale fitted from the end point), time to converge
vs ``r0``. A run that did not converge gives no limit and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..dynamics import GradientFlow, Stop, simulate
from ..limits import predict_limit
from ..models import Hadamard, Init
from ..plots import plot_weight_norm
from ..problems import gaussian_sparse
from .base import Context, Section, register, register_config
from .render import fmt, md_table
from .sparse_common import l1, l1_solution


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
    """One simulated (r, v) flow: its magnification factor (B.7), fitted scale, and gap vs (B.9) if converged."""
    from ..dynamics.weight_norm import resolved_floor
    from ..limits import fit_effective_scale, predict_limit_weight_norm
    from ..models import WeightNormalized
    from ..theory import bound_holds, log_magnification_factor, wn_beta_constants, wn_epsilon_bound

    model = WeightNormalized(cfg.depth, eta_r)
    res = simulate(problem, model, GradientFlow(rtol=1e-9), init=r0, stop=Stop(tol=cfg.tol, max_wall=cfg.max_wall))
    w = res.factors[0]
    r_inf = float(np.linalg.norm(w))
    log_rho = log_magnification_factor(r0, r_inf, eta_r)
    log_c_fit, _ = fit_effective_scale(model.lift(problem.A), w ** cfg.depth, model.initial_product(r0, problem.n),
                                       cfg.depth, floor=resolved_floor(cfg.depth))
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
        row.update(gap=(l1(x) - Q) / Q, epsilon=float(eps) if math.isfinite(eps) else None,
                   bound_holds=bound_holds(l1(x), Q, eps) if math.isfinite(eps) else None,
                   dist_to_oracle=None if oracle.x is None else l1(res.x - oracle.x) / l1(oracle.x))
    return row


def _plain_run(problem, Q, cfg: WNReproConfig, r0: float) -> dict:
    """Plain flow from the same ``z(0)`` (``alpha = r0/sqrt(n)``): its oracle gap and simulated time."""
    alpha = r0 / math.sqrt(cfg.n)
    gap = (l1(predict_limit(problem, Hadamard(cfg.depth), Init.uniform(alpha)).x) - Q) / Q
    res = simulate(problem, Hadamard(cfg.depth), GradientFlow(), init=alpha, stop=Stop(tol=cfg.tol, max_wall=cfg.max_wall))
    return dict(kind="plain", eta_r=None, r0=r0, status=res.status, converged=res.converged, t=res.t,
                grad_evals=res.grad_evals, gap=gap)


def compute(cfg: WNReproConfig, context: Context) -> dict:
    problem = gaussian_sparse(cfg.n, cfg.m, cfg.s, seed=cfg.seed)
    Q = l1(l1_solution(problem, nonneg=True))
    plain = [_plain_run(problem, Q, cfg, r0) for r0 in cfg.r0s]
    wn = []
    for eta_r in cfg.eta_rs:
        for r0 in cfg.r0s:
            wn.append(_wn_run(problem, Q, cfg, eta_r, r0))
            context.echo(f"reproduce: (f) WN eta_r={eta_r:g} r0={r0:g}: {wn[-1]['status']}")
    rho_rows = [_wn_run(problem, Q, cfg, eta_r, cfg.rho_r0) for eta_r in cfg.rho_eta_rs]
    applicable = [r["bound_holds"] for r in wn if r["bound_holds"] is not None]
    fits = [abs(math.expm1(r["log_c_fit"] - r["log_c_b7"])) for r in wn + rho_rows
            if r["log_c_fit"] is not None and r["log_c_b7"] > math.log(1e-100)]
    meta = dict(n=cfg.n, m=cfg.m, s=cfg.s, seed=cfg.seed, depth=cfg.depth, Q=Q, tol=cfg.tol,
                bounds_applicable=len(applicable), bounds_hold=int(sum(applicable)),
                max_rel_err_fit_vs_rho=max(fits) if fits else None,
                not_converged=[dict(eta_r=r["eta_r"], r0=r["r0"], why=r["explanation"]) for r in wn + rho_rows
                               if not r["converged"]])
    return dict(r0s=list(cfg.r0s), eta_rs=list(cfg.eta_rs), rho_r0=cfg.rho_r0, plain=plain, wn=wn,
                rho_rows=rho_rows, meta=meta)


def rows(data: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "converged"} for r in data["plain"]] + [dict(kind="wn", **r)
                                                                                         for r in data["wn"]]


def figure(data: dict, path, dpi: int):
    times = [dict(label="plain flow", r0=data["r0s"], t=[r["t"] if r["converged"] else float("nan") for r in data["plain"]])]
    for eta_r in data["eta_rs"]:
        times.append(dict(label=f"WN flow, eta_r={eta_r:g}", eta_r=eta_r, r0=data["r0s"],
                          t=[r["t"] if r["converged"] else float("nan") for r in data["wn"] if r["eta_r"] == eta_r]))
    plotted = dict(r0=data["r0s"], plain_gap=[r["gap"] for r in data["plain"]], wn=data["wn"], rho=data["rho_rows"],
                   rho_r0=data["rho_r0"], times=times)
    meta = data["meta"]
    return plot_weight_norm(
        plotted, path, dpi=dpi,
        title=(f"(f) Weight normalisation $w = r v/\\|v\\|$, N={meta['depth']} (SPEC B), Gaussian A: n={meta['n']}, "
               f"m={meta['m']}, s={meta['s']}; WN = SIMULATED (r, v) flow, gaps from the oracle (B.8) at the run's "
               "$r_\\infty$; runs that did not converge are marked x and give no limit"))


def markdown(entry: dict) -> str:
    meta = entry["meta"]
    lines = [
        f"N = {meta['depth']}, n={meta['n']}, m={meta['m']}, s={meta['s']}, seed {meta['seed']}; Q₊ = {meta['Q']:.6g}. "
        f"{meta['bounds_hold']} of {meta['bounds_applicable']} applicable (B.9) bounds hold; largest relative error of the "
        f"fitted effective scale vs ρ^-N (B.7), where ρ^-N > 1e-100: {fmt(meta['max_rel_err_fit_vs_rho'])}.",
        "",
        md_table(entry["rows"], [("kind", "kind"), ("eta_r", "η_r"), ("r0", "r₀"), ("status", "status"),
                                 ("t", "flow time"), ("grad_evals", "grad evals"), ("gap", "l1 gap"),
                                 ("epsilon", "ε (B.9)"), ("bound_holds", "≤ ε")]),
        "",
        md_table(entry["rho_rows"], [("eta_r", "η_r"), ("r0", "r₀"), ("status", "status"), ("r_inf", "r∞"),
                                     ("log_c_b7", "−N log ρ (B.7)"), ("log_c_fit", "log c* (fit)"),
                                     ("log_c_slide", "slide's −N log ρ")]),
        "",
    ]
    lines += [f"- η_r={item['eta_r']:g}, r₀={item['r0']:g}: no limit reported: {item['why']}" for item in meta["not_converged"]]
    return "\n".join(lines)


register_config("weight_norm", WNReproConfig)
SECTION = register(Section(
    key="f_weight_norm", title="weight normalisation (SPEC B)", group="weight_norm",
    source="simulated (r, v) flow + limit oracle (B.8) + plain-flow oracle", compute=compute, rows=rows, figure=figure,
    markdown=markdown, tables=(("rho_rows", "Magnification factor vs η_r: (B.7) against the fitted effective scale"),),
    statuses=lambda data: [r["status"] for r in data["plain"] + data["wn"] + data["rho_rows"]],
))
