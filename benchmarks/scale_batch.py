"""Trials per second of phase-diagram sweeps, one at a time versus batched (issue 12, part 3).

Every row runs the same sweep twice in this process, into fresh stores: ``--batch-size 1`` (the
baseline, numpy) and batched (``--batch-size auto`` = 64, on numpy or on JAX in float64 on the
CPU; JAX's compilation is paid by a warm-up sweep of the same shapes first). Each sweep includes
everything a sweep does: generating the problems, the exact limits, the records and the store.

- ``phase`` oracle trials (``method = "limit"``, the flow-limit panels of reproduce (e)) on a
  grid of 5 deltas x 3 rhos (easy pixels at small delta, hard ones at large delta);
- ``sparse`` trials with ``method = "limit"``: the oracle, the HiGHS l1 LP and the comparison
  with the theory (the LP runs one trial at a time: it bounds the speed-up);
- ``sparse`` GD trials (3000 steps at n = 200, m = 50, with the oracle and the LP of each trial).

Run ``python benchmarks/scale_batch.py [--quick]``; prints a markdown table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

GOAL = 5.0


DELTAS = (0.1, 0.3, 0.5, 0.7, 0.9)  # a phase diagram's columns (m = delta n) ...
RHOS = (0.1, 0.3, 0.5)  # ... and rows (s = rho m): easy and hard pixels alike


def _phase_spec(n: int, seeds: int, depth: int = 2) -> dict:
    return {"experiment": "phase", "seeds": seeds,
            "fixed": {"n": n, "method": "limit", "depth": depth, "alpha": 1e-4 if depth == 2 else 1e-2},
            "grid": {"delta": list(DELTAS), "rho": list(RHOS)}}


def _sparse_spec(n: int, seeds: int, method: str = "limit") -> dict:
    run = {} if method == "limit" else {"tol": 1e-6, "max_evals": 3000, "alpha": 0.1}
    return {"experiment": "sparse", "seeds": seeds,
            "fixed": {"n": n, "m": n // 4, "s": max(1, n // 40), "method": method, "depth": 2, "alpha": 1e-3, **run}}


def _rate(spec: dict, batch_size, backend: str, repeats: int) -> float:
    """Best trials/s of ``repeats`` sweeps of ``spec`` into fresh stores."""
    from implicit_bias.experiments import load_spec, run_sweep

    best = 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            summary = run_sweep(load_spec(spec), store_path=str(Path(tmp) / "s.sqlite"), progress=False,
                                batch_size=batch_size, backend=backend)
            wall = time.perf_counter() - started
        assert summary.failed == 0 and summary.done == summary.total
        best = max(best, summary.total / wall)
    return best


def _row(label: str, spec: dict, backend: str, repeats: int) -> dict:
    if backend == "jax":
        _rate(spec, "auto", backend, 1)  # compile every kernel shape this sweep meets
    baseline = _rate(spec, 1, "numpy", repeats)
    new = _rate(spec, "auto", backend, repeats)
    ratio = new / baseline
    trials = spec["seeds"] * (len(DELTAS) * len(RHOS) if spec["experiment"] == "phase" else 1)
    return {"target": f"{label}, batched ({backend})", "baseline": round(baseline, 1), "new": round(new, 1),
            "ratio": round(ratio, 2), "goal": f">= {GOAL:g}x", "verdict": "met" if ratio >= GOAL else "missed",
            "detail": f"trials/s, {trials} trials per sweep, best of {repeats}; baseline --batch-size 1 (numpy)"}


def rows(quick: bool = False, backends: tuple = ("numpy", "jax")) -> list[dict]:
    """``backends``: where the batched rows run (JAX uses the first device it lists: a GPU when present)."""
    repeats = 1 if quick else 3
    out = []
    for n, seeds in ((200, 4 if quick else 16), (1000, 1 if quick else 2)):
        for backend in backends:
            out.append(_row(f"phase-diagram oracle trials n={n}", _phase_spec(n, seeds), backend, repeats))
    out.append(_row("sparse trials (oracle + HiGHS l1 LP) n=200", _sparse_spec(200, 16 if quick else 64), backends[0],
                    repeats))
    if backends[0] == "numpy":  # GD runs on numpy only (bit for bit the one-at-a-time iterates)
        out.append(_row("sparse GD trials (+ oracle, LP) n=200, 3000 steps", _sparse_spec(200, 8 if quick else 32, "gd"),
                        "numpy", repeats))
    return out


def markdown(table: list[dict]) -> str:
    head = "| target | one at a time (trials/s) | batched (trials/s) | ratio | goal | verdict | detail |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['target']} | {r['baseline']} | {r['new']} | {r['ratio']}x | {r['goal']} | "
                     f"{r['verdict']} | {r['detail']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(rows(quick="--quick" in sys.argv)))
