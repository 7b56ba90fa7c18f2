"""The shape of the house (issue: trustworthy structure): small modules and functions, one status
vocabulary defined once and documented once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from implicit_bias.status import NEXT_STEP, STATUSES

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "implicit_bias").rglob("*.py"))
MAX_MODULE_LINES = 460  # "no module over ~450 lines"
MAX_FUNCTION_LINES = 80


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_sources_are_found():
    assert len(SOURCES) > 20  # the checks below would pass vacuously on an empty list


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines"
    long = [(name, n) for name, n in _functions(path) if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {path.name}: {long}"


def test_test_functions_are_small_too():
    """"No function over ~80 lines outside benchmarks": the tests included."""
    long = [(path.name, name, n) for path in sorted((ROOT / "tests").glob("*.py"))
            for name, n in _functions(path) if n > MAX_FUNCTION_LINES]
    assert not long, long


def _status_definitions(path: Path):
    """``Literal[...]`` types and module- or class-level collections naming >= 2 status words
    (a membership test such as ``status in ("failed", "diverged")`` is a use, not a definition)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        elements = None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            elements = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if isinstance(node, (ast.Module, ast.ClassDef)):
            for statement in node.body:
                value = getattr(statement, "value", None)
                if isinstance(statement, (ast.Assign, ast.AnnAssign)) and isinstance(value, (ast.Tuple, ast.List, ast.Set)):
                    elements = value.elts
                    break
        if elements is None:
            continue
        words = {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        if len(words & set(STATUSES)) >= 2:
            yield node.lineno, sorted(words & set(STATUSES))


def test_status_words_are_defined_once():
    found = {str(p.relative_to(ROOT)): list(_status_definitions(p)) for p in SOURCES}
    found = {path: hits for path, hits in found.items() if hits}
    assert list(found) == ["src/implicit_bias/status.py"], found


def test_no_foreign_status_words():
    """The words the vocabulary replaced are gone from every status assignment."""
    pattern = re.compile(r"status\w*(?:\s*,\s*\w+)*\s*==?\s*[\"'](max_iter|stuck|capped|ok|error)[\"']")
    hits = [f"{p.name}: {m.group(0)}" for p in SOURCES for m in pattern.finditer(p.read_text())]
    assert not hits, hits


def test_readme_documents_each_status_once_with_a_next_step():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| [^|]+ \|$", readme, flags=re.M)
    table = [row for row in rows if row in STATUSES or row in ("done",)]
    assert sorted(table) == sorted(STATUSES), table
    assert set(NEXT_STEP) == set(STATUSES)
