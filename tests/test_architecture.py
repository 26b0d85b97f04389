"""The package's shape: no import cycle (imports inside functions count), the stages imported only downward, no
module over 400 lines, the standard library imported at the top, every module importable on its own, a leaf model
registry, library code that never reaches into the repository, and docs/architecture.md naming real modules."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emotionlab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_files() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, modules: set[str]) -> dict[str, int]:
    """Which of ``modules`` the module ``name`` (file ``path``) imports anywhere (module level, inside functions,
    under TYPE_CHECKING), each with the line of its first import: a lazy import is still a dependency a reader
    has to follow."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
            # "from a import b" with b a module depends on a.b (and a, added below); with b a name, on a.
            targets = submodules if len(submodules) == len(node.names) else [base, *submodules]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # "import a.b.name" -> the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def _import_graph(*, with_packages: bool = True) -> dict[str, dict[str, int]]:
    """Module -> the modules it imports (with a line). ``with_packages``: also the packages each import runs."""
    files = _module_files()
    modules = set(files)
    graph = {name: _imports(path, name, modules) for name, path in files.items()}
    if not with_packages:
        return graph
    # A package's __init__ runs before its submodules: importing "a.b" imports "a" first. That is a dependency
    # of the importer, unless it is inside "a" already ("a" is then being imported, e.g. a/__init__ importing
    # a.b which imports a.c: no cycle, while a.b importing a name from a/__init__ is one).
    for name, targets in graph.items():
        for target, line in list(targets.items()):
            parent = target.rpartition(".")[0]
            while parent and parent != "emotionlab":
                if not (name == parent or name.startswith(parent + ".")):
                    targets.setdefault(parent, line)
                parent = parent.rpartition(".")[0]
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_counting_imports_inside_functions():
    graph = _import_graph()
    described = []
    for component in _cycles(graph):
        members = set(component)
        edges = [
            f"{name} -> {target} (line {line})"
            for name in component
            for target, line in sorted(graph[name].items())
            if target in members
        ]
        described.append("; ".join(edges))
    assert described == [], "import cycles (move the shared piece down into a third module):\n" + "\n".join(
        described
    )


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path):
    # The check itself, on a made-up pair: b imports a at the top, a imports b inside a function.
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("from .a import f\n", encoding="utf-8")
    modules = {"pkg", "pkg.a", "pkg.b"}
    graph = {name: _imports(tmp_path / f"{name[4:]}.py", name, modules) for name in ("pkg.a", "pkg.b")}
    assert graph == {"pkg.a": {"pkg.b": 2}, "pkg.b": {"pkg.a": 1}}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


# The stages, lowest first: a package imports only from its own level or below. Modules directly in emotionlab/
# (labels, config, errors, extras, paths, version, fileio, isolation, model_file, ...) are the bottom, level 0,
# and import only each other; the package root (the public API: load_model, Recognizer) and __main__ are the top.
STAGES = {
    "data": 1,
    "faces": 2,
    "models": 3,
    "training": 4,
    "inference": 4,
    "evaluation": 5,
    "serving": 5,
    "experiments": 5,
    "labeling": 5,
    "web": 5,
    "cli": 6,
}
TOP = 7
# (importer, imported) -> why: each import that goes up the stages, or sideways into a sibling stage.
ALLOWED_ACROSS = {
    ("emotionlab.data.face_boxes", "emotionlab.faces"): "dataset jobs that run the face detectors over a "
    "manifest (`data faces`, `data people`, `data check` with face settings) live in data/ beside the manifest "
    "they read and write; faces/ itself never reads a manifest (it takes a path and a box)",
    ("emotionlab.data.people", "emotionlab.faces"): "as above",
    ("emotionlab.data.dataset", "emotionlab.faces"): "as above",
    (
        "emotionlab.experiments.ablation",
        "emotionlab.evaluation.metrics",
    ): "an experiment's runs are scored by the evaluation stage (the same metrics as `emotionlab evaluate`)",
    ("emotionlab.experiments.ablation", "emotionlab.evaluation.evaluate"): "as above",
    ("emotionlab.experiments.crossval", "emotionlab.evaluation.evaluate"): "as above",
    ("emotionlab.experiments.crossval", "emotionlab.evaluation.metrics"): "as above",
    ("emotionlab.serving.local", "emotionlab.web.site"): "serve's /local hosts the in-browser page that "
    "`export --web` writes (one builder for both)",
}


