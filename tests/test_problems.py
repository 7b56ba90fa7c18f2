import numpy as np
import pytest

from implicit_bias.errors import InvalidProblemError
from implicit_bias.problems import SparseRecovery, gaussian_sparse, load_problem


def test_gaussian_sparse_is_seeded_sparse_and_consistent():
    p = gaussian_sparse(50, 20, 3, signed=True, seed=7)
    q = gaussian_sparse(50, 20, 3, signed=True, seed=7)
    assert np.array_equal(p.A, q.A) and np.array_equal(p.y, q.y)
    assert p.A.shape == (20, 50) and np.count_nonzero(p.x_true) == 3
    # noiseless: y = A x_true to rounding
    assert np.linalg.norm(p.A @ p.x_true - p.y) <= 1e-13 * np.linalg.norm(p.y)
    positive = gaussian_sparse(50, 20, 3, signed=False, seed=1)
    assert np.all(positive.x_true >= 0)


def test_noise_enters_measurements():
    p = gaussian_sparse(50, 20, 3, noise=0.5, seed=2)
    assert np.linalg.norm(p.A @ p.x_true - p.y) > 0.1


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(n=10, m=5, s=6), "s=6 exceeds"),
        (dict(n=10, m=10, s=2), "m < n"),
        (dict(n=10, m=5, s=0), "positive integer"),
        (dict(n=10, m=5, s=2, noise=-1.0), "noise"),
    ],
)
def test_generator_rejects_bad_settings(kwargs, fragment):
    with pytest.raises(InvalidProblemError, match=fragment):
        gaussian_sparse(**kwargs)


def test_problem_validation_messages():
    A = np.ones((3, 5))
    with pytest.raises(InvalidProblemError, match="3 rows but y has 4"):
        SparseRecovery(A, np.ones(4))
    bad = A.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidProblemError, match="NaN/inf"):
        SparseRecovery(bad, np.ones(3))
    with pytest.raises(InvalidProblemError, match="2-d"):
        SparseRecovery(np.ones(5), np.ones(3))
    with pytest.raises(InvalidProblemError, match="x_true has 4"):
        SparseRecovery(A, np.ones(3), np.ones(4))


def test_npz_round_trip_and_missing_arrays(tmp_path):
    p = gaussian_sparse(30, 10, 2, seed=3)
    path = tmp_path / "p.npz"
    p.save(path)
    q = load_problem(path)
    assert np.array_equal(p.A, q.A) and np.array_equal(p.x_true, q.x_true)
    np.savez(tmp_path / "bad.npz", A=p.A)
    with pytest.raises(InvalidProblemError, match="missing array"):
        load_problem(tmp_path / "bad.npz")


def test_gradient_matches_finite_differences():
    p = gaussian_sparse(20, 8, 2, seed=4)
    x = np.random.default_rng(0).standard_normal(20)
    h = 1e-6
    fd = np.array([(p.loss(x + h * e) - p.loss(x - h * e)) / (2 * h) for e in np.eye(20)])
    # central differences of a quadratic are exact up to rounding ~ eps * loss / h
    assert np.allclose(fd, p.gradient(x), atol=1e-7)
