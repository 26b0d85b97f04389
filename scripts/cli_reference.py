"""Write docs/cli.md from the command line itself, so that the page and `--help` cannot disagree.

    python scripts/cli_reference.py            # rewrite docs/cli.md
    python scripts/cli_reference.py --check    # exit 1 when docs/cli.md is not what the code gives

tests/test_cli_names.py runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from emotionlab.cli import app

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

HEADER = """\
# Command-line options

Every command of `emotionlab` and every option, generated from the program by `python scripts/cli_reference.py`
(a test fails when this page and `--help` disagree). `emotionlab COMMAND --help` prints the same.

Top level: `emotionlab --version` prints the version; `emotionlab --help` lists the commands.

## One word, one meaning

| option | means, in every command |
|---|---|
| `--data` | the dataset folder (class folders, optionally under train/validation/test) |
| `--manifest` | a manifest CSV (`path,label,split,...`, paths under `--data`) |
| `--out` | **a folder** the command writes into (a run folder, an evaluation, overlays, timelines, a new dataset) |
| `--output` / `-o` | **a file** the command writes (records, a manifest, a PNG, an HTML report, a model file); `predict` takes the record format from its extension (.jsonl, .csv) unless `--format` says otherwise |
| `--model` | **a model file** (`.safetensors`, or `.onnx` where said), or a shipped model's short name (`default`, `ferplus8`) |
| `--arch` | **an architecture name**: one `emotionlab models` lists, or a timm model name |
| `--detect` / `--no-detect` | find faces and crop them, or use whole images (they are faces already) |
| `--detector` | which face detector: `blaze` (default), `blaze-full`, `haar`, `hog`, `mmod`, `yunet`, or a chain such as `blaze+hog` |
| `--patience` | early stopping: epochs without a new lowest validation loss |
| `--workers` | processes (or, for `data import`, concurrent downloads) working beside the main one |
| `--resume` | `train`: the run folder to continue; `predict`: a flag, continue `--output` |
"""


def _cell(text: str | None) -> str:
    if not text:
        return "—"
    return " ".join(text.split()).replace("|", "\\|")


def _value(param, context) -> str:
    if param.param_type_name == "option" and param.is_flag:
        return "on/off" if param.secondary_opts else "flag"
    return f"`{param.display_type(context)}`".replace("|", "\\|")


def _default(param) -> str:
    if param.required:
        return "required"
    default = param.default
    if default is None or default is False or default == () or default == []:
        return "—"
    if default is True:
        return f"`{param.opts[0]}`"
    return f"`{default}`"


def _names(param) -> str:
    if param.param_type_name == "argument":
        return f"`{param.name.upper()}` (argument)"
    return " / ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])


def _commands(group, path: list[str]):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, [*path, name])
        else:
            yield [*path, name], command


def render() -> str:
    root = typer.main.get_command(app)
    root_context = root.make_context("emotionlab", ["--help"], resilient_parsing=True)
    lines = [HEADER.rstrip("\n"), "", "## Commands", ""]
    for path, command in _commands(root, []):
        context = command.make_context(" ".join(path), [], parent=root_context, resilient_parsing=True)
        lines += [f"### `emotionlab {' '.join(path)}`", "", _cell((command.help or "").split("\n\n")[0]), ""]
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if not params:
            lines += ["No options.", ""]
            continue
        lines += ["| option | value | meaning | default |", "|---|---|---|---|"]
        for param in params:
            lines.append(
                f"| {_names(param)} | {_value(param, context)} | {_cell(param.help)} | {_default(param)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
