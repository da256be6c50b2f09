"""The package graph has no cycles, nothing imports the application, and the engine and
the doctor stand side by side (the doctor listens to engine events, never imports it)."""

from __future__ import annotations

import ast
import sys
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


def test_the_documented_import_table_is_the_measured_graph() -> None:
    """docs/architecture.md's table (package -> what it imports) matches the code."""
    import re

    doc = (ROOT.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc[doc.index("| package | imports |") : doc.index("Rules, each checked")]
    documented: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] == "`app`":
            continue
        # Parenthesised notes are prose; "nothing (torch only)" is the empty set.
        listed = "" if cells[1].startswith("nothing") else re.sub(r"\(.*?\)", "", cells[1])
        imports = set(re.findall(r"[a-z_]+", listed))
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            documented[name] = imports
    graph = package_graph()
    measured = {p: set(d) for p, d in graph.items() if p not in ("app", "__main__")}
    for pkg in documented:
        measured.setdefault(pkg, set())
    assert documented == measured


def module_name(path: Path) -> str:
    """`contrastkit.a.b` for src/contrastkit/a/b.py (a package's __init__ is the package)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """Every contrastkit module -> the contrastkit modules it imports, lazily or not.

    `from a.b import c` is an import of module `a.b.c` when that is a module, else of `a.b`.
    """
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in paths else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def test_no_two_files_import_each_other() -> None:
    graph = module_graph()
    pairs = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph[b]})
    assert pairs == []


def test_the_file_check_sees_a_pair(tmp_path: Path, monkeypatch) -> None:
    """The check above can fail: two files importing each other are reported."""
    pkg = tmp_path / "contrastkit" / "toy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from contrastkit.toy.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from contrastkit.toy import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "contrastkit")
    graph = module_graph()
    assert graph["contrastkit.toy.a"] == {"contrastkit.toy.b"}
    assert graph["contrastkit.toy.b"] == {"contrastkit.toy.a"}
