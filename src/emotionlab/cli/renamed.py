"""Old option spellings, kept working for one release with a one-line note.

Every option name means one thing in every command: ``--out`` is a folder, ``--output`` a file, ``--arch`` an
architecture name, ``--model`` a model file, ``--data`` the dataset, ``--detect/--no-detect`` whether faces are
found and cropped, ``--patience`` early stopping. Before 0.3 some commands used these words otherwise; the
old spellings below are rewritten to the new ones before the command parses its options, so scripts keep
working while the note tells their authors what to change.
"""

from __future__ import annotations

import sys

from typer.core import TyperGroup

# command path (without "emotionlab") -> {old option: new option}
RENAMED: dict[str, dict[str, str]] = {
    "train": {
        "--model": "--arch",
        "--from": "--init-from",
        "--early-stopping": "--patience",
        "--faces": "--detect",
        "--no-faces": "--no-detect",
    },
    "augment-preview": {"--out": "--output", "--faces": "--detect", "--no-faces": "--no-detect"},
    "report": {"--out": "--output"},
    "data split": {"--out": "--output"},
    "data faces": {"--out": "--output"},
    "experiment ablation": {"--backbone-model": "--backbone-arch"},
}

# Commands whose dataset folder was a positional argument; it is now --data.
POSITIONAL_DATA = {"augment-preview", "data audit", "data split", "data faces"}


def _note(command: str, old: str, new: str) -> None:
    print(
        f"note: `emotionlab {command} {old}` is now `{new}`; the old spelling goes in the next release",
        file=sys.stderr,
    )


def _takes_value(command) -> set[str]:
    names = set()
    for param in command.params:  # Typer vendors its own click: duck-typed, not isinstance
        if param.param_type_name == "option" and not param.is_flag and not getattr(param, "count", False):
            names.update(param.opts)
    return names


def rewrite_args(command_path: str, command, args: list[str], *, notes: bool = True) -> list[str]:
    """``args`` of ``command`` with old option spellings (and a positional dataset) in today's form."""
    renamed = RENAMED.get(command_path, {})
    out: list[str] = []
    takes_value = _takes_value(command)
    has_data = any(arg == "--data" or arg.startswith("--data=") for arg in args)
    positional_data = command_path in POSITIONAL_DATA and not has_data
    expect_value = after_separator = False
    for arg in args:
        if expect_value:  # the value of the previous option, whatever it looks like
            out.append(arg)
            expect_value = False
            continue
        if arg == "--" and not after_separator:
            after_separator = True
            if not positional_data:
                out.append(arg)
            continue
        if after_separator:  # taken as written, except the old positional dataset
            positional_data = _take(out, arg, positional_data, command_path, notes)
            continue
        name, equals, value = arg.partition("=")
        if name in renamed:
            if notes:
                _note(command_path, name, renamed[name])
            name = renamed[name]
            arg = name + equals + value
        if arg.startswith("-"):
            expect_value = name in takes_value and not equals
            out.append(arg)
        else:
            positional_data = _take(out, arg, positional_data, command_path, notes)
    return out


def _take(out: list[str], arg: str, positional_data: bool, command_path: str, notes: bool) -> bool:
    """Append a positional ``arg``, as ``--data ARG`` when it is the old positional dataset; returns whether a
    positional dataset is still expected."""
    if not positional_data:
        out.append(arg)
        return False
    if notes:
        _note(command_path, "DATASET (positional)", "--data DATASET")
    out += ["--data", arg]
    return False


class RenamingGroup(TyperGroup):
    """A Typer group that rewrites old option spellings of its commands (see ``RENAMED``)."""

    def resolve_command(self, ctx, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not hasattr(command, "commands"):  # a command, not a group
            words, context = [command.name or name or ""], ctx
            while context.parent is not None:  # the root's name may be "python -m emotionlab": not used
                words.insert(0, context.info_name or "")
                context = context.parent
            path = " ".join(words)
            rest = rewrite_args(path, command, rest)
        return name, command, rest
