"""The ``implicit-bias`` command."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import click

from ._cli_support import POSITIVE, SCHEDULER, MainGroup
from ._validation import jsonable as _jsonable
from .errors import ImplicitBiasError, InvalidParameterError

METHOD_CHOICE = click.Choice(["flow", "gd", "sgd", "limit"])


def _fail(message: str, debug: bool) -> None:
    if debug:
        raise
    click.echo(f"implicit-bias: error: {message}", err=True)
    sys.exit(2)


def _apply_options(function, options):
    for option in reversed(options):
        function = option(function)
    return function


OUTPUT_OPTIONS = [
    click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of a table"),
    click.option("--debug", is_flag=True, help="show tracebacks"),
]


def output_options(function):
    """Decorator adding ``--json`` and ``--debug``."""
    return _apply_options(function, OUTPUT_OPTIONS)


def descent_options(methods: click.Choice, default_tol: float, default_max_evals: int, method_help: str):
    """Decorator adding ``--method --step --batch --tol --max-evals``, shared by the ``run`` commands."""
    options = [
        click.option("--method", type=methods, default="flow", show_default=True, help=method_help),
        click.option("--step", type=POSITIVE, default=None, help="GD/SGD step (default: the safe step of SPEC D.3)"),
        click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="SGD mini-batch size"),
        click.option("--tol", type=float, default=default_tol, show_default=True,
                     help="stop at relative residual ||A(x)-y||/||y|| <= tol"),
        click.option("--max-evals", type=click.IntRange(min=1), default=default_max_evals, show_default=True,
                     help="gradient-evaluation budget"),
    ]
    return lambda function: _apply_options(function, options)


def problem_options(function):
    """The options that define a sparse-recovery problem, shared by run and predict."""
    options = [
        click.option("--n", type=click.IntRange(min=2), default=200, show_default=True, help="signal dimension"),
        click.option("--m", type=click.IntRange(min=1), default=60, show_default=True, help="number of measurements"),
        click.option("--s", type=click.IntRange(min=1), default=5, show_default=True, help="sparsity of the true signal"),
        click.option("--signed/--positive", default=False, show_default=True, help="signed model u^N - v^N, or positive w^N"),
        click.option("--noise", type=float, default=0.0, show_default=True, help="measurement noise level"),
        click.option("--seed", type=int, default=0, show_default=True, help="seed of the random problem (and SGD)"),
        click.option("--depth", type=click.IntRange(min=1), default=2, show_default=True, help="number of factors N"),
        click.option("--alpha", type=float, default=1e-3, show_default=True, help="factor-level initial scale (product starts at alpha^N)"),
        click.option("--problem", "problem_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="load A, y (and x_true) from an .npz file instead of generating"),
        click.option("--operator", type=click.Choice(["gaussian", "dct"]), default="gaussian", show_default=True,
                     help="dense Gaussian A, or a matrix-free seeded random row subset of the orthonormal DCT-II"),
        *OUTPUT_OPTIONS,
    ]
    return _apply_options(function, options)


def _print_record(record: dict, as_json: bool, keys: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(_jsonable(record)))
        return
    width = max(len(k) for k in keys)
    for key in keys:
        value = record.get(key)
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={v:.2g}" for k, v in value.items()) or "-"
        else:
            text = "-" if value is None else str(value)
        click.echo(f"{key:<{width}}  {text}")


TABLE_KEYS = [
    "status", "method", "depth", "alpha", "residual", "l1_norm", "l1_min", "l1_gap", "epsilon_bound",
    "bound_holds", "dist_l1_min", "dist_predicted", "error_true", "grad_evals", "matvecs", "steps", "t",
    "step", "suggested_step", "invariant_drift", "wall_s", "message",
]


@click.group(cls=MainGroup)
@click.version_option(package_name="implicit-bias")
def main() -> None:
    """Compute, explain and reproduce the implicit bias of gradient methods."""


@main.group()
def run() -> None:
    """Run one trial and compare where it converged with the theory."""


@run.command("sparse")
@problem_options
@descent_options(METHOD_CHOICE, 1e-8, 200_000, "flow, gd, sgd, or the exact limit")
@click.option("--weight-norm", is_flag=True, help="weight-normalised model w = r v/||v|| (SPEC B); ignores --alpha")
@click.option("--eta-r", type=float, default=0.01, show_default=True, help="rate of the radius r (with --weight-norm)")
@click.option("--r0", type=float, default=1.0, show_default=True, help="initial radius r(0) (with --weight-norm)")
def run_sparse(n, m, s, signed, noise, seed, depth, alpha, problem_file, operator, as_json, debug, method, step, batch, tol,
               max_evals, weight_norm, eta_r, r0):
    """Sparse recovery with a depth-N Hadamard factorization (SPEC A), or weight-normalised (SPEC B)."""
    from .experiments.sparse import SparseTrial, sparse_trial
    from .problems import load_problem

    if operator != "gaussian":
        settings = {"n": n, "m": m, "s": s, "signed": signed, "noise": noise, "seed": seed}
        _run_operator(operator, settings, depth, alpha, problem_file, as_json, debug, method, tol, max_evals, weight_norm)
        return
    if weight_norm:
        _run_weight_norm(n, m, s, signed, noise, seed, depth, problem_file, as_json, debug, method, step, batch, tol,
                         max_evals, eta_r, r0)
        return
    try:
        trial = SparseTrial(n=n, m=m, s=s, signed=signed, noise=noise, seed=seed, depth=depth, alpha=alpha,
                            method=method, step=step, batch=batch, tol=tol, max_evals=max_evals)
        problem = load_problem(problem_file) if problem_file else trial.problem()
        if problem_file:
            trial = replace(trial, n=problem.n, m=problem.m, s=0)
        record = sparse_trial(trial, problem)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    if not as_json:
        record["x"] = None
    _print_record(record, as_json, TABLE_KEYS)


def _run_operator(operator, settings, depth, alpha, problem_file, as_json, debug, method, tol, max_evals, weight_norm):
    """``run sparse --operator dct``: the matrix-free oracle and flow (:mod:`implicit_bias.sensing_trial`)."""
    from .sensing_trial import operator_record

    try:
        record = operator_record(operator, settings, depth=depth, alpha=alpha, method=method, tol=tol,
                                 max_evals=max_evals, problem_file=problem_file, weight_norm=weight_norm)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    _print_record(record if as_json else {**record, "x": None}, as_json, TABLE_KEYS)


MATRIX_METHOD_CHOICE = click.Choice(["flow", "gd", "sgd", "product"])
MATRIX_TABLE_KEYS = [
    "status", "method", "measurement", "shape", "rank", "m", "depth", "widths", "init", "alpha", "residual",
    "relative_error", "nuclear_norm_error", "frobenius_error", "dist_nuclear_norm", "effective_rank",
    "singular_values", "balancedness_defect", "balancedness_drift", "grad_evals", "steps", "t", "step",
    "suggested_step", "wall_s", "nuclear_norm_s", "message",
]
SHOWN_SINGULAR_VALUES = 8  # the table shows the leading ones; --json gives all


@run.command("matrix")
@click.option("--n1", type=click.IntRange(min=1), default=20, show_default=True, help="rows of the matrix")
@click.option("--n2", type=click.IntRange(min=1), default=20, show_default=True, help="columns of the matrix")
@click.option("--rank", type=click.IntRange(min=1), default=2, show_default=True, help="rank of the true matrix")
@click.option("--m", type=click.IntRange(min=1), default=160, show_default=True,
              help="number of Gaussian measurements, or of observed entries (completion)")
@click.option("--measurement", type=click.Choice(["gaussian", "completion"]), default="gaussian", show_default=True,
              help="Gaussian sensing or matrix completion (SPEC C.13)")
@click.option("--condition", type=float, default=1.0, show_default=True,
              help="sigma_1 / sigma_rank of the true matrix (geometric spectrum)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the random problem (and SGD, Gaussian init)")
@click.option("--depth", type=click.IntRange(min=1), default=3, show_default=True, help="number of factors N")
@click.option("--widths", default=None, metavar="D1,...", help="hidden widths d_1..d_{N-1} (default: min(n1, n2))")
@click.option("--alpha", type=float, default=1e-2, show_default=True, help="factor-level initial scale (SPEC C.12)")
@click.option("--init", "init_kind", type=click.Choice(["balanced", "gaussian"]), default="balanced", show_default=True,
              help="balanced W_j = alpha*I (C.12), or Gaussian factors whose product has the balanced product's norm")
@descent_options(MATRIX_METHOD_CHOICE, 1e-5, 100_000,
                 "factor flow, GD, SGD, or the product flow dW/dt = -A_W(grad L) (C.5; balanced init only)")
@click.option("--max-wall", type=float, default=float("inf"), help="wall-clock budget in seconds")
@click.option("--problem", "problem_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="load the problem from an .npz file (MatrixRecovery.save) instead of generating")
@output_options
def run_matrix(n1, n2, rank, m, measurement, condition, seed, depth, widths, alpha, init_kind, method, step, batch,
               tol, max_evals, max_wall, problem_file, as_json, debug):
    """Low-rank recovery with a deep matrix factorization W = W_N ... W_1 (SPEC C), vs nuclear norm."""
    from .experiments.matrix import MatrixTrial, matrix_trial
    from .problems import load_matrix_problem

    try:
        trial = MatrixTrial(n1=n1, n2=n2, rank=rank, m=m, measurement=measurement, condition=condition, seed=seed,
                            depth=depth, widths=widths, alpha=alpha, init=init_kind, method=method, step=step,
                            batch=batch, tol=tol, max_evals=max_evals, max_wall=max_wall)
        trial.model()  # bad widths fail before any work
        record = matrix_trial(trial, load_matrix_problem(problem_file) if problem_file else None)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    if not as_json:
        shown = record["singular_values"] or []
        record["singular_values"] = " ".join(f"{v:.3g}" for v in shown[:SHOWN_SINGULAR_VALUES]) + (
            " ..." if len(shown) > SHOWN_SINGULAR_VALUES else "")
        record["shape"] = "x".join(str(d) for d in record["shape"])
        record["widths"] = ",".join(str(d) for d in record["widths"])
    _print_record(record, as_json, MATRIX_TABLE_KEYS if not as_json else list(record))


WN_TABLE_KEYS = [
    "status", "method", "depth", "eta_r", "r0", "residual", "l1_norm", "l1_min", "l1_gap", "plain_l1_gap",
    "gap_ratio_plain_over_wn", "r_inf", "log_rho", "log_effective_scale", "fitted_log_c", "fitted_kkt",
    "epsilon_bound", "bound_holds", "paper_c_N_beta_1_lt_Q", "paper_kernel_condition", "dist_predicted",
    "oracle_status", "grad_evals", "matvecs", "steps", "t", "step", "invariant_drift", "wall_s", "explanation",
]


def _run_weight_norm(n, m, s, signed, noise, seed, depth, problem_file, as_json, debug, method, step, batch, tol,
                     max_evals, eta_r, r0):
    from .experiments.sparse import WeightNormTrial, weight_norm_trial
    from .problems import load_problem

    try:
        trial = WeightNormTrial(n=n, m=m, s=s, signed=signed, noise=noise, seed=seed, depth=depth, eta_r=eta_r, r0=r0,
                                method=method, step=step, batch=batch, tol=tol, max_evals=max_evals)
        problem = load_problem(problem_file) if problem_file else trial.problem()
        if problem_file:
            trial = replace(trial, n=problem.n, m=problem.m, s=0)
        record = weight_norm_trial(trial, problem)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    _print_record(record, as_json, WN_TABLE_KEYS)


@main.command()
@problem_options
@click.option("--tol", type=float, default=1e-10, show_default=True,
              help="converged needs the relative residual ||Ax-y||/||y|| <= tol")
@click.option("--kkt-tol", type=float, default=1e-8, show_default=True,
              help="... and the relative KKT residual (SPEC A.3 (i)) <= kkt-tol")
@click.option("--max-iter", type=int, default=500, show_default=True, help="Newton step budget")
def predict(n, m, s, signed, noise, seed, depth, alpha, problem_file, operator, as_json, debug, tol, kkt_tol, max_iter):
    """The exact gradient-flow limit (Bregman projection, SPEC A.1/A.4) without simulating.

    The status is converged only when both tolerances held; the record carries the achieved values.
    """
    import numpy as np

    from .limits import predict_limit
    from .models import Hadamard, Init
    from .problems import load_problem
    from .sensing import sparse_problem

    try:
        if problem_file and operator != "gaussian":
            raise InvalidParameterError(f"--operator {operator} generates its problem; drop --problem or --operator.")
        problem = load_problem(problem_file) if problem_file else sparse_problem(operator, n, m, s, signed=signed,
                                                                                 noise=noise, seed=seed)
        limit = predict_limit(problem, Hadamard(depth, signed), Init.uniform(alpha), tol=tol, kkt_tol=kkt_tol,
                              max_iter=max_iter)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    record = {
        "status": limit.status, "residual": limit.residual, "tol": limit.tol, "kkt": limit.kkt,
        "kkt_tol": limit.kkt_tol, "iterations": limit.iterations, "steepest_steps": limit.steepest_steps,
        "matvecs": limit.matvecs, "wall_s": limit.wall_s, "l1_norm": float(np.sum(np.abs(limit.x))),
        "error_true": problem.error_true(limit.x), "message": limit.message,
        "x": [float(v) for v in limit.x] if as_json else None,
    }
    _print_record(record, as_json, [k for k in record if k != "x"])


@main.command()
@click.option("--depth", type=click.IntRange(min=2), required=True, help="number of factors N >= 2")
@click.option("--beta1", type=float, required=True, help="||x(0)||_1 of the product initialisation")
@click.option("--beta-min", type=float, required=True, help="min_k x_k(0) of the product initialisation")
@click.option("--Q", "Q", type=float, required=True, help="the l1 optimum Q (or Q_+)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--debug", is_flag=True)
def bound(depth, beta1, beta_min, Q, as_json, debug):
    """The epsilon of Theorem A.2 (SPEC A.15, A.16): ||x_inf||_1 <= (1 + eps) Q."""
    from .theory import epsilon_bound, epsilon_bound_simple

    try:
        eps = epsilon_bound(depth, beta1, beta_min, Q)
        simple = epsilon_bound_simple(depth, beta1, Q) if depth > 2 else None
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    record = {
        "depth": depth, "beta1": beta1, "beta_min": beta_min, "Q": Q,
        "applies": bool(math.isfinite(eps)), "epsilon": eps, "epsilon_simple": simple,
    }
    _print_record(record, as_json, list(record))


@main.command()
def experiments():
    """List the registered experiments and their parameters."""
    from .experiments import EXPERIMENTS

    for experiment in EXPERIMENTS.values():
        click.echo(f"{experiment.name}: {experiment.description}")
        for name, default in experiment.defaults().items():
            click.echo(f"    {name} = {default!r}")


def _executor(workers: int, scheduler: str | None):
    from .experiments import DaskExecutor, SerialExecutor

    if scheduler or workers > 1:
        try:
            return DaskExecutor(workers=max(workers, 1), scheduler=scheduler)
        except (OSError, ValueError, TimeoutError) as exc:
            if not scheduler:
                raise
            raise InvalidParameterError(
                f"--scheduler {scheduler}: no Dask scheduler reachable there ({exc}); give tcp://HOST:PORT of a "
                "running 'dask scheduler', or leave --scheduler out to run locally."
            ) from exc
    return SerialExecutor()


@main.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a spec field: n=200, grid.delta=[0.1,0.2], method=flow, seeds=3")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), default=None, help="store file (default: the spec's)")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="1: serial in this process; K > 1: an embedded Dask LocalCluster with K workers")
@click.option("--scheduler", type=SCHEDULER, default=None, metavar="tcp://HOST:PORT", help="use an existing Dask cluster")
@click.option("--retry-failed", is_flag=True, help="rerun the trials stored as failed (each replaces its failed row)")
@click.option("--batch-size", default="auto", show_default=True, metavar="K|auto",
              help="run up to K compatible trials at once (the batched limit oracle); 1: one at a time")
@click.option("--debug", is_flag=True)
def sweep(spec_file, overrides, store_path, workers, scheduler, retry_failed, batch_size, debug):
    """Run a sweep spec (TOML) into its SQLite store; rerunning resumes.

    Several sweeps may run on one store at once: each claims its trials first, so none is
    computed twice.
    """
    from .experiments import load_spec, run_sweep

    try:
        from .experiments.sweep import resolve_batch_size

        spec = load_spec(spec_file, list(overrides))
        executor = _executor(workers, scheduler)
        executor.batch_size = resolve_batch_size(batch_size)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    try:
        summary = run_sweep(spec, store_path=store_path, executor=executor, retry_failed=retry_failed)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    finally:
        executor.close()
    busy = f", {summary.busy} left to another sweep running on the store" if summary.busy else ""
    click.echo(f"{summary.total} trials: {summary.skipped} already stored, {summary.done} done, "
               f"{summary.failed} failed{busy} in {summary.wall_s:.1f}s -> {store_path or spec.store}")


@main.command()
@click.argument("store_path", type=click.Path(dir_okay=False))
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None, help="also count the spec's pending trials")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--debug", is_flag=True)
def status(store_path, spec_file, as_json, debug):
    """Summarise a store: done, failed (with their errors), numerical statuses, environments and
    (with --spec) pending trials. Never modifies the store."""
    from .experiments import SQLiteStore
    from .experiments.summary import report_lines, store_report

    try:
        with SQLiteStore(store_path, create=False, readonly=True) as store:
            report = store_report(store, spec_file)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    click.echo(json.dumps(report) if as_json else "\n".join(report_lines(report)))


@main.command()
@click.argument("store_path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="output file (default: next to the store)")
@click.option("--debug", is_flag=True)
def export(store_path, fmt, out, debug):
    """Export a store to CSV or Parquet (one row per trial). Never modifies the store."""
    from pathlib import Path

    from .experiments import SQLiteStore

    out = out or str(Path(store_path).with_suffix(f".{fmt}"))
    try:
        with SQLiteStore(store_path, create=False, readonly=True) as store:
            path = store.export(out, fmt)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    except ImportError as exc:
        _fail(f"parquet export needs pyarrow ({exc}); pip install pyarrow or use --format csv", debug)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("store_path", type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(["phase", "l1-gap"]), required=True, help="what to plot")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG path (default: next to the store)")
@click.option("--debug", is_flag=True)
def plot(store_path, kind, out, debug):
    """Plot the trials of a store (phase diagrams, or l1 gap vs alpha of sparse trials)."""
    from pathlib import Path

    from .plots import plot_store

    out = out or str(Path(store_path).with_name(f"{Path(store_path).stem}_{kind}.png"))
    try:
        path = plot_store(store_path, kind, out)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--quick/--full", default=True, show_default=True, help="small grids (minutes) or paper-scale grids")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reproduce-out", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="run the phase-diagram sweeps on a Dask LocalCluster with this many workers")
@click.option("--scheduler", type=SCHEDULER, default=None, metavar="tcp://HOST:PORT", help="use an existing Dask cluster")
@click.option("--debug", is_flag=True)
def reproduce(quick, out_dir, workers, scheduler, debug):
    """Reproduce the talk's numerics (every report section, SPEC A-C) into OUT: PNGs, summary, report.html.

    The phase-diagram sweeps go through OUT/store.sqlite; rerunning resumes from it.
    """
    from .reproduce import reproduce_all

    try:
        paths = reproduce_all(out_dir, quick=quick, echo=click.echo, workers=workers, scheduler=scheduler)
    except ImplicitBiasError as exc:
        _fail(str(exc), debug)
    for path in paths:
        click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
