"""Figures, as pure functions of computed data (matplotlib's object API, no pyplot).

One module per family: :mod:`.sparse` (SPEC A), :mod:`.weight_norm` (SPEC B), :mod:`.matrix`
(SPEC C); :mod:`.common` holds what they share. Nothing here computes a limit or runs a simulation;
:func:`plot_store` (in :mod:`.store`) is the one entry point that reads its data, from a sweep store.
"""

from .common import GAP_FLOOR, depth_color, image_size
from .matrix import plot_completion_vs_scale, plot_matrix_recovery, plot_singular_value_paths, plot_volume_paths
from .sparse import plot_general_init, plot_l1_gap_vs_alpha, plot_phase_diagrams, plot_trajectories
from .store import PLOT_KINDS, plot_store
from .weight_norm import plot_weight_norm

__all__ = [
    "GAP_FLOOR", "PLOT_KINDS", "depth_color", "image_size", "plot_completion_vs_scale", "plot_general_init",
    "plot_l1_gap_vs_alpha", "plot_matrix_recovery", "plot_phase_diagrams", "plot_singular_value_paths",
    "plot_store", "plot_trajectories", "plot_volume_paths", "plot_weight_norm",
]
