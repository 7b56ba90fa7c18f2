"""Named experiments, sweep specs, executors and the store."""

from .executors import DaskExecutor, SerialExecutor, execute_trial
from .phase import PhaseTrial, phase_trial
from .registry import EXPERIMENTS, Experiment, get_experiment
from .sparse import SparseTrial, sparse_trial
from .spec import SweepSpec, load_spec
from .store import SQLiteStore, StoreError, StoreWarning, trial_key
from .sweep import SweepSummary, run_sweep

__all__ = [
    "DaskExecutor", "SerialExecutor", "execute_trial", "PhaseTrial", "phase_trial", "EXPERIMENTS", "Experiment",
    "get_experiment", "SparseTrial", "sparse_trial", "SweepSpec", "load_spec", "SQLiteStore", "StoreError", "StoreWarning",
    "trial_key", "SweepSummary", "run_sweep",
]
