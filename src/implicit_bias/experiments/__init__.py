"""Named experiments: functions from parameters to a record of metrics."""

from .sparse import sparse_trial, SparseTrial

__all__ = ["sparse_trial", "SparseTrial"]
