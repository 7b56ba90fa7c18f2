"""``reproduce_all``: walk the registered sections, then render the summary."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .._validation import jsonable
from ..status import STATUSES
from . import render
from .base import Context, Section, resolve_configs, sections


def reproduce_all(out_dir, *, quick: bool = True, echo: Callable[[str], None] = print, config=None,
                  workers: int = 1, scheduler: str | None = None, **configs) -> list[Path]:
    """Compute every registered section, write its PNG and ``summary.json``, ``summary.md`` and
    ``report.html`` into ``out_dir``; return the PNG paths in section order, then those three.

    ``quick`` picks every configuration group's ``quick()`` (minutes) or ``full()`` preset.
    ``config`` is the sparse group's configuration (sections (a)-(d), e.g. ``ReproConfig.tiny()``);
    with it, the optional groups (``weight_norm``, ``matrix``, ...) run only when passed as keyword
    arguments (``weight_norm=WNReproConfig.tiny()``). ``workers``/``scheduler`` run the phase
    sweeps on Dask; they go through ``out_dir/store.sqlite``, so a rerun resumes.
    """
    custom = config is not None
    given = {**configs, **({"sparse": config} if custom else {})}
    resolved = resolve_configs(given, quick=quick, custom=custom)
    preset = "custom" if custom else ("quick" if quick else "full")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = Context(out=out, echo=echo, workers=workers, scheduler=scheduler)
    dpi = getattr(resolved.get("sparse"), "dpi", 110)
    started = time.perf_counter()
    chosen = [s for s in sections() if resolved.get(s.group) is not None]
    echo(f"reproduce ({preset}): sections {', '.join(s.letter for s in chosen)}")
    figures, entries, checks = [], {}, []
    for section in chosen:
        echo(f"reproduce: section ({section.letter}) {section.title}")
        path, data, wall = _run_section(section, resolved[section.group], context, dpi)
        figures.append(path)
        entries[section.key] = section.entry(data, wall)
        if section.checks is not None:
            checks.append((section.letter, section.checks(data)))
    summary = dict(
        preset=preset, wall_s=time.perf_counter() - started, checks=_combine_checks(checks),
        statuses={word: sum(e["statuses"][word] for e in entries.values()) for word in STATUSES},
        **_unknown_statuses(entries),
        figures=entries, configs={name: asdict(cfg) for name, cfg in resolved.items() if cfg is not None},
        **{("config" if name == "sparse" else f"{name}_config"): asdict(cfg) for name, cfg in resolved.items()
           if cfg is not None},
    )
    paths = figures + render.write_all(summary, out, chosen)
    checks = summary["checks"]
    echo(f"reproduce: {checks['bounds_hold']}/{checks['bounds_applicable']} applicable bounds hold; "
         f"gaps monotone in alpha: {checks['gaps_monotone']}; "
         f"{render.outcome_line(summary['statuses'], summary.get('unknown_statuses'))}; "
         f"total {summary['wall_s']:.1f}s")
    return paths


def run_section(section: Section, config, out_dir, *, dpi: int = 110, echo: Callable[[str], None] = print,
                workers: int = 1, scheduler: str | None = None) -> tuple[Path, dict]:
    """Compute and draw one section alone into ``out_dir``; return its PNG and its summary entry (JSON-ready)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = Context(out=out, echo=echo, workers=workers, scheduler=scheduler)
    path, data, wall = _run_section(section, config, context, dpi)
    return path, jsonable(section.entry(data, wall))


def _run_section(section: Section, config, context: Context, dpi: int):
    """Compute and draw one section; its data join ``context.results`` for the sections after it."""
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    # The problems are small (m <= a few hundred): multithreaded BLAS only adds contention
    # (measured 10x slower Cholesky with 2 OpenBLAS threads on a busy 2-core machine).
    with threadpool_limits(limits=1) if section.single_thread else nullcontext():
        data = section.compute(config, context)
        path = section.figure(data, context.out / section.file, dpi)
    context.results[section.key] = data
    return path, data, time.perf_counter() - started


def _unknown_statuses(entries: dict) -> dict:
    """``{"unknown_statuses": {word: count}}`` over all sections, or nothing when every word is in the vocabulary."""
    unknown = Counter()
    for entry in entries.values():
        unknown.update(entry.get("unknown_statuses", {}))
    return {"unknown_statuses": dict(unknown)} if unknown else {}


def _combine_checks(checks: list[tuple[str, dict]]) -> dict:
    """The headline checks: every applicable bound, monotone gaps, the largest simulation-vs-oracle distance."""
    bounds = [b for _, c in checks for b in c.get("bounds", ()) if b is not None]
    distances = [d for _, c in checks for d in c.get("sim_vs_limit", ()) if d is not None]
    return dict(bounds_applicable=len(bounds), bounds_hold=int(sum(bounds)),
                gaps_monotone=all(c.get("monotone", True) for _, c in checks),
                max_sim_vs_limit=max(distances) if distances else None, sections=[letter for letter, _ in checks])
