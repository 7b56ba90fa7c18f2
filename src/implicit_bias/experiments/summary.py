"""What ``implicit-bias status`` says about a store: counts, failures, numerical statuses, stale
rows, running sweeps and the environments the numbers were computed in.

A trial's *state* (``done``: it returned a record, ``failed``: it raised) is kept apart from the
*numerical status* inside a done trial's record (the words of :mod:`implicit_bias.status`).
"""

from __future__ import annotations

import json

from ..errors import ImplicitBiasError
from .registry import get_experiment
from .spec import load_spec
from .store import SQLiteStore, package_version
from .sweep import pending_tasks


def _stale(store: SQLiteStore) -> int:
    """Rows computed by another package version or another numerics version (never reused)."""
    stale = 0
    for experiment, version, numerics, count in store.versions():
        try:
            current = get_experiment(experiment).numerics
        except ImplicitBiasError:  # an experiment this version does not have
            current = None
        stale += count if (version != package_version() or numerics != current) else 0
    return stale


def store_report(store: SQLiteStore, spec_file=None) -> dict:
    """Everything ``status`` shows about a store, as one JSON-able dict."""
    counts = store.counts()
    return {
        "store": str(store.path), "schema": store.schema, "integrity": store.integrity(),
        "done": counts.get("done", 0), "failed": counts.get("failed", 0),
        "pending": len(pending_tasks(load_spec(spec_file), store)[0]) if spec_file else None,
        "result_statuses": store.result_statuses(),
        "failures": [{"count": count, "error": error} for error, count in store.failures()],
        "stale": _stale(store),
        "running": sum(store.live_claims().values()),
        "environments": [{"count": count, **json.loads(text)} for text, count in store.environments()],
        "by_experiment": [{"experiment": e, "status": s, "count": c} for e, s, c in store.by_experiment()],
    }


def report_lines(report: dict) -> list[str]:
    """The report as text: the summary line first (scripts read it), then the details."""
    pending = f", {report['pending']} pending" if report["pending"] is not None else ""
    counts = f"{report['done']} done, {report['failed']} failed{pending}"
    lines = [f"store {report['store']}: {counts}; integrity {report['integrity']}"]
    if report["result_statuses"]:
        words = ", ".join(f"{count} {word}" for word, count in report["result_statuses"].items())
        lines.append(f"done trials by numerical status: {words}")
    if report["failures"]:
        lines.append("failed trials (the trial raised; sweep --retry-failed reruns them):")
        lines += [f"  {failure['count']:>6} x {failure['error']}" for failure in report["failures"]]
    if report["stale"]:
        lines.append(f"{report['stale']} trials were computed by another package or numerics version: "
                     f"kept, not reused")
    if report["running"]:
        lines.append(f"{report['running']} trials are claimed by a sweep running now")
    for env in report["environments"]:
        lines.append(f"computed with python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
                     f"BLAS {'; '.join(env['blas']) or '-'}: {env['count']} trials")
    lines += [f"  {row['experiment']:<12} {row['status']:<7} {row['count']}" for row in report["by_experiment"]]
    return lines
