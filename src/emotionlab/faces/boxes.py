"""Face boxes and what every detector shares: ``FaceBox``, the ``FaceDetector`` protocol, RGB arrays, the
size guards, and ``_ScaledDetector`` (resize to a working size, detect, map boxes back, largest first)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError

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
    import cv2  # only the dlib and OpenCV detectors come here; both extras install OpenCV

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
    thread_safe = True  # callable from several threads: the native call is under the lock

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
