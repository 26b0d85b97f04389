"""What several test files need: small untrained model files, synthetic faces, a stub face detector, the CLI.

Import with ``from helpers import ...`` (pytest puts ``tests/`` on the path). Fixtures shared by many files
live in ``conftest.py``; these are plain functions and classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.faces import FaceBox
from emotionlab.labels import EMOTIONS
from emotionlab.models.factory import create_model
from emotionlab.models.io import save_model_file
from emotionlab.synthetic import make_face

# The face-crop settings `emotionlab train --faces` writes with the Haar detector.
FACES = {"detector": "haar", "margin": 0.1, "align": False, "detector_model": None}


def model_metadata(
    architecture: str = "seed_cnn", *, faces: dict | None = FACES, grayscale: bool = False
) -> dict:
    """The metadata `emotionlab train` writes for a five-emotion model at 64 px, per-image standardised."""
    return {
        "architecture": architecture,
        "architecture_kwargs": {},
        "labels": list(EMOTIONS),
        "input_size": 64,
        "normalization": {"type": "per_image"},
        "grayscale": grayscale,
        "faces": faces,
    }


def save_tiny_model(path: Path, *, faces: dict | None = FACES, seed: int = 0) -> Path:
    """An untrained seed_cnn at 64 px with the metadata `emotionlab train` writes."""
    torch.manual_seed(seed)
    return save_model_file(path, create_model("seed_cnn", 5, image_size=64), model_metadata(faces=faces))


def save_model(architecture: str, folder: Path, seed: int = 0, logit_scale: float = 1.0) -> Path:
    """A project architecture with trained-looking BatchNorm statistics (not the identity defaults), whole images."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = create_model(architecture, 5, image_size=64)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    if logit_scale != 1.0:  # confident predictions, so that differences between inputs show
        with torch.no_grad():
            net.classifier.weight.mul_(logit_scale)
    metadata = model_metadata(architecture, faces=None, grayscale=architecture == "fer_cnn")
    return save_model_file(folder / f"{architecture}.safetensors", net, metadata)


def synthetic_faces(count: int, seed: int = 0) -> list[Image.Image]:
    """``count`` drawn 72 px faces cycling through the five emotions."""
    rng = np.random.default_rng(seed)
    return [make_face(EMOTIONS[index % 5], rng, 72) for index in range(count)]


class BoxDetector:
    """A stub detector that 'finds' the faces the test pasted, returned smallest first on purpose."""

    name = "stub"

    def __init__(self, boxes: dict[tuple[int, int], list[FaceBox]] | list[FaceBox]):
        self.boxes = boxes
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        size = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
        boxes = self.boxes.get(size, []) if isinstance(self.boxes, dict) else self.boxes
        return sorted(boxes, key=lambda box: box.w * box.h)


BIG = FaceBox(20, 30, 120, 120, detector="stub")
SMALL = FaceBox(200, 60, 60, 60, detector="stub")


def two_face_image(rng) -> Image.Image:
    """A 300 x 200 canvas with a large happy face at ``BIG`` and a small sad face at ``SMALL``."""
    canvas = Image.new("RGB", (300, 200), (110, 120, 130))
    canvas.paste(make_face("happy", rng, 120), (BIG.x, BIG.y))
    canvas.paste(make_face("sad", rng, 60), (SMALL.x, SMALL.y))
    return canvas


def run_cli(*args) -> str:
    """Run ``emotionlab ARGS`` in this process; its standard output, or the exception it raised."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root`` with its sha256 and mtime: proof that nothing was changed or added."""
    return {
        path.relative_to(root).as_posix(): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# Records of one image set from two paths (one process / workers / Ray): a face classified in a batch of other
# images' faces or alone can differ in the last rounded digit of a probability, nothing else.
def _probability_rows(record: dict) -> list[dict]:
    return [record.get("probabilities") or {}] + [face["probabilities"] for face in record.get("faces") or ()]


def without_probabilities(records: list[dict]) -> list[dict]:
    def strip(value):
        if isinstance(value, dict):
            return {
                k: strip(v) for k, v in value.items() if k not in ("probabilities", "confidence", "ratio")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [strip(record) for record in records]


def max_probability_difference(first: list[dict], second: list[dict]) -> float:
    return max(
        (
            abs(a[label] - b[label])
            for one, two in zip(first, second, strict=True)
            for a, b in zip(_probability_rows(one), _probability_rows(two), strict=True)
            for label in a
        ),
        default=0.0,
    )


def assert_same_records(got: list[dict], want: list[dict], *, tolerance: float = 1e-5) -> None:
    """The same records (labels, boxes, paths, errors, order), probabilities within ``tolerance``."""
    assert without_probabilities(got) == without_probabilities(want)
    assert max_probability_difference(got, want) <= tolerance
