"""Inference: a model file -> ``Classifier`` (faces in, probabilities out) -> ``Recognizer`` (images in, records out).

``emotionlab.load_model(path)`` returns a ``Recognizer``; ``recognizer.predict(image_or_path)`` gives
``{"path", "label", "probabilities": {label: p}}`` exactly like one line of ``emotionlab predict --format jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emotionlab.data.images import read_image
from emotionlab.data.transforms import build_eval_transform
from emotionlab.errors import EmotionlabError
from emotionlab.models.io import load_model_file

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
MODEL_ENV = "EMOTIONLAB_MODEL"


def default_model_path() -> Path:
    """The model used when none is given: $EMOTIONLAB_MODEL, else the model shipped with the package."""
    import os

    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise EmotionlabError(
        f"no model given and no shipped model in this install ({DEFAULT_MODEL}); pass --model MODEL "
        "(a model.safetensors written by `emotionlab train`)"
    )


class Classifier:
    """A trained network with its own preprocessing: face images (PIL) -> class probabilities."""

    def __init__(self, model: torch.nn.Module, metadata: dict, *, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.metadata = metadata
        self.device = device
        self.labels: list[str] = list(metadata["labels"])
        self.input_size: int = int(metadata["input_size"])
        self.transform = build_eval_transform(
            image_size=self.input_size,
            normalization=metadata["normalization"],
            grayscale=bool(metadata.get("grayscale", False)),
        )

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "cpu") -> Classifier:
        model, metadata = load_model_file(path)
        classifier = cls(model, metadata, device=device)
        classifier.path = Path(path)
        return classifier

    def preprocess(self, images: Iterable[Image.Image]) -> torch.Tensor:
        return torch.stack([self.transform(image) for image in images])

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).float().cpu()

    def predict_proba(self, images: list[Image.Image], *, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N x classes) for face images, in batches."""
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocess(images[start : start + batch_size])
            outputs.append(torch.softmax(self.logits(batch), dim=1).numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.labels)), dtype=np.float32)


class Recognizer:
    """Images in, one record per image out: crops faces as the model was trained, then classifies."""

    def __init__(self, classifier: Classifier, *, detect: bool = True):
        self.classifier = classifier
        self.labels = classifier.labels
        faces = classifier.metadata.get("faces")
        self.cropper = None
        if detect and faces:
            from emotionlab.data.faces import FaceCropConfig, FaceCropper

            self.cropper = FaceCropper(FaceCropConfig.from_dict(faces))

    def _prepare(self, source) -> tuple[str, Image.Image, bool]:
        name = str(source) if isinstance(source, (str, Path)) else "<image>"
        image = source if isinstance(source, Image.Image) else read_image(source)
        image = image.convert("RGB")
        if self.cropper is None:
            return name, image, False
        crop, box = self.cropper(source if isinstance(source, (str, Path)) else image)
        return name, crop, box is None

    def _record(self, name: str, probabilities: np.ndarray, no_face: bool) -> dict:
        best = int(np.argmax(probabilities))
        record = {
            "path": name,
            "label": self.labels[best],
            "confidence": float(probabilities[best]),
            "probabilities": {label: float(p) for label, p in zip(self.labels, probabilities, strict=True)},
        }
        if self.cropper is not None:
            record["no_face"] = no_face
        return record

    def predict(self, source: str | Path | Image.Image | np.ndarray) -> dict:
        """Classify one image (path, PIL image or RGB array)."""
        if isinstance(source, np.ndarray):
            source = Image.fromarray(source)
        name, image, no_face = self._prepare(source)
        return self._record(name, self.classifier.predict_proba([image])[0], no_face)

    def predict_many(self, sources: Iterable, *, batch_size: int = 32) -> Iterator[dict]:
        """Classify many images in batches; unreadable files yield a record with an ``error`` instead."""
        pending: list[tuple[str, Image.Image, bool]] = []

        def flush():
            probabilities = self.classifier.predict_proba([image for _, image, _ in pending], batch_size=batch_size)
            for (name, _, no_face), row in zip(pending, probabilities, strict=True):
                yield self._record(name, row, no_face)
            pending.clear()

        for source in sources:
            try:
                pending.append(self._prepare(source))
            except EmotionlabError as error:
                yield {"path": str(source), "error": str(error)}
                continue
            if len(pending) >= batch_size:
                yield from flush()
        if pending:
            yield from flush()


def load_recognizer(path: str | Path | None = None, *, detect: bool = True, device: str = "cpu") -> Recognizer:
    """Load a model file (default: the shipped model) as a ``Recognizer``."""
    return Recognizer(Classifier.from_file(path or default_model_path(), device=device), detect=detect)
