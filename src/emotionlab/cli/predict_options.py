"""What `emotionlab predict` is asked for (``PredictOptions``) and the checks made on it before any model loads,
shared by the plain job (``cli.predict``) and the Ray engine (``cli.predict_ray``); neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.errors import EmotionlabError
from emotionlab.fileio import is_inside

ENGINES = ("local", "ray")


@dataclass
class PredictOptions:
    """Everything `emotionlab predict` can be asked for (see the command's help for each option)."""

    inputs: list[str] = field(default_factory=list)
    model: Path | None = None
    output_format: str = "table"
    output: Path | None = None
    resume: bool = False
    shard: str | None = None
    batch_size: int = 32
    workers: int = 0
    detect: bool | None = None
    detector: str | None = None
    max_faces: int | None = None
    backend: str = "auto"
    int8: bool = False
    fps: float | None = None
    out_dir: Path | None = None
    annotate: Path | None = None
    camera: int | None = None
    max_frames: int | None = None
    window: bool | None = None  # None: a window when OpenCV has a GUI and there is a display
    progress: bool | None = None  # None: on (a bar on a terminal, lines in a log)
    engine: str = "local"  # local: this process and --workers; ray: Ray Data (cli/predict_ray.py)
    address: str | None = (
        None  # --engine ray: the cluster to join (None: $RAY_ADDRESS, else a local instance)
    )
    actors: int = 1  # --engine ray: model copies classifying at once
    # --five / --classes: answer among these of the model's classes (None: all of them)
    classes: list[str] | None = None


def refuse_inside(target: Path | None, inputs: list[str], what: str) -> None:
    """Outputs never go inside an input folder: a dataset root stays untouched, and a rerun would read them."""
    if target is None:
        return
    for item in inputs:
        if Path(item).is_dir() and is_inside(target, item):
            raise EmotionlabError(
                f"{target}: {what} must not be inside the input folder {item}; choose another"
            )


def check_engine(engine: str, *, address: str | None, annotate: Path | None, camera: int | None) -> None:
    """One line for options the chosen engine cannot take, before any model loads."""
    if engine not in ENGINES:
        raise EmotionlabError(f"unknown --engine {engine!r}: use local or ray")
    if engine == "local":
        if address:
            raise EmotionlabError("--address joins a Ray cluster: use it with --engine ray")
        return
    if camera is not None:
        raise EmotionlabError("--engine ray reads files, not a camera; use --engine local for --camera")
    if annotate is not None:
        raise EmotionlabError("--annotate draws in this process: use it with --engine local")
    from emotionlab.inference.ray import import_ray

    import_ray()  # "Ray is not installed: ..." now, not after the model has loaded
