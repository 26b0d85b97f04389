"""Face detectors by name: ``create_detector("blaze")``, chains ``"hog+mmod"`` (``cascade``), the defaults,
and ``find_faces`` (the configured detector's faces, largest first), which every crop path goes through."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.faces.blaze import BlazeDetector
from emotionlab.faces.boxes import FaceBox, FaceDetector, as_rgb_array
from emotionlab.faces.dlib import HogDetector, MmodDetector
from emotionlab.faces.opencv import HaarDetector, YunetDetector

BASE_DETECTORS = ("haar", "hog", "mmod", "yunet", "blaze", "blaze-full")
DETECTORS = (*BASE_DETECTORS, "cascade")
# What "cascade" means: the fast detector, then the strong one only where the fast one found nothing.
CASCADE = ("hog", "mmod")

# Defaults chosen from benchmarks/results/faces.json (all 1,100 seed photos, `--threads 1`, 2 cores shared
# with a training run): BlazeFace short-range finds a face in 98.8% of them (cascade 98.1%, mmod 97.5%,
# hog 85.5%, haar 82.0%) and is also the fastest: 200 images/s against hog's 59, haar's 17 and cascade's
# 1.75. Its largest box overlaps the cascade's with median IoU 0.76 (hog vs mmod: 0.75). So one detector
# serves dataset preparation and prediction, and training crops look like prediction crops.
PREPARE_DETECTOR = "blaze"
PREDICT_DETECTOR = "blaze"


class CascadeDetector:
    """Run detectors in order and return the first non-empty answer (box.detector says which one found it)."""

    def __init__(self, name: str, stages: Sequence[FaceDetector]):
        self.name = name
        self.stages = list(stages)
        self.thread_safe = all(getattr(stage, "thread_safe", False) for stage in self.stages)

    def detect(self, image: Image.Image | np.ndarray) -> list[FaceBox]:
        array = as_rgb_array(image)
        for stage in self.stages:
            boxes = stage.detect(array)
            if boxes:
                return boxes
        return []


def _stage_names(name: str) -> tuple[str, ...]:
    key = name.strip().lower()
    if key == "cascade":
        return CASCADE
    stages = tuple(part.strip() for part in key.split("+"))
    unknown = [stage for stage in stages if stage not in BASE_DETECTORS]
    if unknown or not stages:
        raise EmotionlabError(
            f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)} (or a chain like hog+mmod)"
        )
    return stages


def check_detector_name(name: str) -> str:
    """The normalised detector name, or a clear error for an unknown one (no model is loaded)."""
    _stage_names(name)
    return name.strip().lower()


def create_detector(name: str, *, model_file: str | Path | None = None) -> FaceDetector:
    """The detector called ``name`` (one of ``DETECTORS`` or a chain ``a+b``); instances are cached per process.

    ``model_file`` is the YuNet ONNX file (only ``yunet`` needs one).
    """
    return _create_detector(check_detector_name(name), str(model_file) if model_file is not None else None)


@lru_cache(maxsize=16)
def _create_detector(name: str, model_file: str | None) -> FaceDetector:
    stages = _stage_names(name)
    if len(stages) > 1:
        return CascadeDetector(name, [_create_detector(stage, model_file) for stage in stages])
    kind = stages[0]
    if kind == "haar":
        return HaarDetector()
    if kind == "hog":
        return HogDetector()
    if kind == "mmod":
        return MmodDetector()
    if kind == "blaze":
        return BlazeDetector("short")
    if kind == "blaze-full":
        return BlazeDetector("full")
    return YunetDetector(model_file)


def find_faces(
    image: Image.Image | np.ndarray,
    config,
    *,
    detector: FaceDetector | None = None,
    max_faces: int | None = None,
) -> list[FaceBox]:
    """Every face in ``image``, largest first (at most ``max_faces``): found by ``detector``, else by the detector
    ``config`` (a ``FaceCropConfig``) names. Training, evaluation, prediction and serving all detect here."""
    detector = detector or create_detector(config.detector, model_file=config.detector_model)
    # Largest first whatever the detector's order: the largest face names the image.
    boxes = sorted(detector.detect(image), key=lambda box: -box.w * box.h)
    return boxes[:max_faces] if max_faces else boxes
