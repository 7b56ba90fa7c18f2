"""Matrix-free measurement operators (issue 12, part 4): the DCT operator, sparse matrices, the PCG oracle and flow.

Every matrix-free result is checked against an independent dense computation: scipy's DCT and an
explicit matrix for the operator, numpy's dense solve for PCG, and the dense Cholesky oracle and
dense Rosenbrock flow on the same problem written out as an array.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.fft
import scipy.sparse
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.dynamics import GradientDescent, GradientFlow, Stop, simulate
from implicit_bias.errors import InvalidProblemError, UnsupportedError
from implicit_bias.krylov import GramPCG
from implicit_bias.limits import predict_limit
from implicit_bias.models import Hadamard, Init
from implicit_bias.problems import SparseRecovery
from implicit_bias.sensing import (
    DCTSensing,
    column_norms,
    columns,
    dct_sparse,
    dot_test,
    operator_norm_squared,
    row_norms,
)

EPS = np.finfo(float).eps


def dense_copy(problem: SparseRecovery) -> SparseRecovery:
    A = problem.A.toarray()
    return SparseRecovery(A, problem.y, problem.x_true)


# ----------------------------------------------------------------------------- the DCT operator


@pytest.mark.parametrize("n, m, seed", [(8, 3, 0), (37, 10, 1), (64, 63, 2), (300, 75, 3)])
def test_dct_operator_is_scaled_rows_of_scipy_orthonormal_dct(n, m, seed):
    A = DCTSensing(n, m, seed=seed)
    C = scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)  # the orthonormal DCT-II matrix, column by column
    dense = A.toarray()
    # entries are cosines of size sqrt(2/m): a few ulps each
    np.testing.assert_allclose(dense, np.sqrt(n / m) * C[A.rows], rtol=0, atol=1e-14)
    np.testing.assert_allclose(dense @ dense.T, (n / m) * np.eye(m), rtol=0, atol=1e-12)  # orthonormal rows, scaled
    rng = np.random.default_rng(seed)
    x, r, X = rng.standard_normal(n), rng.standard_normal(m), rng.standard_normal((n, 3))
    np.testing.assert_allclose(A @ x, dense @ x, rtol=0, atol=1e-12 * np.linalg.norm(x))
    np.testing.assert_allclose(A.T @ r, dense.T @ r, rtol=0, atol=1e-12 * np.linalg.norm(r))
    np.testing.assert_allclose(A @ X, dense @ X, rtol=0, atol=1e-12 * np.linalg.norm(X))
    np.testing.assert_allclose(column_norms(A), np.sum(dense**2, axis=0), rtol=0, atol=1e-13)
    np.testing.assert_allclose(row_norms(A), np.sum(dense**2, axis=1), rtol=0, atol=1e-12)
    index = rng.choice(n, size=min(n, 5), replace=False)
    np.testing.assert_allclose(columns(A, index), dense[:, index], rtol=0, atol=1e-14)
    assert operator_norm_squared(A) == pytest.approx(np.linalg.norm(dense, 2) ** 2, rel=1e-12)


@pytest.mark.parametrize("n, m", [(100, 30), (1001, 250), (4096, 1024)])
def test_dct_adjoint_passes_the_dot_test(n, m):
    # <Ax, r> and <x, A^T r> are sums of O(n) rounded terms: the mismatch is a few hundred eps at most
    assert dot_test(DCTSensing(n, m, seed=5), seed=6) < 100 * EPS * np.sqrt(n)


def test_dct_operator_refuses_wrong_shapes():
    A = DCTSensing(50, 10, seed=0)
    for bad in (lambda: A @ np.ones(49), lambda: A.T @ np.ones(11), lambda: DCTSensing(10, 10)):
        with pytest.raises(InvalidProblemError):
            bad()


def test_dct_rows_are_seeded_and_independent_of_the_signal():
    assert np.array_equal(DCTSensing(500, 100, seed=3).rows, DCTSensing(500, 100, seed=3).rows)
    assert 0 not in DCTSensing(50, 49, seed=1).rows  # never the constant row
    assert not np.array_equal(DCTSensing(500, 100, seed=3).rows, DCTSensing(500, 100, seed=4).rows)
    problem = dct_sparse(500, 100, 10, seed=3)
    support = np.flatnonzero(problem.x_true)
    # the rows and the support come from different streams: they are not the same draws
    assert not np.array_equal(np.sort(support), problem.A.rows[:10])
    np.testing.assert_allclose(problem.A @ problem.x_true, problem.y, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- PCG


def test_pcg_solves_the_weighted_system_like_a_dense_solve():
    rng = np.random.default_rng(0)
    A = DCTSensing(400, 100, seed=1)
    dense = A.toarray()
    w = 10.0 ** rng.uniform(-12, 0, size=400)  # weights over twelve orders, as in a sparse limit
    r = rng.standard_normal(100)
    for sigma in (0.0, 1e-3):
        H = sigma * np.eye(100) + (dense * w) @ dense.T
        pcg = GramPCG(A)
        pcg.prepare(w, sigma)
        d, Atd, converged = pcg.solve(r, 1e-13, max_iter=2000)
        assert converged
        exact = np.linalg.solve(H, r)
        # the residual is 1e-13 relative; cond(H) <= 1e12 bounds the error of d by about 1e-1 in the worst
        # direction, but the error along the data r is far smaller: compare residuals, then A^T d
        assert np.linalg.norm(H @ d - r) <= 1e-10 * np.linalg.norm(r)
        np.testing.assert_allclose(Atd, dense.T @ d, rtol=0, atol=1e-9 * np.linalg.norm(dense.T @ exact))


# ----------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("depth, alpha", [(2, 1e-2), (2, 1e-8), (3, 1e-4), (4, 1e-8)])
@pytest.mark.parametrize("signed", [False, True])
def test_pcg_oracle_equals_dense_cholesky_oracle(depth, alpha, signed):
    problem = dct_sparse(300, 75, 7, signed=signed, seed=depth)
    free = predict_limit(problem, Hadamard(depth, signed), Init.uniform(alpha))
    dense = predict_limit(dense_copy(problem), Hadamard(depth, signed), Init.uniform(alpha))
    assert free.status == dense.status == "converged"
    # both satisfy residual <= 1e-12 (polish) and KKT <= 1e-8 for the same strictly convex problem; measured
    # differences are <= 7e-13 (n = 400, 18 cases): 1e-10 leaves a margin of 100
    assert np.linalg.norm(free.x - dense.x) <= 1e-10 * np.linalg.norm(dense.x)
    assert "Newton" in free.message


def test_linear_model_limit_matrix_free_equals_dense():
    problem = dct_sparse(200, 50, 5, seed=1)
    free = predict_limit(problem, Hadamard(1), Init.uniform(0.1))
    dense = predict_limit(dense_copy(problem), Hadamard(1), Init.uniform(0.1))
    # CG to 1e-13 on B B^T = (n/m) I (one iteration in exact arithmetic) against least squares
    assert np.linalg.norm(free.x - dense.x) <= 1e-10 * np.linalg.norm(dense.x)


def sparse_problem_and_matrix(seed: int = 11):
    rng = np.random.default_rng(seed)
    A = scipy.sparse.random(60, 240, density=0.15, random_state=rng, data_rvs=rng.standard_normal, format="csr")
    x_true = np.zeros(240)
    x_true[rng.choice(240, 6, replace=False)] = 1.0 + rng.random(6)
    return SparseRecovery(A, A @ x_true, x_true), A


@pytest.mark.parametrize("signed", [False, True])
def test_sparse_matrix_gives_the_limit_of_its_dense_copy(signed):
    problem, A = sparse_problem_and_matrix()
    x_true = problem.x_true
    assert scipy.sparse.issparse(problem.A)
    for depth, alpha in ((2, 1e-3), (3, 1e-6)):
        free = predict_limit(problem, Hadamard(depth, signed), Init.uniform(alpha))
        dense = predict_limit(SparseRecovery(A.toarray(), problem.y, x_true), Hadamard(depth, signed), Init.uniform(alpha))
        assert free.status == dense.status == "converged"
        assert np.linalg.norm(free.x - dense.x) <= 1e-10 * np.linalg.norm(dense.x)  # as for the DCT above


# ----------------------------------------------------------------------------- the flow


@pytest.mark.parametrize("depth, alpha", [(2, 1e-3), (3, 1e-2)])
def test_matrix_free_flow_agrees_with_dense_flow(depth, alpha):
    problem = dct_sparse(200, 50, 5, seed=2)
    stop = Stop(tol=1e-8)
    free = simulate(problem, Hadamard(depth), GradientFlow(), init=alpha, stop=stop)
    dense = simulate(dense_copy(problem), Hadamard(depth), GradientFlow(), init=alpha, stop=stop)
    assert free.status == dense.status == "converged"
    # the stage solves are exact to 1e-9 relative (CG_TOL * rtol): the two runs take the same steps, and
    # their end points agree far below the integrator's rtol = 1e-6 (measured <= 6e-10 at n = 400)
    assert np.linalg.norm(free.x - dense.x) <= 1e-7 * np.linalg.norm(dense.x)
    limit = predict_limit(problem, Hadamard(depth), Init.uniform(alpha))
    assert np.linalg.norm(free.x - limit.x) <= 1e-6 * np.linalg.norm(limit.x)  # residual 1e-8 from the limit
    assert free.path is None or np.all(np.isfinite(free.path.residual))


def test_sparse_matrix_flow_agrees_with_dense_flow():
    problem, A = sparse_problem_and_matrix()
    free = simulate(problem, Hadamard(2, True), GradientFlow(), init=1e-2, stop=Stop(tol=1e-8))
    dense = simulate(SparseRecovery(A.toarray(), problem.y), Hadamard(2, True), GradientFlow(), init=1e-2, stop=Stop(tol=1e-8))
    assert free.status == dense.status == "converged"
    assert np.linalg.norm(free.x - dense.x) <= 1e-7 * np.linalg.norm(dense.x)  # as for the DCT flow (measured 1e-13)


def test_matrix_free_flow_fails_honestly_where_it_would_need_the_rotated_block():
    # N = 3 from alpha = 1e-8: on the plateaus h |r| grows until b_i^T Δλ carries rounding above 1e-2 rtol in
    # log z; the dense stepper rotates λ-space, the matrix-free one has no such block and must say so
    problem = dct_sparse(200, 50, 5, seed=2)
    result = simulate(problem, Hadamard(3), GradientFlow(), init=1e-8, stop=Stop(tol=1e-8))
    assert result.status == "failed" and "use a dense A" in result.message


def test_operator_refuses_dense_only_paths_with_typed_errors(tmp_path):
    problem = dct_sparse(100, 25, 3, seed=0)
    with pytest.raises(UnsupportedError, match="GradientFlow"):
        simulate(problem, Hadamard(2), GradientDescent(step=0.1), init=0.1)
    with pytest.raises(UnsupportedError, match="dense"):
        problem.save(tmp_path / "p.npz")


def test_flow_saves_a_path_with_an_operator():
    problem = dct_sparse(100, 25, 3, seed=0)
    result = simulate(problem, Hadamard(2), GradientFlow(), init=0.1, stop=Stop(tol=1e-6), save_at=[0.0, 1.0, 10.0])
    dense = problem.A.toarray()
    expected = np.linalg.norm(result.path.x @ dense.T - problem.y, axis=1) / np.linalg.norm(problem.y)
    np.testing.assert_allclose(result.path.residual, expected, rtol=1e-10)


# ----------------------------------------------------------------------------- CLI


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_predict_and_run_with_dct_operator():
    result = invoke("predict", "--operator", "dct", "--n", 400, "--m", 100, "--s", 8, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "converged" and len(record["x"]) == 400
    problem = dct_sparse(400, 100, 8, seed=0)
    reference = predict_limit(dense_copy(problem), Hadamard(2), Init.uniform(1e-3))
    assert np.linalg.norm(np.array(record["x"]) - reference.x) <= 1e-10 * np.linalg.norm(reference.x)
    result = invoke("run", "sparse", "--operator", "dct", "--n", 200, "--m", 50, "--s", 5, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "converged" and record["operator"] == "dct"
    assert record["dist_predicted"] < 1e-6 and record["l1_min"] is None


@pytest.mark.parametrize("args", [
    ["predict", "--operator", "fourier"],
    ["run", "sparse", "--operator", "DCT2"],
    ["run", "sparse", "--operator", "dct", "--method", "gd"],
    ["run", "sparse", "--operator", "dct", "--weight-norm"],
])
def test_cli_bad_operator_use_exits_2(args):
    result = invoke(*args)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if lines[0].startswith("Usage:"):  # click's usage error names the option
        assert "--operator" in lines[-1] and len(lines) == 3
    else:
        assert len(lines) == 1 and lines[0].startswith("implicit-bias: error: ")


# ----------------------------------------------------------------------------- scale


@pytest.mark.slow
def test_dct_oracle_and_flow_at_n_5000():
    problem = dct_sparse(5000, 1250, 125, seed=0)
    limit = predict_limit(problem, Hadamard(2), Init.uniform(1e-3))
    assert limit.status == "converged" and limit.residual <= 1e-10
    flow = simulate(problem, Hadamard(2), GradientFlow(), init=1e-3, stop=Stop(tol=1e-8))
    assert flow.status == "converged"
    assert np.linalg.norm(flow.x - limit.x) <= 1e-6 * np.linalg.norm(limit.x)
