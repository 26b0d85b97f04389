"""dlib's face detectors (``hog``: HOG + linear SVM; ``mmod``: the CNN detector), its 5-point landmarks
(eye centres for alignment) and the model files of ``face-recognition-models``. dlib is imported on first use."""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.faces.boxes import FaceBox, Point, _box_from_scaled, _ScaledDetector, as_rgb_array


class HogDetector(_ScaledDetector):
    """dlib's HOG frontal-face detector (80x80 px window: faces under ~25% of the short side are missed).

    Shorter side 320 found 86.6% of a quarter of the seed photos against 84.7% at 256 (384: no better).
    """

    name = "hog"
    short_side = 320
    max_side = 640

    def __init__(self):
        super().__init__()
        import dlib

        self._detector = dlib.get_frontal_face_detector()

    def _detect_scaled(self, small, scale):
        rects, scores, _ = self._detector.run(small, 0, 0.0)
        return [
            _box_from_scaled(r.left(), r.top(), r.width(), r.height(), scale, score, self.name)
            for r, score in zip(rects, scores, strict=True)
        ]


class MmodDetector(_ScaledDetector):
    """dlib's CNN face detector (``mmod_human_face_detector.dat``); finds profiles and partly covered faces.

    Shorter side 320 found 97.1% of a quarter of the seed photos against 94.5% at 256 and 87.3% at 192, at
    ~1.7x the cost of 256 (benchmarks/results/faces_sweep.json).
    """

    name = "mmod"
    short_side = 320
    max_side = 640

    def __init__(self):
        super().__init__()
        import dlib

        self._detector = dlib.cnn_face_detection_model_v1(
            str(dlib_model_file("mmod_human_face_detector.dat"))
        )

    def _detect_scaled(self, small, scale):
        return [
            _box_from_scaled(
                d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height(), scale, d.confidence, self.name
            )
            for d in self._detector(small, 0)
        ]


def dlib_models_dir() -> Path:
    """The ``models/`` folder of ``face-recognition-models``, found without importing the package.

    Importing it fails on setuptools 81+ (its ``__init__`` imports ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    raise EmotionlabError(
        "the dlib model files are missing: install the face-recognition-models package "
        "(pip install face-recognition-models)"
    )


def dlib_model_file(name: str) -> Path:
    path = dlib_models_dir() / name
    if not path.is_file():
        raise EmotionlabError(f"{path}: dlib model file not found; reinstall face-recognition-models")
    return path


# dlib's shape predictor is one shared object (like the detectors, not safe to call from several threads).
_SHAPE_PREDICTOR_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _shape_predictor():
    import dlib

    # The 5-point model only: the 68-point model's training data (iBUG 300-W) forbids commercial use.
    return dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))


def face_landmarks(image: Image.Image | np.ndarray, box: FaceBox) -> tuple[Point, ...]:
    """Eye centres and nose (``(eye, eye, nose)``, original pixels) from dlib's 5-point shape predictor."""
    import dlib

    array = as_rgb_array(image)
    rect = dlib.rectangle(int(box.x), int(box.y), int(box.x + box.w - 1), int(box.y + box.h - 1))
    predictor = _shape_predictor()
    with _SHAPE_PREDICTOR_LOCK:
        parts = [(float(p.x), float(p.y)) for p in predictor(array, rect).parts()]
    # Points 0-1 are the corners of one eye, 2-3 of the other, 4 is below the nose.
    eye_a = ((parts[0][0] + parts[1][0]) / 2, (parts[0][1] + parts[1][1]) / 2)
    eye_b = ((parts[2][0] + parts[3][0]) / 2, (parts[2][1] + parts[3][1]) / 2)
    return (eye_a, eye_b, parts[4])
