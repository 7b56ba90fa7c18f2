"""The registered reproduction sweeps: phase diagrams of recovery (run through the store)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import SweepSpec, load_spec

# (label, fixed parameters) of each method panel; alphas are factor-level (product alpha^N)
PHASE_PANELS = (
    ("flow limit N=2, α=1e-4 (oracle)", {"method": "limit", "depth": 2, "alpha": 1e-4}),
    ("flow limit N=3, α=1e-2 (oracle)", {"method": "limit", "depth": 3, "alpha": 1e-2}),
    ("l1 minimisation (HiGHS LP)", {"method": "l1"}),
    ("minimum l2 norm", {"method": "l2"}),
)


@dataclass(frozen=True)
class PhaseConfig:
    n: int
    deltas: tuple
    rhos: tuple
    seeds: int
    threshold: float = 1e-2
    sample_points: int = 4  # (delta, rho) points where the flow is simulated to check the oracle

    @classmethod
    def quick(cls) -> "PhaseConfig":
        return cls(n=100, deltas=tuple(np.round(np.linspace(0.1, 0.9, 9), 3)),
                   rhos=tuple(np.round(np.linspace(0.05, 0.95, 10), 3)), seeds=4)

    @classmethod
    def full(cls) -> "PhaseConfig":
        return cls(n=200, deltas=tuple(np.round(np.linspace(0.05, 0.95, 19), 3)),
                   rhos=tuple(np.round(np.linspace(0.05, 0.95, 19), 3)), seeds=10, sample_points=8)

    @classmethod
    def tiny(cls) -> "PhaseConfig":
        return cls(n=30, deltas=(0.3, 0.6), rhos=(0.1, 0.5), seeds=2, sample_points=1)


def phase_specs(cfg: PhaseConfig) -> list[tuple[str, bool, SweepSpec]]:
    """One spec per (signal kind, method panel)."""
    specs = []
    for signed in (False, True):
        for label, fixed in PHASE_PANELS:
            spec = load_spec({
                "experiment": "phase", "seeds": cfg.seeds,
                "fixed": {"n": cfg.n, "signed": signed, "threshold": cfg.threshold, **fixed},
                "grid": {"delta": [float(d) for d in cfg.deltas], "rho": [float(r) for r in cfg.rhos]},
            })
            specs.append((label, signed, spec))
    return specs


def flow_sample_spec(cfg: PhaseConfig) -> SweepSpec:
    """The flow simulated (not predicted) on a few grid points, to show the oracle is the flow's limit."""
    rng = np.random.default_rng(12345)
    cases = []
    for _ in range(cfg.sample_points):
        cases.append({"delta": float(rng.choice(cfg.deltas)), "rho": float(rng.choice(cfg.rhos[: max(1, len(cfg.rhos) // 2)]))})
    return load_spec({
        "experiment": "phase", "seeds": 1,
        "fixed": {"n": cfg.n, "signed": False, "threshold": cfg.threshold, "method": "flow", "depth": 2, "alpha": 1e-2},
        "cases": cases,
    })


def success_grid(frame, deltas, rhos) -> np.ndarray:
    """Mean success over seeds on the (rho, delta) grid; NaN where nothing is stored."""
    grid = np.full((len(rhos), len(deltas)), np.nan)
    if frame is None or frame.empty:
        return grid
    done = frame[frame["status"] == "done"]
    means = done.groupby(["rho", "delta"])["success"].mean()
    for i, rho in enumerate(rhos):
        for j, delta in enumerate(deltas):
            key = (float(rho), float(delta))
            if key in means.index:
                grid[i, j] = means[key]
    return grid
