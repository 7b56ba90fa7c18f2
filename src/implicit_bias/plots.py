"""Figures of the sparse-recovery experiments (SPEC §A), as pure functions of computed data.

Every function takes arrays / dicts that were computed elsewhere (see :mod:`implicit_bias.report`)
and an output path, draws one figure with matplotlib's object API (no pyplot, no global backend
state: safe in workers and tests), writes it as a PNG of exactly ``figsize * dpi`` pixels and
returns the path. Nothing here computes a limit or runs a simulation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["depth_color", "plot_trajectories", "plot_l1_gap_vs_alpha", "plot_general_init"]

_DEPTH_COLORS = {2: "tab:blue", 3: "tab:orange", 4: "tab:green", 5: "tab:red", 6: "tab:purple"}
# A relative l1 gap below this is at the rounding level of the two solvers (limit and LP) that
# produce ||x||_1 and Q; it is not drawn on a log axis.
GAP_FLOOR = 1e-12


def depth_color(depth: int) -> str:
    """The colour used for depth ``N`` in every figure."""
    return _DEPTH_COLORS.get(int(depth), f"C{int(depth) % 10}")


def _new_figure(figsize) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def _save(fig: Figure, path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi, format="png")
    os.replace(tmp, path)
    return path


def _support_palette(k: int) -> list:
    """Colours of the support coordinates: a dark-to-light magma ramp, disjoint from the depth colours."""
    from matplotlib import colormaps

    cmap = colormaps["magma"]
    return [cmap(v) for v in np.linspace(0.15, 0.75, max(k, 1))][:k] if k else []


def _positive(values) -> np.ndarray:
    """``values`` as floats with non-positive / non-finite entries (not drawable on log axes) set to NaN."""
    v = np.array(values, dtype=float, copy=True)
    v[~np.isfinite(v) | (v <= 0)] = np.nan
    return v


def _log_gap(values) -> np.ndarray:
    v = _positive(values)
    v[v < GAP_FLOOR] = np.nan
    return v


# ----------------------------------------------------------------------------- (a) trajectories


def plot_trajectories(runs, path, *, title: str | None = None, figsize=(14.0, 7.5), dpi: int = 110) -> Path:
    """Trajectories ``||x(t)||_1`` (top row) and the coordinates ``x_k(t)`` (bottom row), one column per run.

    ``runs``: list of dicts with keys
      - ``depth`` (int), ``alpha`` (float): the model and its factor-level initial scale;
      - ``t`` (k,), ``x`` (k, n): saved flow times (> 0) and iterates;
      - ``Q`` (float): the l1 optimum (``Q_+``), drawn as a horizontal line;
      - optional ``support`` (indices drawn in colour; the others in grey), ``x_ref`` (n,): the
        l1 minimiser, whose nonzero values are drawn as dotted lines in the coordinate's colour;
        ``status`` (str) shown in the panel title; ``note`` (str) boxed in the top panel; ``Q_symbol`` (TeX, default ``"Q_+"``).
    """
    if not runs:
        raise ValueError("plot_trajectories needs at least one run")
    fig = _new_figure(figsize)
    axes = fig.subplots(2, len(runs), squeeze=False, sharex="col")
    for j, run in enumerate(runs):
        t = np.asarray(run["t"], dtype=float)
        x = np.asarray(run["x"], dtype=float)
        keep = t > 0
        t, x = t[keep], x[keep]
        depth, alpha, Q = int(run["depth"]), float(run["alpha"]), float(run["Q"])
        q_symbol = run.get("Q_symbol", r"Q_+")
        color = depth_color(depth)
        top, bottom = axes[0, j], axes[1, j]

        top.plot(t, np.abs(x).sum(axis=1), color=color, lw=2, label=r"$\|x(t)\|_1$")
        top.axhline(Q, color="k", ls="--", lw=1, label=rf"${q_symbol}$ = {Q:.4g} (l1 optimum)")
        top.set_xscale("log")
        top.set_ylim(0, 1.3 * max(Q, float(np.max(np.abs(x).sum(axis=1)))))
        note = run.get("note")
        if note:
            top.text(0.98, 0.04, note, transform=top.transAxes, ha="right", va="bottom", fontsize=8,
                     bbox=dict(boxstyle="round", fc="white", ec="0.7"))
        status = run.get("status")
        top.set_title(f"N = {depth}, α = {alpha:g}" + (f"  [{status}]" if status and status != "converged" else ""))
        top.set_ylabel(r"$\|x(t)\|_1$")
        top.legend(loc="upper left", fontsize=8)
        top.grid(True, which="major", alpha=0.3)

        support = run.get("support")
        support = np.asarray(support if support is not None else [], dtype=int)
        others = np.setdiff1d(np.arange(x.shape[1]), support)
        floor = alpha**depth * 1e-3
        xs = np.where(x > floor, x, np.nan)
        if others.size:
            bottom.plot(t, xs[:, others], color="0.7", lw=0.6)
        palette = _support_palette(len(support))
        for c, k in zip(palette, support):
            bottom.plot(t, xs[:, k], color=c, lw=1.6)
        x_ref = run.get("x_ref")
        if x_ref is not None:
            x_ref = np.asarray(x_ref, dtype=float)
            for c, k in zip(palette, support):
                if x_ref[k] > 0:
                    bottom.axhline(x_ref[k], color=c, ls=":", lw=1)
        bottom.axhline(alpha**depth, color="k", ls="-.", lw=0.8)
        bottom.set_xscale("log")
        bottom.set_yscale("log")
        top_value = float(np.nanmax(xs)) if np.any(np.isfinite(xs)) else 1.0
        bottom.set_ylim(floor, 3 * top_value)
        bottom.set_xlabel("t  (flow time, factor time SPEC C1; log scale)")
        bottom.set_ylabel(r"coordinates $x_k(t)$ (log scale)")
        bottom.grid(True, which="major", alpha=0.3)
        handles = [
            Line2D([], [], color=_support_palette(1)[0], lw=1.6, label="support of the l1 minimiser"),
            Line2D([], [], color="0.7", lw=0.6, label="other coordinates"),
            Line2D([], [], color="k", ls="-.", lw=0.8, label=r"start $\alpha^N$"),
        ]
        if x_ref is not None:
            handles.insert(1, Line2D([], [], color=_support_palette(1)[0], ls=":", lw=1, label="l1 minimiser's value"))
        bottom.legend(handles=handles, loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------------- (b), (c) gap vs alpha


def plot_l1_gap_vs_alpha(curves, path, *, title: str | None = None, bound_label: str = "ε bound (SPEC A.15)",
                         q_symbol: str = r"Q_+", figsize=(10.5, 7.0), dpi: int = 110) -> Path:
    """Relative l1 gap ``(||x_inf||_1 - Q)/Q`` versus ``alpha`` (log-log), one colour per depth.

    ``curves``: list of dicts with keys
      - ``depth`` (int);
      - ``alpha`` (k,), ``gap`` (k,): the exact limit's gap along an alpha grid (solid line);
      - ``epsilon`` (k,): the theorem's bound there, ``inf`` where its hypothesis fails (dashed);
      - optional ``alpha_critical`` (float): the alpha at which beta_1 = Q (dotted vertical line:
        the bound applies to its left);
      - optional ``sim_alpha``, ``sim_gap`` (arrays) and ``sim_converged`` (bools): simulated
        gradient-flow runs (open circles; a cross where the run did not converge).
    Gaps below ``GAP_FLOOR`` (rounding level) or <= 0 are not drawn.
    """
    fig = _new_figure(figsize)
    ax = fig.add_subplot()
    any_sim = any_crit = False
    for curve in curves:
        depth = int(curve["depth"])
        color = depth_color(depth)
        alpha = np.asarray(curve["alpha"], dtype=float)
        order = np.argsort(alpha)
        alpha = alpha[order]
        gap = _log_gap(np.asarray(curve["gap"], dtype=float)[order])
        eps = _positive(np.asarray(curve["epsilon"], dtype=float)[order])
        ax.plot(alpha, gap, "-", marker=".", ms=5, color=color, lw=2)
        ax.plot(alpha, eps, "--", color=color, lw=1.5)
        crit = curve.get("alpha_critical")
        if crit is not None and np.isfinite(crit) and alpha.min() <= crit <= alpha.max() * 3:
            ax.axvline(crit, color=color, ls=":", lw=1)
            any_crit = True
        if curve.get("sim_alpha") is not None and len(curve["sim_alpha"]):
            sa = np.asarray(curve["sim_alpha"], dtype=float)
            sg = _log_gap(curve["sim_gap"])
            ok = np.asarray(curve.get("sim_converged", np.ones(sa.size, bool)), dtype=bool)
            ax.plot(sa[ok], sg[ok], "o", ms=10, mfc="none", mec=color, mew=1.8)
            if np.any(~ok):
                ax.plot(sa[~ok], sg[~ok], "x", ms=10, color=color, mew=1.8)
            any_sim = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\alpha$  (factor-level initial scale; the product starts at $\alpha^N$)")
    ax.set_ylabel(rf"relative l1 gap  $(\|x_\infty\|_1 - {q_symbol})\,/\,{q_symbol}$")
    ax.grid(True, which="major", alpha=0.3)
    depth_handles = [Line2D([], [], color=depth_color(int(c["depth"])), lw=3, label=f"N = {int(c['depth'])}")
                     for c in curves]
    style_handles = [
        Line2D([], [], color="k", ls="-", marker=".", lw=2, label="exact limit (oracle predict_limit)"),
        Line2D([], [], color="k", ls="--", lw=1.5, label=bound_label),
    ]
    if any_sim:
        style_handles.append(Line2D([], [], color="k", ls="none", marker="o", mfc="none", ms=9,
                                    label="simulated gradient flow (simulate)"))
    if any_crit:
        style_handles.append(Line2D([], [], color="k", ls=":", lw=1,
                                    label=r"$\beta_1 = $" + f"${q_symbol}$" + " (bound applies to the left)"))
    # Outside the axes: the curves span the whole plot, any inside position hides some of them.
    fig.legend(handles=depth_handles, loc="outside right upper", fontsize=9, title="depth (colour)")
    fig.legend(handles=style_handles, loc="outside lower center", ncols=2, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------------- (d) general init


def plot_general_init(data, path, *, title: str | None = None, figsize=(17.0, 5.6), dpi: int = 110) -> Path:
    """General positive initialisation ``x0 = lambda * u`` (SPEC A.6): three panels.

    ``data`` (dict):
      - ``depth`` (int), ``lam`` (k,): the scales;
      - ``dist_weighted`` (k,), ``dist_l1`` (k,): ``||x_inf - z_h||_1`` and ``||x_inf - z_l1||_1``;
      - ``weighted_gap`` (k,), ``weighted_epsilon`` (k,): ``(||x_inf||_h - Q_h)/Q_h`` and the bound (A.18);
      - optional ``l1_gap`` (k,), ``naive_epsilon`` (k,): the plain l1 gap and (A.15) evaluated with
        ``beta_1 = ||x0||_1``, ``beta_min = min x0`` (not a theorem for N > 2 and non-uniform x0);
      - optional ``sim_lam``, ``sim_dist_weighted``: simulated runs (open circles);
      - ``stem_lam`` (float), ``x_limit``, ``z_weighted``, ``z_l1`` (n,): the vectors for the stem plot.
    """
    fig = _new_figure(figsize)
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[1, 1, 1.35])
    lam = np.asarray(data["lam"], dtype=float)
    depth = int(data["depth"])

    ax1.plot(lam, _positive(data["dist_weighted"]), "-o", ms=4, color="tab:purple", lw=2,
             label=r"$\|x_\infty - z_h\|_1$  (weighted-l1 solution)")
    ax1.plot(lam, _positive(data["dist_l1"]), "-s", ms=4, color="tab:gray", lw=2,
             label=r"$\|x_\infty - z_{\ell_1}\|_1$  (plain l1 solution)")
    if data.get("sim_lam") is not None and len(data["sim_lam"]):
        ax1.plot(data["sim_lam"], _positive(data["sim_dist_weighted"]), "o", ms=11, mfc="none", mec="k", mew=1.5,
                 label=r"simulated flow: $\|x(T) - z_h\|_1$")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"$\lambda$  (initialisation $x_0 = \lambda u$)")
    ax1.set_ylabel(r"l1 distance")
    ax1.set_title("limit → weighted-l1 solution as λ → 0", fontsize=10)
    ax1.grid(True, which="major", alpha=0.3)
    ax1.legend(fontsize=8, loc="center right")

    ax2.plot(lam, _log_gap(data["weighted_gap"]), "-o", ms=4, color="tab:purple", lw=2,
             label=r"$(\|x_\infty\|_h - Q_h)/Q_h$")
    ax2.plot(lam, _positive(data["weighted_epsilon"]), "--", color="tab:purple", lw=1.5,
             label=r"$\epsilon_h$ bound (Thm A.3, SPEC A.18)")
    if data.get("l1_gap") is not None:
        ax2.plot(lam, _log_gap(data["l1_gap"]), "-s", ms=4, color="tab:gray", lw=2,
                 label=r"$(\|x_\infty\|_1 - Q_+)/Q_+$")
        ax2.plot(lam, _positive(data["naive_epsilon"]), ":", color="k", lw=2,
                 label="(A.15) with $\\beta_1=\\|x_0\\|_1$, $\\beta_{\\min}=\\min_k x_{0,k}$\n"
                       "(NOT a theorem for non-uniform $x_0$, N > 2)")
        violated = np.asarray(data["l1_gap"], dtype=float) > np.asarray(data["naive_epsilon"], dtype=float)
        if np.any(violated):
            bad = lam[violated]
            ax2.axvspan(bad.min() / 1.5, bad.max() * 1.5, color="tab:red", alpha=0.08, lw=0)
            ax2.text(np.sqrt(bad.min() * bad.max()), 0.97, "(A.15) violated here", transform=ax2.get_xaxis_transform(),
                     ha="center", va="top", fontsize=8, color="tab:red")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel(r"$\lambda$")
    ax2.set_ylabel("relative gap")
    ax2.set_title("weighted bound holds; the unweighted one need not", fontsize=10)
    ax2.grid(True, which="major", alpha=0.3)
    ax2.legend(fontsize=7.5, loc="lower right")

    x_limit = np.asarray(data["x_limit"], dtype=float)
    z_h = np.asarray(data["z_weighted"], dtype=float)
    z_1 = np.asarray(data["z_l1"], dtype=float)
    k = np.arange(x_limit.size)
    markerline, stemlines, baseline = ax3.stem(k, x_limit, linefmt="tab:purple", markerfmt="o", basefmt="k-")
    markerline.set_markersize(4)
    stemlines.set_linewidth(1)
    baseline.set_linewidth(0.5)
    nz_h = np.abs(z_h) > 1e-9 * max(np.max(np.abs(z_h)), 1e-300)
    nz_1 = np.abs(z_1) > 1e-9 * max(np.max(np.abs(z_1)), 1e-300)
    ax3.plot(k[nz_h], z_h[nz_h], "D", ms=9, mfc="none", mec="tab:red", mew=1.3)
    ax3.plot(k[nz_1], z_1[nz_1], "x", ms=8, color="k", mew=1.5)
    ax3.set_xlabel("coordinate k")
    ax3.set_ylabel("value")
    ax3.set_title(f"coordinates at λ = {float(data['stem_lam']):.0e}", fontsize=10)
    ax3.legend(handles=[
        Line2D([], [], color="tab:purple", marker="o", ms=4, lw=1, label=r"limit $x_\infty$ (stems)"),
        Line2D([], [], color="tab:red", marker="D", mfc="none", ls="none", ms=8, label=r"weighted-l1 $z_h$ (nonzeros)"),
        Line2D([], [], color="k", marker="x", ls="none", ms=8,
               label=r"plain l1 $z_{\ell_1}$ (nonzeros)" + (f" {data['l1_note']}" if data.get("l1_note") else "")),
    ], fontsize=8, loc="upper right")
    ax3.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path, dpi)


def image_size(figsize, dpi: int) -> tuple[int, int]:
    """``(height, width)`` in pixels of a figure written by this module."""
    return int(round(figsize[1] * dpi)), int(round(figsize[0] * dpi))



# ----------------------------------------------------------------------------- (e) phase diagrams


def plot_phase_diagrams(panels, path, *, title: str | None = None, dt_curve=None, figsize=None, dpi: int = 110) -> Path:
    """Success probability over (delta = m/n, rho = s/m), one panel per (signal, method).

    ``panels``: list of rows (one per signal kind), each a list of dicts with ``label``, ``deltas``,
    ``rhos`` (sorted grids), ``success`` (array ``[len(rhos), len(deltas)]`` in [0, 1]) and
    ``signed``. ``dt_curve(delta, signed)`` draws the theoretical l1 transition over each panel.
    """
    rows, cols = len(panels), max(len(r) for r in panels)
    fig = _new_figure(figsize or (3.6 * cols + 1.2, 3.3 * rows + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    image = None
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i][j]
            if j >= len(row):
                ax.set_visible(False)
                continue
            panel = row[j]
            deltas, rhos = np.asarray(panel["deltas"]), np.asarray(panel["rhos"])
            dd, dr = np.diff(deltas).mean() if len(deltas) > 1 else 0.1, np.diff(rhos).mean() if len(rhos) > 1 else 0.1
            extent = (deltas[0] - dd / 2, deltas[-1] + dd / 2, rhos[0] - dr / 2, rhos[-1] + dr / 2)
            image = ax.imshow(panel["success"], origin="lower", extent=extent, aspect="auto", vmin=0, vmax=1,
                              cmap="viridis", interpolation="nearest")
            if dt_curve is not None:
                grid = np.linspace(max(0.02, extent[0]), min(0.98, extent[1]), 120)
                ax.plot(grid, [dt_curve(d, panel["signed"]) for d in grid], color="white", lw=2.2)
                ax.plot(grid, [dt_curve(d, panel["signed"]) for d in grid], color="crimson", lw=1.2, ls="--",
                        label="l1 transition (Donoho-Tanner)")
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_title(panel["label"], fontsize=9)
            if i == rows - 1:
                ax.set_xlabel(r"$\delta = m/n$")
            if j == 0:
                ax.set_ylabel(("signed" if panel["signed"] else "positive") + " signals\n" + r"$\rho = s/m$")
    if dt_curve is not None:
        axes[0][0].legend(loc="upper left", fontsize=7, framealpha=0.8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.85, label="success probability (rel. error ≤ threshold)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


def plot_weight_norm(data, path, *, title: str | None = None, figsize=(18.0, 5.4), dpi: int = 110) -> Path:
    """Section (f), weight normalisation (SPEC B): three panels.

    ``data``: ``r0`` (grid), ``plain_gap`` (oracle gaps of plain flow from ``alpha = r0/sqrt(n')``),
    ``wn`` (list of dicts ``eta_r, r0, gap, epsilon, converged``), ``rho`` (list of dicts
    ``eta_r, log_c_b7, log_c_fit, log_c_slide``), ``times`` (list of dicts ``label, r0, t, converged``).
    """
    fig = _new_figure(figsize)
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
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------------- deep matrix factorisation (SPEC C)


def _band(ax, x, values, color, label, marker="o", linestyle="-"):
    """Median over seeds (line) and min-max band of ``values`` (one row per x, one column per seed)."""
    v = _positive(np.atleast_2d(np.asarray(values, dtype=float)))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med, lo, hi = np.nanmedian(v, axis=1), np.nanmin(v, axis=1), np.nanmax(v, axis=1)
    ax.plot(x, med, linestyle=linestyle, marker=marker, color=color, label=label)
    if v.shape[1] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def plot_matrix_recovery(data, path, *, title: str | None = None, figsize=(10.0, 6.0), dpi: int = 110) -> Path:
    """Matrix-sensing figure: relative error ``||W - W*||_F/||W*||_F`` vs number of measurements ``m``.

    ``data``: ``m`` (grid), ``curves`` (dicts ``label, depth, error`` with ``error`` of shape
    ``(len(m), seeds)``; ``depth`` None for the nuclear-norm reference), ``dof`` (``r(n1+n2-r)``).
    """
    fig = _new_figure(figsize)
    ax = fig.subplots()
    m = np.asarray(data["m"], float)
    for curve in data["curves"]:
        depth = curve.get("depth")
        if depth is None:
            _band(ax, m, curve["error"], "black", curve["label"], marker="s", linestyle="--")
        else:
            _band(ax, m, curve["error"], depth_color(depth) if depth > 1 else "tab:gray", curve["label"])
    ax.axvline(data["dof"], color="grey", linestyle=":", label=f"degrees of freedom $r(n_1+n_2-r)$ = {data['dof']}")
    ax.set_yscale("log")
    ax.set_xlabel("number of Gaussian measurements m")
    seeds = np.atleast_2d(np.asarray(data["curves"][0]["error"])).shape[1]
    ax.set_ylabel(r"relative error $\|W - W^\star\|_F / \|W^\star\|_F$"
                  + (f"\n(median, band = min-max over {seeds} seeds)" if seeds > 1 else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


def plot_singular_value_paths(runs, path, *, title: str | None = None, figsize=(15.0, 5.2), dpi: int = 110) -> Path:
    """Singular values of ``W(t)`` along simulated trajectories, one panel per run (log-log).

    ``runs``: dicts ``label, t, sv`` (``len(t) x k``, descending) and ``true_sv`` (the ground
    truth's nonzero singular values, dashed).
    """
    fig = _new_figure(figsize)
    axes = np.atleast_1d(fig.subplots(1, len(runs), sharey=True))
    for ax, run in zip(axes, runs):
        t, sv = np.asarray(run["t"], float), _positive(run["sv"])
        keep = t > 0
        k = len(run["true_sv"])
        palette = _support_palette(k)
        for i in range(sv.shape[1] - 1, -1, -1):
            color, width = (palette[i], 2.0) if i < k else ("0.7", 0.8)
            ax.loglog(t[keep], sv[keep, i], color=color, linewidth=width,
                      label=f"$\\sigma_{i + 1}$" if i < k else ("other $\\sigma_i$" if i == k else None))
        for i, s in enumerate(run["true_sv"]):
            ax.axhline(s, color=palette[i], linestyle="--", linewidth=0.8)
        ax.set_title(run["label"], fontsize=9)
        ax.set_xlabel("flow time t (factor time, SPEC C1)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("singular values of $W(t)$ (dashed: ground truth)")
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


def plot_completion_vs_scale(data, path, *, title: str | None = None, figsize=(13.0, 5.4), dpi: int = 110) -> Path:
    """Matrix completion: relative error vs initialisation scale, one panel per number of observed entries.

    ``data``: ``panels`` (dicts ``count``, ``scale`` grid, ``curves`` = dicts ``depth, error`` (one per
    scale, NaN where the run failed), ``nuclear`` = the nuclear-norm reference's error).
    """
    fig = _new_figure(figsize)
    axes = np.atleast_1d(fig.subplots(1, len(data["panels"]), sharey=True))
    for ax, panel in zip(axes, data["panels"]):
        scale = np.asarray(panel["scale"], float)
        for curve in panel["curves"]:
            ax.loglog(scale, _positive(curve["error"]), "-o", color=depth_color(curve["depth"]),
                      label=f"depth {curve['depth']} (simulated)")
        ax.axhline(panel["nuclear"], color="black", linestyle="--", label="nuclear-norm minimisation (SCS)")
        ax.set_xlabel(r"initial scale $\|W(0)\|_2 = \alpha^N$  ($W(0) = \alpha^N I$)")
        ax.set_title(f"{panel['count']} observed entries", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(r"relative error $\|W - W^\star\|_F / \|W^\star\|_F$")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


def plot_volume_paths(runs, path, *, title: str | None = None, figsize=(13.0, 5.4), dpi: int = 110) -> Path:
    """Along completion trajectories: ``log v(W(t))`` (SPEC C.11) and the effective rank, shared time axis.

    ``runs``: dicts ``depth, label, t, log_volume, effective_rank``; ``true_rank`` optional.
    """
    fig = _new_figure(figsize)
    ax1, ax2 = fig.subplots(1, 2, sharex=True)
    for run in runs:
        t = np.asarray(run["t"], float)
        keep = t > 0
        color = depth_color(run["depth"])
        ax1.semilogx(t[keep], np.asarray(run["log_volume"], float)[keep], color=color, label=run["label"])
        ax2.semilogx(t[keep], np.asarray(run["effective_rank"], float)[keep], color=color, label=run["label"])
    if runs and runs[0].get("true_rank") is not None:
        ax2.axhline(runs[0]["true_rank"], color="black", linestyle="--", label="rank of the ground truth")
    ax1.set_ylabel(r"$\log v(W(t))$ (SPEC C.11)")
    ax2.set_ylabel("effective rank $\\exp(H(\\sigma/\\|\\sigma\\|_1))$")
    for ax in (ax1, ax2):
        ax.set_xlabel("flow time t")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)
