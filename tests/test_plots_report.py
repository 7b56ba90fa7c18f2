"""Figures (implicit_bias.plots) and the reproduction report (implicit_bias.reproduce).

The plotting tests check that each function writes a real PNG of the promised size. The report
test runs ``reproduce_all`` on the tiny preset once and checks the numbers it wrote against the
theory (SPEC A.15, A.18, A.19) and against independently computed references.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass

import matplotlib.image
import numpy as np
import pytest

from implicit_bias import plots
from implicit_bias.errors import InvalidParameterError
from implicit_bias.problems import gaussian_sparse
from implicit_bias.references import l1_optimum, min_weighted_l1
from implicit_bias.experiments.reproduction import PhaseConfig
from implicit_bias._validation import jsonable
from implicit_bias.plots.common import new_figure, save
from implicit_bias.reproduce import (CONFIG_GROUPS, ReproConfig, Section, register, register_config, reproduce_all,
                                     sections, unregister)
from implicit_bias.status import STATUSES
from implicit_bias.theory import epsilon_bound, weights_general_init


# the PNGs of the sparse sections (a)-(d), the ones a custom ReproConfig runs besides (e)
FIGURES = {section.letter: section.file for section in sections() if section.group == "sparse"}


def _assert_png(path, figsize, dpi):
    assert path.exists() and path.stat().st_size > 1000
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == plots.image_size(figsize, dpi)
    assert float(np.std(image[..., :3])) > 0.01  # something was drawn


# ----------------------------------------------------------------------------- plots


def test_plot_trajectories_writes_png_of_requested_size(tmp_path):
    t = np.geomspace(1e-2, 1e4, 50)
    x = np.stack([1e-4 + 2 / (1 + np.exp(-(np.log(t) - k))) for k in range(5)], axis=1)
    runs = [dict(depth=N, alpha=0.01, t=t, x=x, Q=10.0, support=[0, 1], x_ref=np.array([2.0, 2, 0, 0, 0]),
                 note="final gap 1e-3") for N in (2, 3)]
    path = plots.plot_trajectories(runs, tmp_path / "sub" / "a.png", title="test", figsize=(8, 5), dpi=50)
    assert path == tmp_path / "sub" / "a.png"
    _assert_png(path, (8, 5), 50)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_plot_l1_gap_vs_alpha_handles_inf_and_nonpositive_values(tmp_path):
    alpha = np.logspace(-4, -0.5, 8)
    curves = [dict(depth=N, alpha=alpha, gap=alpha**N, epsilon=np.where(alpha < 0.2, alpha ** (N - 2) + 0.1, np.inf),
                   alpha_critical=0.2, sim_alpha=[1e-2], sim_gap=[1e-2**N], sim_converged=[N != 4])
              for N in (2, 3, 4)]
    curves[0]["gap"][0] = -1e-15  # rounding-level gaps are skipped on the log axis, not an error
    path = plots.plot_l1_gap_vs_alpha(curves, tmp_path / "b.png", title="t", figsize=(7, 5), dpi=40)
    _assert_png(path, (7, 5), 40)


def test_plot_general_init_writes_png(tmp_path):
    lam = np.logspace(-8, -1, 6)
    n = 12
    data = dict(depth=3, lam=lam, dist_weighted=lam, dist_l1=lam + 1, weighted_gap=lam / 10, weighted_epsilon=lam**0.3,
                l1_gap=np.full(6, 0.05), naive_epsilon=lam**0.3, sim_lam=[1e-3], sim_dist_weighted=[1e-3],
                stem_lam=1e-8, x_limit=np.linspace(0, 1, n), z_weighted=np.linspace(0, 1, n), z_l1=np.eye(n)[0])
    path = plots.plot_general_init(data, tmp_path / "d.png", title="t", figsize=(12, 4), dpi=40)
    _assert_png(path, (12, 4), 40)


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ProbeConfig:
    """The configuration group of the probe section: presets as every group has them."""

    values: tuple[float, ...] = (3.0, 1.0, 2.0)

    @classmethod
    def quick(cls) -> "ProbeConfig":
        return cls()

    full = quick


def probe_section(seen: dict) -> Section:
    """A toy section registered by the test: it records the data of the sections computed before it
    (``context.results``) into ``seen``, and draws its own values."""

    def compute(cfg, context):
        seen.update(context.results)
        return dict(values=np.asarray(cfg.values), meta=dict(count=len(cfg.values)))

    def rows(data):
        return [dict(i=i, value=float(v), status="converged" if v > 1.5 else "stalled")
                for i, v in enumerate(data["values"])]

    def figure(data, path, dpi):
        fig = new_figure((4.0, 3.0))
        fig.subplots().plot(data["values"], label="probe values")
        return save(fig, path, dpi)

    return Section(key="z_probe", title="a probe section", group="probe", source="the test",
                   compute=compute, rows=rows, figure=figure,
                   markdown=lambda entry: f"{entry['meta']['count']} probe values.")


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """One tiny report, with a probe section (z) plugged in through the registry and removed after."""
    out = tmp_path_factory.mktemp("repro")
    cfg = ReproConfig.tiny()
    lines, seen = [], {}
    register_config("probe", ProbeConfig)
    register(probe_section(seen))
    try:
        paths = reproduce_all(out, config=cfg, phase=PhaseConfig.tiny(), probe=ProbeConfig(), echo=lines.append)
    finally:
        unregister("z_probe")
        CONFIG_GROUPS.pop("probe")
    summary = json.loads((out / "summary.json").read_text())
    return out, cfg, paths, summary, lines, seen


def test_reproduce_all_writes_every_figure_and_summary(tiny_report):
    out, cfg, paths, summary, lines, _ = tiny_report
    assert [p.name for p in paths] == [*FIGURES.values(), "e_phase_diagrams.png", "z_probe.png", "summary.json",
                                       "summary.md", "report.html"]
    for name in FIGURES.values():
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    markdown = (out / "summary.md").read_text()
    for name in FIGURES.values():
        assert name in markdown
    assert lines, "progress is reported through echo"
    # every figure says where its data come from
    assert summary["figures"]["a_trajectories"]["data"] == "simulated"
    for key in ("b_l1_gap_positive", "c_l1_gap_signed", "d_general_init"):
        assert "limit oracle" in summary["figures"][key]["data"]


@pytest.mark.parametrize("key, signed", [("b_l1_gap_positive", False), ("c_l1_gap_signed", True)])
def test_l1_gaps_obey_the_epsilon_bound(tiny_report, key, signed):
    """Theorems A.2 / A.4: 0 <= (||x_inf||_1 - Q)/Q <= eps with beta_1 = (1 or 2) n alpha^N, beta_min = alpha^N."""
    _, cfg, _, summary, _, _ = tiny_report
    figure = summary["figures"][key]
    problem = gaussian_sparse(cfg.n, cfg.m, cfg.s, signed=signed, seed=cfg.seed)
    Q = l1_optimum(problem.A, problem.y, nonneg=not signed)  # independent of the report's polishing
    assert figure["meta"]["Q"] == pytest.approx(Q, rel=1e-8)
    width = 2 * cfg.n if signed else cfg.n
    applicable = 0
    for row in figure["rows"]:
        N, alpha = row["depth"], row["alpha"]
        eps = epsilon_bound(N, width * alpha**N, alpha**N, Q)
        if math.isinf(eps):
            assert row["epsilon"] is None
        else:
            applicable += 1
            assert row["epsilon"] == pytest.approx(eps, rel=1e-9)
            assert row["gap"] <= eps
            assert row["bound_holds"] is True
        assert row["gap"] >= -1e-9  # the limit interpolates, so its l1 norm is at least Q
        assert row["status"] == "converged"
    assert applicable >= 8


@pytest.mark.parametrize("key", ["b_l1_gap_positive", "c_l1_gap_signed"])
def test_gap_shrinks_with_alpha_and_simulation_agrees_with_limit(tiny_report, key):
    _, cfg, _, summary, _, _ = tiny_report
    rows = summary["figures"][key]["rows"]
    for N in cfg.depths:
        limit = sorted((r for r in rows if r["depth"] == N and r["source"] == "limit"), key=lambda r: -r["alpha"])
        gaps = [r["gap"] for r in limit]
        assert len(gaps) >= 3
        assert all(g2 < g1 for g1, g2 in zip(gaps, gaps[1:])), gaps
        by_alpha = {r["alpha"]: r["gap"] for r in limit}
        for sim in (r for r in rows if r["depth"] == N and r["source"] == "simulated"):
            assert sim["status"] == "converged"
            assert sim["dist_to_limit"] < 1e-5
            assert sim["gap"] == pytest.approx(sim["limit_gap"], abs=1e-6)
            if sim["alpha"] in by_alpha:
                assert sim["limit_gap"] == pytest.approx(by_alpha[sim["alpha"]], rel=1e-9, abs=1e-12)
    assert summary["checks"]["gaps_monotone"] is True


def test_trajectories_reach_the_l1_optimum(tiny_report):
    _, cfg, _, summary, _, _ = tiny_report
    figure = summary["figures"]["a_trajectories"]
    problem = gaussian_sparse(cfg.traj_n, cfg.traj_m, cfg.traj_s, signed=False, seed=cfg.seed)
    Q = l1_optimum(problem.A, problem.y, nonneg=True)
    assert figure["meta"]["Q_plus"] == pytest.approx(Q, rel=1e-8)
    assert [r["depth"] for r in figure["rows"]] == list(cfg.depths)
    for row in figure["rows"]:
        assert row["status"] == "converged"
        assert row["residual"] <= 1e-8
        assert -1e-7 <= row["gap_final"] <= epsilon_bound(row["depth"], cfg.traj_n * row["alpha"] ** row["depth"],
                                                          row["alpha"] ** row["depth"], Q)
        assert 0 < row["t_half"] < row["t_end"]
        assert row["dist_to_limit"] < 1e-4  # the simulated endpoint is the oracle's limit


def test_general_init_tends_to_weighted_l1_solution(tiny_report):
    """SPEC A.6 / Theorem A.3: x_inf -> argmin_{S_+} sum u^(2/N-1) z as lambda -> 0, and (A.18) holds."""
    _, cfg, _, summary, _, _ = tiny_report
    figure = summary["figures"]["d_general_init"]
    meta = figure["meta"]
    N = meta["depth"]
    u = np.random.default_rng(cfg.u_seed).uniform(cfg.u_low, cfg.u_high, cfg.general_n)
    problem = gaussian_sparse(cfg.general_n, cfg.general_m, meta["s"], signed=False, seed=cfg.seed)
    h = weights_general_init(N, u)
    z_h = min_weighted_l1(problem.A, problem.y, h, nonneg=True)
    assert meta["Q_h_of_u"] == pytest.approx(float(h @ z_h), rel=1e-8)
    rows = sorted((r for r in figure["rows"] if r["source"] == "limit"), key=lambda r: -r["lam"])
    dists = [r["dist_weighted"] for r in rows]
    assert all(d2 < d1 for d1, d2 in zip(dists, dists[1:])), dists
    assert dists[-1] < 1e-3 * float(np.sum(z_h))
    # the weighted-l1 and plain-l1 solutions differ, and the limit goes to the weighted one
    assert meta["separation_weighted_vs_l1"] > 1e-3
    assert rows[-1]["dist_l1"] > 100 * rows[-1]["dist_weighted"]
    for row in rows:
        if row["weighted_epsilon"] is not None:
            assert row["weighted_gap"] <= row["weighted_epsilon"]
        assert row["weighted_gap"] >= -1e-9
    for sim in (r for r in figure["rows"] if r["source"] == "simulated"):
        assert sim["status"] == "converged" and sim["dist_to_limit"] < 1e-5


def test_summary_checks_count_every_applicable_bound(tiny_report):
    _, _, _, summary, _, _ = tiny_report
    checks = summary["checks"]
    assert checks["bounds_applicable"] > 0
    assert checks["bounds_hold"] == checks["bounds_applicable"]


def test_repro_config_validation():
    with pytest.raises(InvalidParameterError, match="general_depth"):
        ReproConfig(general_depth=2, alphas={2: (0.1,)}, sim_alphas={2: ()}, traj_alpha={2: 0.1}, depths=(2,))
    with pytest.raises(InvalidParameterError, match="alphas"):
        ReproConfig(depths=(2, 3), alphas={2: (0.1,)}, sim_alphas={2: (), 3: ()}, traj_alpha={2: 0.1, 3: 0.1})


def test_phase_diagrams_are_consistent_with_theory(tiny_report):
    """l1 recovers far below the Donoho-Tanner curve, the minimum-l2 solution never recovers a
    sparse signal (m < n), and the simulated flow ends at the oracle's limit."""
    out, _, _, summary, _, _ = tiny_report
    section = summary["figures"]["e_phase_diagrams"]
    rows = section["rows"]
    l1 = [r for r in rows if r["method"].startswith("l1") and r["rho"] < 0.5 * r["dt_rho"]]
    assert l1 and all(r["success"] == 1.0 for r in l1)
    assert all(r["success"] == 0.0 for r in rows if r["method"].startswith("minimum l2"))
    assert section["sample"] and all(r["dist_flow_to_limit"] <= 1e-6 for r in section["sample"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(summary["figures"])


def test_reproduce_resumes_from_its_store(tiny_report, tmp_path):
    out, cfg, _, summary, _, _ = tiny_report
    lines = []
    # a copy of the first run's store, so that the first run's outputs stay as they are for other tests
    for path in out.glob("store.sqlite*"):  # with any WAL files
        shutil.copy(path, tmp_path / path.name)
    reproduce_all(tmp_path, config=cfg, phase=PhaseConfig.tiny(), echo=lines.append)
    trials = [line for line in lines if line.startswith("reproduce: (e)")]
    assert trials and all("trials (" in line for line in trials)
    for line in trials:  # "... K trials (K from the store)": everything was stored by the first run
        total = int(line.split(": ")[-1].split(" trials")[0])
        skipped = int(line.split("(")[-1].split(" from")[0])
        assert total == skipped


# ----------------------------------------------------------------------------- the registry of sections


def test_registry_holds_sections_a_to_j_in_order(tiny_report):
    assert [s.key for s in sections()] == [
        "a_trajectories", "b_l1_gap_positive", "c_l1_gap_signed", "d_general_init", "e_phase_diagrams",
        "f_weight_norm", "g_matrix_sensing", "h_singular_values", "i_matrix_completion", "j_intrinsic_volume",
    ]  # the probe section of the fixture is gone again
    assert [s.file for s in sections()][:4] == list(FIGURES.values())
    with pytest.raises(InvalidParameterError, match="already registered"):
        register(sections()[0])


def test_a_registered_section_appears_in_every_output(tiny_report):
    """The probe section was registered by the test only: reproduce_all ran it after (e), and its figure,
    rows, status counts and text reached summary.json, summary.md and report.html."""
    out, _, _, summary, lines, _ = tiny_report
    entry = summary["figures"]["z_probe"]
    assert entry["rows"] == [dict(i=0, value=3.0, status="converged"), dict(i=1, value=1.0, status="stalled"),
                             dict(i=2, value=2.0, status="converged")]
    assert entry["statuses"] == {word: {"converged": 2, "stalled": 1}.get(word, 0) for word in STATUSES}
    assert entry["data"] == "the test" and entry["meta"] == {"count": 3}
    assert matplotlib.image.imread(out / "z_probe.png").shape[:2] == plots.image_size((4.0, 3.0), ReproConfig.tiny().dpi)
    markdown = (out / "summary.md").read_text()
    assert "## (z) z_probe.png: a probe section" in markdown and "3 probe values." in markdown
    assert "2 converged, 1 stalled" in markdown
    assert "a probe section" in (out / "report.html").read_text()
    assert "reproduce: section (z) a probe section" in lines
    assert summary["probe_config"] == {"values": [3.0, 1.0, 2.0]}


def test_rows_and_figures_come_from_the_computed_data_alone(tiny_report, tmp_path):
    """The probe saw the data of (a)-(e) as computed; each section's rows of that data are the rows of
    the summary, and its figure drawn again from that data alone is the report's figure, pixel for pixel."""
    out, cfg, _, summary, _, seen = tiny_report
    assert sorted(seen) == [s.key for s in sections() if s.group in ("sparse", "phase")]
    for section in sections():
        if section.key not in seen:
            continue
        assert jsonable(section.rows(seen[section.key])) == summary["figures"][section.key]["rows"], section.key
        again = section.figure(seen[section.key], tmp_path / section.file, cfg.dpi)
        assert np.array_equal(matplotlib.image.imread(again), matplotlib.image.imread(out / section.file)), section.key


def test_outcomes_are_counted_in_the_status_vocabulary(tiny_report):
    """Every section counts its computations with the six words of implicit_bias.status, and the
    report's totals are the sums; (e) counts one outcome per stored phase trial."""
    _, _, _, summary, _, _ = tiny_report
    assert "unknown_statuses" not in summary
    for key, entry in summary["figures"].items():
        assert list(entry["statuses"]) == list(STATUSES), key
        assert "unknown_statuses" not in entry, key  # every word the library produced is in the vocabulary
        with_status = [row for row in entry["rows"] if row.get("status") is not None]
        if key != "e_phase_diagrams":
            assert sum(entry["statuses"].values()) == len(with_status), key
    trials = summary["figures"]["e_phase_diagrams"]["meta"]["trials"]
    assert sum(summary["figures"]["e_phase_diagrams"]["statuses"].values()) == trials["total"]
    assert summary["statuses"] == {w: sum(e["statuses"][w] for e in summary["figures"].values()) for w in STATUSES}
    assert summary["checks"]["sections"] == ["b", "c", "d"]


def test_a_word_outside_the_vocabulary_is_shown_as_a_defect():
    from implicit_bias.reproduce.render import outcome_line

    line = outcome_line({word: 0 for word in STATUSES} | {"converged": 3}, {"max_iter": 2})
    assert line == "3 converged, DEFECT, words outside the status vocabulary: 2 'max_iter'"
    assert outcome_line({word: 0 for word in STATUSES}) == "no status-bearing computation"


def test_unknown_report_configuration_is_rejected(tmp_path):
    with pytest.raises(InvalidParameterError, match="unknown report configuration"):
        reproduce_all(tmp_path, config=ReproConfig.tiny(), colour="blue", echo=lambda line: None)
