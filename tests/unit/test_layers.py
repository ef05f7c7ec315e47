"""Layers point one way: the protocol imports nothing above it, and nothing imports in a cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "phpvoip"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _graph() -> dict[str, set[str]]:
    """Module-level imports between phpvoip modules (imports inside functions and
    under TYPE_CHECKING are the deliberate way around a cycle, and not counted)."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("phpvoip"):
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    graph[name].add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name.startswith("phpvoip"))
    return graph


def test_sip_imports_nothing_above_it():
    """phpvoip.sip is the protocol: it imports only itself."""
    for name, imported in _graph().items():
        if name.startswith("phpvoip.sip"):
            above = {m for m in imported if not m.startswith("phpvoip.sip")}
            assert not above, f"{name} imports {above}"


def test_no_import_cycles():
    """No chain of module-level imports leads back to where it started."""
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for child in graph.get(name, ()):
            assert child not in path, " -> ".join([*path[path.index(child):], child])
            if child not in done:
                visit(child, [*path, child])
        done.add(name)

    for name in list(graph):
        visit(name, [name])
