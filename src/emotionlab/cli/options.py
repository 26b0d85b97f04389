"""Options several commands share, declared once so that one name keeps one meaning and one help text."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

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