def _stage(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return TOP, "emotionlab"
    if parts[1] in STAGES:
        return STAGES[parts[1]], parts[1]
    return 0, parts[1]


def _crossings(graph: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    """Imports that go up the stages or sideways into a sibling package of the same stage."""
    found = {}
    for name, targets in graph.items():
        level, package = _stage(name)
        for target, line in targets.items():
            target_level, target_package = _stage(target)
            if target_package == package or target_level < level:
                continue
            if target_level == level == 0:
                continue  # leaf modules importing each other (errors, mostly)
            found[(name, target)] = line
    return found


def test_stages_import_only_downward():
    crossings = _crossings(_import_graph(with_packages=False))
    offenders = [
        f"{name} -> {target} (line {line})"
        for (name, target), line in sorted(crossings.items())
        if (name, target) not in ALLOWED_ACROSS
    ]
    assert offenders == [], (
        "imports up the stages (data < faces < models < training/inference < evaluation/serving/experiments "
        "< cli), or into a sibling stage: move the shared piece down, or name the exception and why in "
        "ALLOWED_ACROSS:\n" + "\n".join(offenders)
    )
    stale = sorted(set(ALLOWED_ACROSS) - set(crossings))
    assert stale == [], f"ALLOWED_ACROSS entries no longer needed (remove them): {stale}"


MAX_LINES = 400
# Modules over MAX_LINES, each with the reason it is not split yet.
LONG_MODULES: dict[str, str] = {}


def test_no_module_is_over_400_lines():
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    long = {name: count for name, count in sorted(lengths.items()) if count > MAX_LINES}
    assert set(long) <= set(LONG_MODULES), f"modules over {MAX_LINES} lines (split them): {long}"
    stale = sorted(name for name in LONG_MODULES if lengths.get(name, 0) <= MAX_LINES)
    assert stale == [], f"LONG_MODULES entries no longer needed (remove them): {stale}"


# Standard-library modules imported inside functions on purpose, and why; every other one goes at the top.
LAZY_STANDARD_LIBRARY = {
    "fcntl": "POSIX only: the journal's lock is taken where fcntl exists, and the module imports on Windows",
    "urllib": "only to download YuNet once; urllib.request costs ~30 ms of every command's start",
}


def _top_level_nodes(body: list) -> list:
    """Statements run when the module is imported (inside if/try at module level too)."""
    nodes = []
    for node in body:
        nodes.append(node)
        if isinstance(node, ast.If):
            nodes += _top_level_nodes(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            handlers = [statement for handler in node.handlers for statement in handler.body]
            nodes += _top_level_nodes(node.body + node.orelse + node.finalbody + handlers)
    return nodes


def test_standard_library_is_imported_at_module_level():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        at_top = {id(node) for node in _top_level_nodes(tree.body)}
        for node in ast.walk(tree):
            if id(node) in at_top:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names and top not in LAZY_STANDARD_LIBRARY:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    assert offenders == [], "standard-library imports inside functions (move them to the top):\n" + "\n".join(
        offenders
    )


REPOSITORY = PACKAGE.parents[1]
ARCHITECTURE_PAGE = REPOSITORY / "docs" / "architecture.md"


def test_the_architecture_page_names_only_modules_and_functions_that_exist():
    text = ARCHITECTURE_PAGE.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 120, "docs/architecture.md is a one-page map: keep it under 120 lines"
    paths = set(
        re.findall(r"\b((?:[a-z_]+/)*[a-z_]+\.py)\b", text)
    )  # under src/emotionlab/, or the repository
    missing = sorted(
        path for path in paths if not (PACKAGE / path).is_file() and not (REPOSITORY / path).is_file()
    )
    assert len(paths) >= 15 and missing == [], (
        f"docs/architecture.md names modules that do not exist: {missing}"
    )
    defined = {
        node.name
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    called = set(
        re.findall(r"\b([A-Za-z_][A-Za-z_0-9]*)\(\)", text)
    )  # "run_predict()", "Recognizer.predict()"
    unknown = sorted(called - defined)
    assert len(called) >= 10 and unknown == [], (
        f"docs/architecture.md names functions that do not exist: {unknown}"
    )


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
