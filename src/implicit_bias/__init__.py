"""implicit-bias: where gradient flow, gradient descent and SGD converge on overparameterized models,
and how that limit compares with the explicit regularizers the theory predicts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("implicit-bias")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
