"""runner/, cluster/ and jobs/ have no import cycles, counting imports inside functions too:
every module can be read from the ones it imports, and none has to be imported lazily to break
a knot (runner.report's compare <-> tables was one)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runner", "cluster", "jobs")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Each module of `packages` -> the modules of `packages` it imports anywhere (a package's
    own submodules imported through `from package import name` included; a parent package is
    not an edge:
    importing a submodule runs its package's __init__, which is not a dependency in return)."""
    modules = {module_name(path): path for package in packages
               for path in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules)
        graph[name] = {edge for edge in edges
                       if edge != name and not name.startswith(edge + ".")}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for edge in sorted(graph[node]):
            found = visit(edge, path + [node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_no_import_cycles_within_or_across_the_packages():
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    found = cycle(graph)
    assert found is None, " -> ".join(found or [])


def test_the_checker_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
