"""Matrix recovery problems (SPEC C.2, C.13): generators, validation, .npz round trips, DenseSensing.

Independent references: numpy's SVD for rank and spectrum, explicit sums over the sensing
matrices, chi-square / binomial concentration for the random scalings, central differences for
the gradient. Every random draw is seeded.
"""

import numpy as np
import pytest

from implicit_bias.errors import InvalidParameterError, InvalidProblemError
from implicit_bias.operators import DenseSensing, EntryMask, GaussianSensing, dot_test
from implicit_bias.problems import (
    MatrixRecovery,
    load_matrix_problem,
    low_rank_matrix,
    matrix_completion,
    matrix_sensing,
)

# Singular values of a product of orthonormal factors and a diagonal: SVD recovers them to a few
# ulps of sigma_1, so 1e-12 relative is a safe bound for "exact" (observed ~1e-15).
SVD_RTOL = 1e-12


# ----------------------------------------------------------------------------- low_rank_matrix


@pytest.mark.parametrize("n1, n2, rank", [(20, 20, 2), (7, 12, 3), (9, 4, 4), (1, 5, 1)])
def test_low_rank_matrix_has_exact_rank_and_rms_one(n1, n2, rank):
    W = low_rank_matrix(n1, n2, rank, seed=3)
    s = np.linalg.svd(W, compute_uv=False)
    assert W.shape == (n1, n2)
    assert np.all(s[:rank] > 0.1 * s[0])
    assert np.all(s[rank:] <= SVD_RTOL * s[0])
    # condition = 1: all nonzero singular values equal, scaled so the entries have RMS 1
    assert np.allclose(s[:rank], s[0], rtol=SVD_RTOL)
    assert np.sqrt(np.mean(W**2)) == pytest.approx(1.0, rel=1e-12)


def test_low_rank_matrix_condition_gives_a_geometric_spectrum():
    s = np.linalg.svd(low_rank_matrix(15, 10, 4, condition=8.0, seed=1), compute_uv=False)[:4]
    # sigma_i / sigma_1 = condition^(-(i-1)/(rank-1)): 1, 1/2, 1/4, 1/8
    assert np.allclose(s / s[0], [1.0, 0.5, 0.25, 0.125], rtol=SVD_RTOL)
    assert np.linalg.norm(s) == pytest.approx(np.sqrt(150.0), rel=1e-12)


def test_low_rank_matrix_takes_a_given_spectrum_in_any_order():
    W = low_rank_matrix(6, 8, 3, spectrum=[0.5, 4.0, 2.0], seed=2)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.allclose(s[:3], [4.0, 2.0, 0.5], rtol=SVD_RTOL, atol=0)
    assert np.all(s[3:] <= SVD_RTOL * 4.0)


