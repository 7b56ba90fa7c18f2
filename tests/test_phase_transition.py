import numpy as np
import pytest
from scipy.stats import norm

from implicit_bias.errors import InvalidParameterError
from implicit_bias.theory import donoho_tanner_rho


@pytest.mark.parametrize("signed, kappa", [(True, 2.0), (False, 1.0)])
@pytest.mark.parametrize("z", [0.3, 0.6, 1.0, 1.5, 2.5])
def test_rho_matches_the_parametric_form(signed, kappa, z):
    """Independent check: the curve is (delta(z), rho(z)) with delta = k phi/(z + k(phi - z Phi(-z))),
    rho = 1 - z Phi(-z)/phi (the stationarity condition of the max formula, solved in closed form)."""
    phi, tail = norm.pdf(z), norm.cdf(-z)
    delta = kappa * phi / (z + kappa * (phi - z * tail))
    rho = 1 - z * tail / phi
    # the bounded scalar maximisation is run to xatol 1e-12; the objective is flat at its max
    assert np.isclose(donoho_tanner_rho(delta, signed), rho, rtol=1e-9)


def test_rho_is_monotone_and_nonnegative_is_easier():
    deltas = np.linspace(0.05, 0.95, 19)
    signed = np.array([donoho_tanner_rho(d, True) for d in deltas])
    positive = np.array([donoho_tanner_rho(d, False) for d in deltas])
    assert np.all(np.diff(signed) > 0) and np.all(positive > signed)
    assert np.isclose(donoho_tanner_rho(0.5, False), 0.558, atol=1e-3)  # Donoho-Tanner's simplex value


def test_rho_rejects_delta_outside_unit_interval():
    with pytest.raises(InvalidParameterError, match="delta"):
        donoho_tanner_rho(1.5)
