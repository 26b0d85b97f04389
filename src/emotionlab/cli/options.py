"""Options several commands share, declared once so that one name keeps one meaning and one help text."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from emotionlab.errors import EmotionlabError
from emotionlab.labels import EMOTIONS, canonical_label

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


def answer_classes(five: bool, classes: str | None) -> list[str] | None:
    """The classes ``--five`` / ``--classes`` ask for (None: all of the model's)."""
    if five and classes is not None:
        raise EmotionlabError("--five and --classes: give one of them")
    if five:
        return list(EMOTIONS)
    if classes is None:
        return None
    names = list(dict.fromkeys(canonical_label(name) for name in classes.split(",") if name.strip()))
    if len(names) < 2:
        raise EmotionlabError(f"--classes {classes!r}: give at least two class names, comma-separated")
    return names
