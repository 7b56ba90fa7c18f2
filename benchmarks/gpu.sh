#!/usr/bin/env bash
# The batching table on a CUDA machine: installs .[gpu] (jax[cuda12]) into a fresh venv and prints
# benchmarks/scale_batch.py's rows with the batched oracle on JAX on the GPU, then a 10^4-trial
# phase diagram at n = 200 (oracle panels, 100 (delta, rho) pixels x 100 seeds), target < 1 minute.
#
#   bash benchmarks/gpu.sh            # full table (a few minutes)
#   bash benchmarks/gpu.sh --quick    # smaller sweeps
#
# Needs: an NVIDIA GPU with a CUDA 12 driver, Python >= 3.11, network access to PyPI (or a local
# wheel cache: PIP_FIND_LINKS / PIP_INDEX_URL are honoured by pip).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK="${1:-}"
VENV="${IMPLICIT_BIAS_GPU_VENV:-.venv-gpu}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  || { echo "gpu.sh: no nvidia-smi: this machine has no CUDA GPU" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
fi
"$VENV/bin/pip" install --quiet -e ".[gpu]"
"$VENV/bin/python" - "$QUICK" <<'PY'
import sys, tempfile, time
from pathlib import Path

import jax

from implicit_bias.backend import get_backend, gpu_available

if not gpu_available():
    sys.exit("gpu.sh: JAX sees no GPU (jax.devices() = %s); check the CUDA driver and jax[cuda12]" % jax.devices())
gpu = get_backend("jax", device="gpu")
print(f"JAX {jax.__version__} on {gpu.device}, float64")

sys.path.insert(0, "benchmarks")
import scale_batch

quick = sys.argv[1:] == ["--quick"]
print(scale_batch.markdown(scale_batch.rows(quick=quick, backends=("jax",))))

# A 10^4-trial phase diagram at n = 200: the oracle panel (N = 2, alpha = 1e-4), 10 x 10 pixels x 100 seeds,
# timed cold (JAX compiles each kernel once per shape) and warm (a second run into a fresh store).
from implicit_bias.experiments import load_spec, run_sweep

deltas = [round(0.1 + 0.08 * i, 3) for i in range(10)]
rhos = [round(0.05 + 0.09 * i, 3) for i in range(10)]
spec = load_spec({"experiment": "phase", "seeds": 10 if quick else 100,
                  "fixed": {"n": 200, "method": "limit", "depth": 2, "alpha": 1e-4},
                  "grid": {"delta": deltas, "rho": rhos}})
for run in ("cold", "warm"):
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = run_sweep(spec, store_path=str(Path(tmp) / "phase.sqlite"), progress=False, batch_size=1024,
                            backend="jax")
        wall = time.perf_counter() - started
    print(f"| phase diagram n=200, {summary.total} trials, JAX on the GPU, --batch-size 1024, {run} | {wall:.1f} s | "
          f"{summary.total / wall:.0f} trials/s | goal < 60 s | {'met' if wall < 60 else 'missed'} | "
          f"{summary.failed} failed |")
PY
