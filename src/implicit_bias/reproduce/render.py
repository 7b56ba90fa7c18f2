"""The report's three renderings of one summary: ``summary.json``, ``summary.md`` and ``report.html``.

Nothing here knows a section by name: headings, tables and texts come from the registered
:class:`~.base.Section` objects and the summary entries they produced.
"""

from __future__ import annotations

import base64
import html
import json
import math
import platform
from pathlib import Path

import numpy as np

from .._validation import jsonable
from ..status import STATUSES
from .base import Section

INTRO = ("α is the factor-level initial scale (the product starts at α^N, SPEC C2); t is flow time in factor time "
         "(SPEC C1). `limit` rows come from the exact limit oracle (`predict_limit`, dual Newton); `simulated` rows "
         "from integrating the flow (`simulate`). ε = – means the theorem's hypothesis (β₁ < Q) fails, so it gives "
         "no bound. Equation numbers refer to SPEC.md.")


def fmt(value, spec: str = ".3g") -> str:
    """A table cell: ``–`` for missing, yes/NO for booleans, ``inf`` for infinity."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return "inf" if math.isinf(value) else format(value, spec)
    return str(value)


def md_table(rows: list[dict], columns: list[tuple]) -> str:
    """A Markdown table; ``columns``: ``(key, label)`` or ``(key, label, format spec)``."""
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(row.get(c[0]), *c[2:]) for c in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def outcome_line(counts: dict, unknown: dict | None = None) -> str:
    """``"12 converged, 1 budget_exhausted"``: the status words (implicit_bias.status) that occurred, and
    any word outside the vocabulary, flagged as a defect."""
    used = [f"{counts[word]} {word}" for word in STATUSES if counts.get(word)]
    if unknown:
        used.append("DEFECT, words outside the status vocabulary: "
                    + ", ".join(f"{count} {word!r}" for word, count in unknown.items()))
    return ", ".join(used) if used else "no status-bearing computation"


def checks_line(checks: dict) -> str:
    return (f"{checks['bounds_hold']} of {checks['bounds_applicable']} applicable ε bounds hold (sections "
            f"{', '.join(checks['sections']) or '–'}); l1 gaps shrink monotonically as α shrinks: "
            f"{fmt(checks['gaps_monotone'])}; largest relative distance between a simulated flow and the "
            f"oracle's limit: {fmt(checks['max_sim_vs_limit'], '.2e')}.")


def section_markdown(section: Section, entry: dict) -> str:
    """One section of ``summary.md``: heading, outcome counts, the section's own text and tables."""
    return "\n".join([f"## ({section.letter}) {entry['file']}: {entry['title']}", "",
                      f"Data: {entry['data']}. Outcomes: {outcome_line(entry['statuses'], entry.get('unknown_statuses'))}.", "",
                      section.markdown(entry).rstrip(), ""])


def markdown(summary: dict, sections: list[Section]) -> str:
    lines = [
        "# implicit-bias reproduction report",
        "",
        f"Preset: **{summary['preset']}**; total wall time {summary['wall_s']:.1f} s; sections "
        + ", ".join(f"({s.letter}) {s.title}" for s in sections if s.key in summary["figures"]) + ".",
        "",
        INTRO,
        "",
        f"**Checks:** {checks_line(summary['checks'])}",
        "",
        f"**Outcomes** (the status words of implicit_bias.status): "
        f"{outcome_line(summary['statuses'], summary.get('unknown_statuses'))}.",
        "",
    ]
    for section in sections:
        if section.key in summary["figures"]:
            lines.append(section_markdown(section, summary["figures"][section.key]))
    return "\n".join(lines)


def _html_table(rows: list[dict], limit: int = 400) -> str:
    import pandas as pd

    if not rows:
        return "<p><em>no rows</em></p>"
    frame = pd.DataFrame(rows[:limit])
    note = f"<p><em>{len(rows) - limit} more rows in summary.json</em></p>" if len(rows) > limit else ""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0, classes="data") + note


_STYLE = ("<style>body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
          "img{max-width:100%;border:1px solid #ddd}table.data{border-collapse:collapse;font-size:12px;margin:1em 0}"
          "table.data td,table.data th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}"
          "details{margin:1em 0}code{background:#f4f4f4;padding:1px 4px}</style>")


def _html_section(section: Section, entry: dict, out: Path) -> list[str]:
    image = base64.b64encode((out / entry["file"]).read_bytes()).decode()
    parts = [f"<h2>({section.letter}) {html.escape(entry['title'])}</h2>"
             f"<p>Data: {html.escape(entry['data'])}; computed in {entry['wall_s']:.1f} s. "
             f"Outcomes: {html.escape(outcome_line(entry['statuses'], entry.get('unknown_statuses')))}.</p>",
             f"<img alt='{html.escape(section.key)}' src='data:image/png;base64,{image}'>"]
    for name, heading in section.tables:
        parts.append(f"<h3>{html.escape(heading)}</h3>" + _html_table(entry[name]))
    parts.append("<h3>Table</h3>" + _html_table(entry["rows"]))
    parts.append("<details><summary>parameters</summary><pre>"
                 + html.escape(json.dumps(jsonable(entry.get("meta", {})), indent=1)) + "</pre></details>")
    return parts


def write_html(summary: dict, out: Path, sections: list[Section]) -> Path:
    """A self-contained ``report.html``: figures embedded, a table per figure, parameters, version, timings."""
    from ..experiments.store import package_version

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>implicit-bias reproduction</title>", _STYLE,
        "</head><body><h1>implicit-bias: reproduction report</h1>",
        f"<p>Package version <code>{html.escape(package_version())}</code>; Python {platform.python_version()}; "
        f"preset <b>{html.escape(str(summary['preset']))}</b>; total wall time {summary['wall_s']:.1f} s.</p>",
        f"<p><b>Checks:</b> {html.escape(checks_line(summary['checks']))}</p>",
        f"<p><b>Outcomes</b> (the status words of implicit_bias.status): "
        f"{html.escape(outcome_line(summary['statuses'], summary.get('unknown_statuses')))}.</p>",
        f"<p>{html.escape(INTRO)}</p>",
    ]
    for section in sections:
        if section.key in summary["figures"]:
            parts += _html_section(section, summary["figures"][section.key], out)
    parts.append("<details><summary>full configuration</summary><pre>"
                 + html.escape(json.dumps(jsonable(summary["configs"]), indent=1)) + "</pre></details></body></html>")
    return _write_atomic(out / "report.html", "".join(parts))


def _write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_all(summary: dict, out: Path, sections: list[Section]) -> list[Path]:
    """Write ``summary.json``, ``summary.md`` and ``report.html``; return their paths."""
    summary = jsonable(summary)
    json_path = _write_atomic(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    md_path = _write_atomic(out / "summary.md", markdown(summary, sections))
    return [json_path, md_path, write_html(summary, out, sections)]
