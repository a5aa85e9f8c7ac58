"""The import structure: no cycles between modules or packages, ``retarget`` independent of
``moscale_ros``, imports at the top of modules (a lazy one says why), ``import retarget`` without torch.

The graph is read from the source with ``ast`` (nothing is imported): an edge ``a -> b`` for every
``import b`` / ``from b import x`` of module ``a`` (``from pkg import mod`` counts as ``pkg.mod``), at
module level or also inside functions, leaving out ``if TYPE_CHECKING:`` blocks, which never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("moscale_common", "retarget", "moscale_ros")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def import_edges(tree: ast.Module, modules: set[str], top_level_only: bool) -> set[str]:
    """Project modules that ``tree`` imports (at module level, or anywhere)."""
    found: set[str] = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= _imported(node, modules)
        elif not (top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
            stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name.split(".")[0] in PACKAGES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.Module]:
    return source_modules()


def test_find_cycle_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "with-lazy-imports"])
def test_module_import_graph_is_acyclic(trees, top_level_only):
    """No import circle, not even one hidden by an import inside a function."""
    modules = set(trees)
    graph = {name: import_edges(tree, modules, top_level_only) for name, tree in trees.items()}
    assert sum(map(len, graph.values())) > 100  # the walk sees the real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_top_level_packages_import_in_one_direction(trees):
    """moscale_common <- retarget <- moscale_ros, counting imports inside functions too."""
    modules = set(trees)
    graph: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for name, tree in trees.items():
        package = name.split(".")[0]
        graph[package] |= {m.split(".")[0] for m in import_edges(tree, modules, top_level_only=False)} - {package}
    assert graph == {
        "moscale_common": set(),
        "retarget": {"moscale_common"},
        "moscale_ros": {"moscale_common", "retarget"},
    }


def test_retarget_imports_nothing_from_moscale_ros(trees):
    modules = set(trees)
    offenders = {
        name: sorted(m for m in import_edges(tree, modules, top_level_only=False) if m.startswith("moscale_ros"))
        for name, tree in trees.items()
        if name.startswith("retarget")
    }
    assert offenders and not any(offenders.values()), offenders


def test_imports_inside_functions_say_why(trees):
    """Outside the CLI commands (whose heavy imports keep ``moscale --help`` fast), a function that
    imports says why with a comment at its first import (same line, the lines above, or the
    ``try:`` line it sits in)."""
    unexplained = []
    for name, tree in trees.items():
        if name.startswith("moscale_ros.commands"):
            continue
        path = ROOT / Path(*name.split(".")).with_suffix(".py")
        if not path.exists():
            path = ROOT / Path(*name.split(".")) / "__init__.py"
        lines = path.read_text(encoding="utf-8").splitlines()
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            imports = [n for n in ast.walk(func) if isinstance(n, (ast.Import, ast.ImportFrom))]
            if not imports:
                continue
            first = min(imports, key=lambda n: n.lineno)
            above = lines[max(func.lineno, first.lineno - 4) - 1 : first.lineno]
            if not any("#" in line for line in above):
                unexplained.append(f"{name}.{func.name} (line {first.lineno})")
    assert not unexplained, unexplained


def test_import_retarget_loads_neither_torch_nor_moscale_ros():
    probe = "import sys, retarget; print(sorted(m for m in ('torch', 'moscale_ros', 'rclpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
