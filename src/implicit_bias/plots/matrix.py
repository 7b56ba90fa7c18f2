"""Figures of the deep-matrix-factorisation sections (SPEC C)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import band, depth_color, new_figure, positive, save, support_palette


def plot_matrix_recovery(data, path, *, title: str | None = None, figsize=(10.0, 6.0), dpi: int = 110) -> Path:
    """Matrix-sensing figure: relative error ``||W - W*||_F/||W*||_F`` vs number of measurements ``m``.

    ``data``: ``m`` (grid), ``curves`` (dicts ``label, depth, error`` with ``error`` of shape
    ``(len(m), seeds)``; ``depth`` None for the nuclear-norm reference), ``dof`` (``r(n1+n2-r)``).
    """
    fig = new_figure(figsize)
    ax = fig.subplots()
    m = np.asarray(data["m"], float)
    for curve in data["curves"]:
        depth = curve.get("depth")
        if depth is None:
            band(ax, m, curve["error"], "black", curve["label"], marker="s", linestyle="--")
        else:
            band(ax, m, curve["error"], depth_color(depth) if depth > 1 else "tab:gray", curve["label"])
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
    return save(fig, path, dpi)


def plot_singular_value_paths(runs, path, *, title: str | None = None, figsize=(15.0, 5.2), dpi: int = 110) -> Path:
    """Singular values of ``W(t)`` along simulated trajectories, one panel per run (log-log).

    ``runs``: dicts ``label, t, sv`` (``len(t) x k``, descending) and ``true_sv`` (the ground
    truth's nonzero singular values, dashed).
    """
    fig = new_figure(figsize)
    axes = np.atleast_1d(fig.subplots(1, len(runs), sharey=True))
    for ax, run in zip(axes, runs):
        t, sv = np.asarray(run["t"], float), positive(run["sv"])
        keep = t > 0
        k = len(run["true_sv"])
        palette = support_palette(k)
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
    return save(fig, path, dpi)


def plot_completion_vs_scale(data, path, *, title: str | None = None, figsize=(13.0, 5.4), dpi: int = 110) -> Path:
    """Matrix completion: relative error vs initialisation scale, one panel per number of observed entries.

    ``data``: ``panels`` (dicts ``count``, ``scale`` grid, ``curves`` = dicts ``depth, error`` (one per
    scale, NaN where the run failed), ``nuclear`` = the nuclear-norm reference's error).
    """
    fig = new_figure(figsize)
    axes = np.atleast_1d(fig.subplots(1, len(data["panels"]), sharey=True))
    for ax, panel in zip(axes, data["panels"]):
        scale = np.asarray(panel["scale"], float)
        for curve in panel["curves"]:
            ax.loglog(scale, positive(curve["error"]), "-o", color=depth_color(curve["depth"]),
                      label=f"depth {curve['depth']} (simulated)")
        ax.axhline(panel["nuclear"], color="black", linestyle="--", label="nuclear-norm minimisation (SCS)")
        ax.set_xlabel(r"initial scale $\|W(0)\|_2 = \alpha^N$  ($W(0) = \alpha^N I$)")
        ax.set_title(f"{panel['count']} observed entries", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(r"relative error $\|W - W^\star\|_F / \|W^\star\|_F$")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, dpi)


def plot_volume_paths(runs, path, *, title: str | None = None, figsize=(13.0, 5.4), dpi: int = 110) -> Path:
    """Along completion trajectories: ``log v(W(t))`` (SPEC C.11) and the effective rank, shared time axis.

    ``runs``: dicts ``depth, label, t, log_volume, effective_rank``; ``true_rank`` optional.
    """
    fig = new_figure(figsize)
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
    return save(fig, path, dpi)
