"""Sections (g)-(j) of the reproduction (deep matrix factorisation, SPEC C), checked against
independent computations: the depth-1 limit against the closed form (E.1), the nuclear-norm rows
against a fresh solve, the intrinsic volume against C.11 evaluated directly, and the figures on disk.

One run of the tiny preset (about 10 s) is shared by the tests of this module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from implicit_bias.matrix_theory import effective_rank
from implicit_bias.problems import matrix_completion, matrix_sensing
from implicit_bias.references import min_frobenius, min_nuclear_norm
from implicit_bias.reproduce import MatrixReproConfig, PhaseConfig, ReproConfig, reproduce_all, sections

MATRIX_FIGURES = {section.letter: section.file for section in sections() if section.group == "matrix"}


@pytest.fixture(scope="module")
def tiny_matrix_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix_report")
    cfg = MatrixReproConfig.tiny()
    lines: list[str] = []
    paths = reproduce_all(out, config=ReproConfig.tiny(), phase=PhaseConfig.tiny(), matrix=cfg, echo=lines.append)
    summary = json.loads((out / "summary.json").read_text())
    return out, cfg, paths, summary, lines


def test_every_matrix_figure_is_written_and_reported(tiny_matrix_report):
    out, _, paths, summary, _ = tiny_matrix_report
    names = {p.name for p in paths}
    for name in MATRIX_FIGURES.values():
        assert name in names
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a real, non-empty image
    for key in ("g_matrix_sensing", "h_singular_values", "i_matrix_completion", "j_intrinsic_volume"):
        assert summary["figures"][key]["rows"], key
    markdown = (out / "summary.md").read_text()
    assert "(g) g_matrix_sensing.png" in markdown and "(j) j_intrinsic_volume.png" in markdown
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 + len(MATRIX_FIGURES)


def test_depth_one_rows_match_the_minimum_norm_closed_form(tiny_matrix_report):
    """Depth 1 is the plain flow; from W0 its limit is W0 + A^+(y - A W0) (SPEC E.1). The flow moves
    in range(A*), so ||W_flow - W_lim||_F <= ||A(W_flow) - y|| / sigma_min^+(A): that bounds the error gap."""
    _, cfg, _, summary, _ = tiny_matrix_report
    rows = [r for r in summary["figures"]["g_matrix_sensing"]["rows"] if r["depth"] == 1]
    assert len(rows) == len(cfg.sensing_ms) * cfg.sensing_seeds
    for row in rows:
        problem = matrix_sensing(cfg.sensing_n, cfg.sensing_n, cfg.sensing_rank, row["m"], seed=row["seed"])
        W_lim = min_frobenius(problem, W0=cfg.sensing_scale * np.eye(cfg.sensing_n))
        A = np.asarray(problem.operator.matrices).reshape(problem.m, -1)
        sigma = np.linalg.svd(A, compute_uv=False)
        sigma_min = sigma[sigma > 1e-12 * sigma[0]].min()
        slack = row["residual"] * np.linalg.norm(problem.y) / sigma_min / np.linalg.norm(problem.W_true)
        assert row["status"] == "converged"
        assert abs(row["relative_error"] - problem.relative_error(W_lim)) <= slack + 1e-12


def test_nuclear_norm_rows_match_a_fresh_solve(tiny_matrix_report):
    """The stored nuclear-norm errors equal an independent Clarabel solve (both to ~1e-6 relative)."""
    _, cfg, _, summary, _ = tiny_matrix_report
    row = next(r for r in summary["figures"]["i_matrix_completion"]["rows"] if r["depth"] is None)
    problem = matrix_completion(cfg.completion_n, cfg.completion_n, cfg.completion_rank, count=row["count"],
                                seed=cfg.seed)
    fresh = problem.relative_error(min_nuclear_norm(problem, solver="CLARABEL"))
    # SCS (eps 1e-8) and Clarabel agree to ~1e-6 on the solution; errors here are O(0.1-1).
    assert row["relative_error"] == pytest.approx(fresh, rel=1e-4, abs=1e-6)


def test_singular_value_paths_learn_in_order_and_volume_matches_c11(tiny_matrix_report):
    _, cfg, _, summary, _ = tiny_matrix_report
    rows = summary["figures"]["h_singular_values"]["rows"]
    assert [(r["depth"], r["scale"]) for r in rows] == [tuple(run) for run in cfg.paths_runs]
    for row in rows:
        assert row["status"] == "converged"
        # incremental learning: every ground-truth singular value reaches half its size, in order
        assert row["plateaus"] == len(cfg.paths_spectrum)
    for row in summary["figures"]["j_intrinsic_volume"]["rows"]:
        assert 1.0 <= row["effective_rank_end"] <= cfg.completion_n
        # v -> inf as W approaches lower rank (C.11): the volume grows from the near-equal start
        assert row["log_v_end"] > row["log_v_start"]


def test_log_volume_of_the_saved_spectrum_is_c11():
    """``volume_run`` evaluates C.11 on the saved singular values; check it against the formula
    written out directly, on a matrix with distinct singular values."""
    from implicit_bias.reproduce.volume import volume_run

    s = np.array([3.0, 2.0, 0.5])
    depth = 3
    direct = (3 * np.log(depth) + (1 - depth) / depth * np.sum(np.log(s))
              + sum(np.log(s[i] ** (2 / depth) - s[j] ** (2 / depth)) for i in range(3) for j in range(i + 1, 3)))

    class _Path:
        t = np.array([0.0, 1.0])
        singular_values = np.array([[1.0, 1.0, 1.0], s])
        effective_rank = np.array([3.0, effective_rank(np.diag(s))])

    class _Res:
        path = _Path()

    run = volume_run(_Res(), depth, 1.0, 2)
    assert np.isnan(run["log_volume"][0])  # coinciding singular values: v = 0, log v = -inf, not drawn
    assert run["log_volume"][1] == pytest.approx(direct, rel=1e-12)
