"""`implicit-bias run matrix`: the JSON contract, the table, and the error conventions of `run sparse`.

Every run is tiny (6 x 6, rank 1); the reported numbers are recomputed here from the returned W
and an independently regenerated problem.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from implicit_bias.cli import main
from implicit_bias.errors import InvalidParameterError, UnsupportedError
from implicit_bias.matrix_theory import effective_rank
from implicit_bias.problems import MatrixRecovery, matrix_completion, matrix_sensing

REQUIRED = {
    "status": str, "relative_error": float, "effective_rank": float, "singular_values": list,
    "balancedness_defect": float, "nuclear_norm_error": float, "grad_evals": int, "wall_s": float,
    "residual": float, "method": str, "message": str, "depth": int, "alpha": float,
}
TINY = ["--n1", "6", "--n2", "6", "--rank", "1", "--m", "30", "--depth", "2", "--alpha", "0.3", "--seed", "1"]


def invoke(*args):
    return CliRunner().invoke(main, ["run", "matrix", *args])


def assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("method", ["flow", "gd", "sgd", "product"])
def test_json_contract(method):
    result = invoke(*TINY, "--method", method, "--batch", "10", "--max-evals", "3000", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)  # exactly one JSON object
    for key, kind in REQUIRED.items():
        assert isinstance(record[key], kind), (key, record[key])
    W = np.array(record["W"])
    problem = matrix_sensing(6, 6, 1, 30, seed=1)
    assert W.shape == (6, 6)
    # the reported numbers are those of the returned W (recomputed independently here)
    assert record["relative_error"] == pytest.approx(np.linalg.norm(W - problem.W_true) / np.linalg.norm(problem.W_true))
    assert record["residual"] == pytest.approx(problem.residual(W), rel=1e-9)
    assert np.allclose(record["singular_values"], np.linalg.svd(W, compute_uv=False), rtol=1e-10, atol=1e-14)
    assert record["effective_rank"] == pytest.approx(effective_rank(W), rel=1e-10)
    # m = 30 Gaussian measurements of a rank-1 6x6 matrix (11 degrees of freedom): nuclear norm
    # recovers W_true to the SCS tolerance (1e-8; 1e-6 leaves margin)
    assert record["nuclear_norm_error"] <= 1e-6
    assert record["depth"] == 2 and record["alpha"] == 0.3 and record["grad_evals"] >= 1
    # 3000 evaluations may end before the default --tol 1e-5: the status must say which, consistently
    assert record["status"] in ("converged", "budget_exhausted"), record["message"]
    if record["status"] == "converged":
        assert record["residual"] <= 1e-5  # the default --tol
    else:
        assert record["residual"] > 1e-5 and record["grad_evals"] >= 3000
    if method == "product":
        assert record["method"] == "product_flow"


def test_completion_table_is_readable():
    result = invoke("--n1", "6", "--n2", "5", "--rank", "1", "--m", "20", "--measurement", "completion",
                    "--depth", "3", "--widths", "4,3", "--alpha", "0.3", "--method", "gd", "--max-evals", "2000")
    assert result.exit_code == 0, result.output
    for key in ("relative_error", "nuclear_norm_error", "effective_rank", "singular_values", "balancedness_defect"):
        assert key in result.output
    assert "completion" in result.output and "4,3" in result.output


def test_budget_exhausted_and_diverged_runs_still_exit_0():
    capped = invoke(*TINY, "--method", "gd", "--max-evals", "3", "--json")
    assert capped.exit_code == 0, capped.output
    assert json.loads(capped.stdout)["status"] == "budget_exhausted"
    blown = invoke(*TINY, "--method", "gd", "--step", "1e3", "--json")
    assert blown.exit_code == 0, blown.output
    record = json.loads(blown.stdout)
    assert record["status"] == "diverged"
    # GD stops at the first blow-up of the residual: W may still be finite, but it is far off
    assert record["relative_error"] is None or record["relative_error"] > 1
    assert 0 < record["suggested_step"] < 1e3


def test_problem_file_with_and_without_ground_truth(tmp_path):
    problem = matrix_completion(6, 6, 1, count=30, seed=2)
    problem.save(tmp_path / "with.npz")
    record = json.loads(invoke("--problem", str(tmp_path / "with.npz"), "--depth", "2", "--alpha", "0.3",
                               "--method", "gd", "--max-evals", "500", "--json").stdout)
    assert record["measurement"] == "completion" and record["m"] == 30 and record["rank"] == 1
    assert record["relative_error"] == pytest.approx(problem.relative_error(np.array(record["W"])))
    MatrixRecovery(problem.operator, problem.y).save(tmp_path / "without.npz")
    result = invoke("--problem", str(tmp_path / "without.npz"), "--depth", "2", "--alpha", "0.3",
                    "--method", "gd", "--max-evals", "500", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["nuclear_norm_error"] is None and record["relative_error"] is None and record["rank"] is None
    assert isinstance(record["dist_nuclear_norm"], float)  # the reference is still solved


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--n1", "3", "--rank", "4"], "'rank' parameter must be <= min(n1, n2) = 3"),
        (["--n1", "4", "--n2", "4", "--m", "17", "--measurement", "completion"], "<= the number of entries d_y*d_x = 16"),
        (["--depth", "3", "--widths", "5"], "'widths' parameter must be None or 2 positive ints"),
        (["--depth", "3", "--widths", "5,x"], "--widths must be a comma-separated list"),
        (["--depth", "3", "--widths", "5,0"], "'widths' parameter"),
        (["--init", "gaussian", "--method", "product", "--n1", "5", "--n2", "5", "--m", "12"],
         "ProductFlow needs balanced initial factors"),
        (["--alpha", "-1"], "'alpha'"),
        (["--tol", "2"], "'tol'"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, fragment):
    assert_one_line_error(invoke(*args), fragment)


def test_bad_problem_files(tmp_path):
    np.savez(tmp_path / "nan.npz", matrices=np.ones((2, 3, 3)), y=np.array([1.0, np.nan]))
    assert_one_line_error(invoke("--problem", str(tmp_path / "nan.npz")), "NaN/inf")
    np.savez(tmp_path / "sparse.npz", A=np.ones((2, 3)), y=np.ones(2))
    assert_one_line_error(invoke("--problem", str(tmp_path / "sparse.npz")), "needs 'y' and either 'matrices'")


def test_debug_shows_the_exception():
    result = invoke("--depth", "3", "--widths", "5,x", "--debug")
    assert isinstance(result.exception, InvalidParameterError)
    result = invoke("--init", "gaussian", "--method", "product", "--n1", "5", "--n2", "5", "--m", "12", "--debug")
    assert isinstance(result.exception, UnsupportedError)
