"""The package's shape, checked on the source: no import cycle, imports at the top, I/O in its layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "segments_lib"
# Modules allowed to import MLflow or Delta: the store layer, and the places that log or load a model.
MLFLOW_MODULES = {"store.tracking", "model.training", "model.uplift_training", "job.inference"}
DELTA_MODULES = {"store.tables", "store.session"}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found[name.removesuffix(".__init__") or "__init__"] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _imported(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _internal_graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        targets = {n.removeprefix("segments_lib.") for n in _imported(tree) if n.startswith("segments_lib.")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycle(_internal_graph(_modules())) is None


def test_every_import_is_at_the_top_of_its_module() -> None:
    inside = [f"{name}:{node.lineno}" for name, tree in _modules().items()
              for top in tree.body if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
              for node in ast.walk(top) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert inside == []


@pytest.mark.parametrize(("library", "allowed"), [("mlflow", MLFLOW_MODULES), ("delta", DELTA_MODULES),
                                                  ("deltalake", DELTA_MODULES)])
def test_io_libraries_are_imported_only_by_their_layer(library: str, allowed: set[str]) -> None:
    users = {name for name, tree in _modules().items()
             if any(n == library or n.startswith(f"{library}.") for n in _imported(tree))}
    assert users <= allowed, f"{library} imported outside its layer: {sorted(users - allowed)}"


def test_no_library_code_builds_its_own_spark_session() -> None:
    builders = [name for name, tree in _modules().items() if name != "store.session"
                for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "builder"]
    assert builders == []
