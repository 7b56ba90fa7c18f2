"""The building blocks of the report: a :class:`Section` per figure, and the registries it walks.

A section is one module of :mod:`implicit_bias.reproduce` that computes its numbers, lists them as
table rows and draws one figure from them, and registers itself with :func:`register`.
:func:`~implicit_bias.reproduce.reproduce_all` walks :func:`sections` in order and knows nothing
else about them: a new section is a new module and one ``register`` call.

Each section reads one *configuration group* (a frozen dataclass with ``quick()`` and ``full()``
presets, registered with :func:`register_config`), e.g. ``"sparse"`` for sections (a)-(d).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidParameterError
from ..status import STATUSES


@dataclass(frozen=True)
class Context:
    """What a section's ``compute`` may use besides its configuration.

    ``results`` maps the key of every section computed before to its data (a section may reuse
    an earlier one's runs, as (j) reuses the tracked runs of (i)).
    """

    out: Path
    echo: Callable[[str], None] = print
    workers: int = 1
    scheduler: str | None = None
    results: dict = field(default_factory=dict)


def _rows_statuses(section: "Section", data) -> list[str]:
    return [row["status"] for row in section.rows(data) if row.get("status") is not None]


@dataclass(frozen=True)
class Section:
    """One figure of the report and its table.

    - ``key``: ``"<letter>_<name>"``; the summary's key, and the PNG is ``<key>.png``;
    - ``title``: the heading's text; ``group``: the configuration group it reads;
    - ``source``: where its numbers come from (simulated, oracle, convex solver);
    - ``compute(config, context) -> data``: every number; ``data`` is a dict whose ``"meta"``
      holds the parameters shown with the table, and whose entries named in ``tables`` are
      extra tables (``(name, heading)`` pairs);
    - ``rows(data) -> list[dict]``: the table; ``figure(data, path, dpi) -> Path``: the PNG;
    - ``markdown(entry) -> str``: the text under the heading in ``summary.md``, from the
      section's summary entry (the JSON-ready dict with ``meta``, ``rows`` and the tables);
    - ``checks(data)``: optional, the theorem checks it contributes to the report's headline:
      a dict with ``bounds`` (bools, ``None`` where a bound does not apply), ``monotone``
      (bool) and ``sim_vs_limit`` (distances of simulated runs to the oracle's limits);
    - ``statuses(data)``: the outcome words of its computations; default: the rows' ``status``;
    - ``single_thread``: run with one BLAS thread (small problems; threads only add contention).
    """

    key: str
    title: str
    group: str
    source: str
    compute: Callable[[Any, Context], Any]
    rows: Callable[[Any], list]
    figure: Callable[[Any, Path, int], Path]
    markdown: Callable[[dict], str]
    tables: tuple[tuple[str, str], ...] = ()
    checks: Callable[[Any], dict] | None = None
    statuses: Callable[[Any], list] | None = None
    single_thread: bool = True

    @property
    def letter(self) -> str:
        return self.key.split("_", 1)[0]

    @property
    def file(self) -> str:
        return f"{self.key}.png"

    def status_counts(self, data) -> tuple[dict[str, int], dict[str, int]]:
        """How many of the section's computations ended with each word of :data:`~implicit_bias.status.STATUSES`,
        and the count of any word outside it (a defect of the code that produced it, shown, never hidden)."""
        words = Counter(self.statuses(data) if self.statuses is not None else _rows_statuses(self, data))
        unknown = {word: count for word, count in words.items() if word not in STATUSES}
        return {word: words.get(word, 0) for word in STATUSES}, unknown

    def entry(self, data, wall_s: float) -> dict:
        """The section's part of ``summary.json``."""
        statuses, unknown = self.status_counts(data)
        return dict(file=self.file, title=self.title, data=self.source, meta=data.get("meta", {}),
                    rows=self.rows(data), **{name: data[name] for name, _ in self.tables},
                    statuses=statuses, **({"unknown_statuses": unknown} if unknown else {}), wall_s=wall_s)


@dataclass(frozen=True)
class ConfigGroup:
    """A configuration read by some sections: ``preset`` has ``quick()`` and ``full()``.

    An ``optional`` group runs with a custom (non-preset) sparse ``config`` only when it is given.
    """

    name: str
    preset: type
    optional: bool = True


SECTIONS: dict[str, Section] = {}
CONFIG_GROUPS: dict[str, ConfigGroup] = {}


def register(section: Section) -> Section:
    """Add ``section`` to the report (sections run in the order of their keys)."""
    if section.key in SECTIONS:
        raise InvalidParameterError(f"a report section {section.key!r} is already registered")
    if "_" not in section.key:
        raise InvalidParameterError(f"a section key is '<letter>_<name>'; got {section.key!r}")
    SECTIONS[section.key] = section
    return section


def unregister(key: str) -> None:
    """Remove a section (tests register toy sections and remove them again)."""
    SECTIONS.pop(key, None)


def sections() -> list[Section]:
    """The registered sections, in the order of their keys: (a), (b), ..."""
    return [SECTIONS[key] for key in sorted(SECTIONS)]


def register_config(name: str, preset: type, *, optional: bool = True) -> ConfigGroup:
    """Declare a configuration group; ``reproduce_all(..., name=config)`` overrides its preset."""
    group = ConfigGroup(name, preset, optional)
    CONFIG_GROUPS[name] = group
    return group


def resolve_configs(given: dict, *, quick: bool, custom: bool) -> dict:
    """The configuration of every group: the one ``given``, else the quick/full preset; an optional
    group is left out (``None``) when ``custom`` and not given."""
    unknown = sorted(set(given) - set(CONFIG_GROUPS))
    if unknown:
        raise InvalidParameterError(f"unknown report configuration(s) {unknown}; known: {sorted(CONFIG_GROUPS)}")
    resolved = {}
    for name, group in CONFIG_GROUPS.items():
        if given.get(name) is not None:
            resolved[name] = given[name]
        elif custom and group.optional:
            resolved[name] = None
        else:
            resolved[name] = group.preset.quick() if quick else group.preset.full()
    return resolved
