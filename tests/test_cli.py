import json

import numpy as np
import pytest
from click.testing import CliRunner

from implicit_bias.cli import main

REQUIRED = {"status", "residual", "l1_norm", "l1_min", "l1_gap", "epsilon_bound", "bound_holds", "dist_l1_min",
            "dist_predicted", "error_true", "grad_evals", "wall_s", "x"}


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("method", ["flow", "limit", "gd"])
def test_run_sparse_json_contract(method):
    result = invoke("run", "sparse", "--n", "60", "--m", "24", "--s", "2", "--depth", "2", "--alpha", "0.05",
                    "--method", method, "--max-evals", "20000", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert REQUIRED <= set(record)
    assert len(record["x"]) == 60
    # the reported l1 gap is consistent with the reported norms, and Q is the true LP optimum
    assert np.isclose(record["l1_gap"], (record["l1_norm"] - record["l1_min"]) / record["l1_min"])
    # flow and the exact limit must meet the default tol 1e-8; GD within 20000 evaluations may not,
    # and then its status must say so (the bound is checked only on a converged x)
    if method != "gd":
        assert record["status"] == "converged", record["message"]
    assert record["status"] in ("converged", "budget_exhausted"), record["message"]
    if record["status"] == "converged":
        assert record["residual"] <= 1e-8
        assert record["bound_holds"] is True
    else:
        assert record["residual"] > 1e-8


def test_run_sparse_table_is_readable():
    result = invoke("run", "sparse", "--n", "40", "--m", "16", "--s", "2", "--depth", "3", "--alpha", "0.1")
    assert result.exit_code == 0, result.output
    assert "l1_gap" in result.output and "epsilon_bound" in result.output


def test_bad_input_exits_2_with_one_line():
    result = invoke("run", "sparse", "--n", "40", "--m", "16", "--s", "20")
    assert result.exit_code == 2
    assert "exceeds the number of measurements" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_infeasible_positive_problem_suggests_signed(tmp_path):
    path = tmp_path / "neg.npz"
    np.savez(path, A=np.array([[1.0, 1.0, 2.0], [0.0, 1.0, 1.0]]), y=np.array([-1.0, -2.0]))
    result = invoke("run", "sparse", "--problem", str(path), "--depth", "2")
    assert result.exit_code == 2
    assert "--signed" in result.stderr
    signed = invoke("run", "sparse", "--problem", str(path), "--depth", "2", "--signed", "--json")
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["error_true"] is None


def test_nan_problem_file_is_rejected(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, A=np.array([[1.0, np.nan]]), y=np.array([1.0]))
    result = invoke("run", "sparse", "--problem", str(path))
    assert result.exit_code == 2 and "NaN/inf" in result.stderr


def test_negative_alpha_is_rejected():
    result = invoke("predict", "--n", "30", "--m", "10", "--s", "2", "--alpha", "-1")
    assert result.exit_code == 2 and "alpha" in result.stderr


def test_diverging_gd_exits_0_with_status():
    result = invoke("run", "sparse", "--n", "40", "--m", "16", "--s", "2", "--method", "gd", "--step", "100", "--json")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["status"] == "diverged" and record["suggested_step"] < 100


def test_bound_command_matches_formula():
    result = invoke("bound", "--depth", "3", "--beta1", "1e-4", "--beta-min", "1e-6", "--Q", "5", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    p = 1 - 2 / 3
    expected = 1.5 * (1e-4 ** p - 1e-6 ** p) / (5 ** p - 1e-4 ** p)  # SPEC (A.15), N > 2
    assert np.isclose(record["epsilon"], expected, rtol=1e-12)


def test_predict_json_has_kkt():
    result = invoke("predict", "--n", "50", "--m", "20", "--s", "2", "--depth", "3", "--alpha", "1e-4", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "converged" and record["kkt"] < 1e-10 and len(record["x"]) == 50
