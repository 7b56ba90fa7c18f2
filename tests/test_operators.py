"""Measurement operators on matrices (SPEC C.13): adjoints by the dot test, laws, typed errors."""

import numpy as np
import pytest

from implicit_bias.errors import InvalidParameterError, InvalidProblemError
from implicit_bias.operators import EntryMask, GaussianSensing, dot_test

# A correct adjoint gives a rounding-sized mismatch: the two inner products are sums of
# d_y*d_x*m products of O(1) numbers, so |lhs - rhs| / (||AW|| ||r||) is a few 1e-16 (observed
# <= 1e-16). 1e-12 leaves four orders of margin and still flags any real error (O(1)).
DOT_TOL = 1e-12


@pytest.mark.parametrize("shape, m", [((5, 7), 20), ((4, 4), 3), ((1, 9), 30), ((20, 20), 160)])
@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_dot_test(shape, m, seed):
    assert dot_test(GaussianSensing(shape, m, seed), seed + 10) < DOT_TOL


@pytest.mark.parametrize(
    "op",
    [
        EntryMask.uniform((5, 7), 12, seed=0),
        EntryMask.uniform((3, 3), 9, seed=1),
        EntryMask.bernoulli((6, 4), 0.4, seed=2),
        EntryMask.bernoulli((2, 3), 1.0, seed=3),
        EntryMask((3, 4), ([2, 0], [1, 3])),
    ],
)
def test_entry_mask_dot_test(op):
    assert dot_test(op, 5) < DOT_TOL


def test_dot_test_flags_a_wrong_adjoint():
    class Transposed(GaussianSensing):
        def adjoint(self, r):  # wrong on purpose: misses the reshape order
            return (np.asarray(r) @ self._flat).reshape(self.shape[::-1]).T

    assert dot_test(Transposed((4, 5), 8, 0), 1) > 1e-2


def test_gaussian_apply_and_adjoint_match_the_explicit_sums():
    op = GaussianSensing((4, 5), 9, seed=3)
    rng = np.random.default_rng(0)
    W, r = rng.standard_normal((4, 5)), rng.standard_normal(9)
    A = op.matrices
    explicit_apply = np.array([np.sum(A[l] * W) for l in range(9)])
    explicit_adjoint = sum(r[l] * A[l] for l in range(9))
    # both sides are the same 20- or 9-term sums in different order: rounding only
    np.testing.assert_allclose(op.apply(W), explicit_apply, rtol=0, atol=1e-13)
    np.testing.assert_allclose(op.adjoint(r), explicit_adjoint, rtol=0, atol=1e-13)
    assert op.apply(W).shape == (9,) and op.adjoint(r).shape == (4, 5)


def test_gaussian_entries_have_variance_one_over_m_and_are_seeded():
    m = 200
    op = GaussianSensing((5, 7), m, seed=4)
    # 7000 i.i.d. N(0, 1/m) draws: m * sample variance has std sqrt(2/7000) ~ 0.017; 0.1 is ~6 sigma
    assert abs(m * op.matrices.var() - 1.0) < 0.1
    assert abs(op.matrices.mean()) * np.sqrt(m) < 0.1
    np.testing.assert_array_equal(op.matrices, GaussianSensing((5, 7), m, seed=4).matrices)
    assert not np.array_equal(op.matrices, GaussianSensing((5, 7), m, seed=5).matrices)
    with pytest.raises(ValueError):
        op.matrices[0, 0, 0] = 1.0  # the view is read-only


def test_entry_mask_uniform_draws_distinct_entries_and_zero_fills():
    op = EntryMask.uniform((6, 5), 17, seed=7)
    rows, cols = op.index
    assert op.m == 17 and op.mask.sum() == 17
    assert len(set(zip(rows.tolist(), cols.tolist()))) == 17
    W = np.random.default_rng(1).standard_normal((6, 5))
    np.testing.assert_array_equal(op.apply(W), W[op.mask])  # row-major order
    np.testing.assert_array_equal(op.adjoint(op.apply(W)), np.where(op.mask, W, 0.0))
    np.testing.assert_array_equal(op.index[0], EntryMask.uniform((6, 5), 17, seed=7).index[0])
    assert EntryMask.uniform((6, 5), 30, seed=0).mask.all()


def test_entry_mask_bernoulli_rate():
    op = EntryMask.bernoulli((100, 100), 0.3, seed=0)
    # 10^4 Bernoulli(0.3) draws: the observed fraction has std 0.0046; 0.03 is ~6 sigma
    assert abs(op.m / 1e4 - 0.3) < 0.03
    assert EntryMask.bernoulli((3, 4), 1.0, seed=0).m == 12


@pytest.mark.parametrize("shape", [(0, 3), (3,), (-1, 2), (2.0, 3), "ab", None, (True, 2)])
def test_bad_shapes_raise(shape):
    for make in (
        lambda: GaussianSensing(shape, 3),
        lambda: EntryMask.uniform(shape, 1),
        lambda: EntryMask.bernoulli(shape, 0.5),
    ):
        with pytest.raises(InvalidParameterError, match="The 'shape' parameter must be"):
            make()


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan"), "0.5"])
def test_bernoulli_p_outside_unit_interval_raises(p):
    with pytest.raises(InvalidParameterError, match=r"The 'p' parameter must be a float in the range \(0, 1\]"):
        EntryMask.bernoulli((4, 4), p)


def test_count_and_m_errors():
    with pytest.raises(InvalidParameterError, match="The 'count' parameter must be <= .* = 12. Got 13"):
        EntryMask.uniform((3, 4), 13)
    with pytest.raises(InvalidParameterError, match="The 'count' parameter must be an int >= 1"):
        EntryMask.uniform((3, 4), 0)
    with pytest.raises(InvalidParameterError, match="The 'm' parameter must be an int >= 1"):
        GaussianSensing((3, 4), 0)
    with pytest.raises(InvalidProblemError, match="observed no entry"):
        EntryMask.bernoulli((2, 2), 1e-9, seed=0)


@pytest.mark.parametrize(
    "index, message",
    [
        (([0, 0], [1, 1]), "twice"),
        (([0, 3], [1, 1]), "outside"),
        (([0], [-1]), "outside"),
        (([], []), "empty"),
        (([0, 1], [1]), "equal length"),
        (([0.5], [1]), "ints"),
    ],
)
def test_bad_index_raises(index, message):
    with pytest.raises(InvalidProblemError, match=message):
        EntryMask((3, 3), index)


@pytest.mark.parametrize("op", [GaussianSensing((3, 4), 5, 0), EntryMask.uniform((3, 4), 5, 0)])
def test_wrong_input_shapes_raise(op):
    with pytest.raises(InvalidProblemError, match=r"W must have shape \(3, 4\)"):
        op.apply(np.zeros((4, 3)))
    with pytest.raises(InvalidProblemError, match="2-d array"):
        op.apply(np.zeros(12))
    with pytest.raises(InvalidProblemError, match=r"r must have shape \(5,\)"):
        op.adjoint(np.zeros(4))
    with pytest.raises(InvalidProblemError, match="NaN"):
        op.apply(np.full((3, 4), np.nan))
    assert issubclass(InvalidProblemError, ValueError) and issubclass(InvalidParameterError, ValueError)
