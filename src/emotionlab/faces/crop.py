"""Square face crops: margin, optional eye alignment, edge pixels repeated where the square leaves the image;
``FaceCropConfig``, the crop settings a model file stores so prediction crops exactly as training did; and the
one crop path every stage uses (``crop_faces``, through ``faces/preparation.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.extras import require
from emotionlab.faces.boxes import FaceBox, Point, as_rgb_array
from emotionlab.faces.detectors import PREPARE_DETECTOR, check_detector_name
from emotionlab.faces.dlib import face_landmarks


def eye_angle(landmarks: Sequence[Point]) -> float:
    """Degrees the eye line falls from the image's left eye to its right eye (y grows downwards)."""
    (x1, y1), (x2, y2) = sorted(landmarks[:2])
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


def alignment_matrix(center: Point, angle: float, side: int) -> np.ndarray:
    """2x3 affine map from the image to a ``side`` x ``side`` crop centred on ``center``, rotated by ``angle``.

    Rotating by ``eye_angle`` (counter-clockwise on screen) makes the eyes level.
    """
    # OpenCV's getRotationMatrix2D(center, angle, 1), written out: no OpenCV needed for the matrix.
    cx, cy = float(center[0]), float(center[1])
    alpha, beta = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    matrix = np.array(
        [[alpha, beta, (1 - alpha) * cx - beta * cy], [-beta, alpha, beta * cx + (1 - alpha) * cy]]
    )
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
        require("cv2", "face alignment (align: true)")
        import cv2

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


# ---- the one crop path: detector result + the model's crop settings -> crops ------------------------------
# Prediction, serving, evaluation, the report, explanations and training's cached crops (``FaceCropper``) all
# prepare photos with ``FacePreparer`` (faces/preparation.py), which crops here (tests/test_preparation.py:
# training, evaluate and predict give identical crops on large and small photos).


def can_crop(box: FaceBox, width: int, height: int) -> bool:
    """Whether ``box`` has an area and overlaps the ``width`` x ``height`` image (a detector's degenerate
    box is no face to classify: it is left out, not an error)."""
    return (
        box.w > 0
        and box.h > 0
        and box.x < width
        and box.y < height
        and box.x + box.w > 0
        and box.y + box.h > 0
    )


def crop_box(image: Image.Image | np.ndarray, box: FaceBox, config: FaceCropConfig) -> Image.Image:
    """The crop of one face with the model's crop settings (margin, alignment)."""
    return crop_face(image, box, margin=config.margin, align=config.align)


def crop_faces(
    image: Image.Image | np.ndarray, boxes: Sequence[FaceBox], config: FaceCropConfig
) -> list[Image.Image | None]:
    """One crop per box, in order, with the model's crop settings; None where ``can_crop`` says no."""
    array = as_rgb_array(image)
    height, width = array.shape[:2]
    return [crop_box(array, box, config) if can_crop(box, width, height) else None for box in boxes]
