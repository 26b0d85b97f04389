"""Face detectors behind one interface, square face crops, optional eye alignment, and a crop cache.

Detectors (``create_detector(name)``), all offline and CPU-only:

- ``haar``: OpenCV's frontal-face Haar cascade. Fastest, weakest; no extra files.
- ``hog``: dlib's HOG + linear SVM frontal-face detector. Fast, misses profiles and covered faces.
- ``mmod``: dlib's CNN (max-margin object detection) face detector, model file from ``face-recognition-models``.
  The strongest single detector on the seed photos (97.5%), but ~50x slower than ``hog`` (85.5%).
- ``yunet``: OpenCV's ``FaceDetectorYN`` with the OpenCV-zoo ONNX file (``emotionlab data download-yunet``).
- ``blaze``: MediaPipe's BlazeFace short-range model (ONNX Runtime, shipped in ``assets/``): boxes plus six
  keypoints (eyes, nose, mouth, ears). Finds the most faces of all and is the fastest (``blazeface.py``).
- ``blaze-full``: BlazeFace's full-range model, for small faces in large scenes (misses faces that fill the
  frame); ``blaze+blaze-full`` asks it only where the short-range model finds nothing.
- ``cascade``: ``hog`` first, ``mmod`` only on images where ``hog`` finds nothing: all of ``mmod``'s extra
  faces plus the few ``hog`` finds and ``mmod`` misses (98.1%), 6x faster than ``mmod`` alone.
  Any chain can be spelled ``a+b`` (``"haar+mmod"``).

Every detector is safe to call from several threads (the native dlib and OpenCV ones take a lock per
instance) and refuses, by finding no face, an image it could crash on: see ``MIN_DETECT_SIDE``.

The dlib and OpenCV detectors scale the image so its shorter side is a fixed size (small images up, big ones
down; the longer side is capped), BlazeFace letterboxes it into its square input; all map the boxes back to
original-image pixels. The measured rates and speeds
behind ``PREPARE_DETECTOR`` and ``PREDICT_DETECTOR`` are in ``benchmarks/results/faces.json``
(``benchmarks/faces.py``).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np
from PIL import Image

from emotionlab.data.images import ImageReadError, read_file_bytes, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import write_atomic

if TYPE_CHECKING:  # dataset.py imports torch; this module must stay importable without paying for it
    from emotionlab.data.dataset import Sample

log = logging.getLogger("emotionlab")

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

YUNET_FILE_NAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
# Output names OpenCV's FaceDetectorYN reads from the 2023mar model; a file without them is not YuNet.
YUNET_OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in (8, 16, 32))
DOWNLOAD_YUNET_HINT = "get it with `emotionlab data download-yunet DEST` and pass --detector-model DEST"

CACHE_ENV = "EMOTIONLAB_CACHE"
# Bump when detection or cropping changes in a way that makes cached boxes or crops stale.
# 2: hog and mmod at a 320 px shorter side (was 256). 3: no detection on images under MIN_IMAGE_SIDE (was 8).
DETECTION_VERSION = 4  # 4: blaze adds a full-range pass on wide scenes
CROP_VERSION = 1

Point = tuple[float, float]

# No native detector ever sees an image (after scaling to its working size) with a side under this. dlib's
# CNN detector raises "Filter windows must be small enough" below 7 px high and corrupts memory (SIGSEGV,
# SIGABRT) below 10 px wide, e.g. on 640x8, 200x9 and 40x7 (measured one call per subprocess, glibc's
# MALLOC_CHECK_=3; 10 px and up ran clean). No detector here can find a face that small anyway (hog and
# mmod slide an 80 px window, haar's smallest face is 20 px), so 32 px keeps a 3x margin and loses nothing.
MIN_DETECT_SIDE = 32
# Images whose shorter side is under this get no face from any detector. Scaled up to a working size they
# are blurred blocks in which haar (9x9, 32x32 noise) and blaze-full (10x10 noise) found "faces" in the
# size sweep (tests/test_detector_sizes.py); with no face the whole image is the crop, which is all a
# 15 px image could give anyway.
MIN_IMAGE_SIDE = 16
# Larger arrays are refused before any work: one 16k x 16k RGB array is 768 MB and OpenCV's functions are
# limited to 2**31 elements. The image reader already stops at 50 megapixels; this guards direct callers.
MAX_DETECT_PIXELS = 250_000_000


# ---- boxes and detectors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceBox:
    """One face in original-image pixels. ``landmarks`` (if any) start with the two eye centres."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    detector: str = ""
    landmarks: tuple[Point, ...] | None = None

    def __post_init__(self):
        if self.landmarks is not None:
            points = tuple((float(px), float(py)) for px, py in self.landmarks)
            object.__setattr__(self, "landmarks", points)

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def center(self) -> Point:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def to_text(self) -> str:
        """``"x y w h"``: the manifest's ``face_box`` column."""
        return f"{self.x} {self.y} {self.w} {self.h}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["landmarks"] = [list(point) for point in self.landmarks] if self.landmarks else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FaceBox:
        landmarks = data.get("landmarks")
        return cls(
            x=int(data["x"]),
            y=int(data["y"]),
            w=int(data["w"]),
            h=int(data["h"]),
            score=float(data.get("score", 1.0)),
            detector=str(data.get("detector", "")),
            landmarks=tuple(tuple(point) for point in landmarks) if landmarks else None,
        )


