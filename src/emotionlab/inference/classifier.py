"""Classifiers: an object that turns face images into class probabilities.

``BaseClassifier`` holds what every backend shares (labels, the model's preprocessing, batching) and needs no
PyTorch; ``Classifier`` runs a model file's network on PyTorch (the ``[train]`` extra) and imports torch only
when it is built. The ONNX Runtime classifier, the one the light install and the shipped models use, is
``emotionlab.inference.onnx.OnnxClassifier``. Which one a model file gets is ``emotionlab.inference.loading``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.data.preprocess import EvalTransform
from emotionlab.errors import EmotionlabError
from emotionlab.extras import require


class BaseClassifier:
    """Shared part of the PyTorch and ONNX Runtime classifiers: labels, preprocessing, batching."""

    backend = ""

    def __init__(self, metadata: dict):
        self.metadata = metadata
        self.labels: list[str] = list(metadata["labels"])
        self.input_size: int = int(metadata["input_size"])
        self.transform = EvalTransform(
            image_size=self.input_size,
            normalization=metadata["normalization"],
            grayscale=bool(metadata.get("grayscale", False)),
        )
        self.path: Path | None = None

    def preprocess(self, images: Iterable[Image.Image]) -> np.ndarray:
        """Face images (PIL RGB) -> the normalised batch (N x 3 x size x size, float32) the network expects."""
        return np.stack([self.transform(image) for image in images])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N x classes, float32) for a preprocessed batch."""
        raise NotImplementedError

    def predict_inputs(self, inputs: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
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
    """A trained PyTorch network with its own preprocessing: face images (PIL) -> class probabilities.

    Needs the ``[train]`` extra; ``preprocess`` gives a torch tensor here (Grad-CAM and the report use it)."""

    backend = "torch"

    def __init__(self, model, metadata: dict, *, device: str = "cpu"):
        super().__init__(metadata)
        self.model = model.to(device).eval()
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "cpu") -> Classifier:
        require("torch", f"{Path(path).name}: running a PyTorch model file")
        from emotionlab.models.io import load_model_file

        model, metadata = load_model_file(path)
        classifier = cls(model, metadata, device=device)
        classifier.path = Path(path)
        return classifier

    def preprocess(self, images: Iterable[Image.Image]):
        import torch

        return torch.from_numpy(super().preprocess(images))

    def logits(self, batch):
        import torch

        with torch.inference_mode():
            return self.model(batch.to(self.device)).float().cpu()

    def probabilities(self, batch) -> np.ndarray:
        import torch

        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        return torch.softmax(self.logits(batch), dim=1).numpy()


class LabelSubset(BaseClassifier):
    """A classifier answering among some of its labels only: the others' probability is dropped and the rest
    renormalised. ``five`` on a six-class model (five emotions + neutral) answers as the study's five-class
    models did: for photos known to show one of the five, where a calm reading is not an answer."""

    def __init__(self, classifier: BaseClassifier, labels: Iterable[str]):
        wanted = list(dict.fromkeys(labels))
        unknown = [label for label in wanted if label not in classifier.labels]
        if unknown or not wanted:
            raise EmotionlabError(
                f"the model has no class {', '.join(unknown) or '(none given)'}: "
                f"its classes are {', '.join(classifier.labels)}"
            )
        self.inner = classifier
        self.columns = np.array([classifier.labels.index(label) for label in wanted])
        self.metadata = {**classifier.metadata, "labels": wanted, "restricted_from": list(classifier.labels)}
        self.labels = wanted
        self.input_size = classifier.input_size
        self.transform = classifier.transform
        self.path = classifier.path
        self.backend = classifier.backend

    def __getattr__(self, name):  # model, logits, ... of the wrapped classifier (Grad-CAM, reports)
        return getattr(self.__dict__["inner"], name)

    def preprocess(self, images: Iterable[Image.Image]):
        return self.inner.preprocess(images)

    def probabilities(self, batch) -> np.ndarray:
        kept = np.asarray(self.inner.probabilities(batch))[:, self.columns]
        return (kept / np.clip(kept.sum(axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def restrict_labels(classifier: BaseClassifier, labels: Iterable[str] | None) -> BaseClassifier:
    """``classifier`` answering among ``labels`` only (None, or all of its labels: unchanged)."""
    if labels is None:
        return classifier
    labels = list(labels)
    if labels == classifier.labels:
        return classifier
    return LabelSubset(classifier, labels)
