"""Sweep specifications in TOML: an experiment, fixed values, grids, cases and seeds.

```toml
experiment = "phase"
seeds = 5                  # or a list: seeds = [0, 1, 2]
store = "results/phase.sqlite"

[fixed]                    # the same for every trial
n = 100
method = "limit"

[grid]                     # cartesian product over these lists
delta = [0.2, 0.4, 0.6]
rho = [0.1, 0.3]

[[cases]]                  # optional: explicit parameter sets, each crossed with the grid
depth = 2
[[cases]]
depth = 3
```
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InvalidParameterError, InvalidProblemError
from .registry import get_experiment

TOP_LEVEL = ("experiment", "seeds", "store", "fixed", "grid", "cases", "description")
# A spec is validated trial by trial before anything runs (~0.2 ms each): above this many trials a
# typo (seeds = 1000000) would stall for minutes, so it is refused up front.
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class SweepSpec:
    experiment: str
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    cases: tuple = ()
    seeds: tuple = (0,)
    store: str = "sweep.sqlite"
    description: str = ""

    def trials(self) -> list[dict]:
        """Every trial's full parameter dict (validated), in a deterministic order."""
        experiment = get_experiment(self.experiment)
        names = list(self.grid)
        combos = list(itertools.product(*(self.grid[name] for name in names))) if names else [()]
        out = []
        for case in self.cases or ({},):
            for combo in combos:
                for seed in self.seeds:
                    params = {**self.fixed, **dict(zip(names, combo)), **case, "seed": seed}
                    out.append(asdict(experiment.make(params)))
        return out


def _fail(message: str):
    raise InvalidParameterError(f"sweep spec: {message}")


def _check_size(cases: list, grid: dict, seeds) -> None:
    """Refuse a spec of more than :data:`MAX_TRIALS` trials before expanding it."""
    factors = [("cases", len(cases) or 1)] + [(f"grid.{name}", len(values)) for name, values in grid.items()]
    factors.append(("seeds", seeds if isinstance(seeds, int) else len(seeds)))
    total = math.prod(size for _, size in factors)
    if total > MAX_TRIALS:
        largest, size = max(factors, key=lambda factor: factor[1])
        shape = " x ".join(f"{size:,} {name}" for name, size in factors if size > 1)
        _fail(f"the spec expands to {total:,} trials ({shape}), over the limit of {MAX_TRIALS:,}: shrink "
              f"{largest!r} ({size:,} values) or split the sweep into several specs on one store")


def _seeds(value, cases: list, grid: dict) -> tuple:
    """The ``seeds`` field (a count or a list) as a tuple, after checking the sweep's size."""
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        _fail(f"field 'seeds' must be a count or a list of ints; got {value!r}")
    _check_size(cases, grid, value)
    seeds = tuple(range(value)) if isinstance(value, int) else tuple(value)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        _fail(f"field 'seeds' must be a positive count or a non-empty list of non-negative ints; got {value!r}")
    if len(set(seeds)) != len(seeds):
        _fail(f"field 'seeds' lists a seed more than once: {value!r}")
    return seeds


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with a TOML value (``n=200``, ``method="flow"``, ``grid.delta=[0.1,0.2]``)."""
    if "=" not in text:
        _fail(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: treat it as a string (method=flow)
    return key.strip(), value


def load_spec(source: str | Path | dict, overrides: list[str] = ()) -> SweepSpec:
    """Read and validate a spec; every problem names its field before any trial runs."""
    if isinstance(source, dict):
        data = dict(source)
    else:
        try:
            data = tomllib.loads(Path(source).read_text())
        except FileNotFoundError:
            _fail(f"file {source} not found")
        except tomllib.TOMLDecodeError as exc:
            _fail(f"{source} is not valid TOML: {exc}")
        except UnicodeDecodeError:
            _fail(f"{source} is not a text file (TOML is UTF-8 text)")
        except OSError as exc:
            _fail(f"cannot read {source}: {exc.strerror or exc}")
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for text in overrides:
        key, value = parse_override(text)
        section, _, name = key.rpartition(".")
        if section in ("fixed", "grid"):
            data.setdefault(section, {})[name] = value
        elif section == "" and key in TOP_LEVEL:
            data[key] = value
        elif section == "":
            data.setdefault("fixed", {})[key] = value
            data.get("grid", {}).pop(key, None)
            if isinstance(data.get("cases"), list):  # the override wins over the cases too
                stripped = [{k: v for k, v in c.items() if k != key} if isinstance(c, dict) else c for c in data["cases"]]
                data["cases"] = [c for i, c in enumerate(stripped) if c not in stripped[:i]]
        else:
            _fail(f"override {text!r}: unknown section {section!r} (use fixed.NAME, grid.NAME or a top-level key)")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        _fail(f"unknown top-level field {unknown[0]!r}; allowed: {', '.join(TOP_LEVEL)}")
    if "experiment" not in data:
        _fail("missing field 'experiment'")
    if not isinstance(data["experiment"], str):
        _fail(f"field 'experiment' must be the name of an experiment (a string); got {data['experiment']!r}")
    try:
        experiment = get_experiment(data["experiment"])
    except InvalidParameterError as exc:
        _fail(f"field 'experiment': {exc}")
    names = set(experiment.field_types()) - {"seed"}
    fixed, grid = data.get("fixed", {}), data.get("grid", {})
    cases = data.get("cases", [])
    if not isinstance(fixed, dict) or not isinstance(grid, dict) or not isinstance(cases, list):
        _fail("'fixed' and 'grid' must be tables, 'cases' an array of tables")
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            _fail(f"field 'cases[{i}]' must be a table of parameter values; got {case!r}")
    for section, table in [("fixed", fixed), ("grid", grid)] + [(f"cases[{i}]", c) for i, c in enumerate(cases)]:
        for name in table:
            if name not in names:
                _fail(f"field '{section}.{name}': experiment '{experiment.name}' has no parameter {name!r}; "
                      f"allowed: {', '.join(sorted(names))}")
    for name, values in grid.items():
        if not isinstance(values, list):
            _fail(f"field 'grid.{name}' must be a list of values; got {values!r}")
        if not values:
            _fail(f"field 'grid.{name}' is an empty list: the sweep would have no trials")
    for name in ("store", "description"):
        if name in data and not isinstance(data[name], str):
            _fail(f"field {name!r} must be a string; got {data[name]!r}")
    seeds = _seeds(data.get("seeds", 1), cases, grid)
    spec = SweepSpec(experiment=experiment.name, fixed=fixed, grid=grid, cases=tuple(cases), seeds=seeds,
                     store=str(data.get("store", "sweep.sqlite")), description=str(data.get("description", "")))
    try:
        spec.trials()  # type-check every value now, before any trial runs
    except (InvalidParameterError, InvalidProblemError) as exc:
        _fail(str(exc))
    return spec
