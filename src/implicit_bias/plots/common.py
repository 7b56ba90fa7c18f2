"""What every figure shares: a figure without pyplot, atomic PNG writing, colours, log-axis cleaning.

Every plotting function of :mod:`implicit_bias.plots` takes data computed elsewhere and an output
path, draws one figure with matplotlib's object API (no pyplot, no global backend state: safe in
workers and tests), writes it as a PNG of exactly ``figsize * dpi`` pixels and returns the path.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

_DEPTH_COLORS = {2: "tab:blue", 3: "tab:orange", 4: "tab:green", 5: "tab:red", 6: "tab:purple"}
# A relative l1 gap below this is at the rounding level of the two solvers (limit and LP) that
# produce ||x||_1 and Q; it is not drawn on a log axis.
GAP_FLOOR = 1e-12


def depth_color(depth: int) -> str:
    """The colour used for depth ``N`` in every figure."""
    return _DEPTH_COLORS.get(int(depth), f"C{int(depth) % 10}")


def new_figure(figsize) -> Figure:
    """A figure with constrained layout, not attached to pyplot."""
    return Figure(figsize=figsize, layout="constrained")


def save(fig: Figure, path, dpi: int) -> Path:
    """Write ``fig`` to ``path`` as a PNG through a temporary name (no half-written file is ever seen)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi, format="png")
    os.replace(tmp, path)
    return path


def support_palette(k: int) -> list:
    """Colours of the support coordinates: a dark-to-light magma ramp, disjoint from the depth colours."""
    from matplotlib import colormaps

    cmap = colormaps["magma"]
    return [cmap(v) for v in np.linspace(0.15, 0.75, max(k, 1))][:k] if k else []


def positive(values) -> np.ndarray:
    """``values`` as floats with non-positive / non-finite entries (not drawable on log axes) set to NaN."""
    v = np.array(values, dtype=float, copy=True)
    v[~np.isfinite(v) | (v <= 0)] = np.nan
    return v


def log_gap(values) -> np.ndarray:
    """Like :func:`positive`, and gaps below ``GAP_FLOOR`` (rounding level) set to NaN too."""
    v = positive(values)
    v[v < GAP_FLOOR] = np.nan
    return v


def image_size(figsize, dpi: int) -> tuple[int, int]:
    """``(height, width)`` in pixels of a figure written by :mod:`implicit_bias.plots`."""
    return round(figsize[1] * dpi), round(figsize[0] * dpi)


def band(ax, x, values, color, label, marker="o", linestyle="-"):
    """Median over seeds (line) and min-max band of ``values`` (one row per x, one column per seed)."""
    v = positive(np.atleast_2d(np.asarray(values, dtype=float)))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, lo, hi = np.nanmedian(v, axis=1), np.nanmin(v, axis=1), np.nanmax(v, axis=1)
    ax.plot(x, med, linestyle=linestyle, marker=marker, color=color, label=label)
    if v.shape[1] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
