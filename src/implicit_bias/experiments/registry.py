"""The registry of named experiments: a name, a parameter dataclass, and a run function."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Callable

from ..errors import InvalidParameterError
from .matrix import MatrixTrial, matrix_trial
from .phase import PhaseTrial, phase_batch_key, phase_trial, phase_trials
from .sparse import SparseTrial, WeightNormTrial, sparse_batch_key, sparse_trial, sparse_trials, weight_norm_trial


@dataclass(frozen=True)
class Experiment:
    """A named experiment. ``numerics`` is the version of its numbers: bump it whenever a change
    of code changes what ``run`` returns for the same parameters, so that stores never reuse the
    results of the older code (it is part of every trial key)."""

    name: str
    parameters: type  # a frozen dataclass: field names, types and defaults are the schema
    run: Callable[[object], dict]
    description: str
    numerics: int = 1
    # Trials with equal keys can run together: run_batch(list of parameter objects, backend=) returns
    # one record (or the exception that trial raised) per trial, equal to run's to 1e-10 (SPEC-level
    # numbers; cost fields such as wall_s, matvecs, steps and message may differ). None: one at a time.
    batch_key: Callable[[object], tuple | None] | None = None
    run_batch: Callable[..., list] | None = None

    def field_types(self) -> dict[str, object]:
        hints = typing.get_type_hints(self.parameters)
        return {f.name: hints[f.name] for f in dataclasses.fields(self.parameters)}

    def defaults(self) -> dict:
        return {f.name: f.default for f in dataclasses.fields(self.parameters)}

    def make(self, params: dict):
        """Validate ``params`` against the schema and build the parameter object."""
        types = self.field_types()
        unknown = sorted(set(params) - set(types))
        if unknown:
            raise InvalidParameterError(
                f"experiment '{self.name}' has no parameter {unknown[0]!r}; allowed: {', '.join(types)}."
            )
        coerced = {name: coerce(name, types[name], value) for name, value in params.items()}
        return self.parameters(**coerced)


def coerce(name: str, annotation, value):
    """Check ``value`` against a field annotation (int, float, bool, str, Literal, Optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        if value not in args:
            raise InvalidParameterError(f"The '{name}' parameter must be one of {list(args)}. Got {value!r}.")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        last_error = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(name, arg, value)
            except InvalidParameterError as exc:
                last_error = exc
        raise last_error
    if annotation is bool:
        if not isinstance(value, bool):
            raise InvalidParameterError(f"The '{name}' parameter must be a bool. Got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterError(f"The '{name}' parameter must be an int. Got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParameterError(f"The '{name}' parameter must be a float. Got {value!r}.")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise InvalidParameterError(f"The '{name}' parameter must be a string. Got {value!r}.")
        return value
    return value


def _sparse(trial: SparseTrial) -> dict:
    record = sparse_trial(trial)
    record.pop("x", None)  # sweeps store metrics, not vectors
    return record


def _sparse_batch(trials: list, backend: str = "numpy") -> list:
    records = sparse_trials(trials, backend=backend)
    for record in records:
        if isinstance(record, dict):
            record.pop("x", None)
    return records


def _matrix(trial: MatrixTrial) -> dict:
    record = matrix_trial(trial)
    record.pop("W", None)  # sweeps store metrics and spectra, not matrices
    return record


EXPERIMENTS: dict[str, Experiment] = {
    "sparse": Experiment("sparse", SparseTrial, _sparse,
                         "one sparse-recovery trial of the core engine with every metric (l1 gap, bound, distances, cost)",
                         batch_key=sparse_batch_key, run_batch=_sparse_batch),
    "weight_norm": Experiment("weight_norm", WeightNormTrial, weight_norm_trial,
                              "weight-normalised flow w = r v/||v|| (SPEC B): l1 gap vs plain flow from the same init, "
                              "rho (B.7), fitted effective scale, oracle (B.8), bound (B.9)"),
    "phase": Experiment("phase", PhaseTrial, phase_trial,
                        "recovery success of a method (flow limit, flow, l1, l2) on a random Gaussian problem",
                        batch_key=phase_batch_key, run_batch=phase_trials),
    "matrix": Experiment("matrix", MatrixTrial, _matrix,
                         "deep matrix factorisation (SPEC C) on Gaussian sensing or completion: error, effective "
                         "rank, spectrum, balancedness, vs nuclear norm and min-Frobenius"),
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise InvalidParameterError(f"unknown experiment {name!r}; registered: {', '.join(EXPERIMENTS)}.")
    return EXPERIMENTS[name]
