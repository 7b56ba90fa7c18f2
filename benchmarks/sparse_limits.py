#!/usr/bin/env python
"""Where does a depth-N Hadamard factorisation converge, and what does it cost to find out?

Benchmark for the positive sparse-recovery problem (SPEC §A, §D): four ways to get the
gradient-flow limit of ``x = w^N`` (N identical factors, ``w(0) = alpha * 1``), timed in the
same process on the same problems:

  (i)   plain fixed-step GD, written the way research scripts write it (a numpy loop on the
        shared factor ``w``, SPEC D.1), step ``eta = stable_step_size(A, x_pred, N, c=0.5)``;
  (ii)  ``simulate(..., GradientFlow())`` to relative residual 1e-8 (mirror-space Rosenbrock, RODAS5P);
  (iii) ``predict_limit`` (dual Newton for the Bregman projection, SPEC A.1);
  (iv)  the HiGHS l1 linear program ``min_l1(A, y, nonneg=True)`` (the alpha -> 0 limit).

The problems are ``gaussian_sparse(n, m=n/4, s=m/10, signed=False, seed)``. The script prints
markdown tables (wall seconds, gradient evaluations / matvecs, status, ratios against the
baselines measured in this run) and, at the end, the acceptance targets and whether they were
met. Progress goes to stderr.

    python benchmarks/sparse_limits.py --quick                 # smoke run, n=200, 5 s caps
    python benchmarks/sparse_limits.py --out benchmarks/results/sparse_limits.md
    python benchmarks/sparse_limits.py --only predict,lp       # parts only
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy
from threadpoolctl import ThreadpoolController, threadpool_info

from implicit_bias._blas import _split, blas_threads
from implicit_bias.dynamics import GradientFlow, Stop, simulate
from implicit_bias.limits import predict_limit
from implicit_bias.models import Hadamard, Init
from implicit_bias.problems import gaussian_sparse
from implicit_bias.references import min_l1
from implicit_bias.theory import stable_step_size

PARTS = ("predict", "flow", "gd", "lp")
DEPTHS = (2, 3, 4)
ALPHAS = (1e-2, 1e-4, 1e-6, 1e-8)
FLOW_TARGET_ALPHAS = (1e-3, 1e-6)
FLOW_TOL = 1e-8

# Plain-GD stopping rule (see plain_gd).
GD_TOL = 1e-8  # relative residual: converged
GD_WINDOW = 1000  # iterations between l1 / stall / wall-clock checks
GD_L1_RTOL = 1e-10  # relative change of ||x||_1 over one window: "l1 stable" ...
GD_L1_RESIDUAL = 1e-4  # ... accepted only once the relative residual is below this
GD_DIVERGED = 1e6  # relative residual above this (or non-finite): diverged


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- baselines


@dataclass
class GDRun:
    seconds: float
    iterations: int
    status: str  # converged | l1 stable | stuck | capped | diverged
    residual: float
    x: np.ndarray


def plain_gd(A: np.ndarray, y: np.ndarray, depth: int, alpha: float, eta: float, cap_s: float) -> GDRun:
    """Fixed-step GD on N identical factors, the way a research script does it (SPEC D.1).

    ``w <- w - eta * w^(N-1) * A^T (A w^N - y)``; one gradient evaluation per iteration.
    Stops at the first of: relative residual <= 1e-8 ("converged"); relative change of
    ||x||_1 over the last 1000 iterations below 1e-10 with residual <= 1e-4 ("l1 stable");
    w bitwise unchanged over 1000 iterations ("stuck": the update is below float64 resolution,
    so GD can never leave the saddle at 0); residual > 1e6 or non-finite ("diverged");
    the wall-clock cap ("capped"; checked every 1000 iterations).
    """
    N = depth
    ynorm = float(np.linalg.norm(y))
    w = np.full(A.shape[1], float(alpha))
    start = time.perf_counter()
    k = 0
    l1_prev = None
    w_prev = w.copy()
    while True:
        x = w**N
        r = A @ x - y
        res = float(np.linalg.norm(r)) / ynorm
        if not math.isfinite(res) or res > GD_DIVERGED:
            status = "diverged"
            break
        if res <= GD_TOL:
            status = "converged"
            break
        if k % GD_WINDOW == 0:
            l1 = float(np.sum(np.abs(x)))
            if l1_prev is not None:
                if res <= GD_L1_RESIDUAL and abs(l1 - l1_prev) <= GD_L1_RTOL * l1:
                    status = "l1 stable"
                    break
                if np.array_equal(w, w_prev):
                    status = "stuck"
                    break
            l1_prev = l1
            w_prev = w.copy()
            if time.perf_counter() - start >= cap_s:
                status = "capped"
                break
        w -= eta * w ** (N - 1) * (A.T @ r)
        k += 1
    return GDRun(time.perf_counter() - start, k, status, res, w**N)


def timed(fn, repeats: int):
    """Median wall time of ``repeats`` calls of ``fn`` and the last return value."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# ----------------------------------------------------------------------------- rows


