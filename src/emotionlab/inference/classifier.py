"""Classifiers: an object that turns face images into class probabilities.

``BaseClassifier`` holds what every backend shares (labels, the model's preprocessing ``EvalTransform``,
batching) and needs no PyTorch. ``OnnxClassifier`` runs an exported model on ONNX Runtime: the light install and
the shipped models use it. ``Classifier`` runs a model file's network on PyTorch (the ``[train]`` extra) and
imports torch only when it is built. Which one a model file gets is ``emotionlab.inference.loading``.

``EvalTransform(image_size=48, normalization={"type": "per_image"}, grayscale=True)(face) -> 3 x 48 x 48 float32``:
squash the crop to a square (Pillow's antialiased bilinear resize), optionally to grey (the ITU-R 601 weights
torchvision uses: 0.2989, 0.587, 0.114), scale to [0, 1], then normalise (per image, or a mean and std per
channel), with numpy and Pillow only. Prediction, evaluation and serving all go through it; training's torchvision
transform (``data/transforms.py``) gives the same values to within one grey level of resampling on some pixels.

An ONNX export (``emotionlab.inference.export``) is self-describing: input ``input`` (N x 3 x size x size, batch
axis dynamic), output ``probabilities`` (softmax included), and the model file's JSON metadata (labels, input
size, normalisation, face-crop settings, ...) in the ONNX ``metadata_props`` under ``emotionlab``, so
``OnnxClassifier.from_file(model.onnx)`` (and any other tool) needs nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.extras import require

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)


class EvalTransform:
    """PIL image -> normalised float32 array (channels, size, size), as the model was trained to see faces."""

    def __init__(self, *, image_size: int, normalization: dict, grayscale: bool = False):
        self.image_size = int(image_size)
        self.normalization = normalization
        self.grayscale = bool(grayscale)
        self.per_image = normalization.get("type") == "per_image"
        if not self.per_image:
            self.mean = np.asarray(normalization["mean"], np.float32).reshape(-1, 1, 1)
            self.std = np.asarray(normalization["std"], np.float32).reshape(-1, 1, 1)

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image if image.mode == "RGB" else image.convert("RGB")
        side = self.image_size
        if image.size != (side, side):
            image = image.resize((side, side), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
        if self.grayscale:
            # torchvision's order of operations (r * 0.2989 + g * 0.587 + b * 0.114, truncated to uint8).
            r, g, b = (pixels[..., channel].astype(np.float64) for channel in range(3))
            grey = (r * _GREY_WEIGHTS[0] + g * _GREY_WEIGHTS[1] + b * _GREY_WEIGHTS[2]).astype(np.float32)
            pixels = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
        array = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        if self.per_image:
            # Per-image standardisation: zero mean, unit (sample) standard deviation, floored as in training.
            mean = array.mean(dtype=np.float64)
            std = max(array.std(ddof=1, dtype=np.float64), 1.0 / array.size**0.5)
            return ((array - np.float32(mean)) / np.float32(std)).astype(np.float32)
        return (array - self.mean) / self.std


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads share a core's arithmetic units)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    cores = set()
    try:
        physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
            elif not key and core is not None:
                cores.add((physical, core))
                physical = core = None
        if core is not None:
            cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(available, len(cores) or available))


METADATA_KEY = "emotionlab"
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def session_options(threads: int | None = None):
    """ORT options: intra-op threads = physical cores (hyper-threads only slow convolutions down), no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are noise to users
    # Idle threads sleep instead of spinning: spinning steals the CPU from DataLoader workers and from other
    # processes, and under load it was slower even alone (batch 64: 635 faces/s spinning, 697 not).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    if not path.is_file():
        raise EmotionlabError(f"{path}: ONNX file not found")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types for bad or non-ONNX files
        raise EmotionlabError(
            f"{path}: not an ONNX model ONNX Runtime can load ({str(error)[:200]})"
        ) from error


def _metadata_of(session, path: Path) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise EmotionlabError(
            f"{path}: an ONNX model without emotionlab metadata (export it with `emotionlab export`)"
        )
    try:
        return json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise EmotionlabError(f"{path}: emotionlab metadata is not valid JSON: {error}") from error


def read_onnx_metadata(path: str | Path) -> dict:
    """The emotionlab metadata embedded in an exported ONNX file."""
    path = Path(path)
    return _metadata_of(_session(path, threads=1), path)


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


class OnnxClassifier(BaseClassifier):
    """An exported model run by ONNX Runtime on the CPU; same interface as ``Classifier``."""

    backend = "onnx"

    def __init__(self, path: str | Path, metadata: dict | None = None, *, threads: int | None = None):
        path = Path(path)
        self.session = _session(path, threads)
        super().__init__(metadata or _metadata_of(self.session, path))
        self.onnx_path = path
        self.path = path
        self.int8 = bool(self.metadata.get("onnx", {}).get("int8"))

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int | None = None) -> OnnxClassifier:
        return cls(path, threads=threads)

    def probabilities(self, batch) -> np.ndarray:
        array = batch.numpy() if hasattr(batch, "numpy") and not isinstance(batch, np.ndarray) else batch
        array = np.ascontiguousarray(array, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]


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
