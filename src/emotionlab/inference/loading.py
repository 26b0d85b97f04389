"""Loading, in one direction: a model name or path -> a model file -> a classifier -> a ``Recognizer``.

``resolve_model_path`` turns ``--model`` (a path, a shipped model's short name, or nothing) into a file;
``load_classifier`` picks the backend; ``load_recognizer`` adds face finding and cropping. The default backend,
``auto``, runs the shipped models on ONNX Runtime from the ONNX export shipped beside them (no PyTorch: the light
install), an ``.onnx`` file on ONNX Runtime, and any other model file on PyTorch (the ``[train]`` extra).
Exporting a model file to ONNX (``--backend onnx``, ``--int8``) is ``emotionlab.inference.export``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from emotionlab.errors import EmotionlabError
from emotionlab.extras import require
from emotionlab.inference.classifier import BaseClassifier, Classifier, OnnxClassifier, restrict_labels
from emotionlab.inference.recognizer import Recognizer
from emotionlab.model_file import read_header
from emotionlab.paths import ASSETS

DEFAULT_MODEL = ASSETS / "default_model.safetensors"
MODEL_ENV = "EMOTIONLAB_MODEL"
BACKENDS = ("auto", "torch", "onnx")

# Models shipped in the package, by short name (`--model ferplus8`); a file of that name in the current folder wins.
SHIPPED_MODELS = {
    "default": "default_model.safetensors",  # five emotions, the default
    "ferplus8": "ferplus8_model.safetensors",  # eight FER+ classes: + neutral, disgusted, contempt
}

log = logging.getLogger("emotionlab")


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


def shipped_onnx(path: Path) -> OnnxClassifier | None:
    """The ONNX export shipped beside a shipped model file, loaded, when it exports these very weights (the
    model file's checked metadata and the export name the same weights' SHA-256); None otherwise."""
    twin = path.with_suffix(".onnx")
    if path.resolve().parent != ASSETS.resolve() or not twin.is_file():
        return None
    digest = read_header(path)[0]["weights_sha256"]  # format and checksum checked, no weight read
    classifier = OnnxClassifier.from_file(twin)
    if classifier.metadata.get("weights_sha256") != digest:
        log.warning("%s does not match %s: using PyTorch", twin.name, path.name)
        return None
    classifier.path = path
    return classifier


def _exported(path: Path, *, int8: bool) -> OnnxClassifier:
    require("torch", f"{path.name}: exporting a model file to ONNX")
    from emotionlab.inference.export import cached_onnx

    classifier = OnnxClassifier.from_file(cached_onnx(path, int8=int8))
    classifier.path = path
    return classifier


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
    is_onnx = path.suffix.lower() == ".onnx"
    if is_onnx:
        if backend == "torch":
            raise EmotionlabError(f"{path}: an ONNX model runs only with --backend onnx")
        return OnnxClassifier.from_file(path)
    if not path.is_file():
        raise EmotionlabError(f"{path}: model file not found")
    if not int8 and (backend == "onnx" or (backend == "auto" and device == "cpu")):
        shipped = shipped_onnx(path)
        if shipped is not None:
            return shipped
    if backend == "onnx" or (backend == "auto" and int8):
        return _exported(path, int8=int8)
    if int8:
        raise EmotionlabError("int8 quantisation needs the ONNX backend (--backend onnx)")
    return Classifier.from_file(path, device=device)


def load_recognizer(
    path: str | Path | None = None,
    *,
    detect: bool | None = None,
    detector: str | None = None,
    backend: str = "auto",
    int8: bool = False,
    device: str = "cpu",
    max_faces: int | None = None,
    classes: list[str] | None = None,
) -> Recognizer:
    """Load a model file (default: the shipped model) as a ``Recognizer``; see ``Recognizer`` for options.

    ``classes``: answer among these of the model's classes only (``labels.EMOTIONS``: the study's five, no
    neutral); their probabilities are renormalised."""
    classifier = restrict_labels(load_classifier(path, backend=backend, device=device, int8=int8), classes)
    return Recognizer(classifier, detect=detect, detector=detector, max_faces=max_faces)