@runtime_checkable
class FaceDetector(Protocol):
    """``detect(image)`` -> faces in original-image pixels, largest first. Images are RGB (PIL or HxWx3)."""

    name: str

    def detect(self, image: Image.Image | np.ndarray) -> list[FaceBox]: ...


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """A contiguous HxWx3 uint8 RGB array from a PIL image or an RGB/grey/RGBA array."""
    if isinstance(image, Image.Image):
        image = image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise EmotionlabError(
            f"expected an RGB image (height x width x 3), got an array of shape {array.shape}"
        )
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _sorted_boxes(boxes: list[FaceBox | None], width: int, height: int) -> list[FaceBox]:
    """Largest first, without degenerate boxes (None) and boxes that lie entirely outside the image."""
    kept = [
        box
        for box in boxes
        if box is not None and box.x < width and box.y < height and box.x + box.w > 0 and box.y + box.h > 0
    ]
    return sorted(kept, key=lambda box: (-box.area, -box.score))


def _resize_for_detection(array: np.ndarray, short_side: int, max_side: int) -> tuple[np.ndarray, float]:
    """Scale so the shorter side is ``short_side`` (the longer side at most ``max_side``)."""
    height, width = array.shape[:2]
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_side:
        scale = max_side / max(height, width)
    if abs(scale - 1.0) < 1e-3:
        return array, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(array, size, interpolation=interpolation), scale


def _detectable(array: np.ndarray) -> bool:
    """Whether a detector may look at ``array`` at all (``MIN_IMAGE_SIDE``, ``MAX_DETECT_PIXELS``)."""
    height, width = array.shape[:2]
    return min(height, width) >= MIN_IMAGE_SIDE and height * width <= MAX_DETECT_PIXELS


def _box_from_scaled(x, y, w, h, scale, score, detector, landmarks=None) -> FaceBox | None:
    """A box found on the resized image, mapped back to original pixels; None for a degenerate one."""
    values = [x, y, w, h, score, *np.ravel(landmarks if landmarks is not None else [])]
    if not np.all(np.isfinite(np.asarray(values, dtype=np.float64))) or w <= 0 or h <= 0:
        return None
    return FaceBox(
        x=round(x / scale),
        y=round(y / scale),
        w=max(1, round(w / scale)),
        h=max(1, round(h / scale)),
        score=float(score),
        detector=detector,
        landmarks=tuple((px / scale, py / scale) for px, py in landmarks) if landmarks is not None else None,
    )


