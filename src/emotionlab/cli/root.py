"""The root `emotionlab` Typer app, the `data` group, the options several commands share (declared once, so that
one name keeps one meaning and one help text), and the console entry point."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from emotionlab.errors import EmotionlabError
from emotionlab.extras import missing_message
from emotionlab.labels import EMOTIONS, canonical_label
from emotionlab.version import __version__

app = typer.Typer(
    help="Recognise emotions on faces: label, audit, train, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: download, audit, split, face crops.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"emotionlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


DETECTOR_NAMES = "blaze, blaze-full, haar, hog, mmod, yunet, cascade, or a chain such as blaze+hog"

# --detector where a model file already records its detector (predict, explain, serve).
DetectorOverride = Annotated[
    str | None, typer.Option(help=f"Face detector instead of the model's: {DETECTOR_NAMES}.")
]

# --detect/--no-detect where a model file records whether it was trained on face crops.
DetectOverride = Annotated[
    bool | None,
    typer.Option(
        "--detect/--no-detect",
        help="Force face detection / use whole images (they are faces already). Default: as the model was trained.",
    ),
]

# --backend: which runtime classifies faces (predict, serve).
Backend = Annotated[
    Literal["auto", "torch", "onnx"],
    typer.Option(
        help="auto: ONNX Runtime for the shipped models (their export ships with them) and .onnx files, PyTorch "
        "otherwise; torch; onnx (exports a .safetensors model once to the cache)."
    ),
]

# --five / --classes: answer among some of the model's classes only (predict, evaluate, serve).
Five = Annotated[
    bool,
    typer.Option(
        "--five",
        help=f"Answer among the study's five emotions only ({', '.join(EMOTIONS)}): a six-class model's "
        "neutral is left out and the five renormalised, as the study's models answered; a five-class model is "
        "unchanged.",
    ),
]
Classes = Annotated[
    str | None,
    typer.Option(
        "--classes",
        help="Answer among these of the model's classes only, comma-separated (e.g. happy,sad,neutral); "
        "their probabilities are renormalised.",
    ),
]


def split_names(values: str | list[str] | None) -> list[str]:
    """Names from a comma-separated option, given once or several times (``--add-class a,b --add-class c``)."""
    values = [values] if isinstance(values, str) else values or []
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def answer_classes(five: bool, classes: str | None) -> list[str] | None:
    """The classes ``--five`` / ``--classes`` ask for (None: all of the model's)."""
    if five and classes is not None:
        raise EmotionlabError("--five and --classes: give one of them")
    if five:
        return list(EMOTIONS)
    if classes is None:
        return None
    names = list(dict.fromkeys(canonical_label(name) for name in split_names(classes)))
    if len(names) < 2:
        raise EmotionlabError(f"--classes {classes!r}: give at least two class names, comma-separated")
    return names


def main() -> None:
    """Console entry point: user errors print one line, no traceback, exit code 2."""
    try:
        app()
    except EmotionlabError as error:
        _say_error(str(error))
        sys.exit(2)
    except (
        ModuleNotFoundError
    ) as error:  # an extra this command needs is not installed: say which, in one line
        message = missing_message(f"'emotionlab {_command_name(sys.argv[1:])}'", error.name or "")
        if message is None:
            raise
        _say_error(message)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        _say_interrupted(interrupt)
        sys.exit(130)
    except SystemExit as exit_:  # Typer turns Ctrl+C into a silent exit 130: say what was kept
        interrupt = _interrupt_behind(exit_)
        if interrupt is not None:
            _say_interrupted(interrupt)
        raise


def _say_error(message: str) -> None:
    # escape: a message may hold brackets ("pip install 'emotionlab[ray]'") that rich would take as markup
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _command_name(args: list[str]) -> str:
    """The command a command line runs, e.g. ``data audit`` for ``emotionlab data audit FOLDER --fix``."""
    command, names = typer.main.get_command(app), []
    for arg in args:
        commands = getattr(command, "commands", {})
        if arg not in commands:
            break
        names.append(arg)
        command = commands[arg]
    return " ".join(names) or "emotionlab"


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, KeyboardInterrupt):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def _say_interrupted(interrupt: KeyboardInterrupt) -> None:
    # An Interrupted carries what was kept and how to go on; a bare Ctrl+C elsewhere has no message.
    text = f"interrupted: {escape(str(interrupt))}" if str(interrupt) else "interrupted"
    console.print(text, highlight=False, soft_wrap=True)
