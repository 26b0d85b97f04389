"""`emotionlab models`, `export` (ONNX) and `ensemble`: model files and architectures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from emotionlab.cli.root import app
from emotionlab.errors import EmotionlabError


@app.command("models")
def list_models_command() -> None:
    """List the project's own architectures (every timm model name works too)."""
    from emotionlab.models.registry import list_models

    for name in list_models():
        print(name)


@app.command("export")
def export_command(
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="ONNX file to write (metadata embedded).")
    ] = None,
    web: Annotated[
        Path | None,
        typer.Option(
            "--web",
            help="Folder to write the in-browser page into: page, BlazeFace, the model(s) and ONNX Runtime Web, "
            "for any static host; faces are found and classified on the user's device (default: both shipped "
            "models, selectable).",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Model file, or a shipped model: default, ferplus8 (default: default)."),
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Quantise to int8 (dynamic; static with --calibration).")
    ] = False,
    calibration: Annotated[
        list[str] | None, typer.Option(help="Images/folders for static int8 calibration (not the test set).")
    ] = None,
) -> None:
    """Export a model to ONNX (--onnx), or the page that runs it in the browser (--web FOLDER)."""
    if (onnx is None) == (web is None):
        raise EmotionlabError("give one of --onnx FILE (an ONNX model) or --web FOLDER (the in-browser page)")
    if web is not None:
        if int8 or calibration:
            raise EmotionlabError("--int8 and --calibration are for --onnx")
        print(export_web_command(web, model))
        return
    print(export_onnx_command(model, onnx, int8=int8, calibration=calibration))


def export_web_command(folder: Path, model: Path | None) -> str:
    """`emotionlab export --web`: write the static site, then say how to open it."""
    from emotionlab.web.site import ORT_WEB_VERSION, export_web

    written, size = export_web(folder, [model] if model is not None else None)
    return (
        f"wrote {written} ({size / 1e6:.1f} MB: page, models, ONNX Runtime Web {ORT_WEB_VERSION}); try it with "
        f"`python -m http.server -d {written}` and open http://localhost:8000"
    )


def export_onnx_command(
    model: str | Path | None, out: str | Path, *, int8: bool = False, calibration: list[str] | None = None
) -> str:
    """`emotionlab export`: export, then describe what was written in one line."""
    from emotionlab.inference import expand_inputs, resolve_model_path
    from emotionlab.inference.export import calibration_inputs, export_onnx

    model = resolve_model_path(model)
    inputs = None
    if calibration:
        if not int8:
            raise EmotionlabError("--calibration is for --int8 (static quantisation)")
        inputs = calibration_inputs(model, expand_inputs(calibration), show_progress=True)
    path = export_onnx(model, out, int8=int8, calibration=inputs)
    kind = f"int8 (static, {len(inputs)} calibration images)" if inputs is not None else "int8 (dynamic)"
    size = path.stat().st_size / 1e6
    return f"wrote {path} ({kind if int8 else 'float32'}, {size:.1f} MB) from {model}"


@app.command("ensemble")
def ensemble_command(
    models: Annotated[
        list[Path], typer.Argument(help="Model files to average (same labels and input format).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The ensemble model file to write (.safetensors).")
    ],
    tta: Annotated[
        Literal["flip", "none"],
        typer.Option(
            help="Test-time augmentation inside the model: flip (face and mirror averaged) or none."
        ),
    ] = "flip",
) -> None:
    """Average several models (seeds, folds, backbones) into ONE model file, optionally with test-time flips."""
    from emotionlab.models.ensemble import build_ensemble

    path = build_ensemble(models, output, tta=tta)
    print(f"wrote {path} ({len(models)} model file(s), test-time augmentation: {tta})")