class _ScaledDetector:
    """Shared detect(): resize to the detector's working size, find faces, map back, sort largest first.

    The native detectors (dlib, OpenCV) keep scratch state in the detector object, so one call at a time
    per instance: concurrent calls on one dlib detector corrupted memory and on one Haar cascade gave other
    threads' answers (issue 8). The size guard applies to the array the detector actually gets.
    """

    name = ""
    short_side = 256
    max_side = 512

    def __init__(self):
        self._lock = threading.Lock()

    def detect(self, image: Image.Image | np.ndarray) -> list[FaceBox]:
        array = as_rgb_array(image)
        if not _detectable(array):
            return []
        small, scale = _resize_for_detection(array, self.short_side, self.max_side)
        if min(small.shape[:2]) < MIN_DETECT_SIDE:
            return []
        with self._lock:
            boxes = self._detect_scaled(small, scale)
        return _sorted_boxes(boxes, array.shape[1], array.shape[0])

    def _detect_scaled(self, small: np.ndarray, scale: float) -> list[FaceBox]:
        raise NotImplementedError


class HaarDetector(_ScaledDetector):
    """OpenCV's frontal-face Haar cascade on the histogram-equalised grey image.

    minNeighbors=3 found a face in 82% of the seed photos against 78% with OpenCV's usual 5.
    """

    name = "haar"
    short_side = 320
    max_side = 640

    def __init__(self, min_neighbors: int = 3, min_size_fraction: float = 0.15):
        super().__init__()
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
            raise EmotionlabError(
                f"{path}: OpenCV's Haar face cascade is missing (OpenCV 5 dropped it); "
                "install opencv-python-headless<5 or use --detector hog"
            )
        self._cascade = cv2.CascadeClassifier(str(path))
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction

    def _detect_scaled(self, small, scale):
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_size = max(20, round(self.min_size_fraction * min(grey.shape)))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            grey,
            scaleFactor=1.1,
            minNeighbors=self.min_neighbors,
            minSize=(min_size, min_size),
            outputRejectLevels=True,
        )
        return [
            _box_from_scaled(x, y, w, h, scale, weight, self.name)
            for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.ravel(weights), strict=True)
        ]


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


class YunetDetector(_ScaledDetector):
    """OpenCV's YuNet (``cv2.FaceDetectorYN``): boxes plus five landmarks (eyes, nose, mouth corners)."""

    name = "yunet"
    short_side = 320
    max_side = 640

    def __init__(self, model_file: str | Path | None, score_threshold: float = 0.6):
        super().__init__()
        if model_file is None:
            raise EmotionlabError(
                f"the yunet detector needs its model file ({YUNET_FILE_NAME}): {DOWNLOAD_YUNET_HINT}"
            )
        path = Path(model_file)
        if not path.is_file():
            raise EmotionlabError(f"{path}: YuNet model file not found; {DOWNLOAD_YUNET_HINT}")
        try:
            self._detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
        except cv2.error as error:
            raise EmotionlabError(f"{path}: not a usable YuNet model ({str(error).strip()[:200]})") from error

    def _detect_scaled(self, small, scale):
        height, width = small.shape[:2]
        self._detector.setInputSize((width, height))
        _, faces = self._detector.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        boxes = []
        for row in faces if faces is not None else []:
            x, y, w, h = row[:4]
            landmarks = [(row[4 + 2 * i], row[5 + 2 * i]) for i in range(5)]
            boxes.append(_box_from_scaled(x, y, w, h, scale, row[14], self.name, landmarks))
        return boxes


