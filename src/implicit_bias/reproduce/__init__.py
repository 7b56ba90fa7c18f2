"""Reproduce the talk's numerics (SPEC A-C) into a folder: one PNG per section, ``summary.json``,
``summary.md`` and a self-contained ``report.html``.

One module per section, each registered with :func:`~.base.register` (see :class:`~.base.Section`):

(a) :mod:`.trajectories`, (b)-(c) :mod:`.l1_gap`, (d) :mod:`.general_init`, (e) :mod:`.phase_diagrams`,
(f) :mod:`.weight_norm`, (g) :mod:`.matrix_sensing`, (h) :mod:`.singular_values`, (i) :mod:`.completion`,
(j) :mod:`.volume`.

:func:`reproduce_all` walks the registered sections in order and renders the three summaries
(:mod:`.render`); a new section is a new module imported below. All random draws are seeded by the
configurations; equation numbers refer to SPEC.md.
"""

from ..experiments.reproduction import PhaseConfig
from . import (  # noqa: F401  (importing a section module registers it)
    completion,
    general_init,
    l1_gap,
    matrix_sensing,
    phase_diagrams,
    singular_values,
    trajectories,
    volume,
    weight_norm,
)
from .base import CONFIG_GROUPS, SECTIONS, Context, Section, register, register_config, sections, unregister
from .matrix_common import MatrixReproConfig
from .runner import reproduce_all, run_section
from .sparse_common import ReproConfig
from .weight_norm import WNReproConfig

__all__ = [
    "CONFIG_GROUPS", "SECTIONS", "Context", "MatrixReproConfig", "PhaseConfig", "ReproConfig", "Section",
    "WNReproConfig", "register", "register_config", "reproduce_all", "run_section", "sections", "unregister",
]
