"""Figures of the sparse-recovery sections (SPEC A): trajectories, l1 gap vs alpha, general init, phase diagrams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from .common import depth_color, log_gap, new_figure, positive, save, support_palette

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
    fig = new_figure(figsize)
    axes = fig.subplots(2, len(runs), squeeze=False, sharex="col")
    for j, run in enumerate(runs):
        t = np.asarray(run["t"], dtype=float)
        x = np.asarray(run["x"], dtype=float)
        keep = t > 0
        _l1_norm_panel(axes[0, j], run, t[keep], x[keep])
        _coordinates_panel(axes[1, j], run, t[keep], x[keep])
    if title:
        fig.suptitle(title, fontsize=11)
    return save(fig, path, dpi)


def _l1_norm_panel(ax, run: dict, t: np.ndarray, x: np.ndarray) -> None:
    """Top panel of a trajectory: ``||x(t)||_1`` approaching the l1 optimum ``Q``."""
    depth, alpha, Q = int(run["depth"]), float(run["alpha"]), float(run["Q"])
    ax.plot(t, np.abs(x).sum(axis=1), color=depth_color(depth), lw=2, label=r"$\|x(t)\|_1$")
    ax.axhline(Q, color="k", ls="--", lw=1, label=rf"${run.get('Q_symbol', r'Q_+')}$ = {Q:.4g} (l1 optimum)")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.3 * max(Q, float(np.max(np.abs(x).sum(axis=1)))))
    note = run.get("note")
    if note:
        ax.text(0.98, 0.04, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    status = run.get("status")
    ax.set_title(f"N = {depth}, α = {alpha:g}" + (f"  [{status}]" if status and status != "converged" else ""))
    ax.set_ylabel(r"$\|x(t)\|_1$")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)


def _coordinates_panel(ax, run: dict, t: np.ndarray, x: np.ndarray) -> None:
    """Bottom panel of a trajectory: the coordinates escaping from ``alpha^N`` (support in colour)."""
    depth, alpha = int(run["depth"]), float(run["alpha"])
    support = run.get("support")
    support = np.asarray(support if support is not None else [], dtype=int)
    others = np.setdiff1d(np.arange(x.shape[1]), support)
    floor = alpha**depth * 1e-3
    xs = np.where(x > floor, x, np.nan)
    if others.size:
        ax.plot(t, xs[:, others], color="0.7", lw=0.6)
    palette = support_palette(len(support))
    for c, k in zip(palette, support):
        ax.plot(t, xs[:, k], color=c, lw=1.6)
    x_ref = run.get("x_ref")
    if x_ref is not None:
        x_ref = np.asarray(x_ref, dtype=float)
        for c, k in zip(palette, support):
            if x_ref[k] > 0:
                ax.axhline(x_ref[k], color=c, ls=":", lw=1)
    ax.axhline(alpha**depth, color="k", ls="-.", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    top_value = float(np.nanmax(xs)) if np.any(np.isfinite(xs)) else 1.0
    ax.set_ylim(floor, 3 * top_value)
    ax.set_xlabel("t  (flow time, factor time SPEC C1; log scale)")
    ax.set_ylabel(r"coordinates $x_k(t)$ (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    handles = [
        Line2D([], [], color=support_palette(1)[0], lw=1.6, label="support of the l1 minimiser"),
        Line2D([], [], color="0.7", lw=0.6, label="other coordinates"),
        Line2D([], [], color="k", ls="-.", lw=0.8, label=r"start $\alpha^N$"),
    ]
    if x_ref is not None:
        handles.insert(1, Line2D([], [], color=support_palette(1)[0], ls=":", lw=1, label="l1 minimiser's value"))
    ax.legend(handles=handles, loc="lower right", fontsize=7)


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
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    any_sim = any_crit = False
    for curve in curves:
        depth = int(curve["depth"])
        color = depth_color(depth)
        alpha = np.asarray(curve["alpha"], dtype=float)
        order = np.argsort(alpha)
        alpha = alpha[order]
        gap = log_gap(np.asarray(curve["gap"], dtype=float)[order])
        eps = positive(np.asarray(curve["epsilon"], dtype=float)[order])
        ax.plot(alpha, gap, "-", marker=".", ms=5, color=color, lw=2)
        ax.plot(alpha, eps, "--", color=color, lw=1.5)
        crit = curve.get("alpha_critical")
        if crit is not None and np.isfinite(crit) and alpha.min() <= crit <= alpha.max() * 3:
            ax.axvline(crit, color=color, ls=":", lw=1)
            any_crit = True
        if curve.get("sim_alpha") is not None and len(curve["sim_alpha"]):
            sa = np.asarray(curve["sim_alpha"], dtype=float)
            sg = log_gap(curve["sim_gap"])
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
    return save(fig, path, dpi)


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
    fig = new_figure(figsize)
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[1, 1, 1.35])
    lam = np.asarray(data["lam"], dtype=float)
    _distance_panel(ax1, data, lam)
    _gap_panel(ax2, data, lam)
    _stem_panel(ax3, data)
    if title:
        fig.suptitle(title, fontsize=11)
    return save(fig, path, dpi)


def _distance_panel(ax, data: dict, lam: np.ndarray) -> None:
    """(d), left: the limit's l1 distance to the weighted-l1 and the plain-l1 solutions vs lambda."""
    ax.plot(lam, positive(data["dist_weighted"]), "-o", ms=4, color="tab:purple", lw=2,
            label=r"$\|x_\infty - z_h\|_1$  (weighted-l1 solution)")
    ax.plot(lam, positive(data["dist_l1"]), "-s", ms=4, color="tab:gray", lw=2,
            label=r"$\|x_\infty - z_{\ell_1}\|_1$  (plain l1 solution)")
    if data.get("sim_lam") is not None and len(data["sim_lam"]):
        ax.plot(data["sim_lam"], positive(data["sim_dist_weighted"]), "o", ms=11, mfc="none", mec="k", mew=1.5,
                label=r"simulated flow: $\|x(T) - z_h\|_1$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\lambda$  (initialisation $x_0 = \lambda u$)")
    ax.set_ylabel(r"l1 distance")
    ax.set_title("limit → weighted-l1 solution as λ → 0", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="center right")


