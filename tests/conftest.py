import os

# One BLAS thread per process: the tests are small, and two OpenBLAS copies (numpy's and
# scipy's) fighting over 2 cores made mixed GEMM/Cholesky loops 30x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from hypothesis import HealthCheck, settings

# Property-based tests (tests/test_properties.py): a bounded default that keeps the default run
# short; IMPLICIT_BIAS_HYPOTHESIS=deep draws many more examples (run it before a release).
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("IMPLICIT_BIAS_HYPOTHESIS", "default"))