class BlazeDetector:
    """MediaPipe BlazeFace by ONNX Runtime: boxes plus six keypoints (``blazeface.KEYPOINTS``, eyes first).

    The model letterboxes the whole image into its 128 px (full range: 192 px) input itself, so there is no
    working-size resize here. ``BlazeFace`` keeps no per-call state and ONNX Runtime's ``run`` is
    thread-safe: no lock.
    """

    def __init__(self, model: str = "short", *, threads: int = 1):
        from emotionlab.data.blazeface import BlazeFace

        self.name = "blaze" if model == "short" else f"blaze-{model}"
        self._blaze = BlazeFace(model, threads=threads)
        self._threads = threads
        self._scene: BlazeDetector | None = None  # the full-range model, loaded on first need

    def _detect_model(self, array: np.ndarray, name: str) -> list[FaceBox]:
        boxes, keypoints, scores = self._blaze(array)
        return [
            _box_from_scaled(x1, y1, x2 - x1, y2 - y1, 1.0, score, name, points)
            for (x1, y1, x2, y2), points, score in zip(boxes, keypoints, scores, strict=True)
        ]

    def detect(self, image: Image.Image | np.ndarray) -> list[FaceBox]:
        array = as_rgb_array(image)
        if not _detectable(array):
            return []
        found = self._detect_model(array, self.name)
        if self.name == "blaze" and _looks_like_a_scene(found, array):
            # The short-range model is for faces near the camera: in a wider scene (no face, or only faces under
            # SCENE_FRACTION of the shorter side) the full-range model adds the smaller faces it misses.
            if self._scene is None:
                self._scene = BlazeDetector("full", threads=self._threads)
            found += [box for box in self._scene._detect_model(array, "blaze-full") if _new_face(box, found)]
        return _sorted_boxes(found, array.shape[1], array.shape[0])


SCENE_FRACTION = 0.4  # largest face side / image shorter side below which the full-range pass runs too
SCENE_MIN_SIDE = 256  # only photos at least this large (shorter side) can hold faces too small for short range


def _looks_like_a_scene(found: list[FaceBox], array: np.ndarray) -> bool:
    shorter = min(array.shape[0], array.shape[1])
    if shorter < SCENE_MIN_SIDE:
        return False
    return not found or max(max(box.w, box.h) for box in found) < SCENE_FRACTION * shorter


def _new_face(box: FaceBox, found: list[FaceBox], overlap: float = 0.3) -> bool:
    """True when ``box`` overlaps no box of ``found`` by more than ``overlap`` (intersection over union)."""
    for other in found:
        width = min(box.x + box.w, other.x + other.w) - max(box.x, other.x)
        height = min(box.y + box.h, other.y + other.h) - max(box.y, other.y)
        inter = max(0, width) * max(0, height)
        if inter / (box.w * box.h + other.w * other.h - inter) > overlap:
            return False
    return True


class CascadeDetector:
    """Run detectors in order and return the first non-empty answer (box.detector says which one found it)."""

    def __init__(self, name: str, stages: Sequence[FaceDetector]):
        self.name = name
        self.stages = list(stages)

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


# ---- landmarks, alignment and crops ----------------------------------------------------------------------


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


def eye_angle(landmarks: Sequence[Point]) -> float:
    """Degrees the eye line falls from the image's left eye to its right eye (y grows downwards)."""
    (x1, y1), (x2, y2) = sorted(landmarks[:2])
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


def alignment_matrix(center: Point, angle: float, side: int) -> np.ndarray:
    """2x3 affine map from the image to a ``side`` x ``side`` crop centred on ``center``, rotated by ``angle``.

    Rotating by ``eye_angle`` (counter-clockwise on screen) makes the eyes level.
    """
    matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), 1.0)
    matrix[0, 2] += side / 2 - center[0]
    matrix[1, 2] += side / 2 - center[1]
    return matrix


def transform_points(points: Sequence[Point], matrix: np.ndarray) -> list[Point]:
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mapped = array @ matrix[:, :2].T + matrix[:, 2]
    return [(float(x), float(y)) for x, y in mapped]