def _gap_panel(ax, data: dict, lam: np.ndarray) -> None:
    """(d), middle: the weighted gap and its bound (A.18); the plain gap against (A.15), marked where violated."""
    ax.plot(lam, log_gap(data["weighted_gap"]), "-o", ms=4, color="tab:purple", lw=2,
            label=r"$(\|x_\infty\|_h - Q_h)/Q_h$")
    ax.plot(lam, positive(data["weighted_epsilon"]), "--", color="tab:purple", lw=1.5,
            label=r"$\epsilon_h$ bound (Thm A.3, SPEC A.18)")
    if data.get("l1_gap") is not None:
        ax.plot(lam, log_gap(data["l1_gap"]), "-s", ms=4, color="tab:gray", lw=2,
                label=r"$(\|x_\infty\|_1 - Q_+)/Q_+$")
        ax.plot(lam, positive(data["naive_epsilon"]), ":", color="k", lw=2,
                label="(A.15) with $\\beta_1=\\|x_0\\|_1$, $\\beta_{\\min}=\\min_k x_{0,k}$\n"
                      "(NOT a theorem for non-uniform $x_0$, N > 2)")
        violated = np.asarray(data["l1_gap"], dtype=float) > np.asarray(data["naive_epsilon"], dtype=float)
        if np.any(violated):
            bad = lam[violated]
            ax.axvspan(bad.min() / 1.5, bad.max() * 1.5, color="tab:red", alpha=0.08, lw=0)
            ax.text(np.sqrt(bad.min() * bad.max()), 0.97, "(A.15) violated here", transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=8, color="tab:red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel("relative gap")
    ax.set_title("weighted bound holds; the unweighted one need not", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right")


def _stem_panel(ax, data: dict) -> None:
    """(d), right: the coordinates of the limit at the smallest lambda against both solutions' nonzeros."""
    x_limit = np.asarray(data["x_limit"], dtype=float)
    z_h = np.asarray(data["z_weighted"], dtype=float)
    z_1 = np.asarray(data["z_l1"], dtype=float)
    k = np.arange(x_limit.size)
    markerline, stemlines, baseline = ax.stem(k, x_limit, linefmt="tab:purple", markerfmt="o", basefmt="k-")
    markerline.set_markersize(4)
    stemlines.set_linewidth(1)
    baseline.set_linewidth(0.5)
    nz_h = np.abs(z_h) > 1e-9 * max(np.max(np.abs(z_h)), 1e-300)
    nz_1 = np.abs(z_1) > 1e-9 * max(np.max(np.abs(z_1)), 1e-300)
    ax.plot(k[nz_h], z_h[nz_h], "D", ms=9, mfc="none", mec="tab:red", mew=1.3)
    ax.plot(k[nz_1], z_1[nz_1], "x", ms=8, color="k", mew=1.5)
    ax.set_xlabel("coordinate k")
    ax.set_ylabel("value")
    ax.set_title(f"coordinates at λ = {float(data['stem_lam']):.0e}", fontsize=10)
    ax.legend(handles=[
        Line2D([], [], color="tab:purple", marker="o", ms=4, lw=1, label=r"limit $x_\infty$ (stems)"),
        Line2D([], [], color="tab:red", marker="D", mfc="none", ls="none", ms=8, label=r"weighted-l1 $z_h$ (nonzeros)"),
        Line2D([], [], color="k", marker="x", ls="none", ms=8,
               label=r"plain l1 $z_{\ell_1}$ (nonzeros)" + (f" {data['l1_note']}" if data.get("l1_note") else "")),
    ], fontsize=8, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)


# ----------------------------------------------------------------------------- (e) phase diagrams


def _transition(dt_curve, extent, signed: bool, cache: dict):
    """The l1 transition over a panel's delta range, computed once per (range, signal kind) (each point
    is a scalar maximisation)."""
    key = (extent[0], extent[1], signed)
    if key not in cache:
        grid = np.linspace(max(0.02, extent[0]), min(0.98, extent[1]), 120)
        cache[key] = grid, [dt_curve(d, signed) for d in grid]
    return cache[key]


def plot_phase_diagrams(panels, path, *, title: str | None = None, dt_curve=None, figsize=None, dpi: int = 110) -> Path:
    """Success probability over (delta = m/n, rho = s/m), one panel per (signal, method).

    ``panels``: list of rows (one per signal kind), each a list of dicts with ``label``, ``deltas``,
    ``rhos`` (sorted grids), ``success`` (array ``[len(rhos), len(deltas)]`` in [0, 1]) and
    ``signed``. ``dt_curve(delta, signed)`` draws the theoretical l1 transition over each panel.
    """
    rows, cols = len(panels), max(len(r) for r in panels)
    fig = new_figure(figsize or (3.6 * cols + 1.2, 3.3 * rows + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    image, curves = None, {}
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
                grid, curve = _transition(dt_curve, extent, bool(panel["signed"]), curves)
                ax.plot(grid, curve, color="white", lw=2.2)
                ax.plot(grid, curve, color="crimson", lw=1.2, ls="--", label="l1 transition (Donoho-Tanner)")
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
    return save(fig, path, dpi)
