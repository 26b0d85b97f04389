"""Classifiers: a model file -> an object that turns face images into class probabilities.

``load_classifier(path)`` gives the PyTorch ``Classifier`` or the ONNX Runtime ``OnnxClassifier``
(``emotionlab.inference.onnx``); both share ``BaseClassifier`` (labels, preprocessing, batching). The default
backend, ``auto``, runs the shipped models on ONNX Runtime from the ONNX file shipped beside them (about twice as
fast on a CPU, same answers) and any other model file on PyTorch. ``resolve_model_path`` turns ``--model`` (a path, a shipped model's short name, or nothing) into a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emotionlab.data.transforms import build_eval_transform
from emotionlab.errors import EmotionlabError
from emotionlab.models.io import load_model_file

ASSETS = Path(__file__).parent.parent / "assets"  # inside the installed package, not the repository
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
MODEL_ENV = "EMOTIONLAB_MODEL"
BACKENDS = ("auto", "torch", "onnx")


# Models shipped in the package, by short name (`--model ferplus8`); a file of that name in the current folder wins.
SHIPPED_MODELS = {
    "default": "default_model.safetensors",  # five emotions, the default
    "ferplus8": "ferplus8_model.safetensors",  # eight FER+ classes: + neutral, disgusted, contempt
}


def resolve_model_path(path: str | Path | None) -> Path:
    """A model file from ``--model``: a path, a shipped model's short name, or None for the default."""
    if path is None:
        return default_model_path()
    name = str(path)
    if name in SHIPPED_MODELS and not Path(name).is_file():
        shipped = ASSETS / SHIPPED_MODELS[name]
        if not shipped.is_file():
            raise EmotionlabError(f"{name}: this install has no shipped model {shipped.name}")
        return shipped
    return Path(path)


def default_model_path() -> Path:
    """The model used when none is given: $EMOTIONLAB_MODEL, else the model shipped with the package."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise EmotionlabError(
        f"no model given and no shipped model in this install ({DEFAULT_MODEL}); pass --model MODEL "
        "(a model.safetensors written by `emotionlab train`)"
    )


class BaseClassifier:
    """Shared part of the PyTorch and ONNX Runtime classifiers: labels, preprocessing, batching."""

    backend = ""

    def __init__(self, metadata: dict):
        self.metadata = metadata
        self.labels: list[str] = list(metadata["labels"])
        self.input_size: int = int(metadata["input_size"])
        self.transform = build_eval_transform(
            image_size=self.input_size,
            normalization=metadata["normalization"],
            grayscale=bool(metadata.get("grayscale", False)),
        )
        self.path: Path | None = None

    def preprocess(self, images: Iterable[Image.Image]) -> torch.Tensor:
        """Face images (PIL RGB) -> the normalised batch the network was trained on."""
        return torch.stack([self.transform(image) for image in images])

    def probabilities(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Softmax probabilities (N x classes, float32) for a preprocessed batch."""
        raise NotImplementedError

    def predict_inputs(self, inputs: np.ndarray | torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
        """Probabilities for preprocessed inputs, ``batch_size`` at a time."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        parts = [
            self.probabilities(inputs[start : start + batch_size])
            for start in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(parts)

    def predict_proba(self, images: list[Image.Image], *, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N x classes) for face images, in batches."""
        outputs = []
        for start in range(0, len(images), batch_size):
            outputs.append(self.probabilities(self.preprocess(images[start : start + batch_size])))
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.labels)), dtype=np.float32)


class Classifier(BaseClassifier):
    """A trained PyTorch network with its own preprocessing: face images (PIL) -> class probabilities."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, metadata: dict, *, device: str = "cpu"):
        super().__init__(metadata)
        self.model = model.to(device).eval()
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "cpu") -> Classifier:
        model, metadata = load_model_file(path)
        classifier = cls(model, metadata, device=device)
        classifier.path = Path(path)
        return classifier

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).float().cpu()

    def probabilities(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        return torch.softmax(self.logits(batch), dim=1).numpy()


def shipped_onnx(path: Path) -> Path | None:
    """The ONNX export shipped beside a shipped model file, when it exports these very weights."""
    twin = path.with_suffix(".onnx")
    if path.resolve().parent != ASSETS.resolve() or not twin.is_file():
        return None
    from emotionlab.inference.onnx import read_onnx_metadata
    from emotionlab.models.io import read_metadata

    digest = read_metadata(path).get("weights_sha256")
    if not digest or read_onnx_metadata(twin).get("weights_sha256") != digest:
        import logging

        logging.getLogger("emotionlab").warning("%s does not match %s: using PyTorch", twin.name, path.name)
        return None
    return twin


def load_classifier(
    path: str | Path | None = None, *, backend: str = "auto", device: str = "cpu", int8: bool = False
) -> BaseClassifier:
    """A model file as a classifier. ``backend="onnx"`` runs ONNX Runtime: a ``.onnx`` file is loaded as is,
    a ``.safetensors`` model is exported once to the cache (``int8``: quantised) and loaded from there.
    ``auto``: ONNX Runtime for ``.onnx`` files and for the shipped models (their export ships beside them),
    PyTorch for every other model file (exporting it would cost time on first use)."""
    path = resolve_model_path(path)
    if backend not in BACKENDS:
        raise EmotionlabError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    if backend == "auto":
        twin = None if int8 or device != "cpu" or path.suffix.lower() == ".onnx" else shipped_onnx(path)
        if twin is not None:
            from emotionlab.inference.onnx import OnnxClassifier

            classifier = OnnxClassifier.from_file(twin)
            classifier.path = path
            return classifier
        backend = "onnx" if path.suffix.lower() == ".onnx" or int8 else "torch"
    if path.suffix.lower() == ".onnx":
        from emotionlab.inference.onnx import OnnxClassifier

        if backend != "onnx":
            raise EmotionlabError(f"{path}: an ONNX model runs only with --backend onnx")
        return OnnxClassifier.from_file(path)
    if backend == "onnx":
        from emotionlab.inference.onnx import OnnxClassifier, cached_onnx

        shipped = None if int8 else shipped_onnx(path)
        classifier = OnnxClassifier.from_file(shipped or cached_onnx(path, int8=int8))
        classifier.path = path
        return classifier
    if int8:
        raise EmotionlabError("int8 quantisation needs the ONNX backend (--backend onnx)")
    return Classifier.from_file(path, device=device)
