#!/usr/bin/env python
"""Large sparse problems (issue 12, part 4): the limit oracle and the flow at n = 5,000 / 20,000 / 50,000.

Problems: ``gaussian_sparse(n, m=n/4, s=m/10, seed=0)`` (dense, where it fits in memory) or
``dct_sparse`` (the same sizes with the matrix-free DCT operator), the positive ``Hadamard(2)`` from
``alpha = 1e-3``. Every measurement runs in its own subprocess, so that its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes building the problem) is its own.
The baseline is the HiGHS l1 LP (``references.min_l1``) on the same problem in the same run,
stopped after 10 minutes; on the DCT problems it is not run (it needs the dense ``A``). Each flow
row also gives the distance of its end point from the oracle's limit (computed after the timing).

    python benchmarks/scale_large.py            # markdown table
    python benchmarks/scale_large.py --quick    # the n = 5,000 oracle (vs HiGHS) and DCT flow, the n = 50,000 oracle

``rows(quick)`` returns the rows for ``benchmarks/scale.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

LP_LIMIT_S = 600.0
DEPTH, ALPHA, FLOW_TOL = 2, 1e-3, 1e-8
GIB = 2**30


def _worker(task: dict) -> dict:
    """One measurement in this process: ``{"seconds", "peak_rss_gib", "status", "detail"}``."""
    import resource

    import numpy as np

    from implicit_bias.dynamics import GradientFlow, Stop, simulate
    from implicit_bias.limits import predict_limit
    from implicit_bias.models import Hadamard, Init
    from implicit_bias.references import min_l1
    from implicit_bias.sensing import sparse_problem

    n = task["n"]
    problem = sparse_problem(task["operator"], n, n // 4, n // 40, seed=0)
    started = time.perf_counter()
    if task["kind"] == "lp":
        x = min_l1(problem.A, problem.y, nonneg=True)
        status, detail = "solved", f"||x||_1 = {np.sum(x):.6g}"
    elif task["kind"] == "predict":
        limit = predict_limit(problem, Hadamard(DEPTH), Init.uniform(ALPHA))
        status = limit.status
        detail = (f"{limit.iterations} Newton steps, {limit.matvecs} matvecs, residual {limit.residual:.1e}, "
                  f"KKT {limit.kkt:.1e}, error vs x_true {problem.error_true(limit.x):.1e}")
    else:
        result = simulate(problem, Hadamard(DEPTH), GradientFlow(), init=ALPHA, stop=Stop(tol=FLOW_TOL))
        seconds = time.perf_counter() - started
        limit = predict_limit(problem, Hadamard(DEPTH), Init.uniform(ALPHA))  # not timed: the flow's reference
        status = result.status
        detail = (f"{result.steps} steps, {result.grad_evals} evals, {result.matvecs} matvecs, residual "
                  f"{result.residual:.1e} (tol {FLOW_TOL:g}), ||x - x_limit|| / ||x_limit|| = "
                  f"{np.linalg.norm(result.x - limit.x) / np.linalg.norm(limit.x):.1e}")
    if task["kind"] != "flow":
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "status": status, "detail": detail,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def measure(kind: str, n: int, operator: str, limit_s: float | None = None) -> dict | None:
    """:func:`_worker` in a fresh interpreter; None when it ran past ``limit_s``."""
    task = json.dumps({"kind": kind, "n": n, "operator": operator})
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", task], capture_output=True, text=True,
                              timeout=limit_s, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        return {"seconds": float("nan"), "status": "failed", "peak_rss_gib": float("nan"),
                "detail": exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else "worker failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# (kind, n, operator, goal); the HiGHS LP runs once per dense size, before its rows
PLAN = [
    ("predict", 5000, "gaussian", "ratio"), ("flow", 5000, "gaussian", "converged"),
    ("predict", 5000, "dct", "converged"), ("flow", 5000, "dct", "converged"),
    ("predict", 20000, "gaussian", "ratio"), ("predict", 20000, "dct", "converged"), ("flow", 20000, "dct", "converged"),
    ("predict", 50000, "dct", "under 60 s"), ("flow", 50000, "dct", "converged"),
]
QUICK = {("predict", 5000, "gaussian"), ("flow", 5000, "dct"), ("predict", 50000, "dct")}
GOALS = {
    "ratio": ">= 10x faster than HiGHS", "converged": "converged (tol 1e-10 oracle, 1e-8 flow), < 4 GiB peak RSS",
    "under 60 s": "< 60 s and < 4 GiB peak RSS",
}
NOTES = {
    ("flow", 20000, "dct"): "; the dense flow at n = 20,000 is not run: one 5,000 x 5,000 Gram matrix and Cholesky "
                            "factorisation per step, about 250 steps",
}


def _row(kind: str, n: int, operator: str, goal: str, new: dict, lp: dict | None) -> dict:
    dense = operator == "gaussian"
    if not dense:
        base, ratio = "not run (the LP needs the dense A)", None
    elif lp is None:
        base, ratio = f"did not finish in {LP_LIMIT_S / 60:.0f} min", f">= {LP_LIMIT_S / new['seconds']:.1f}"
    else:
        base, ratio = round(lp["seconds"], 3), round(lp["seconds"] / new["seconds"], 1)
    ok = new["status"] == "converged" and new["peak_rss_gib"] < 4
    if goal == "ratio":
        ok = new["status"] == "converged" and (LP_LIMIT_S if lp is None else lp["seconds"]) >= 10 * new["seconds"]
    elif goal == "under 60 s":
        ok = ok and new["seconds"] < 60
    name = "predict_limit" if kind == "predict" else "flow (RODAS5P, mirror space)"
    return {"target": f"{name}, n = {n:,}, m = {n // 4:,}, {'dense Gaussian' if dense else 'DCT operator'}",
            "baseline": base, "new": round(new["seconds"], 3), "ratio": ratio,
            "peak_rss_gib": round(new["peak_rss_gib"], 3), "goal": GOALS[goal], "verdict": "met" if ok else "missed",
            "detail": f"{new['status']}: {new['detail']}{NOTES.get((kind, n, operator), '')}"}


def rows(quick: bool = False) -> list[dict]:
    """The rows of this part: predict_limit and the flow at each size (see the module docstring)."""
    out, lps = [], {}
    for kind, n, operator, goal in PLAN:
        if quick and (kind, n, operator) not in QUICK:
            continue
        if operator == "gaussian" and n not in lps:
            lps[n] = measure("lp", n, "gaussian", LP_LIMIT_S)
        new = measure(kind, n, operator)
        out.append(_row(kind, n, operator, goal, new, lps.get(n)))
    return out


def markdown(table: list[dict]) -> str:
    keys = ["target", "baseline", "new", "ratio", "peak_rss_gib", "goal", "verdict", "detail"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join("-" if row[k] is None else str(row[k]) for k in keys) + " |" for row in table]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(json.loads(sys.argv[2]))))
    else:
        print(markdown(rows(quick="--quick" in sys.argv)))
