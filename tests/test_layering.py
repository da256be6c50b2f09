"""The package graph has no cycles, nothing imports the application, and the engine and
the doctor stand side by side (the doctor listens to engine events, never imports it)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[1] / "src" / "contrastkit"


def package_graph() -> dict[str, set[str]]:
    """Top-level package (or module) -> the contrastkit packages it imports."""
    deps: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        pkg = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "contrastkit" and len(parts) > 1 and parts[1] != pkg:
                    deps[pkg].add(parts[1])
    return deps


def test_nothing_imports_the_application() -> None:
    users = sorted(p for p, d in package_graph().items() if "app" in d and p != "__main__")
    assert users == []


def test_train_and_doctor_stand_side_by_side() -> None:
    graph = package_graph()
    assert "doctor" not in graph["train"]
    assert "train" not in graph["doctor"]


def test_package_graph_is_acyclic() -> None:
    graph = package_graph()
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
