import os

# One BLAS thread per process: the tests are small, and two OpenBLAS copies (numpy's and
# scipy's) fighting over 2 cores made mixed GEMM/Cholesky loops 30x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