@dataclass
class Row:
    n: int
    N: int
    alpha: float
    pred_s: float | None = None
    pred_matvecs: int | None = None
    pred_status: str = "-"
    pred_x: np.ndarray | None = field(default=None, repr=False)
    flow_s: float | None = None
    flow_evals: int | None = None
    flow_matvecs: int | None = None
    flow_converged: bool = False
    flow_status: str = "-"
    flow_dist: float | None = None
    gd_s: float | None = None
    gd_evals: int | None = None
    gd_status: str = "-"
    gd_dist_l1: float | None = None
    gd_eta: float | None = None
    lp_s: float | None = None
    pred_vs_lp: float | None = None


def short(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")
    return "error (" + (text[:80] + "..." if len(text) > 80 else text) + ")"


def run_predict(problem, row: Row, repeats: int, errors: list[str]) -> None:
    model, init = Hadamard(row.N, False), Init.uniform(row.alpha)
    try:
        seconds, lim = timed(lambda: predict_limit(problem, model, init), repeats)
    except Exception as exc:  # report, don't abort the benchmark
        row.pred_status = short(exc)
        errors.append(f"predict_limit n={row.n} N={row.N} alpha={row.alpha:g}: {exc!r}")
        return
    row.pred_s, row.pred_matvecs, row.pred_x = seconds, lim.matvecs, lim.x
    row.pred_status = lim.status
    if lim.status != "converged" or lim.residual > 1e-8 or lim.kkt > 1e-8:
        errors.append(
            f"predict_limit n={row.n} N={row.N} alpha={row.alpha:g}: status={lim.status} "
            f"residual={lim.residual:.2e} kkt={lim.kkt:.2e} ({lim.message})"
        )


def run_flow(problem, row: Row, cap_s: float, errors: list[str]) -> None:
    try:
        t0 = time.perf_counter()
        res = simulate(
            problem, Hadamard(row.N, False), GradientFlow(), init=row.alpha,
            stop=Stop(tol=FLOW_TOL, max_wall=cap_s, max_evals=10**9),
        )
        row.flow_s = time.perf_counter() - t0
    except Exception as exc:
        row.flow_status = short(exc)
        errors.append(f"simulate(GradientFlow) n={row.n} N={row.N} alpha={row.alpha:g}: {exc!r}")
        return
    row.flow_evals, row.flow_matvecs = res.grad_evals, res.matvecs
    row.flow_converged = res.status == "converged"
    row.flow_status = res.status if res.status == "converged" else f"{res.status} (res {res.residual:.1e})"
    if res.method != "flow[mirror]":  # another integrator than the Rosenbrock mirror flow (none today: no fallback)
        row.flow_status += f" [{res.method}]"
    if row.pred_x is not None and np.all(np.isfinite(res.x)):
        row.flow_dist = float(np.linalg.norm(res.x - row.pred_x) / np.linalg.norm(row.pred_x))
    if res.status == "failed":
        errors.append(f"simulate(GradientFlow) n={row.n} N={row.N} alpha={row.alpha:g}: failed: {res.message}")


def run_gd(problem, row: Row, cap_s: float, errors: list[str]) -> None:
    if row.pred_x is None:
        row.gd_status = "no step (predict_limit failed)"
        return
    try:
        eta = stable_step_size(problem.A, row.pred_x, row.N, c=0.5)  # setup, not timed
        run = plain_gd(problem.A, problem.y, row.N, row.alpha, eta, cap_s)
    except Exception as exc:
        row.gd_status = short(exc)
        errors.append(f"plain GD n={row.n} N={row.N} alpha={row.alpha:g}: {exc!r}")
        return
    row.gd_eta, row.gd_s, row.gd_evals = eta, run.seconds, run.iterations
    row.gd_status = run.status if run.status in ("converged",) else f"{run.status} (res {run.residual:.1e})"
    if np.all(np.isfinite(run.x)):
        row.gd_dist_l1 = float(np.sum(np.abs(run.x - row.pred_x)) / np.sum(np.abs(row.pred_x)))


# ----------------------------------------------------------------------------- formatting


def fs(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def fi(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def ratio(num: float | None, den: float | None, lower_bound: bool = False) -> str:
    if num is None or den is None or den <= 0:
        return "-"
    return (">= " if lower_bound else "") + f"{num / den:.3g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main_table(rows: list[Row]) -> str:
    header = [
        "n", "N", "alpha",
        "GD s", "GD evals", "GD status", "GD l1 dist",
        "flow s", "flow evals", "flow matvecs", "flow status",
        "predict s", "predict matvecs", "predict status",
        "LP s",
        "GD s / flow s", "LP s / predict s", "‖x_flow−x_pred‖/‖x_pred‖", "‖x_pred−x_LP‖₁/‖x_LP‖₁",
    ]
    body = []
    for r in rows:
        gd_done = not r.gd_status.startswith(("capped", "stuck", "diverged", "error", "no step"))
        flow_done = r.flow_converged
        if r.gd_status.startswith("stuck"):
            gd_flow = "∞ (GD stuck)"
        elif r.gd_s is None or r.flow_s is None:
            gd_flow = "-"
        elif gd_done and flow_done:
            gd_flow = ratio(r.gd_s, r.flow_s)
        elif flow_done:
            gd_flow = ratio(r.gd_s, r.flow_s, lower_bound=True)
        elif gd_done:
            gd_flow = "<= " + ratio(r.gd_s, r.flow_s)
        else:
            gd_flow = "n/a (neither converged)"
        body.append([
            str(r.n), str(r.N), f"{r.alpha:.0e}",
            fs(r.gd_s), fi(r.gd_evals), r.gd_status, fs(r.gd_dist_l1),
            fs(r.flow_s), fi(r.flow_evals), fi(r.flow_matvecs), r.flow_status,
            fs(r.pred_s), fi(r.pred_matvecs), r.pred_status,
            fs(r.lp_s),
            gd_flow, ratio(r.lp_s, r.pred_s), fs(r.flow_dist), fs(r.pred_vs_lp),
        ])
    return markdown_table(header, body)


# ----------------------------------------------------------------------------- machine


def baseline_threads(threads: int):
    """Limit numpy's BLAS (the plain-GD baseline's) to ``threads``; scipy's pool is left to the
    library, which gives it ``IMPLICIT_BIAS_BLAS_THREADS`` (it never raises a pool above its count,
    so a limit around everything would also bind ``predict_limit`` and ``simulate``)."""
    controller = ThreadpoolController()
    owned, others = _split(controller)
    return controller.select(filepath=others or owned).limit(limits=threads)


def machine_info(threads: int) -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    lines = [
        f"- host: {platform.node()} — {platform.platform()}",
        f"- CPU: {cpu}; os.cpu_count() = {os.cpu_count()}, usable cores = {affinity}; "
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the CPU is shared: timings are noisy)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}",
        f"- BLAS threads pinned to {threads} with threadpoolctl for the baselines; inside `predict_limit` and "
        f"`simulate` the library gives scipy's BLAS {blas_threads()} thread(s) (`IMPLICIT_BIAS_BLAS_THREADS`, default: "
        f"the usable cores) and keeps numpy's at one; BLAS libraries:",
    ]
    for lib in threadpool_info():
        lines.append(
            f"  - {lib.get('internal_api')} {lib.get('version')} ({lib.get('user_api')}, {lib.get('threading_layer', '?')}, "
            f"arch {lib.get('architecture', '?')}, default threads {lib.get('num_threads')}) — {os.path.basename(lib.get('filepath', ''))}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: n=200 only, 5 s caps for GD and flow")
    p.add_argument("--gd-cap", type=float, default=None, help="wall-clock cap per plain-GD run in seconds (default 60; 5 with --quick)")
    p.add_argument("--flow-cap", type=float, default=None, help="max_wall per simulate(GradientFlow) run (default 120; 5 with --quick)")
    p.add_argument("--only", action="append", default=None,
                   help="run only these parts: predict, flow, gd, lp (comma-separated or repeated). "
                        "predict_limit is always computed when flow/gd need it (GD step, distances)")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads of the baselines (default 1: on a shared 2-core machine 2 OpenBLAS threads in "
                        "both numpy's and scipy's pools were measured 100-400x slower on 250x250 Cholesky because of "
                        "contention); the library sets its own (IMPLICIT_BIAS_BLAS_THREADS)")
    p.add_argument("--repeats", type=int, default=3, help="repeats for predict_limit timing (median); the LP is repeated too when it takes < 10 s")
    p.add_argument("--seed", type=int, default=0, help="problem seed")
    p.add_argument("--sizes", default=None, help="comma-separated n for the full comparison (default 200,1000; --quick 200)")
    p.add_argument("--big", type=int, default=None, help="n for the predict/LP-only rows (default 5000; 0 to skip; --quick skips)")
    args = p.parse_args(argv)
    parts = set()
    for item in args.only or [",".join(PARTS)]:
        for part in item.split(","):
            part = part.strip()
            if part not in PARTS:
                p.error(f"--only takes a subset of {', '.join(PARTS)}; got {part!r}")
            parts.add(part)
    args.parts = parts
    args.gd_cap = args.gd_cap if args.gd_cap is not None else (5.0 if args.quick else 60.0)
    args.flow_cap = args.flow_cap if args.flow_cap is not None else (5.0 if args.quick else 120.0)
    args.sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([200] if args.quick else [200, 1000])
    args.big = args.big if args.big is not None else (0 if args.quick else 5000)
    return args


def problem_for(n: int, seed: int):
    m = n // 4
    s = m // 10
    return gaussian_sparse(n, m, s, signed=False, seed=seed)


def main(argv=None) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    parts = args.parts
    errors: list[str] = []
    wall0 = time.perf_counter()
    info = machine_info(args.threads)

    rows: list[Row] = []
    flow_extra: list[Row] = []
    lp_times: dict[int, tuple[float, int]] = {}

    with baseline_threads(args.threads):
        sizes = [(n, True) for n in args.sizes] + ([(args.big, False)] if args.big else [])
        for n, full in sizes:
            problem = problem_for(n, args.seed)
            log(f"n={n}: m={problem.m}, s={int(np.count_nonzero(problem.x_true))}")
            lp_s, x_lp = None, None
            if "lp" in parts:
                try:
                    t0 = time.perf_counter()
                    x_lp = min_l1(problem.A, problem.y, nonneg=True)
                    first = time.perf_counter() - t0
                    reps = args.repeats if first < 10 else 1
                    lp_s = first if reps == 1 else statistics.median([first] + [timed(lambda: min_l1(problem.A, problem.y, nonneg=True), 1)[0] for _ in range(reps - 1)])
                    lp_times[n] = (lp_s, reps)
                    log(f"  LP: {lp_s:.3g} s (median of {reps})")
                except Exception as exc:
                    errors.append(f"min_l1 n={n}: {exc!r}")
                    log(f"  LP failed: {exc!r}")
            want_pred = "predict" in parts or (full and ({"flow", "gd"} & parts))
            for N in DEPTHS:
                for alpha in ALPHAS:
                    row = Row(n, N, alpha, lp_s=lp_s)
                    if want_pred:
                        run_predict(problem, row, args.repeats if "predict" in parts else 1, errors)
                        if "predict" not in parts:
                            row.pred_s, row.pred_matvecs, row.pred_status = None, None, "(used, not timed)"
                        if x_lp is not None and row.pred_x is not None:
                            row.pred_vs_lp = float(np.sum(np.abs(row.pred_x - x_lp)) / np.sum(np.abs(x_lp)))
                    if full and "gd" in parts:
                        run_gd(problem, row, args.gd_cap, errors)
                    if full and "flow" in parts:
                        run_flow(problem, row, args.flow_cap, errors)
                    if "lp" not in parts:
                        row.lp_s = None
                    rows.append(row)
                    log(
                        f"  N={N} alpha={alpha:.0e}: predict {fs(row.pred_s)} s [{row.pred_status}]"
                        f" | flow {fs(row.flow_s)} s {fi(row.flow_evals)} evals [{row.flow_status}]"
                        f" | GD {fs(row.gd_s)} s {fi(row.gd_evals)} it [{row.gd_status}]"
                        f" | elapsed {time.perf_counter() - wall0:.0f} s"
                    )
            # flow-target alphas not in the main grid (n = 1000 only)
            if full and n == 1000 and "flow" in parts:
                for N in DEPTHS:
                    for alpha in FLOW_TARGET_ALPHAS:
                        if alpha in ALPHAS:
                            continue
                        row = Row(n, N, alpha)
                        run_predict(problem, row, 1, errors)
                        row.pred_s, row.pred_matvecs = None, None
                        run_flow(problem, row, args.flow_cap, errors)
                        flow_extra.append(row)
                        log(f"  (flow target) N={N} alpha={alpha:.0e}: flow {fs(row.flow_s)} s {fi(row.flow_evals)} evals [{row.flow_status}]")

    # ------------------------------------------------------------------ report
    out: list[str] = []
    title = "# Sparse recovery: cost of the gradient-flow limit (benchmarks/sparse_limits.py)"
    out.append(title)
    out.append("")
    out.append(info)
    out.append("")
    out.append(
        f"Settings: problems `gaussian_sparse(n, m=n/4, s=m/10, signed=False, seed={args.seed})`, positive "
        f"`Hadamard(N)` with every factor = alpha. Parts run: {', '.join(p for p in PARTS if p in parts)}. "
        f"**Plain-GD cap {args.gd_cap:g} s** per run, flow `max_wall` {args.flow_cap:g} s, predict_limit timed as the "
        f"median of {args.repeats} repeats{' (--quick smoke run)' if args.quick else ''}."
    )
    out.append("")
    out.append(
        "- **GD**: numpy loop `w -= eta * w**(N-1) * A.T @ (A @ w**N - y)`, `eta = stable_step_size(A, x_pred, N, c=0.5)` "
        "(computing eta is not timed). Stops at relative residual <= 1e-8 (`converged`), or relative change of "
        "‖x‖₁ < 1e-10 over 1000 iterations once the residual is <= 1e-4 (`l1 stable`), or `w` bitwise unchanged over "
        "1000 iterations (`stuck`: the update is below float64 resolution at the saddle, GD can never escape), or the "
        "cap (`capped`). `res` = relative residual at stop. GD evals = iterations (one gradient each). "
        "`GD l1 dist` = ‖x_GD − x_pred‖₁/‖x_pred‖₁ at stop (nonzero even when converged: GD's limit differs from the "
        "flow's by O(eta), SPEC D.3(iii)).\n"
        f"- **flow**: `simulate(problem, Hadamard(N), GradientFlow(), init=alpha, stop=Stop(tol=1e-8, max_wall={args.flow_cap:g}, "
        "max_evals=1e9))` (mirror-space Rosenbrock RODAS5P, one m×m Gram and Cholesky per step); evals = `Result.grad_evals` "
        "(right-hand-side evaluations); matvecs = `Result.matvecs`, which also counts the m×m Jacobians (m matvecs each) "
        "that dominate the flow's wall time; seconds measured around the call.\n"
        "- **predict**: `predict_limit(problem, Hadamard(N), Init.uniform(alpha))`; cost = `Limit.matvecs` "
        "(forming the m×m Newton matrix counts as m matvecs).\n"
        "- **LP**: `min_l1(A, y, nonneg=True)` (HiGHS via scipy.linprog); independent of N and alpha, solved once per n "
        "(median of repeats when under 10 s) and repeated in every row. Its solution is the alpha → 0 limit, hence the "
        "last column.\n"
        "- Ratios: `GD s / flow s` (a lower bound, `>=`, when GD was capped and the flow converged; `∞` when GD is stuck; "
        "`n/a` when neither converged); `LP s / predict s`."
    )
    out.append("")
    out.append("## Main table")
    out.append("")
    out.append(main_table(rows))
    out.append("")

    # flow targets at n = 1000
    flow_rows = {(r.N, r.alpha): r for r in rows + flow_extra if r.n == 1000 and r.flow_s is not None}
    targets: list[tuple[str, str, str]] = []  # (target, measured, verdict)
    if 1000 in args.sizes and "flow" in parts:
        out.append("## Gradient flow at n = 1000, alpha ∈ {1e-3, 1e-6} (flow target)")
        out.append("")
        body = []
        for N in DEPTHS:
            for alpha in FLOW_TARGET_ALPHAS:
                r = flow_rows.get((N, alpha))
                if r is None:
                    continue
                body.append([str(N), f"{alpha:.0e}", fs(r.flow_s), fi(r.flow_evals), fi(r.flow_matvecs), r.flow_status, fs(r.flow_dist)])
        out.append(markdown_table(["N", "alpha", "flow s", "flow evals", "flow matvecs", "flow status", "‖x_flow−x_pred‖/‖x_pred‖"], body))
        out.append("")

    # log growth of flow evals, N = 2
    growth_verdicts = []
    if "flow" in parts:
        out.append("## Flow gradient evaluations vs log(1/alpha), N = 2")
        out.append("")
        body = []
        for n in args.sizes:
            pts = [(r.alpha, r.flow_evals, r.flow_converged) for r in rows if r.n == n and r.N == 2 and r.flow_evals is not None]
            if len(pts) < 2:
                continue
            for alpha, evals, _ in pts:
                L = math.log(1 / alpha)
                status = next(r.flow_status for r in rows if r.n == n and r.N == 2 and r.alpha == alpha)
                body.append([str(n), f"{alpha:.0e}", f"{L:.2f}", fi(evals), f"{evals / L:.1f}", status])
            lo, hi = pts[0], pts[-1]
            allowed = math.log(1 / hi[0]) / math.log(1 / lo[0])
            got = hi[1] / lo[1]
            xs = np.array([math.log(1 / a) for a, _, _ in pts])
            ys = np.array([e for _, e, _ in pts], dtype=float)
            slope, intercept = np.polyfit(xs, ys, 1)
            ok = got <= allowed and all(converged for _, _, converged in pts)
            growth_verdicts.append((n, got, allowed, slope, intercept, ok))
        out.append(markdown_table(["n", "alpha", "log(1/alpha)", "flow evals", "evals / log(1/alpha)", "status"], body))
        out.append("")
        for n, got, allowed, slope, intercept, ok in growth_verdicts:
            out.append(
                f"- n={n}: evals(alpha_min)/evals(alpha_max) = {got:.2f} vs log-ratio {allowed:.2f}; "
                f"least-squares fit evals ≈ {intercept:.0f} + {slope:.0f}·log(1/alpha)"
            )
        out.append("")

    # ------------------------------------------------------------------ targets
    def verdict(ok: bool | None) -> str:
        return "not run" if ok is None else ("**met**" if ok else "**NOT met**")

    pred_1000 = [r for r in rows if r.n == 1000 and r.pred_s is not None]
    if "predict" in parts and pred_1000:
        worst = max(pred_1000, key=lambda r: r.pred_s)
        ok = all(r.pred_s < 0.2 and r.pred_status == "converged" for r in pred_1000)
        targets.append(("predict_limit < 0.2 s at n = 1000, every alpha and N",
                        f"max {worst.pred_s:.3g} s (N={worst.N}, alpha={worst.alpha:.0e}); "
                        f"{sum(r.pred_s < 0.2 for r in pred_1000)}/{len(pred_1000)} under 0.2 s", verdict(ok)))
    else:
        targets.append(("predict_limit < 0.2 s at n = 1000, every alpha and N", "-", verdict(None)))

    big_rows = [r for r in rows if args.big and r.n == args.big and r.pred_s is not None and r.lp_s is not None]
    if big_rows:
        worst = min(big_rows, key=lambda r: r.lp_s / r.pred_s)
        ok = all(r.lp_s / r.pred_s >= 10 and r.pred_status == "converged" for r in big_rows)
        targets.append((f"predict_limit >= 10x faster than HiGHS at n = {args.big}",
                        f"LP {big_rows[0].lp_s:.3g} s; worst ratio {worst.lp_s / worst.pred_s:.3g}x "
                        f"(N={worst.N}, alpha={worst.alpha:.0e}, predict {worst.pred_s:.3g} s); "
                        f"{sum(r.lp_s / r.pred_s >= 10 for r in big_rows)}/{len(big_rows)} at >= 10x", verdict(ok)))
    else:
        targets.append(("predict_limit >= 10x faster than HiGHS at n = 5000", "-", verdict(None)))

    for N, limit in ((2, 5.0), (3, 20.0), (4, 20.0)):
        got = [flow_rows.get((N, a)) for a in FLOW_TARGET_ALPHAS]
        name = f"flow at n = 1000, N = {N}, alpha ∈ {{1e-3, 1e-6}}: < {limit:g} s"
        if any(r is None for r in got):
            targets.append((name, "-", verdict(None)))
            continue
        ok = all(r.flow_s < limit and r.flow_converged for r in got)
        targets.append((name, "; ".join(f"alpha={r.alpha:.0e}: {r.flow_s:.3g} s [{r.flow_status}]" for r in got), verdict(ok)))

    if growth_verdicts:
        ok = all(v[-1] for v in growth_verdicts)
        targets.append(("flow evals grow at most logarithmically, N = 2, alpha 1e-2 → 1e-8",
                        "; ".join(f"n={n}: ×{got:.2f} (log-ratio ×{allowed:.2f})" for n, got, allowed, *_ in growth_verdicts),
                        verdict(ok)))
    else:
        targets.append(("flow evals grow at most logarithmically, N = 2, alpha 1e-2 → 1e-8", "-", verdict(None)))

    out.append("## Targets")
    out.append("")
    out.append(markdown_table(["target", "measured", "verdict"], [list(t) for t in targets]))
    out.append("")
    if errors:
        out.append("## Library problems seen in this run")
        out.append("")
        out.extend(f"- {e}" for e in errors)
        out.append("")
    out.append(f"Total benchmark wall time: {time.perf_counter() - wall0:.0f} s.")
    report = "\n".join(out) + "\n"
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(report)
        os.replace(tmp, args.out)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
