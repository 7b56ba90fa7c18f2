#!/usr/bin/env python
"""Issue 12, weight-normalisation target: the WN flow within 5x of plain flow on the same problem.

Each row times, in this run, on ``gaussian_sparse(n, m, s, seed)`` (depth N, ``r0 = 2``):

- today's method: BDF on the ``(r, v)`` state (``GradientFlow(space="factor")``), once, with the
  CLI's default budget (200,000 gradient evaluations; ``--quick``: 10 s of wall time);
- plain flow: ``Hadamard(N)`` from the CLI's default ``alpha = 1e-3`` (mirror-space RODAS5P);
- new: the default ``GradientFlow()`` of ``WeightNormalized``, the dual mirror flow of
  ``implicit_bias.dynamics.wn_mirror``.

All runs stop at the default relative residual 1e-8. Plain and new are best of 3 (``wall_s`` of
:func:`simulate`, which excludes the imports of the CLI). ``ratio = new / plain``; the verdict
is ``met`` when the new run converged and ``ratio <= 5``. ``detail`` gives gradient evaluations,
the distance of the new limit to the oracle of Theorem B.1 (B.8 with the run's ``r_inf``) and,
where BDF converged, to BDF's limit.

    python benchmarks/scale_weight_norm.py            # issue problem + other seeds and sizes
    python benchmarks/scale_weight_norm.py --quick    # issue problem only, BDF capped at 10 s
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from implicit_bias.dynamics import GradientFlow, Stop, simulate
from implicit_bias.limits import predict_limit_weight_norm
from implicit_bias.models import Hadamard, WeightNormalized
from implicit_bias.problems import gaussian_sparse

R0, ALPHA, GOAL = 2.0, 1e-3, 5.0
ISSUE = {"n": 100, "m": 40, "s": 5, "seed": 4, "depth": 2}  # run sparse --n 100 --m 40 --s 5 --depth 2 --seed 4
OTHERS = [{"n": 100, "m": 40, "s": 5, "seed": 0, "depth": 2}, {"n": 200, "m": 80, "s": 8, "seed": 1, "depth": 2},
          {"n": 400, "m": 100, "s": 5, "seed": 3, "depth": 2}, {"n": 100, "m": 40, "s": 5, "seed": 2, "depth": 2, "signed": True},
          {"n": 100, "m": 40, "s": 5, "seed": 4, "depth": 3}]
ETAS = (0.01, 0.1, 0.3)


def best_of(run, k: int = 3):
    results = [run() for _ in range(k)]
    return min(r.wall_s for r in results), results[0]


def rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def row(case: dict, eta_r: float, *, bdf_stop: Stop | None) -> dict:
    """One target row: BDF (r, v) and plain flow as baselines, the mirror WN flow as new."""
    signed = case.get("signed", False)
    problem = gaussian_sparse(case["n"], case["m"], case["s"], signed=signed, seed=case["seed"])
    N = case["depth"]
    model = WeightNormalized(N, eta_r, signed=signed)
    plain_s, plain = best_of(lambda: simulate(problem, Hadamard(N, signed=signed), GradientFlow(), init=ALPHA, stop=Stop()))
    new_s, new = best_of(lambda: simulate(problem, model, GradientFlow(), init=R0, stop=Stop()))
    r_inf = float(np.linalg.norm(new.factors[0]))
    oracle = predict_limit_weight_norm(problem, model, R0, r_inf)
    detail = [f"new {new.status}, {new.grad_evals} evals, flow time {new.t:.3g}, r_inf {r_inf:.6g}",
              f"plain {plain.status}, {plain.grad_evals} evals, flow time {plain.t:.3g}",
              f"oracle (B.8) {oracle.status}" + (f", dist {rel(new.x, oracle.x):.1e}" if oracle.x is not None else "")]
    bdf_text = "not run"
    if bdf_stop is not None:
        bdf = simulate(problem, model, GradientFlow(space="factor"), init=R0, stop=bdf_stop)
        bdf_text = f"BDF (r, v) {bdf.wall_s:.2f} s {bdf.status} ({bdf.grad_evals} evals)"
        if bdf.converged:
            detail.append(f"dist to BDF limit {rel(new.x, bdf.x):.1e}")
        detail.append(f"new/BDF time {new_s / bdf.wall_s:.3g}")
    ratio = new_s / plain_s
    label = f"n={case['n']} m={case['m']} s={case['s']} seed={case['seed']} N={N}" + (" signed" if signed else "")
    return {
        "target": f"WN flow converges at tol 1e-8 within 5x plain flow: {label}, r0={R0:g}, eta_r={eta_r:g}",
        "baseline": f"{bdf_text}; plain flow {plain_s:.3f} s",
        "new": new_s,
        "ratio": ratio,
        "goal": "<= 5x plain",
        "verdict": "met" if new.converged and ratio <= GOAL else "missed",
        "detail": "; ".join(detail),
    }


def rows(quick: bool = False) -> list[dict]:
    """The issue problem for every eta_r (BDF baseline: the default budget, or 10 s when quick);
    unless quick, also other seeds, sizes, the signed model and depth 3 (BDF capped at 10 s)."""
    capped = Stop(max_wall=10.0)
    out = [row(ISSUE, eta, bdf_stop=capped if quick else Stop()) for eta in ETAS]
    if not quick:
        out += [row(case, eta, bdf_stop=capped) for case in OTHERS for eta in ETAS]
    return out


def diffrax_comparison(eta_r: float = 0.01) -> str:
    """The same dual ODE (N = 2, issue problem) by diffrax's Kvaerno5 on JAX (x64) to the time at which
    the Rosenbrock path converged: first call (with JIT compilation) and second call, in seconds."""
    import time

    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    problem = gaussian_sparse(ISSUE["n"], ISSUE["m"], ISSUE["s"], seed=ISSUE["seed"])
    model = WeightNormalized(2, eta_r)
    ours = simulate(problem, model, GradientFlow(), init=R0, stop=Stop())
    A, y, n = jnp.asarray(problem.A), jnp.asarray(problem.y), problem.n
    log_zbar0 = jnp.full(n, 2 * np.log(R0 / np.sqrt(n)))

    def z_and_r2(lam):  # the closed forms of implicit_bias.dynamics.wn_mirror, N = 2
        log_zbar = log_zbar0 - 2 * (A.T @ lam)
        log_S = jax.scipy.special.logsumexp(log_zbar)
        r2 = R0**2 + eta_r * (log_S - 2 * np.log(R0))
        return jnp.exp(log_zbar + jnp.log(r2) - log_S), r2

    def f(t, lam, args):
        z, r2 = z_and_r2(lam)
        return 2 * r2 * (A @ z - y)

    solve = jax.jit(lambda t1: diffrax.diffeqsolve(
        diffrax.ODETerm(f), diffrax.Kvaerno5(), t0=0.0, t1=t1, dt0=None, y0=jnp.zeros(problem.m),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9), max_steps=100_000))
    times = []
    for _ in range(2):
        started = time.perf_counter()
        sol = solve(ours.t)
        sol.ys.block_until_ready()
        times.append(time.perf_counter() - started)
    z, _ = z_and_r2(sol.ys[-1])
    residual = float(jnp.linalg.norm(A @ z - y) / jnp.linalg.norm(y))
    return (f"diffrax Kvaerno5 on the dual ODE (eta_r={eta_r:g}, t1={ours.t:.3g}): first call {times[0]:.2f} s "
            f"(JIT), second {times[1]:.3f} s, {int(sol.stats['num_steps'])} steps, residual {residual:.1e}; "
            f"RODAS5P here: {ours.wall_s:.3f} s, {ours.steps} steps, residual {ours.residual:.1e}")


def markdown(table: list[dict]) -> str:
    lines = ["| target | baseline | new (s) | ratio | goal | verdict | detail |", "|---|---|---:|---:|---|---|---|"]
    lines += [f"| {r['target']} | {r['baseline']} | {r['new']:.3f} | {r['ratio']:.2f} | {r['goal']} | {r['verdict']} | "
              f"{r['detail']} |" for r in table]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--diffrax", action="store_true", help="also time diffrax's Kvaerno5 on the same ODE")
    args = parser.parse_args(argv)
    print(markdown(rows(quick=args.quick)))
    if args.diffrax:
        print("\n" + diffrax_comparison())
    return 0


if __name__ == "__main__":
    sys.exit(main())