def crop_face(
    image: Image.Image | np.ndarray,
    box: FaceBox,
    *,
    margin: float = 0.1,
    align: bool = False,
    landmarks: Sequence[Point] | None = None,
) -> Image.Image:
    """A square crop centred on ``box``: side ``(1 + 2 * margin) * max(w, h)``, native resolution.

    Where the square leaves the image, the image's edge pixels are repeated rather than painted black: a
    black band is a hard artificial edge whose size and place depend on where the face sat in the photo,
    and it drags per-image standardisation (mean/std of a 48 px grey face) away from the face itself.
    With ``align`` the crop is rotated about the box centre so the eyes are level; the eye positions come
    from ``landmarks``, else ``box.landmarks``, else dlib's 5-point shape predictor.
    """
    array = as_rgb_array(image)
    height, width = array.shape[:2]
    if box.w <= 0 or box.h <= 0:
        raise EmotionlabError(f"face box {box.to_text()} has no area")
    if box.x >= width or box.y >= height or box.x + box.w <= 0 or box.y + box.h <= 0:
        raise EmotionlabError(f"face box {box.to_text()} lies outside the {width}x{height} image")
    if margin <= -0.5:
        raise EmotionlabError(f"crop margin must be greater than -0.5, got {margin}")
    side = max(1, round((1 + 2 * margin) * max(box.w, box.h)))
    center = box.center
    angle = 0.0
    if align:
        points = landmarks if landmarks is not None else box.landmarks
        if points is None:
            points = face_landmarks(array, box)
        angle = eye_angle(points)
    if abs(angle) > 1e-3:
        crop = cv2.warpAffine(
            array,
            alignment_matrix(center, angle, side),
            (side, side),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return Image.fromarray(crop)
    # Integer crop without resampling: identical pixels to the source where the square is inside it.
    left = math.floor(center[0] - side / 2 + 0.5)
    top = math.floor(center[1] - side / 2 + 0.5)
    inside = array[max(top, 0) : min(top + side, height), max(left, 0) : min(left + side, width)]
    pad = (
        (max(0, -top), max(0, top + side - height)),
        (max(0, -left), max(0, left + side - width)),
        (0, 0),
    )
    if any(before or after for before, after in pad[:2]):
        inside = np.pad(inside, pad, mode="edge")
    return Image.fromarray(np.ascontiguousarray(inside))


# ---- configuration, cropper and cache --------------------------------------------------------------------


@dataclass(frozen=True)
class FaceCropConfig:
    """How faces are found and cropped; stored in model files so prediction crops exactly as training did."""

    # Dataset preparation runs once and is cached, so the default is the detector that finds the most faces.
    detector: str = PREPARE_DETECTOR
    # 10% per side (square side 1.2 x box) beat 15% and 20% with a face-pretrained model in first measurements.
    margin: float = 0.1
    # Off by default: rotation resamples the crop, and the seed faces are mostly upright.
    align: bool = False
    # The YuNet ONNX file (detector "yunet" only).
    detector_model: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "detector", check_detector_name(self.detector))
        if (
            not isinstance(self.margin, int | float)
            or isinstance(self.margin, bool)
            or not 0 <= self.margin <= 2
        ):
            raise EmotionlabError(f"face-crop margin must be a number between 0 and 2, got {self.margin!r}")
        object.__setattr__(self, "margin", float(self.margin))
        if not isinstance(self.align, bool):
            raise EmotionlabError(f"face-crop align must be true or false, got {self.align!r}")
        if self.detector_model is not None:
            object.__setattr__(self, "detector_model", str(self.detector_model))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FaceCropConfig:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EmotionlabError(
                f"face-crop settings have unknown key(s) {', '.join(unknown)} (written by a newer emotionlab?)"
            )
        return cls(**data)


