"""The package's shape: no import cycle at module level, and library code never reaches into the repository."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emotionlab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules imported when ``path`` is imported (function-level imports are lazy and not counted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks and the like: not executed at import
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found |= {target for target in targets if target in modules and target != name}
    return found


def test_no_module_level_import_cycle():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in files}
    graph = {_module_name(path): _top_level_imports(path, modules) for path in files}
    # A package's __init__ runs before its submodules: importing "a.b" imports "a" first. That is a dependency
    # of the importer, unless it is inside "a" already ("a" is then being imported, e.g. a/__init__ importing
    # a.b which imports a.c: no cycle, while a.b importing a name from a/__init__ is one, found above).
    for name, targets in graph.items():
        for target in list(targets):
            parent = target.rpartition(".")[0]
            while parent and parent != "emotionlab":
                if not (name == parent or name.startswith(parent + ".")):
                    graph[name] = graph[name] | {parent}
                parent = parent.rpartition(".")[0]
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_library_code_does_not_depend_on_the_repository_layout():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "parents[" in path.read_text(encoding="utf-8")
    ]
    assert offenders == [], f"library modules locating the repository from their own path: {offenders}"
