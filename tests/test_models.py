import numpy as np
import pytest

from implicit_bias.errors import InvalidParameterError, UnsupportedError
from implicit_bias.models import Hadamard, Init
from implicit_bias.models.hadamard import factor_gradient, leave_one_out_products, product
from implicit_bias.problems import gaussian_sparse


def loss_of_factors(problem, model, factors):
    return problem.loss(model.x_from_z(product(factors)))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("signed", [False, True])
def test_factor_gradient_matches_finite_differences(depth, signed):
    """SPEC (A.2) for non-identical factors, against central differences of the loss."""
    problem = gaussian_sparse(12, 5, 2, signed=signed, seed=depth)
    model = Hadamard(depth, signed)
    rng = np.random.default_rng(10 + depth)
    factors = rng.uniform(0.5, 1.5, size=(depth, model.lifted_width(12)))
    B = model.lift(problem.A)
    g = B.rmatvec(B.matvec(product(factors)) - problem.y)
    analytic = factor_gradient(factors, g)
    h = 1e-6
    fd = np.zeros_like(factors)
    for index in np.ndindex(factors.shape):
        e = np.zeros_like(factors)
        e[index] = h
        fd[index] = (loss_of_factors(problem, model, factors + e) - loss_of_factors(problem, model, factors - e)) / (2 * h)
    # central differences: truncation O(h^2) ~ 1e-12 times third derivatives, rounding ~ 1e-10
    # (observed <= 2.3e-10 over the 8 cases; issue 16: was 1e-6)
    assert np.max(np.abs(fd - analytic)) <= 1e-8 * max(1.0, np.max(np.abs(analytic)))


def test_leave_one_out_products_without_division():
    factors = np.array([[1.0, 0.0, 2.0], [3.0, 4.0, 0.0], [5.0, 6.0, 7.0]])
    expected = np.array([[np.prod(np.delete(factors[:, j], k)) for j in range(3)] for k in range(3)])
    assert np.array_equal(leave_one_out_products(factors), expected)


def test_lifted_operator_dot_test_and_gram():
    problem = gaussian_sparse(15, 6, 2, seed=5)
    rng = np.random.default_rng(1)
    for signed in (False, True):
        B = Hadamard(2, signed).lift(problem.A)
        z, r = rng.standard_normal(B.width), rng.standard_normal(B.m)
        assert abs(B.matvec(z) @ r - z @ B.rmatvec(r)) <= 1e-12 * np.linalg.norm(z) * np.linalg.norm(r) * 10
        d = rng.uniform(0, 2, B.width)
        dense = B.dense()
        assert np.allclose(B.weighted_gram(d), dense @ np.diag(d) @ dense.T, rtol=1e-13, atol=1e-13)


def test_initialisations():
    model = Hadamard(3, signed=True)
    assert np.allclose(model.initial_product(Init.uniform(0.1), 4), 1e-3)
    x0 = np.arange(1.0, 5.0)
    z0 = model.initial_product(Init.general(x0), 4)
    assert np.allclose(z0, np.concatenate([x0, x0]))
    explicit = np.random.default_rng(0).uniform(0.1, 1, size=(3, 8))
    assert not model.identical(model.initial_factors(Init.explicit(explicit), 4))


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: Init.uniform(0.0), "alpha"),
        (lambda: Init.uniform(-1.0), "alpha"),
        (lambda: Hadamard(0), "depth"),
        (lambda: Hadamard(2).initial_factors(Init.general(np.array([1.0, -1.0])), 2), "strictly positive"),
        (lambda: Hadamard(2).initial_factors(Init.general(np.ones(3)), 2), "2 entries"),
        (lambda: Hadamard(2).initial_factors(Init.explicit(np.ones((3, 2))), 2), "shape"),
    ],
)
def test_bad_models_and_inits_raise(make, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        make()


def test_invariants_of_identical_signed_factors():
    """(A.8): u v for N = 2 and u^(2-N) + v^(2-N) for N > 2."""
    factors = np.tile(np.array([0.5, 2.0, 3.0, 0.25]), (3, 1))
    inv = Hadamard(3, signed=True).invariants(factors)
    assert np.allclose(inv["uv_A8"], [0.5 ** -1 + 3.0 ** -1, 2.0 ** -1 + 0.25 ** -1])
    assert np.allclose(inv["balancedness_A3"], 0)


def test_predict_rejects_non_identical_factors():
    from implicit_bias.limits import predict_limit

    problem = gaussian_sparse(6, 3, 1, seed=0)
    factors = np.array([[1.0] * 6, [0.5] * 6])
    with pytest.raises(UnsupportedError, match="identical factors"):
        predict_limit(problem, Hadamard(2), Init.explicit(factors))
