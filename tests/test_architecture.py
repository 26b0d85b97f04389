"""The package's shape: no import cycle, every module importable on its own, a leaf model registry, and library
code that never reaches into the repository."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
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
                cycle = stack[stack.index(nxt) :] + [nxt]
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


# Imported by each module in turn with every emotionlab module forgotten first: a module that works only when
# another one happened to be imported before it (an import cycle, or registration that depends on the order)
# fails here. One interpreter for all: torch and friends stay loaded, so the check takes seconds, not minutes.
IMPORT_EACH = """
import importlib, json, sys
failures, registered = {}, None
for name in sys.argv[1:]:
    for loaded in [key for key in sys.modules if key == "emotionlab" or key.startswith("emotionlab.")]:
        del sys.modules[loaded]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("emotionlab"):
            continue  # an optional extra that is not installed here (ray, pandas...)
        failures[name] = f"{type(error).__name__}: {error}"
    except Exception as error:
        failures[name] = f"{type(error).__name__}: {error}"
    else:
        if name == "emotionlab.models.registry":  # nothing else imported, no factory call made
            registered = module.registered_names()
print(json.dumps({"failures": failures, "registered": registered}))
"""


@pytest.fixture(scope="module")
def imported_one_by_one() -> dict:
    modules = sorted(
        _module_name(path)
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("__main__.py", "conftest.py")
    )
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *modules],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_every_module_imports_on_its_own_in_a_fresh_interpreter(imported_one_by_one):
    failures = imported_one_by_one["failures"]
    assert failures == {}, f"modules that cannot be imported on their own: {failures}"


def test_every_architecture_is_registered_when_only_the_registry_is_imported(imported_one_by_one):
    assert set(imported_one_by_one["registered"]) >= {"seed_cnn", "fer_cnn", "fer_cnn_wide", "ensemble"}


def _imports_anywhere(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_the_model_registry_is_a_leaf_that_imports_nothing_of_ours():
    imported = _imports_anywhere(PACKAGE / "models" / "registry.py")
    ours = sorted(name for name in imported if name.startswith((".", "emotionlab")))
    assert ours == [], (
        f"models/registry.py must import nothing of emotionlab (architectures import it): {ours}"
    )
