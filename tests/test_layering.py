"""The import graph of cascadekit, read from the source's AST (nothing is imported).

Two rules: the adapters never import the server (:mod:`cascadekit.oip` is the codec both use),
and the modules do not import each other in a cycle. Only imports that run when a module is
loaded count: those at module level (``if TYPE_CHECKING:`` blocks excluded); an import inside
a function runs when it is called and is how an optional extra is loaded lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cascadekit"


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = ["cascadekit", *path.relative_to(src).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run at load time: module level, inside try/if/with, not in functions."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                todo.extend(node.body)
            todo.extend(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                todo.extend(block)
            for handler in node.handlers:
                todo.extend(handler.body)
        elif isinstance(node, ast.With):
            todo.extend(node.body)
    return out


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the cascadekit modules it imports at load time."""
    modules = {_module_name(p, src): p for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                stem = node.module or ""
                root = (f"{base}.{stem}" if stem else base) if node.level else stem
                # "from . import x" imports the submodule x when there is one
                targets = [f"{root}.{a.name}" for a in node.names if f"{root}.{a.name}" in modules]
                targets = targets or [root]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t.startswith("cascadekit") and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None.

    A package's ``__init__`` importing its own submodules is not a cycle in itself; a submodule
    importing its package's ``__init__`` back would be.
    """
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without the edges from a package to its own submodules (see find_cycle)."""
    return {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in graph.items()}


def test_adapters_never_import_the_server() -> None:
    graph = import_graph()
    assert "cascadekit.adapters.remote" in graph
    bad = sorted(
        (m, d)
        for m, deps in graph.items()
        if m.startswith("cascadekit.adapters")
        for d in deps
        if d.startswith("cascadekit.serve")
    )
    assert not bad, f"adapters import the server: {bad}"
    # function-level imports count here too: an adapter never reaches up into serve
    for path in (SRC / "adapters").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("serve", "cascadekit.serve")), path
                assert not (node.level == 2 and (node.module or "").startswith("serve")), path


def test_remote_model_and_server_share_one_codec() -> None:
    graph = import_graph()
    assert "cascadekit.oip" in graph["cascadekit.adapters.remote"]
    assert "cascadekit.oip" in graph["cascadekit.serve.service"]
    assert not any(d.startswith("cascadekit.serve") for d in graph["cascadekit.oip"])


def test_no_import_cycle_among_cascadekit_modules() -> None:
    cycle = find_cycle(_edges(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_config_and_service_do_not_import_each_other() -> None:
    graph = import_graph()
    assert "cascadekit.serve.service" not in graph["cascadekit.serve.config"]
    assert "cascadekit.serve.model" in graph["cascadekit.serve.config"]


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "cascadekit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import y\n"
        "def f():\n    from .a import z\n"
    )
    (pkg / "c.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph["cascadekit.a"] == {"cascadekit.b"}
    assert graph["cascadekit.b"] == set()  # TYPE_CHECKING and function-level imports skipped
    assert find_cycle(_edges(graph)) is None
    (pkg / "b.py").write_text("import cascadekit.c\n")
    cycle = find_cycle(_edges(import_graph(pkg)))
    assert cycle == ["cascadekit.a", "cascadekit.b", "cascadekit.c", "cascadekit.a"]


@pytest.mark.parametrize("name", ["cascadekit.routing", "cascadekit.oip", "cascadekit.serve.model"])
def test_new_modules_are_found(name: str) -> None:
    assert name in import_graph()


def private_uses(src: Path = SRC) -> list[str]:
    """Private names one cascadekit module takes from another: ``from .x import _name`` and
    ``x._name`` on a cascadekit module bound by an import (anywhere, functions included).
    A private *module* (``from . import _optional``, ``from ._optional import require``) is
    fine: it is private to the package, not to one module."""
    modules = {_module_name(p, src): p for p in src.rglob("*.py")}
    found: list[str] = []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for name, path in sorted(modules.items()):
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: set[str] = set()  # local names bound to cascadekit modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                stem = node.module or ""
                root = (f"{base}.{stem}" if stem else base) if node.level else stem
                if not root.startswith("cascadekit"):
                    continue
                for a in node.names:
                    if f"{root}.{a.name}" in modules:
                        bound.add(a.asname or a.name)
                    elif private(a.name):
                        found.append(f"{name}: from {root} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("cascadekit") and a.asname:
                        bound.add(a.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and private(node.attr)
            ):
                found.append(f"{name}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module() -> None:
    uses = private_uses()
    assert not uses, "make these public or move them: " + "; ".join(uses)


def test_the_private_use_finder_finds_them(tmp_path: Path) -> None:
    pkg = tmp_path / "cascadekit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helpers.py").write_text("def ok():\n    pass\n")
    (pkg / "a.py").write_text("def _x():\n    pass\n")
    (pkg / "b.py").write_text(
        "from ._helpers import ok\nfrom . import a\n\ndef f():\n    from .a import _x\n"
        "    return a._x()\n"
    )
    assert private_uses(pkg) == ["cascadekit.b: from cascadekit.a import _x", "cascadekit.b: a._x"]
