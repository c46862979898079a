"""The package's shape: star_core is a stack of parts, and no import goes up the stack or round in a circle.

Read from the source with `ast`, so every import counts, also one inside a function or under
TYPE_CHECKING: a function-local import is the usual way a circle hides.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "star_core"
# The parts, lowest first: a module may import from its own part and from those before it, never after.
PARTS = ("core", "tasks", "store", "analysis", "model", "engine", "runtime", "cli")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def imports_of(module: str, path: Path) -> set[str]:
    """The star_core modules `module` imports, wherever in the file the import stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import star_core.x.y` names y; a name inside a module names it
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package's own __init__


def test_star_core_has_only_the_named_parts():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name not in {"__init__.py", "__pycache__"})
    assert entries == sorted(PARTS)
    assert all((PACKAGE / part / "__init__.py").exists() for part in PARTS)


def test_no_module_imports_from_a_part_above_its_own():
    upward = [f"{m} -> {t}" for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
              if part_of(m) and part_of(t) and PARTS.index(part_of(t)) > PARTS.index(part_of(m))]
    assert upward == []


def test_there_is_no_import_circle():
    circles = [c for c in _strongly_connected(GRAPH) if len(c) > 1]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the graph's strongly connected components (a circle is one of more than one module)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("graph, circles", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_the_circle_finder_finds_circles(graph, circles):
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == circles


def test_the_import_reader_sees_local_and_relative_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ..core import errors\n    from ..store import Store\n")
    assert imports_of("star_core.engine.m", source) == {"star_core.core.errors", "star_core.store"}
