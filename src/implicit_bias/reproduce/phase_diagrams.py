"""Section (e): phase transitions of recovery over (delta = m/n, rho = s/m) (SPEC A; Donoho-Tanner curve).

The pixels are sweeps (:mod:`implicit_bias.experiments.reproduction`) run through the store
``out/store.sqlite`` (a rerun resumes; ``workers``/``scheduler`` spread them on Dask). The flow
panels use the exact limit oracle; the flow itself is simulated on a sample of points and agrees.
"""

from __future__ import annotations

import functools

from ..experiments.reproduction import PhaseConfig, flow_sample_spec, phase_specs, success_grid
from ..plots import plot_phase_diagrams
from ..theory import donoho_tanner_rho
from .base import Context, Section, register, register_config
from .render import md_table


def _run_sweeps(pcfg: PhaseConfig, context: Context):
    """Every phase sweep and the flow sample into the store (resuming); the stored trials as a frame."""
    from ..experiments import DaskExecutor, SerialExecutor, SQLiteStore, run_sweep
    from ..experiments.sweep import AUTO_BATCH

    store_path = context.out / "store.sqlite"
    specs = phase_specs(pcfg)
    # The oracle panels run AUTO_BATCH trials at a time (the batched oracle); the others one by one.
    executor = (DaskExecutor(workers=context.workers, scheduler=context.scheduler, batch_size=AUTO_BATCH)
                if (context.workers > 1 or context.scheduler) else SerialExecutor(batch_size=AUTO_BATCH))
    counts = dict(total=0, skipped=0, done=0, failed=0)
    try:
        for label, signed, spec in specs + [("flow sample", False, flow_sample_spec(pcfg))]:
            summary = run_sweep(spec, store_path=str(store_path), executor=executor, progress=False)
            for key in counts:
                counts[key] += getattr(summary, key)
            context.echo(f"reproduce: (e) {'signed' if signed else 'positive'} {label}: {summary.total} trials "
                         f"({summary.skipped} from the store)")
    finally:
        executor.close()
    with SQLiteStore(store_path) as store:
        frame = store.dataframe("phase")
    return specs, frame[frame["n"] == pcfg.n], counts, store_path


def compute(pcfg: PhaseConfig, context: Context) -> dict:
    specs, frame, counts, store_path = _run_sweeps(pcfg, context)
    panels = []
    for signed in (False, True):
        row = []
        for label, sign, spec in specs:
            if sign != signed:
                continue
            fixed = spec.fixed
            part = frame[(frame["signed"] == signed) & (frame["method"] == fixed["method"])]
            if fixed["method"] == "limit":
                part = part[(part["depth"] == fixed["depth"]) & (part["alpha"] == fixed["alpha"])]
            row.append(dict(label=label, deltas=pcfg.deltas, rhos=pcfg.rhos, success=success_grid(part, pcfg.deltas,
                            pcfg.rhos), signed=signed))
        panels.append(row)
    flow = frame[frame["method"] == "flow"]
    sample = [dict(delta=r["delta"], rho=r["rho"], n=r["n"], m=r["m"], s=r["s"], status=r["solver_status"],
                   error_flow=r["error_true"], error_limit=r.get("error_true_of_limit"),
                   dist_flow_to_limit=r.get("dist_to_limit")) for _, r in flow.iterrows()]
    # A trial the store holds as failed raised before it could report a solver status.
    outcomes = ["failed" if r["status"] != "done" else r["solver_status"] for _, r in frame.iterrows()]
    meta = dict(n=pcfg.n, deltas=list(pcfg.deltas), rhos=list(pcfg.rhos), seeds=pcfg.seeds, threshold=pcfg.threshold,
                store=str(store_path), trials=counts)
    return dict(panels=panels, sample=sample, outcomes=outcomes, meta=meta)


def rows(data: dict) -> list[dict]:
    """One row per pixel: its success rate and the l1 transition's rho at its delta."""
    out = []
    transition = functools.cache(donoho_tanner_rho)  # a scalar maximisation per call; the deltas repeat
    for panel in (p for row in data["panels"] for p in row):
        for i, rho in enumerate(panel["rhos"]):
            for j, delta in enumerate(panel["deltas"]):
                out.append(dict(signed=panel["signed"], method=panel["label"], delta=delta, rho=rho,
                                success=panel["success"][i, j], dt_rho=transition(float(delta), panel["signed"])))
    return out


def figure(data: dict, path, dpi: int):
    meta = data["meta"]
    return plot_phase_diagrams(
        data["panels"], path, dpi=dpi, dt_curve=donoho_tanner_rho,
        title=(f"(e) Phase transitions of recovery, Gaussian A, n={meta['n']}, {meta['seeds']} seeds per pixel; success = "
               f"relative l2 error ≤ {meta['threshold']:g}.\nFlow panels: exact limits from the ORACLE (predict_limit); "
               "the flow itself is SIMULATED on a sample of points (table) and agrees. Dashed: the l1 transition."))


def markdown(entry: dict) -> str:
    meta, trials = entry["meta"], entry["meta"]["trials"]
    return "\n".join([
        f"n={meta['n']}, {len(meta['deltas'])} δ x {len(meta['rhos'])} ρ, {meta['seeds']} seeds per pixel; success = "
        f"relative l2 error ≤ {meta['threshold']:g}. Store {meta['store']}: {trials['total']} trials "
        f"({trials['skipped']} from the store, {trials['failed']} failed). The success grid of every panel is in "
        "summary.json; below, the flow SIMULATED on a sample of points against the oracle's limit.",
        "",
        md_table(entry["sample"], [("delta", "δ"), ("rho", "ρ"), ("m", "m"), ("s", "s"), ("status", "status"),
                                   ("error_flow", "flow error"), ("error_limit", "limit error"),
                                   ("dist_flow_to_limit", "‖x_flow−x_lim‖₂/‖x_lim‖₂")]),
    ])


register_config("phase", PhaseConfig, optional=False)
SECTION = register(Section(
    key="e_phase_diagrams", title="phase diagrams of recovery vs the Donoho-Tanner l1 transition", group="phase",
    source="limit oracle (flow panels), LP / pseudo-inverse (l1, l2); flow simulated on a sample",
    compute=compute, rows=rows, figure=figure, markdown=markdown,
    tables=(("sample", "Oracle vs simulated flow on a sample of points"),),
    statuses=lambda data: data["outcomes"], single_thread=False,
))
