#!/usr/bin/env python
"""Fast everywhere: every speed target of the project in one table (issue 12).

Each part is a module next to this script that returns rows measured in the same run as its
baseline (today's method, HiGHS, one-at-a-time trials, the plain flow):

  - ``scale_matrix``       stiff deep-matrix-factorisation flows against DOP853 and GD;
  - ``scale_weight_norm``  the weight-normalised flow against the plain flow on the same problem;
  - ``scale_large``        the limit oracle and the flow at n = 5,000 .. 50,000 (dense, DCT) against HiGHS;
  - ``scale_batch``        batched phase-diagram trials against one at a time (numpy, JAX);

and this script adds ``reproduce --quick`` end to end and the achieved GFLOP/s of the hot loops
against this machine's GEMV/GEMM peak, measured in the same run. Every row carries its goal and a
met/missed verdict.

    python benchmarks/scale.py --quick                              # smaller sizes, minutes
    python benchmarks/scale.py --out benchmarks/results/scale.md    # the full table
    python benchmarks/scale.py --only matrix,flops                  # parts only
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sparse_limits import fs, log, machine_info, markdown_table  # noqa: E402  (house helpers)

PARTS = {
    "matrix": "scale_matrix",
    "weight_norm": "scale_weight_norm",
    "large": "scale_large",
    "batch": "scale_batch",
}
COLUMNS = ("target", "baseline", "new", "ratio", "goal", "verdict", "detail")


def best_of(fn, repeats: int = 3) -> float:
    """The smallest of ``repeats`` wall-clock timings of ``fn()`` (the least disturbed by load)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_rows() -> tuple[list[dict], dict]:
    """This machine's GEMV and GEMM rates (numpy's BLAS, float64), the yardsticks of the hot loops."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2500, 10_000))
    x = rng.standard_normal(10_000)
    C = rng.standard_normal((2000, 2000))
    gemv = 2 * A.size / best_of(lambda: [A @ x for _ in range(10)], 3) * 10 / 1e9
    gemm = 2 * 2000**3 / best_of(lambda: C @ C, 3) / 1e9
    peaks = dict(gemv=gemv, gemm=gemm)
    rows = [dict(target=f"{name.upper()} peak (numpy BLAS)", baseline="-", new=f"{rate:.1f} GFLOP/s", ratio="1",
                 goal="yardstick", verdict="-", detail=detail)
            for name, rate, detail in (("gemv", gemv, "2500 x 10000 matrix-vector, best of 3"),
                                       ("gemm", gemm, "2000 x 2000 matrix-matrix, best of 3"))]
    return rows, peaks


def hot_loop_rows(peaks: dict, quick: bool) -> list[dict]:
    """Achieved GFLOP/s of the library's hot loops: a GD step (two GEMVs) and the oracle's Gram matrix (SYRK)."""
    from implicit_bias.dual_linalg import _gram_lower
    from implicit_bias.dynamics import GradientDescent, Stop, simulate
    from implicit_bias.models import Hadamard, Init
    from implicit_bias.problems import gaussian_sparse

    n = 4000 if quick else 10_000
    problem = gaussian_sparse(n, n // 4, n // 40, seed=0)
    m = problem.A.shape[0]
    evals = 200

    step = simulate(problem, Hadamard(2), GradientDescent(), init=Init.uniform(1e-3),
                    stop=Stop(tol=1e-15, max_evals=1)).step  # the default step, computed once, untimed

    def gd():
        result = simulate(problem, Hadamard(2), GradientDescent(step=step), init=Init.uniform(1e-3),
                          stop=Stop(tol=1e-15, max_evals=evals))
        return result.grad_evals

    done = gd()
    gd_rate = 4 * m * n * done / best_of(gd, 3) / 1e9
    weights = np.random.default_rng(1).uniform(0.0, 1.0, n)
    gram_rate = m * m * n / best_of(lambda: _gram_lower(problem.A, weights), 3) / 1e9
    return [
        dict(target=f"GD step, n = {n} (2 GEMVs)", baseline=f"GEMV peak {peaks['gemv']:.1f}",
             new=f"{gd_rate:.1f} GFLOP/s", ratio=f"{gd_rate / peaks['gemv']:.2f}", goal="close to GEMV peak",
             verdict="met" if gd_rate >= 0.5 * peaks["gemv"] else "missed",
             detail=f"{done} evaluations of 4mn flops each, best of 3; met at >= 50% of peak"),
        dict(target=f"oracle Gram A D A^T, m = {m}, n = {n} (SYRK)", baseline=f"GEMM peak {peaks['gemm']:.1f}",
             new=f"{gram_rate:.1f} GFLOP/s", ratio=f"{gram_rate / peaks['gemm']:.2f}", goal="close to GEMM peak",
             verdict="met" if gram_rate >= 0.5 * peaks["gemm"] else "missed",
             detail="m^2 n flops (SYRK) incl. scaling the columns, best of 3; met at >= 50% of peak"),
    ]


def reproduce_row(quick_limit_s: float = 120.0) -> dict:
    """``implicit-bias reproduce --quick`` end to end in a fresh process (installed package)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "implicit_bias.cli", "reproduce", "--quick", "--out", out],
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return dict(target="reproduce --quick, 2 cores", baseline="4 min 19 s before issue 12 (measured then)",
                new=f"{wall:.0f} s", ratio=f"{wall / quick_limit_s:.2f} of the limit", goal=f"< {quick_limit_s:.0f} s",
                verdict="met" if done.returncode == 0 and wall < quick_limit_s else "missed", detail=status)


def part_rows(part: str, quick: bool) -> list[dict]:
    module = importlib.import_module(PARTS[part])
    return module.rows(quick=quick)


def render(rows: list[dict]) -> str:
    def cell(row, key):
        value = row.get(key, "")
        return fs(value) if isinstance(value, float) else str(value)

    return markdown_table(list(COLUMNS), [[cell(r, k) for k in COLUMNS] for r in rows])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default="", help="comma-separated parts: " + ",".join([*PARTS, "flops", "reproduce"]))
    parser.add_argument("--out", default=None, help="also write the markdown here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = [p for p in args.only.split(",") if p] or [*PARTS, "flops", "reproduce"]
    rows: list[dict] = []
    for part in chosen:
        log(f"scale: {part}")
        if part == "flops":
            peak, peaks = peak_rows()
            rows += peak + hot_loop_rows(peaks, args.quick)
        elif part == "reproduce":
            rows.append(reproduce_row())
        else:
            rows += part_rows(part, args.quick)
    text = "\n\n".join(["# Scale: every speed target of issue 12", machine_info(1), render(rows)]) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
