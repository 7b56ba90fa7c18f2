"""The array backend: numpy (the reference) and JAX in float64 give the same numbers.

Tolerance 1e-10: both backends compute in float64 (JAX with ``jax_enable_x64``), so kernels differ
only by the order of their floating-point sums (about 1e-15 relative for these sizes); the whole
batched oracle run on JAX differs from numpy by the rounding left by its stopping tolerances
(Newton stops at the relative residual 1e-12; the limit is unique), measured about 1e-12.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from implicit_bias.backend import get_backend, gpu_available
from implicit_bias.errors import InvalidParameterError
from implicit_bias.limits import predict_limit
from implicit_bias.limits_batched import (
    _gram,
    _hess_apply,
    _matvec,
    _precondition,
    _rmatvec,
    predict_limits,
)
from implicit_bias.models import Hadamard, Init
from implicit_bias.problems import gaussian_sparse

TOL = 1e-10


def relative(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def test_numpy_is_the_default_and_names_are_checked():
    assert get_backend().name == "numpy" and get_backend().xp is np
    with pytest.raises(InvalidParameterError, match="'backend' parameter must be one of"):
        get_backend("torch")
    with pytest.raises(InvalidParameterError, match="CPU only"):
        get_backend("numpy", device="gpu")
    assert get_backend(get_backend("numpy")) is get_backend("numpy")


def test_jax_computes_in_float64_on_its_device():
    jax_backend = get_backend("jax", device="cpu")
    x = jax_backend.asarray([1.0, 1e-300])
    assert str(x.dtype) == "float64" and float(jax_backend.to_numpy(x)[1]) == 1e-300  # float32 would flush it
    assert jax_backend.platform == "cpu"


@pytest.mark.parametrize("kernel, shapes", [
    (_matvec, [(5, 7, 30), (5, 30)]), (_rmatvec, [(5, 7, 30), (5, 7)]), (_gram, [(5, 7, 30), (5, 30)]),
    (_hess_apply, [(5, 7, 30), (5, 30), (5, 7)]),
])
def test_jax_kernels_equal_numpy(kernel, shapes):
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(shape) for shape in shapes]
    reference = get_backend("numpy").kernel(kernel)(*args)
    jax_backend = get_backend("jax", device="cpu")
    out = jax_backend.to_numpy(jax_backend.kernel(kernel)(*map(jax_backend.asarray, args)))
    assert relative(out, reference) <= TOL
    # and numpy's kernel is the plain product, trial by trial (independent computation)
    if kernel is _gram:
        A, w = args
        assert relative(reference, np.stack([(a * v) @ a.T for a, v in zip(A, w)])) <= 1e-14


def test_the_preconditioner_solves_the_factorised_system_on_both_backends():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((3, 6, 6))
    H = M @ np.swapaxes(M, 1, 2) + np.eye(6)
    Linv, r = np.linalg.inv(np.linalg.cholesky(H)), rng.standard_normal((3, 6))
    for name in ("numpy", "jax"):
        backend = get_backend(name, device="cpu" if name == "jax" else None)
        x = backend.to_numpy(backend.kernel(_precondition)(backend.asarray(Linv), backend.asarray(r)))
        assert relative(np.einsum("kij,kj->ki", H, x), r) <= TOL  # H well conditioned (eigenvalues >= 1)
    jax_backend = get_backend("jax", device="cpu")
    from implicit_bias.limits_batched import _cholesky_inverse

    inverse = jax_backend.to_numpy(jax_backend.kernel(_cholesky_inverse)(jax_backend.asarray(H)))
    assert relative(inverse, Linv) <= TOL


@pytest.mark.parametrize("depth, signed", [(2, False), (3, True)])
def test_the_batched_oracle_on_jax_equals_numpy_and_the_one_at_a_time_oracle(depth, signed):
    problems = [gaussian_sparse(60, 20, 3, signed=signed, seed=seed) for seed in range(3)]
    model, init = Hadamard(depth, signed), Init.uniform(1e-3)
    on_numpy = predict_limits(problems, model, init, backend="numpy")
    on_jax = predict_limits(problems, model, init, backend=get_backend("jax", device="cpu"))
    for a, b, problem in zip(on_jax, on_numpy, problems):
        assert a.status == b.status == "converged" and "backend jax" in a.message
        assert relative(a.x, b.x) <= TOL
        assert relative(a.x, predict_limit(problem, model, init).x) <= TOL


def test_the_cli_does_not_import_jax():
    probe = "import sys, implicit_bias.cli, implicit_bias.experiments; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU: JAX sees none here (pip install 'implicit-bias[gpu]' on a CUDA machine)")
def test_the_batched_oracle_on_the_gpu_equals_numpy():
    problems = [gaussian_sparse(100, 30, 4, seed=seed) for seed in range(8)]
    model, init = Hadamard(2, False), Init.uniform(1e-4)
    gpu = get_backend("jax", device="gpu")
    assert gpu.platform in ("gpu", "cuda")
    for a, b in zip(predict_limits(problems, model, init, backend=gpu), predict_limits(problems, model, init)):
        assert a.status == b.status == "converged" and relative(a.x, b.x) <= TOL