def default_cache_dir() -> Path:
    """``$EMOTIONLAB_CACHE/faces`` when set, else ``~/.cache/emotionlab/faces``."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "emotionlab") / "faces"


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _short_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class FaceCropper:
    """``cropper(path_or_image) -> (crop, box or None)``; the whole image when no face is found.

    Crops of files are cached under ``cache_dir`` by the SHA-256 of the file's bytes and the crop settings:
    ``<sha>.<detection-key>.json`` holds the box (so a hit needs no detection and a new margin reuses it) and
    ``<sha>.<detection-key>.<crop-key>.png`` the crop. Detectors are created lazily, so the object pickles
    into DataLoader workers cheaply.
    """

    def __init__(self, config: FaceCropConfig | None = None, cache_dir: str | Path | None = None):
        self.config = config or FaceCropConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._cache_warned = False

    def __repr__(self) -> str:
        return f"FaceCropper({self.config!r}, cache_dir={str(self.cache_dir)!r})"

    # Keys ----------------------------------------------------------------------------------------------
    def _detection_key(self) -> str:
        model = None
        if self.config.detector_model is not None:
            path = Path(self.config.detector_model)
            stat = path.stat() if path.is_file() else None
            model = _file_digest(str(path), stat.st_size, stat.st_mtime_ns) if stat else str(path)
        return _short_hash({"detector": self.config.detector, "model": model, "version": DETECTION_VERSION})

    def _crop_key(self) -> str:
        return _short_hash(
            {"margin": self.config.margin, "align": self.config.align, "version": CROP_VERSION}
        )

    def cache_paths(self, digest: str) -> tuple[Path, Path]:
        """(box JSON, crop PNG) for the file whose SHA-256 is ``digest``."""
        folder = self.cache_dir / digest[:2]
        stem = f"{digest}.{self._detection_key()}"
        return folder / f"{stem}.json", folder / f"{stem}.{self._crop_key()}.png"

    # Detection -------------------------------------------------------------------------------------------
    def detect(self, image: Image.Image | np.ndarray) -> FaceBox | None:
        """The largest face the configured detector finds, or None."""
        boxes = create_detector(self.config.detector, model_file=self.config.detector_model).detect(image)
        return boxes[0] if boxes else None

    def crop(self, image: Image.Image | np.ndarray, box: FaceBox | None) -> Image.Image:
        """Crop ``box`` with the configured margin and alignment; the whole image (RGB) when ``box`` is None."""
        if box is None:
            return (
                image.convert("RGB")
                if isinstance(image, Image.Image)
                else Image.fromarray(as_rgb_array(image))
            )
        return crop_face(image, box, margin=self.config.margin, align=self.config.align)

    def __call__(self, source: str | Path | Image.Image | np.ndarray) -> tuple[Image.Image, FaceBox | None]:
        if isinstance(source, Image.Image | np.ndarray):
            box = self.detect(source)
            return self.crop(source, box), box
        return self._crop_file(Path(source))

    def _crop_file(self, path: Path) -> tuple[Image.Image, FaceBox | None]:
        data = read_file_bytes(path)  # never opens a FIFO (reading one blocks for ever)
        box_file, crop_file = self.cache_paths(hashlib.sha256(data).hexdigest())
        cached = self._read_box(box_file)
        if cached is not None:
            box = cached[0]
            if box is None:
                return read_image(data, name=str(path)), None
            try:
                with Image.open(crop_file) as crop:
                    return crop.convert("RGB"), box
            except (OSError, ValueError):
                pass  # box cached, crop not (yet, or for other settings): crop below without detecting
            image = read_image(data, name=str(path))
        else:
            image = read_image(data, name=str(path))
            box = self.detect(image)
            self._write(
                box_file, lambda name: Path(name).write_text(json.dumps(self._box_record(box, image)))
            )
        crop = self.crop(image, box)
        if box is not None:
            self._write(crop_file, lambda name: crop.save(name, format="PNG"))
        return crop, box

    def _box_record(self, box: FaceBox | None, image: Image.Image) -> dict:
        return {
            "box": box.to_dict() if box else None,
            "image_size": list(image.size),
            "config": self.config.to_dict(),
            "version": DETECTION_VERSION,
        }

    @staticmethod
    def _read_box(box_file: Path) -> tuple[FaceBox | None] | None:
        """``(box or None,)`` from the cache, or None on a miss (or an unreadable entry)."""
        try:
            record = json.loads(box_file.read_text())
            return (FaceBox.from_dict(record["box"]) if record["box"] else None,)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, path: Path, write) -> None:
        try:
            write_atomic(path, write)
        except OSError as error:
            if not self._cache_warned:
                log.warning(
                    "face-crop cache %s is not writable (%s); crops are not cached", self.cache_dir, error
                )
                self._cache_warned = True

    def detect_file(self, path: str | Path) -> FaceBox | None:
        """The face box of one file (from the cache, or detected), filling the cache with box and crop."""
        return self._crop_file(Path(path))[1]

    # Training loader -------------------------------------------------------------------------------------
    def for_sample(self, sample: Sample) -> Image.Image:
        """The crop for a dataset sample: its manifest ``face_box`` when set (no detection), else detect."""
        if sample.face_box is None:
            return self._crop_file(Path(sample.path))[0]
        image = read_image(sample.path)
        x, y, w, h = sample.face_box
        try:
            return crop_face(
                image,
                FaceBox(x, y, w, h, detector="manifest"),
                margin=self.config.margin,
                align=self.config.align,
            )
        except EmotionlabError as error:
            raise EmotionlabError(f"{sample.path}: {error}") from error


# ---- dataset preparation (`emotionlab data faces`) -------------------------------------------------------


@dataclass
class FaceReport:
    """What ``prepare_face_manifest`` did: counts, the images without a face, the unreadable ones."""

    out: Path
    total: int = 0
    with_face: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    by_detector: dict[str, int] = field(default_factory=dict)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _read_manifest_rows(manifest: Path) -> tuple[list[str], list[str], list[dict]]:
    """(comment lines, column names, rows) of a manifest CSV, keeping every column."""
    if not manifest.is_file():
        raise EmotionlabError(f"{manifest}: manifest file not found")
    with manifest.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        lines = handle.readlines()
    comments = [line.rstrip("\r\n") for line in lines if line.startswith("#")]
    reader = csv.DictReader([line for line in lines if not line.startswith("#")])
    rows = list(reader)
    columns = list(reader.fieldnames or [])
    if "path" not in columns:
        raise EmotionlabError(f"{manifest}: not a manifest (no path column)")
    return comments, columns, rows


def _detect_row(cropper: FaceCropper, path: Path | str) -> tuple[FaceBox | None, str | None]:
    from emotionlab.isolation import error_reason

    try:
        return cropper.detect_file(Path(path)), None
    except ImageReadError as error:
        return None, error.reason
    except Exception as error:  # noqa: BLE001 - one image's failure is its "unreadable" line, the run goes on
        return None, error_reason(error)


def prepare_face_manifest(
    root: str | Path,
    out: str | Path,
    *,
    manifest: str | Path | None = None,
    config: FaceCropConfig | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    show_progress: bool = True,
) -> FaceReport:
    """Detect a face on every image, fill the crop cache, and write ``out``: the input manifest (or the
    folder tree's path,label,split) plus ``face_box`` (``x y w h``, empty when no face) and ``face_detector``.

    Nothing is written under ``root``.
    """
    root, out = Path(root), Path(out)
    config = config or FaceCropConfig()
    cropper = FaceCropper(config, cache_dir)
    if not root.is_dir():
        raise EmotionlabError(f"{root}: dataset folder not found")
    if _inside(out, root):
        raise EmotionlabError(
            f"{out}: refusing to write inside the dataset folder {root}; choose another --out"
        )
    if _inside(cropper.cache_dir, root):
        raise EmotionlabError(
            f"{cropper.cache_dir}: the face-crop cache must not be inside the dataset folder {root}"
        )
    create_detector(config.detector, model_file=config.detector_model)  # fail fast on a bad name or model

    if manifest is not None:
        comments, columns, rows = _read_manifest_rows(Path(manifest))
    else:
        from emotionlab.data.dataset import scan_image_folder

        sample_set = scan_image_folder(root, verify=False)
        comments, columns = [], ["path", "label", "split"]
        rows = [{"path": s.relpath, "label": s.label, "split": s.split or ""} for s in sample_set.samples]
    comments = [
        *(line for line in comments if not line.startswith("# face_box:")),
        f"# face_box: x y w h from the {config.detector} detector (emotionlab data faces) on {root.resolve()}",
    ]
    for column in ("face_box", "face_detector"):
        if column not in columns:
            columns.append(column)

    paths = [str(root / row["path"]) for row in rows]
    report = FaceReport(out=out, total=len(rows))
    results = _run_detection(cropper, paths, workers, show_progress)
    for row, (box, error) in zip(rows, results, strict=True):
        row["face_box"] = box.to_text() if box else ""
        row["face_detector"] = config.detector
        if error is not None:
            report.unreadable.append((row["path"], error))
            row["face_detector"] = ""
        elif box is None:
            report.no_face.append(row["path"])
        else:
            report.with_face += 1
            report.by_detector[box.detector] = report.by_detector.get(box.detector, 0) + 1

    def write(name: str) -> None:
        with open(name, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            handle.writelines(line + "\n" for line in comments)
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(out, write)
    return report


def _run_detection(cropper: FaceCropper, paths: list[str], workers: int, show_progress: bool):
    from functools import partial

    from rich.console import Console
    from rich.progress import Progress

    from emotionlab.isolation import isolated_map

    # Always in worker processes (one by default): a detector that kills its process on one image (native
    # code) costs that image an "unreadable" line, and a fresh worker goes on with the others. Processes, not
    # threads: each gets its own dlib detectors; never a plain fork (see isolation.worker_context).
    with Progress(console=Console(stderr=True), disable=not show_progress) as progress:
        task = progress.add_task("detecting faces", total=len(paths))
        results = []
        for result in isolated_map(
            partial(_detect_row, cropper),
            paths,
            workers=max(1, workers),
            on_error=lambda _path, reason: (None, reason),
            preload=["emotionlab.data.faces"],
        ):
            results.append(result)
            progress.advance(task)
        return results


# ---- YuNet model download --------------------------------------------------------------------------------


def check_yunet_file(path: str | Path) -> None:
    """Raise unless ``path`` is an ONNX model with YuNet's outputs (``cls_8`` ... ``kps_32``)."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError, ... for non-ONNX bytes
        raise EmotionlabError(f"{path}: not an ONNX model ({type(error).__name__})") from error
    outputs = {output.name for output in model.graph.output}
    missing = [name for name in YUNET_OUTPUTS if name not in outputs]
    if missing:
        raise EmotionlabError(
            f"{path}: an ONNX model, but not YuNet (missing outputs {', '.join(missing[:3])}, ...)"
        )


def download_yunet(
    dest: str | Path, *, url: str = YUNET_URL, source_file: str | Path | None = None, timeout: float = 60
) -> Path:
    """Fetch the OpenCV-zoo YuNet model (or copy ``source_file``) to ``dest`` (a file, or a folder for the
    standard file name), check it is YuNet, and return the written path."""
    dest = Path(dest)
    target = dest / YUNET_FILE_NAME if dest.is_dir() or str(dest).endswith(("/", os.sep)) else dest
    target.parent.mkdir(parents=True, exist_ok=True)

    def fetch(name: str) -> None:
        if source_file is not None:
            source = Path(source_file)
            if not source.is_file():
                raise EmotionlabError(f"{source}: file not found")
            shutil.copyfile(source, name)
            return
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(name, "wb") as handle:
                shutil.copyfileobj(response, handle)
        except urllib.error.HTTPError as error:
            raise EmotionlabError(f"{url}: download failed (HTTP {error.code})") from error
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise EmotionlabError(
                f"{url}: cannot download ({reason}); offline? fetch {YUNET_FILE_NAME} elsewhere and pass --from FILE"
            ) from error
        check_yunet_file(name)

    if source_file is not None:
        check_yunet_file(source_file)
    write_atomic(target, fetch)
    return target
