"""How many of our modules one photo crosses on its way through `emotionlab predict`.

    nice -n 19 .venv/bin/python benchmarks/predict_path.py
    nice -n 19 .venv/bin/python benchmarks/predict_path.py examples/two_people.jpg --format csv

Runs the command in this process, as the ``emotionlab`` console script does after it has loaded the CLI
(``emotionlab.cli.main`` with the command line in ``sys.argv``), under ``sys.setprofile`` in every thread.
A module counts when one of its functions is called; imports do not count: a module's top-level code, and
every call made while it runs (decorators registering commands, dataclasses, constants), is left out, so a
module that is only imported on the way is not on the path. Prints the count and the modules with the
functions that ran in each; writes benchmarks/results/predict_path.json (``--json``) with the command, keeping
the file's ``before`` entry (the same measurement on the code before issue 17's merges, commit 8b5484b).
Default command: ``emotionlab predict examples/astronaut.jpg --format jsonl`` with the shipped model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import threading
from collections import defaultdict
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "emotionlab"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "predict_path.json"
DEFAULT_ARGS = ["examples/astronaut.jpg", "--format", "jsonl"]


def module_name(filename: str) -> str | None:
    """``.../src/emotionlab/cli/predict.py`` -> ``cli/predict.py``; None for code that is not ours."""
    try:
        return Path(filename).resolve().relative_to(PACKAGE).as_posix()
    except ValueError:
        return None


class PathRecorder:
    """A profile function that records, per module of ours, the functions called outside any import."""

    def __init__(self) -> None:
        self.functions: dict[str, set[str]] = defaultdict(set)
        self._importing = threading.local()  # per thread: how many module bodies are running

    def __call__(self, frame, event: str, arg) -> None:
        if event not in ("call", "return"):
            return  # c_call and friends: C functions belong to no module of ours
        code = frame.f_code
        if code.co_name == "<module>":
            depth = getattr(self._importing, "depth", 0)
            self._importing.depth = depth + (1 if event == "call" else -1)
            return
        if event != "call" or getattr(self._importing, "depth", 0):
            return
        name = module_name(code.co_filename)
        if name is not None:
            self.functions[name].add(code.co_qualname)

    @contextlib.contextmanager
    def active(self):
        threading.setprofile(self)
        sys.setprofile(self)
        try:
            yield self
        finally:
            sys.setprofile(None)
            threading.setprofile(None)


def run_command(args: list[str]) -> tuple[PathRecorder, int, str]:
    """Run ``emotionlab predict ARGS`` in this process under the recorder: (recorder, exit code, stdout)."""
    from emotionlab.cli import main  # the console script's import, outside the measurement

    recorder = PathRecorder()
    stdout = io.StringIO()
    argv, sys.argv = sys.argv, ["emotionlab", "predict", *args]
    code = 0
    try:
        with recorder.active(), contextlib.redirect_stdout(stdout):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return recorder, code, stdout.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("args", nargs="*", help=f"predict's arguments (default: {' '.join(DEFAULT_ARGS)})")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    options, extra = parser.parse_known_args()
    args = [*options.args, *extra] or DEFAULT_ARGS
    recorder, code, output = run_command(args)
    if code != 0:
        sys.exit(f"emotionlab predict {' '.join(args)} exited with {code}")
    modules = sorted(recorder.functions)
    command = "emotionlab predict " + " ".join(args)
    print(f"{command}: {len(modules)} of our modules run code (imports not counted)")
    for name in modules:
        print(f"  {name:34} {', '.join(sorted(recorder.functions[name]))}")
    result = {
        "command": command,
        "measured_with": recorded.command_line(),  # sys.setprofile in every thread around emotionlab.cli.main
        "modules": len(modules),
        "functions": {name: sorted(recorder.functions[name]) for name in modules},
        "records": len(output.splitlines()),
    }
    # A figure measured on older code (the same command and script) is kept beside the new one.
    if options.json.is_file():
        result["before"] = json.loads(options.json.read_text(encoding="utf-8")).get("before")
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {options.json}")


if __name__ == "__main__":
    main()
