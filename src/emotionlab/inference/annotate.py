"""Draw predictions on images and video frames: a box per face with its label and confidence (OpenCV)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from emotionlab.errors import EmotionlabError

# RGB; one colour per canonical emotion so a label looks the same in every picture.
COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (220, 40, 40),
    "fearful": (150, 70, 200),
    "happy": (250, 190, 20),
    "sad": (40, 110, 230),
    "surprised": (30, 190, 110),
}
NO_FACE_COLOR = (200, 200, 200)


def label_color(label: str) -> tuple[int, int, int]:
    if label in COLORS:
        return COLORS[label]
    digest = hashlib.sha256(label.encode()).digest()
    return (64 + digest[0] % 192, 64 + digest[1] % 192, 64 + digest[2] % 192)


def _text(image: np.ndarray, text: str, x: int, y: int, color, scale: float, thickness: int) -> None:
    """Text on a filled box in ``color`` (black or white letters, whichever reads better), kept inside."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
    x = int(min(max(0, x), max(0, image.shape[1] - width - 4)))
    y = int(min(max(height + baseline + 4, y), image.shape[0]))
    cv2.rectangle(image, (x, y - height - baseline - 4), (x + width + 4, y), color, cv2.FILLED)
    ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.putText(image, text, (x + 2, y - baseline - 2), font, scale, ink, thickness, cv2.LINE_AA)


def draw_record(image: np.ndarray, record: dict) -> np.ndarray:
    """A copy of ``image`` (RGB, H x W x 3) with the record's faces, labels and confidences drawn."""
    canvas = np.ascontiguousarray(image.copy())
    height, width = canvas.shape[:2]
    scale = max(0.35, min(width, height) / 500)
    thickness = max(1, round(scale * 2))
    if "error" in record:
        return canvas
    faces = record.get("faces") or []
    for face in faces:
        x, y, w, h = face["box"]
        color = label_color(face["label"])
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), color, thickness + 1)
        _text(canvas, f"{face['label']} {face['confidence']:.0%}", x, y, color, scale, thickness)
    if record.get("no_face") or not faces:
        text = f"no face - whole image: {record['label']} {record['confidence']:.0%}"
        _text(canvas, text, 0, height, NO_FACE_COLOR, scale, thickness)
    if "time" in record:
        _text(
            canvas, f"{record['time']:.2f} s", 0, int(28 * scale) + 6, NO_FACE_COLOR, scale * 0.8, thickness
        )
    return canvas


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Save an RGB array (format from the suffix; PNG when the suffix is not an image type OpenCV writes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise EmotionlabError(f"{path}: cannot write the annotated image")
    return path


def annotated_image_path(out_dir: Path, source: str | Path, base: Path | None) -> Path:
    """Where the annotated copy of ``source`` goes: its path relative to ``base`` mirrored under ``out_dir``
    (so same-named files in different folders do not collide), with the same suffix when OpenCV writes it."""
    source = Path(source)
    try:
        relative = source.resolve().relative_to(base.resolve()) if base is not None else Path(source.name)
    except ValueError:
        relative = Path(source.name)
    suffix = source.suffix.lower() if source.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png"
    return out_dir / relative.with_suffix(suffix)


def common_base(paths: list[Path]) -> Path | None:
    """The deepest folder holding every path (None for no paths)."""
    if not paths:
        return None
    parents = [str(Path(p).resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents))


class VideoAnnotator:
    """Writes annotated frames to a video file, opened on the first frame (its size sets the video's)."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = max(0.1, float(fps))
        self._writer = None
        self.frames = 0

    def write(self, image: np.ndarray, record: dict) -> None:
        frame = cv2.cvtColor(draw_record(image, record), cv2.COLOR_RGB2BGR)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            codec = "mp4v" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise EmotionlabError(f"{self.path}: OpenCV cannot write this video (codec {codec})")
            self._size = (width, height)
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
