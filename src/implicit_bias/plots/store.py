"""Plots of any sweep store: the `implicit-bias plot` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError
from ..theory import donoho_tanner_rho
from .sparse import plot_l1_gap_vs_alpha, plot_phase_diagrams

PLOT_KINDS = ("phase", "l1-gap")


def plot_store(store_path, kind: str, out) -> Path:
    """Plot the trials of a store: ``phase`` (success over delta x rho, one panel per
    signal kind and method) or ``l1-gap`` (relative l1 gap of ``sparse`` trials vs alpha per depth,
    with the epsilon bound of A.15)."""
    from ..experiments import SQLiteStore

    if kind not in PLOT_KINDS:
        raise InvalidParameterError(f"The 'kind' parameter must be one of {PLOT_KINDS}. Got {kind!r}.")
    experiment = "phase" if kind == "phase" else "sparse"
    with SQLiteStore(store_path, create=False) as store:
        frame = store.dataframe(experiment)
    if frame.empty:
        raise InvalidParameterError(f"store {store_path} has no '{experiment}' trials to plot")
    frame = frame[frame["status"] == "done"]
    name = Path(store_path).name
    if kind == "phase":
        return plot_phase_diagrams(_phase_panels(frame), out, dt_curve=donoho_tanner_rho,
                                   title=f"Phase diagrams from {name} (mean success over seeds)")
    curves = []
    for (depth, signed), part in frame.groupby(["depth", "signed"]):
        means = part.groupby("alpha")[["l1_gap", "epsilon_bound"]].mean().sort_index()
        curves.append(dict(depth=int(depth), alpha=np.asarray(means.index, float), gap=means["l1_gap"].to_numpy(float),
                           epsilon=means["epsilon_bound"].fillna(np.inf).to_numpy(float)))
    return plot_l1_gap_vs_alpha(curves, out, title=f"l1 gap vs alpha from {name} "
                                "(mean over stored trials; dashed: ε bound A.15)")


def _phase_panels(frame) -> list[list[dict]]:
    """One row of panels per signal kind, one panel per (method, depth, alpha, n) stored."""
    from ..experiments.reproduction import success_grid

    panels = []
    for signed, by_sign in frame.groupby("signed"):
        row = []
        for (method, depth, alpha, n), part in by_sign.groupby(["method", "depth", "alpha", "n"]):
            deltas, rhos = sorted(part["delta"].unique()), sorted(part["rho"].unique())
            label = f"{method}, n={n}" + (f", N={depth}, α={alpha:g}" if method in ("limit", "flow") else "")
            row.append(dict(label=label, deltas=deltas, rhos=rhos, success=success_grid(part, deltas, rhos),
                            signed=bool(signed)))
        panels.append(row)
    return panels
