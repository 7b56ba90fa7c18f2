"""The figure of the weight-normalisation section (SPEC B)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from .common import new_figure, save


def plot_weight_norm(data, path, *, title: str | None = None, figsize=(18.0, 5.4), dpi: int = 110) -> Path:
    """Section (f), weight normalisation (SPEC B): three panels.

    ``data``: ``r0`` (grid), ``plain_gap`` (oracle gaps of plain flow from ``alpha = r0/sqrt(n')``),
    ``wn`` (list of dicts ``eta_r, r0, gap, epsilon, converged``), ``rho`` (list of dicts
    ``eta_r, log_c_b7, log_c_fit, log_c_slide``), ``times`` (list of dicts ``label, r0, t, converged``).
    """
    fig = new_figure(figsize)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    floor = 1e-16
    r0 = np.asarray(data["r0"], float)
    ax1.loglog(r0, np.maximum(np.asarray(data["plain_gap"], float), floor), "k-o", label="plain flow (oracle), same x(0)")
    etas = sorted({row["eta_r"] for row in data["wn"]})
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(etas), 1)))
    for color, eta in zip(colors, etas):
        rows = [row for row in data["wn"] if row["eta_r"] == eta]
        ok = [row for row in rows if row["converged"] and row["gap"] is not None]
        if ok:
            ax1.loglog([r["r0"] for r in ok], [max(abs(r["gap"]), floor) for r in ok], "-s", color=color,
                       label=f"WN flow, $\\eta_r$={eta:g}")
        eps = [r for r in ok if r["epsilon"] is not None]
        if eps:
            ax1.loglog([r["r0"] for r in eps], [r["epsilon"] for r in eps], "--", color=color, alpha=0.7,
                       label=f"bound (B.9), $\\eta_r$={eta:g}")
        bad = [row for row in rows if not row["converged"]]
        if bad:
            ax1.plot([r["r0"] for r in bad], [1.0] * len(bad), "x", color=color, ms=10, label="not converged (no limit)")
    ax1.set_xlabel("initial radius $r_0$ (plain flow: $\\alpha = r_0/\\sqrt{n}$)")
    ax1.set_ylabel("relative l1 gap $(\\|x_\\infty\\|_1 - Q)/Q$ (floored at 1e-16)")
    ax1.set_title("l1 gap vs initialisation scale")
    ax1.legend(fontsize=7)
    rho = data["rho"]
    if rho:
        eta = [r["eta_r"] for r in rho]
        ax2.semilogx(eta, [r["log_c_b7"] / np.log(10) for r in rho], "k-o", label="$-N\\log_{10}\\rho$, (B.7)")
        fit = [r for r in rho if r["log_c_fit"] is not None]
        ax2.semilogx([r["eta_r"] for r in fit], [r["log_c_fit"] / np.log(10) for r in fit], "r+", ms=14,
                     label="fitted effective scale $\\log_{10} c^*$ (KKT)")
        ax2.semilogx(eta, [r["log_c_slide"] / np.log(10) for r in rho], "b:^", label="slide's $\\rho$ (no factor 2): wrong")
    ax2.set_xlabel("$\\eta_r$")
    ax2.set_ylabel("$\\log_{10}$ effective scale $\\rho^{-N}$")
    ax2.set_title(f"magnification factor vs $\\eta_r$ ($r_0$ = {data.get('rho_r0', '?')})")
    ax2.legend(fontsize=8)
    color_of = dict(zip(etas, colors))
    for row in data["times"]:
        eta = row.get("eta_r")
        ax3.loglog(row["r0"], row["t"], "-s" if eta is not None else "k-o", label=row["label"],
                   **({"color": color_of[eta]} if eta in color_of else {}))
    ax3.set_xlabel("$r_0$")
    ax3.set_ylabel("flow time to relative residual tol (GD steps ≈ t/η)")
    ax3.set_title("time to converge vs $r_0$")
    ax3.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, dpi)