def test_low_rank_matrix_is_seeded():
    a, b = low_rank_matrix(8, 6, 2, seed=5), low_rank_matrix(8, 6, 2, seed=5)
    assert np.array_equal(a, b)
    assert not np.allclose(a, low_rank_matrix(8, 6, 2, seed=6))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n1=4, n2=3, rank=4), "rank"),
        (dict(n1=4, n2=3, rank=0), "rank"),
        (dict(n1=0, n2=3, rank=1), "n1"),
        (dict(n1=4, n2=2.5, rank=1), "n2"),
        (dict(n1=4, n2=3, rank=2, condition=0.5), "condition"),
        (dict(n1=4, n2=3, rank=2, condition=float("inf")), "condition"),
        (dict(n1=4, n2=3, rank=2, spectrum=[1.0]), "spectrum"),
        (dict(n1=4, n2=3, rank=2, spectrum=[1.0, -1.0]), "spectrum"),
    ],
)
def test_low_rank_matrix_rejects_bad_settings(kwargs, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        low_rank_matrix(**kwargs)


def test_rank_above_the_dimensions_is_explained():
    with pytest.raises(InvalidParameterError, match=r"<= min\(n1, n2\) = 3 .* Got 5"):
        matrix_sensing(3, 4, 5, 10)
    with pytest.raises(InvalidParameterError, match="rank"):
        matrix_completion(3, 4, 5, count=5)


# ----------------------------------------------------------------------------- sensing


def test_matrix_sensing_measures_w_true_with_the_seeded_operator():
    p = matrix_sensing(6, 5, 2, 25, seed=4)
    q = matrix_sensing(6, 5, 2, 25, seed=4)
    assert np.array_equal(p.y, q.y) and np.array_equal(p.W_true, q.W_true)
    assert isinstance(p.operator, GaussianSensing) and p.measurement == "gaussian"
    assert p.shape == (6, 5) and p.m == 25
    assert np.array_equal(p.W_true, low_rank_matrix(6, 5, 2, seed=4))
    # y_l = <A_l, W_true>_F, computed as an explicit sum over the stored matrices
    explicit = np.array([np.sum(A * p.W_true) for A in p.operator.matrices])
    assert np.allclose(p.y, explicit, rtol=0, atol=1e-12 * np.linalg.norm(p.y))
    assert p.residual(p.W_true) <= 1e-14 and p.loss(p.W_true) <= 1e-25 and p.relative_error(p.W_true) == 0.0


def test_gaussian_sensing_preserves_the_frobenius_norm_on_average():
    # (A_l)_ij ~ N(0, 1/m): each y_l ~ N(0, ||W||_F^2 / m), so ||y||^2 / ||W||_F^2 ~ chi2_m / m,
    # mean 1 and sd sqrt(2/m). Averaged over 20 seeds with m = 200 the sd is 0.0224: 5 sd = 0.11.
    ratios = [np.linalg.norm(p.y) ** 2 / np.linalg.norm(p.W_true) ** 2
              for p in (matrix_sensing(10, 10, 2, 200, seed=s) for s in range(20))]
    assert abs(np.mean(ratios) - 1.0) <= 0.11


def test_sensing_noise_is_relative_to_the_signal():
    # noise * ||A W|| / sqrt(m) * N(0, I_m): ||y - A W|| / ||A W|| ~ noise * sqrt(chi2_m / m),
    # i.e. 0.1 * (1 +- sqrt(1/(2m))) = 0.1 +- 0.005 for m = 200; 5 sd = 0.025.
    p = matrix_sensing(10, 10, 2, 200, noise=0.1, seed=1)
    clean = p.operator.apply(p.W_true)
    assert np.linalg.norm(p.y - clean) / np.linalg.norm(clean) == pytest.approx(0.1, abs=0.025)
    with pytest.raises(InvalidParameterError, match="noise"):
        matrix_sensing(4, 4, 1, 5, noise=-0.1)
    with pytest.raises(InvalidParameterError, match="'m'"):
        matrix_sensing(4, 4, 1, 0)


def test_gradient_matches_finite_differences():
    p = matrix_sensing(4, 3, 1, 7, seed=9)
    W = np.random.default_rng(0).standard_normal(p.shape)
    h = 1e-6
    basis = np.eye(12).reshape(12, 4, 3)
    fd = np.array([(p.loss(W + h * E) - p.loss(W - h * E)) / (2 * h) for E in basis]).reshape(4, 3)
    # central differences of a quadratic are exact up to rounding ~ eps * loss / h ~ 1e-9
    assert np.allclose(fd, p.gradient(W), atol=1e-7)


# ----------------------------------------------------------------------------- completion


def test_completion_by_count_observes_exactly_count_distinct_entries():
    p = matrix_completion(12, 9, 2, count=40, seed=3)
    assert isinstance(p.operator, EntryMask) and p.measurement == "completion"
    rows, cols = p.operator.index
    assert p.m == 40 and len(set(zip(rows.tolist(), cols.tolist()))) == 40
    assert np.array_equal(p.y, p.W_true[rows, cols])
    q = matrix_completion(12, 9, 2, count=40, seed=3)
    assert np.array_equal(q.operator.index[0], rows) and np.array_equal(q.operator.index[1], cols)
    full = matrix_completion(3, 4, 2, count=12, seed=0)  # every entry
    assert np.array_equal(full.operator.mask, np.ones((3, 4), bool))


def test_completion_by_probability_observes_a_binomial_count():
    # count ~ Binomial(n1 n2, p): 10000 * 0.3 = 3000 +- 45.8; 5 sd = 230
    p = matrix_completion(100, 100, 3, p=0.3, seed=2)
    assert abs(p.m - 3000) <= 230
    assert np.array_equal(p.y, p.W_true[p.operator.mask])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(count=13), r"'count' parameter must be <= the number of entries d_y\*d_x = 12"),
        (dict(count=0), "'count'"),
        (dict(), "exactly one of 'count'"),
        (dict(count=3, p=0.5), "exactly one of 'count'"),
        (dict(p=0.0), "'p'"),
        (dict(p=1.5), "'p'"),
    ],
)
def test_completion_rejects_bad_observation_settings(kwargs, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        matrix_completion(3, 4, 1, **kwargs)


# ----------------------------------------------------------------------------- validation


def test_matrix_recovery_validation_messages():
    op = GaussianSensing((3, 4), 5, seed=0)
    with pytest.raises(InvalidProblemError, match="y has 6 entries but the operator takes 5"):
        MatrixRecovery(op, np.ones(6))
    with pytest.raises(InvalidProblemError, match="NaN/inf"):
        MatrixRecovery(op, np.array([1.0, np.nan, 0.0, 0.0, 1.0]))
    with pytest.raises(InvalidProblemError, match="identically zero"):
        MatrixRecovery(op, np.zeros(5))
    with pytest.raises(InvalidProblemError, match=r"W_true has shape \(4, 3\)"):
        MatrixRecovery(op, np.ones(5), np.ones((4, 3)))
    with pytest.raises(InvalidProblemError, match="W_true contains 1 NaN"):
        MatrixRecovery(op, np.ones(5), np.array([[np.inf, 0, 0, 0], [0] * 4, [0] * 4]))
    with pytest.raises(InvalidProblemError, match="ndarray has no 'm'"):
        MatrixRecovery(np.ones((5, 12)), np.ones(5))
    assert MatrixRecovery(op, np.ones(5)).relative_error(np.zeros((3, 4))) is None


# ----------------------------------------------------------------------------- npz


@pytest.mark.parametrize(
    "problem",
    [matrix_sensing(5, 4, 2, 11, noise=0.05, seed=1), matrix_completion(6, 7, 2, count=20, seed=2),
     matrix_completion(6, 7, 2, p=0.5, seed=3)],
    ids=["sensing", "completion-count", "completion-p"],
)
def test_npz_round_trip_keeps_the_data_and_the_linear_map(problem, tmp_path):
    path = tmp_path / "problem.npz"
    problem.save(path)
    loaded = load_matrix_problem(path)
    assert loaded.measurement == problem.measurement and loaded.shape == problem.shape and loaded.m == problem.m
    assert np.array_equal(loaded.y, problem.y) and np.array_equal(loaded.W_true, problem.W_true)
    W = np.random.default_rng(0).standard_normal(problem.shape)
    r = np.random.default_rng(1).standard_normal(problem.m)
    assert np.array_equal(loaded.operator.apply(W), problem.operator.apply(W))
    assert np.allclose(loaded.operator.adjoint(r), problem.operator.adjoint(r), rtol=0, atol=1e-14)
    assert loaded.name == "problem.npz"


def test_npz_without_ground_truth_and_with_missing_arrays(tmp_path):
    p = MatrixRecovery(EntryMask((3, 3), ([0, 1], [2, 0])), np.array([1.0, -2.0]))
    p.save(tmp_path / "p.npz")
    assert load_matrix_problem(tmp_path / "p.npz").W_true is None
    np.savez(tmp_path / "partial.npz", rows=np.array([0]), y=np.array([1.0]))
    with pytest.raises(InvalidProblemError, match="needs 'y' and either 'matrices'"):
        load_matrix_problem(tmp_path / "partial.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidProblemError, match="cannot read problem file"):
        load_matrix_problem(tmp_path / "junk.npz")
    np.savez(tmp_path / "nan.npz", matrices=np.ones((2, 2, 2)), y=np.array([1.0, np.nan]))
    with pytest.raises(InvalidProblemError, match="NaN/inf"):
        load_matrix_problem(tmp_path / "nan.npz")
    np.savez(tmp_path / "outside.npz", rows=np.array([5]), cols=np.array([0]), shape=np.array([3, 3]), y=np.array([1.0]))
    with pytest.raises(InvalidProblemError, match="outside"):
        load_matrix_problem(tmp_path / "outside.npz")


# ----------------------------------------------------------------------------- DenseSensing


# A correct adjoint: |<AW, r> - <W, A* r>| / (||AW|| ||r||) is a few 1e-16; 1e-12 flags any real error.
DOT_TOL = 1e-12


@pytest.mark.parametrize("m, shape", [(1, (1, 1)), (7, (3, 5)), (30, (4, 4)), (5, (9, 2))])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_sensing_dot_test(m, shape, seed):
    matrices = np.random.default_rng(seed).standard_normal((m, *shape))
    assert dot_test(DenseSensing(matrices), seed + 20) < DOT_TOL


def test_dense_sensing_matches_explicit_sums_and_copies_its_input():
    rng = np.random.default_rng(4)
    matrices = rng.standard_normal((6, 3, 4))
    op = DenseSensing(matrices)
    W, r = rng.standard_normal((3, 4)), rng.standard_normal(6)
    assert np.allclose(op.apply(W), [np.sum(A * W) for A in matrices], rtol=0, atol=1e-13)
    assert np.allclose(op.adjoint(r), sum(ri * A for ri, A in zip(r, matrices)), rtol=0, atol=1e-13)
    matrices[0] = 0.0  # the operator keeps its own read-only copy
    assert np.any(op.matrices[0]) and not op.matrices.flags.writeable
    with pytest.raises(InvalidProblemError, match="shape"):
        op.apply(np.ones((4, 3)))
    with pytest.raises(InvalidProblemError, match="3-d"):
        DenseSensing(np.ones((3, 4)))
    with pytest.raises(InvalidProblemError, match="non-empty"):
        DenseSensing(np.ones((0, 3, 4)))
