"""The package's shape: layers that import only downwards, no import cycles, and size limits.

Imports are read from the source (function-local ones included), so a cycle cannot hide behind a
late import. Imports under `if TYPE_CHECKING:` run only for type checkers: they must still point
downwards or sideways within a layer, but do not count as cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "hpsweep"
#: bottom to top; a module may import from its own layer and the layers before it
LAYERS = ["hpsweep.errors", "hpsweep.contract", "hpsweep.compat", "hpsweep.loading", "hpsweep.storage",
          "hpsweep.spec", "hpsweep.search",
          "hpsweep.train", "hpsweep.track",
          "hpsweep.registry", "hpsweep.report", "hpsweep.sweep", "hpsweep.cli"]
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 50


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int | None:
    """The index of the layer a module belongs to (None for hpsweep/__init__, which holds only the version)."""
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(our module imported, line, whether only for type checking) for every import in the file."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for item in child.body:
                    visit_node(item, True)
                for item in child.orelse:
                    visit_node(item, typing_only)
                continue
            visit_node(child, typing_only)

    def visit_node(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, typing_only) for alias in node.names
                         if alias.name.split(".")[0] == "hpsweep")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hpsweep":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((candidate if candidate in MODULES else node.module, node.lineno, typing_only))
        visit(node, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_every_module_belongs_to_a_layer():
    loose = [m for m in MODULES if layer(m) is None and m != "hpsweep"]
    assert not loose, f"modules outside every layer: {loose}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module, path in MODULES.items():
        own = layer(module)
        for target, line, _ in imports(path):
            theirs = layer(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {m: {t for t, _, typing_only in imports(p) if not typing_only and t in MODULES and t != m}
             for m, p in MODULES.items()}
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif state[nxt] == 0:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in graph:
        if state[module] == 0:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_files_and_functions_stay_small():
    too_long = []
    for path in MODULES.values():
        text = path.read_text(encoding="utf-8")
        if (count := len(text.splitlines())) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {count} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "over the size limits:\n" + "\n".join(too_long)


def test_the_checker_sees_local_imports_and_type_only_ones(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hpsweep.cli.main import main\n"
                      "def f():\n    from hpsweep.sweep import driver\n", encoding="utf-8")
    assert imports(sample) == [("hpsweep.cli.main", 3, True), ("hpsweep.sweep.driver", 5, False)]
