#!/usr/bin/env python
"""What does a deep matrix factorisation cost, per step and to convergence? (SPEC C, D)

Benchmark for low-rank recovery with ``W = W_N ... W_1`` (``DeepFactorization(N)``, balanced
init ``W_j(0) = alpha I``, SPEC C.12), timed in the same process on the same problems:

  (i)   plain factor GD written the way research scripts write it (a numpy loop over the
        factors with the chain rule C.1), the baseline;
  (ii)  ``simulate(..., GradientDescent())``: the library's factor GD, same step;
  (iii) ``simulate(..., GradientFlow())``: the factor flow (adaptive DOP853);
  (iv)  ``simulate(..., ProductFlow())``: the product flow ``dW/dt = -A_W(grad L(W))`` (C.5)
        integrated on ``W`` directly;
  (v)   ``min_nuclear_norm`` (cvxpy + SCS), the convex reference.

Problems: 20 x 20 rank 2 Gaussian sensing with m = 160 (the talk's figure), and 100 x 100
rank 5 completion with 2000 and 5000 observed entries; depth 3. Every run stops at relative
residual ``--tol`` or at the wall-clock cap ``--cap``. GD's step is the library default
(SPEC D.3(ii) for matrices, :func:`implicit_bias.dynamics.matrix.default_matrix_step`), computed
once, untimed, and given to both GD implementations. Progress goes to stderr.

    python benchmarks/matrix.py --quick                             # 20 s caps (~3 min)
    python benchmarks/matrix.py --out benchmarks/results/matrix.md  # 120 s caps
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sparse_limits import baseline_threads, fi, fs, log, machine_info, markdown_table  # noqa: E402  (house helpers)

from implicit_bias.dynamics import GradientDescent, GradientFlow, Stop, simulate  # noqa: E402
from implicit_bias.dynamics.matrix import ProductFlow, default_matrix_step  # noqa: E402
from implicit_bias.models import DeepFactorization, MatrixInit  # noqa: E402
from implicit_bias.problems import matrix_completion, matrix_sensing  # noqa: E402
from implicit_bias.references import min_nuclear_norm  # noqa: E402

DIVERGED = 1e6  # relative residual above this (or non-finite): the baseline diverged


@dataclass
class Case:
    label: str
    make: object  # () -> MatrixRecovery


CASES = (
    Case("20x20 r=2 sensing m=160", lambda seed: matrix_sensing(20, 20, 2, 160, seed=seed)),
    Case("100x100 r=5 completion 2000", lambda seed: matrix_completion(100, 100, 5, count=2000, seed=seed)),
    Case("100x100 r=5 completion 5000", lambda seed: matrix_completion(100, 100, 5, count=5000, seed=seed)),
)


@dataclass
class Run:
    seconds: float
    evals: int
    steps: int
    status: str
    residual: float
    error: float | None


# ----------------------------------------------------------------------------- baseline


def plain_factor_gd(problem, depth: int, alpha: float, eta: float, tol: float, cap_s: float,
                    max_steps: int | None = None) -> Run:
    """Fixed-step GD on ``W_1..W_N`` (all ``alpha I``), as a research script writes it (SPEC C.1, D.1).

    One gradient per iteration: ``G = A*(A(W) - y)``, ``grad_j = (W_N..W_{j+1})^T G (W_{j-1}..W_1)^T``
    from prefix and suffix products. The operator is applied as a dense matrix (sensing) or by
    fancy indexing (completion). Stops at residual <= tol, at ``max_steps``, at divergence, or at
    the cap (checked every 100 iterations).
    """
    d_y, d_x = problem.shape
    k = min(d_y, d_x)
    dims = [d_x] + [k] * (depth - 1) + [d_y]
    Ws = [alpha * np.eye(dims[j + 1], dims[j]) for j in range(depth)]
    y = problem.y
    ynorm = float(np.linalg.norm(y))
    op = problem.operator
    if problem.measurement == "completion":
        rows, cols = op.index

        def residual_and_grad(W):
            r = W[rows, cols] - y
            G = np.zeros((d_y, d_x))
            G[rows, cols] = r
            return r, G
    else:
        M = np.asarray(op.matrices).reshape(op.m, d_y * d_x)

        def residual_and_grad(W):
            r = M @ W.ravel() - y
            return r, (r @ M).reshape(d_y, d_x)

    start = time.perf_counter()
    steps = 0
    while True:
        # right[j] = W_j ... W_1 (right[-1] = I is implicit), left products built on the fly
        right = [Ws[0]]
        for Wj in Ws[1:]:
            right.append(Wj @ right[-1])
        W = right[-1]
        r, G = residual_and_grad(W)
        res = float(np.linalg.norm(r)) / ynorm
        if not np.isfinite(res) or res > DIVERGED:
            status = "diverged"
            break
        if res <= tol:
            status = "converged"
            break
        if max_steps is not None and steps >= max_steps:
            status = "steps"
            break
        if steps % 100 == 0 and time.perf_counter() - start >= cap_s:
            status = "capped"
            break
        left = G  # (W_N..W_{j+1})^T G, accumulated from the top
        grads = [None] * depth
        for j in range(depth - 1, 0, -1):
            grads[j] = left @ right[j - 1].T
            left = Ws[j].T @ left
        grads[0] = left
        for j in range(depth):
            Ws[j] -= eta * grads[j]
        steps += 1
    seconds = time.perf_counter() - start
    return Run(seconds, steps, steps, status, res, problem.relative_error(W) if np.all(np.isfinite(W)) else None)


# ----------------------------------------------------------------------------- library runs


def library(problem, model, dynamics, alpha, tol, cap_s, max_evals=10**9) -> Run:
    result = simulate(problem, model, dynamics, init=MatrixInit.balanced(alpha),
                      stop=Stop(tol=tol, max_evals=max_evals, max_wall=cap_s))
    status = result.status
    if status == "budget_exhausted" and "wall-clock" in result.message:
        status = "capped"
    return Run(result.wall_s, result.grad_evals, result.steps, status, result.residual, result.relative_error)


def per_step(run_fn, k: int, repeats: int) -> float:
    """Marginal seconds per GD step: median over ``repeats`` of ``(T(2k) - T(k)) / k``.

    ``run_fn(steps)`` runs that many steps; the difference cancels the set-up cost (problem
    checks, initial factors, the final result), so this is the cost of one more step.
    """
    values = []
    for _ in range(repeats):
        short, long = run_fn(k), run_fn(2 * k)
        values.append(max(long.seconds - short.seconds, 0.0) / max(long.evals - short.evals, 1))
    return statistics.median(values)


# ----------------------------------------------------------------------------- report


def cell(run: Run | None) -> list[str]:
    if run is None:
        return ["-"] * 4
    status = run.status if run.status != "converged" else "converged"
    if run.status != "converged":
        status += f" (res {run.residual:.1e})"
    return [fs(run.seconds), fi(run.evals), status, fs(run.error)]


def speedup(base: Run, other: Run) -> str:
    """Baseline seconds / method seconds to convergence; a bound when only one converged."""
    if base is None or other is None or other.seconds <= 0:
        return "-"
    value = f"{base.seconds / other.seconds:.3g}"
    b, o = base.status == "converged", other.status == "converged"
    if b and o:
        return value
    if o:
        return ">= " + value
    if b:
        return "<= " + value
    return "n/a (neither converged)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20 s caps, 1 repeat")
    p.add_argument("--cap", type=float, default=None, help="wall-clock cap per run to convergence (default 120 s; 20 with --quick)")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="relative residual that counts as converged (default 1e-5: at 20x20 every method plateaus "
                        "near 1.4e-6, see the results file)")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--alpha", type=float, default=1e-2, help="factor-level initial scale (default 1e-2)")
    p.add_argument("--per-step", type=int, default=1000,
                   help="k of the per-step timing (T(2k) - T(k)) / k (default 1000)")
    p.add_argument("--repeats", type=int, default=None, help="repeats of the per-step timings (median; default 3, 1 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    args = p.parse_args(argv)
    args.cap = args.cap if args.cap is not None else (20.0 if args.quick else 120.0)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info(args.threads)
    model = DeepFactorization(args.depth)
    wall0 = time.perf_counter()
    step_rows, conv_rows, nuc_rows = [], [], []
    with baseline_threads(args.threads):
        for case in CASES:
            problem = case.make(args.seed)
            eta = default_matrix_step(problem, model, MatrixInit.balanced(args.alpha))
            log(f"{case.label}: eta = {eta:.3g}")

            # time per gradient step (fixed-length runs far from convergence)
            k = args.per_step
            base_step = per_step(lambda n: plain_factor_gd(problem, args.depth, args.alpha, eta, 1e-300, 1e9, n), k, args.repeats)
            lib_step = per_step(lambda n: library(problem, model, GradientDescent(eta), args.alpha, 1e-300, 1e9, n), k, args.repeats)

            # to convergence
            base = plain_factor_gd(problem, args.depth, args.alpha, eta, args.tol, args.cap)
            log(f"  baseline GD: {base}")
            gd = library(problem, model, GradientDescent(eta), args.alpha, args.tol, args.cap)
            log(f"  GD: {gd}")
            flow = library(problem, model, GradientFlow(), args.alpha, args.tol, args.cap)
            log(f"  flow: {flow}")
            prod = library(problem, model, ProductFlow(), args.alpha, args.tol, args.cap)
            log(f"  product flow: {prod}")

            t0 = time.perf_counter()
            W_nuc = min_nuclear_norm(problem)
            nuc_s = time.perf_counter() - t0
            log(f"  nuclear norm: {nuc_s:.3g} s, error {problem.relative_error(W_nuc):.2e}")

            flow_step = flow.seconds / max(flow.evals, 1)
            prod_step = prod.seconds / max(prod.evals, 1)
            step_rows.append([
                case.label, f"{eta:.3g}", fs(base_step * 1e6), fs(lib_step * 1e6), f"{lib_step / base_step:.3g}",
                fs(flow_step * 1e6), f"{flow_step / base_step:.3g}", fs(prod_step * 1e6), f"{prod_step / base_step:.3g}",
            ])
            for name, run in (("plain factor GD (baseline)", base), ("simulate GradientDescent", gd),
                              ("simulate GradientFlow (factors)", flow), ("simulate ProductFlow", prod)):
                conv_rows.append([case.label, name, *cell(run), speedup(base, run) if run is not base else "1"])
            nuc_rows.append([case.label, fs(nuc_s), fs(problem.relative_error(W_nuc)),
                             fs(problem.residual(W_nuc)), speedup(base, Run(nuc_s, 0, 0, "converged", 0.0, None))])
            log(f"  elapsed {time.perf_counter() - wall0:.0f} s")

    report = "\n".join([
        "# Deep matrix factorisation: cost per step and to convergence (benchmarks/matrix.py)",
        "",
        info,
        "",
        f"Settings: `DeepFactorization({args.depth})` (hidden widths min(n1, n2)), balanced init `W_j(0) = "
        f"{args.alpha:g} I` (SPEC C.12), problem seed {args.seed}. Converged = relative residual "
        f"‖A(W)−y‖/‖y‖ <= {args.tol:g}; **every run to convergence is capped at {args.cap:g} s of wall clock** "
        "(status `capped`, with the residual reached). GD step `eta` = the library default "
        "(`default_matrix_step`, SPEC D.3(ii) for matrices), computed once (untimed) and used by both GD "
        f"implementations. Per-step GD times: marginal cost (T(2k) − T(k))/k with k = {args.per_step}, median of "
        f"{args.repeats} (set-up cancels); flows: wall seconds / right-hand-side evaluations of the convergence run. Ratios are against the "
        "baseline measured in this run.",
        "",
        "- **plain factor GD (baseline)**: a numpy loop over the factors with the chain rule (C.1): prefix "
        "products, `G = A*(A(W) − y)` (dense operator matrix for sensing, fancy indexing for completion), "
        "then `grad_j = (W_N⋯W_{j+1})ᵀ G (W_{j−1}⋯W_1)ᵀ`.",
        "- **simulate GradientDescent**: `simulate(problem, DeepFactorization(N), GradientDescent(eta), ...)`.",
        "- **simulate GradientFlow (factors)**: the factor flow `dW_j/dt = −∇_{W_j} L` (adaptive DOP853).",
        "- **simulate ProductFlow**: `dW/dt = −A_W(∇L(W))` (C.5) on W itself (DOP853); one evaluation = one gradient "
        "plus `A_W` in its spectral form (C.6: one SVD of W and four products).",
        "- **nuclear norm**: `min_nuclear_norm(problem)` (cvxpy + SCS, eps 1e-8), the convex reference.",
        "",
        "## Time per gradient evaluation (µs)",
        "",
        markdown_table(["problem", "eta", "baseline GD µs", "library GD µs", "library / baseline", "factor flow µs/eval",
                        "flow / baseline", "product flow µs/eval", "product / baseline"], step_rows),
        "",
        "## To convergence",
        "",
        "`evals` = gradient evaluations (GD: iterations; flows: right-hand-side evaluations). `rel. error` = "
        "‖W − W_true‖_F/‖W_true‖_F at stop. `speed-up` = baseline seconds / method seconds (`>=` when only the "
        "method converged, `<=` when only the baseline did).",
        "",
        markdown_table(["problem", "method", "seconds", "evals", "status", "rel. error", "speed-up vs baseline"], conv_rows),
        "",
        "## Nuclear-norm reference",
        "",
        markdown_table(["problem", "SCS seconds", "rel. error vs W_true", "relative residual",
                        "baseline GD s / SCS s"], nuc_rows),
        "",
        f"Total benchmark wall time {time.perf_counter() - wall0:.0f} s.",
        "",
    ])
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
