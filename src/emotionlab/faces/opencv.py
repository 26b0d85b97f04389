"""OpenCV's face detectors: ``haar`` (the frontal-face Haar cascade, no extra files) and ``yunet``
(``cv2.FaceDetectorYN`` with the OpenCV-zoo ONNX file, fetched by ``emotionlab data download-yunet``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError
from emotionlab.extras import require
from emotionlab.faces.boxes import _box_from_scaled, _ScaledDetector
from emotionlab.fileio import write_atomic

YUNET_FILE_NAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
# Output names OpenCV's FaceDetectorYN reads from the 2023mar model; a file without them is not YuNet.
YUNET_OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in (8, 16, 32))
DOWNLOAD_YUNET_HINT = "get it with `emotionlab data download-yunet DEST` and pass --detector-model DEST"


def _opencv(detector: str):
    """OpenCV, imported when an OpenCV detector is built (the ``[video]`` extra; the light install has none)."""
    require("cv2", f"the {detector} face detector")
    import cv2

    return cv2


class HaarDetector(_ScaledDetector):
    """OpenCV's frontal-face Haar cascade on the histogram-equalised grey image.

    minNeighbors=3 found a face in 82% of the seed photos against 78% with OpenCV's usual 5.
    """

    name = "haar"
    short_side = 320
    max_side = 640

    def __init__(self, min_neighbors: int = 3, min_size_fraction: float = 0.15):
        super().__init__()
        cv2 = _opencv("haar")
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
        cv2 = _opencv("haar")
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
        cv2 = _opencv("yunet")
        try:
            self._detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
        except cv2.error as error:
            raise EmotionlabError(f"{path}: not a usable YuNet model ({str(error).strip()[:200]})") from error

    def _detect_scaled(self, small, scale):
        cv2 = _opencv("yunet")
        height, width = small.shape[:2]
        self._detector.setInputSize((width, height))
        _, faces = self._detector.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        boxes = []
        for row in faces if faces is not None else []:
            x, y, w, h = row[:4]
            landmarks = [(row[4 + 2 * i], row[5 + 2 * i]) for i in range(5)]
            boxes.append(_box_from_scaled(x, y, w, h, scale, row[14], self.name, landmarks))
        return boxes


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
    # Here, not at the top: urllib.request (http, ssl, email) costs every `emotionlab predict` ~20 ms to load.
    import urllib.error
    import urllib.request

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
