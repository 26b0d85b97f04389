"""Videos and cameras: frames -> the ``Recognizer`` -> per-frame records, an emotion-over-time CSV and plot,
an annotated video, and a live window.

Everything works on an iterator of ``Frame(index, time, image)``: ``video_frames(path, fps=2)`` reads a file
with OpenCV and keeps ``fps`` frames per second of video; ``camera_frames(0)`` reads a camera; tests pass
any iterator of synthetic frames instead.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotionlab.data.images import VIDEO_SUFFIXES, is_video_name  # noqa: F401  (public here too)
from emotionlab.errors import EmotionlabError
from emotionlab.inference.timeline import Timeline

WINDOW_TITLE = "emotionlab (q to quit)"


@dataclass(frozen=True)
class Frame:
    """One video frame: its index in the source, its time in seconds from the start, RGB pixels (H x W x 3)."""

    index: int
    time: float
    image: np.ndarray


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        # A FIFO or device would block OpenCV's reader for ever: only regular files are opened.
        what = "not a regular file" if os.path.lexists(path) and not path.is_dir() else "video file not found"
        raise EmotionlabError(f"{path}: {what}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise EmotionlabError(f"{path}: OpenCV cannot open this video (unknown codec or not a video)")
    return capture


def video_fps(path: str | Path) -> float:
    """The frame rate a video file declares (0.0 when it declares none)."""
    capture = _open(Path(path))
    try:
        return float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()


def video_frames(path: str | Path, *, fps: float | None = None, start_frame: int = 0) -> Iterator[Frame]:
    """The frames of a video file, ``fps`` per second of video (all frames when None or above the file's rate).

    Frame ``i`` has time ``i / native_fps``; with sampling, the first frame of every ``native_fps / fps``
    frames is kept (frames 0, 15, 30, ... for a 30 fps file at ``fps=2``). Frames before ``start_frame``
    are skipped (to resume). Skipped frames are grabbed but never converted.
    """
    if fps is not None and fps <= 0:
        raise EmotionlabError(f"--fps must be positive, got {fps}")
    path = Path(path)
    capture = _open(path)
    native = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    step = native / fps if fps and native > 0 and fps < native else 1.0
    index = -1
    bucket = -1
    try:
        while capture.grab():
            index += 1
            current = math.floor(index / step + 1e-9)
            if current == bucket:
                continue
            bucket = current
            if index < start_frame:
                continue
            ok, bgr = capture.retrieve()
            if not ok or bgr is None:
                break
            seconds = index / native if native > 0 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield Frame(index, round(seconds, 4), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()


def open_camera(index: int) -> cv2.VideoCapture:
    """An opened OpenCV camera (tests replace this function)."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise EmotionlabError(
            f"camera {index}: cannot open it (no camera at this index, or in use elsewhere)"
        )
    return capture


def camera_frames(
    index: int = 0, *, fps: float | None = None, max_frames: int | None = None, duration: float | None = None
) -> Iterator[Frame]:
    """Frames from a camera, at most ``fps`` per second, until ``max_frames``/``duration`` or the camera stops."""
    capture = open_camera(index)
    start = time.monotonic()
    next_time = 0.0
    kept = 0
    raw = -1
    try:
        while max_frames is None or kept < max_frames:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                break
            raw += 1
            now = time.monotonic() - start
            if duration is not None and now > duration:
                break
            if fps and now < next_time:
                continue
            next_time = now + 1.0 / fps if fps else 0.0
            kept += 1
            yield Frame(raw, round(now, 4), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()


def gui_available() -> bool:
    """True when OpenCV can open a window here: a GUI build (not opencv-python-headless) and a display."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        cv2.namedWindow("emotionlab-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("emotionlab-probe")
        return True
    except cv2.error:  # "The function is not implemented": a headless build
        return False


# ---- pipelines -------------------------------------------------------------------------------------------


def output_stem(path: str | Path) -> str:
    return Path(path).stem


def predict_frames(
    recognizer,
    frames: Iterable[Frame],
    *,
    name: str,
    batch_size: int = 16,
    timeline: Timeline | None = None,
    annotator=None,
    show: Callable[[np.ndarray, dict], bool] | None = None,
) -> Iterator[dict]:
    """Records (with ``frame`` and ``time``) for frames; feeds the timeline, the annotated video and a window.

    ``show(image, record)`` returning False stops the stream (the window's q key).
    """
    keep = annotator is not None or show is not None
    preparer = recognizer.preparer(keep_image=keep)
    items = (
        preparer(frame.image, name=name, extra={"frame": frame.index, "time": frame.time}) for frame in frames
    )
    try:
        for item, record in recognizer.classify(items, batch_size=batch_size):
            if timeline is not None:
                timeline.add(record)
            if annotator is not None and item.image is not None:
                annotator.write(item.image, record)
            stop = show is not None and item.image is not None and show(item.image, record) is False
            item.image = None
            yield record
            if stop:
                break
    finally:
        if annotator is not None:
            annotator.close()
        if timeline is not None:
            timeline.close()


class VideoRecords:
    """The records of a video, one per sampled frame, read as they are iterated (frames are decoded, searched
    and classified lazily). ``to_dataframe()`` reads them all into a pandas table instead."""

    def __init__(self, records: Iterator[dict]):
        self._records = records
        self.records_read = 0

    def __iter__(self) -> VideoRecords:
        return self

    def __next__(self) -> dict:
        record = next(self._records)
        self.records_read += 1
        return record

    def close(self) -> None:
        """Stop reading the video (its timeline and annotated video are closed with what they hold)."""
        self._records.close()

    def to_dataframe(self):
        """One row per face per sampled frame: path, frame (index in the video), time (seconds), face (0 is the
        largest), box (x, y, w, h), label, confidence, no_face and one column per emotion's probability; a frame
        without a face has one row for the whole frame (``no_face`` true, no face index or box). Reads the whole
        video; needs pandas (``pip install 'emotionlab[pandas]'``)."""
        from emotionlab.inference import to_dataframe

        if self.records_read:
            raise EmotionlabError(
                f"to_dataframe: {self.records_read} record(s) of this video were already read by iterating; "
                "call predict_video again and use to_dataframe() alone"
            )
        return to_dataframe(list(self))  # the same columns in the same order whatever the first frame holds


def predict_video(
    recognizer,
    path: str | Path,
    *,
    fps: float | None = None,
    out_dir: str | Path | None = None,
    annotate_dir: str | Path | None = None,
    batch_size: int = 16,
    start_frame: int = 0,
    name: str | None = None,
) -> VideoRecords:
    """Per-frame records of a video file: iterate them as they come, or ``.to_dataframe()`` for a pandas table.
    With ``out_dir`` writes ``<stem>.timeline.csv`` and ``.png`` there; with ``annotate_dir`` writes
    ``<stem>.annotated.mp4`` (and the timeline too, when ``out_dir`` is None)."""
    return VideoRecords(
        _video_records(
            recognizer,
            path,
            fps=fps,
            out_dir=out_dir,
            annotate_dir=annotate_dir,
            batch_size=batch_size,
            start_frame=start_frame,
            name=name,
        )
    )


def _video_records(
    recognizer,
    path: str | Path,
    *,
    fps: float | None,
    out_dir: str | Path | None,
    annotate_dir: str | Path | None,
    batch_size: int,
    start_frame: int,
    name: str | None,
) -> Iterator[dict]:
    from emotionlab.inference.annotate import VideoAnnotator

    path = Path(path)
    native = video_fps(path)
    folder = (
        Path(out_dir) if out_dir is not None else (Path(annotate_dir) if annotate_dir is not None else None)
    )
    stem = output_stem(path)
    timeline = None
    if folder is not None:
        timeline = Timeline(
            recognizer.labels,
            folder / f"{stem}.timeline.csv",
            folder / f"{stem}.timeline.png",
            title=path.name,
        )
    annotator = None
    if annotate_dir is not None:
        rate = min(fps, native) if fps and native else (fps or native or 25.0)
        annotator = VideoAnnotator(Path(annotate_dir) / f"{stem}.annotated.mp4", rate)
    frames = video_frames(path, fps=fps, start_frame=start_frame)
    yield from predict_frames(
        recognizer,
        frames,
        name=name or str(path),
        batch_size=batch_size,
        timeline=timeline,
        annotator=annotator,
    )


def window_viewer() -> Callable[[np.ndarray, dict], bool]:
    """A ``show`` callback for ``predict_frames``: draws into an OpenCV window; False once q or Esc is hit."""
    from emotionlab.inference.annotate import draw_record

    def show(image: np.ndarray, record: dict) -> bool:
        cv2.imshow(WINDOW_TITLE, cv2.cvtColor(draw_record(image, record), cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    return show


def predict_camera(
    recognizer,
    frames: Iterable[Frame],
    *,
    name: str = "camera:0",
    window: bool = False,
    out_dir: str | Path | None = None,
    annotate_dir: str | Path | None = None,
    fps: float | None = None,
) -> Iterator[dict]:
    """Records from a live frame source, one frame at a time (lowest latency), optionally shown in a window."""
    from emotionlab.inference.annotate import VideoAnnotator

    folder = (
        Path(out_dir) if out_dir is not None else (Path(annotate_dir) if annotate_dir is not None else None)
    )
    stem = name.replace(":", "")
    timeline = None
    if folder is not None:
        timeline = Timeline(
            recognizer.labels, folder / f"{stem}.timeline.csv", folder / f"{stem}.timeline.png", title=name
        )
    annotator = (
        VideoAnnotator(Path(annotate_dir) / f"{stem}.annotated.mp4", fps or 10.0) if annotate_dir else None
    )
    show = window_viewer() if window else None
    try:
        yield from predict_frames(
            recognizer, frames, name=name, batch_size=1, timeline=timeline, annotator=annotator, show=show
        )
    finally:
        if window:
            cv2.destroyAllWindows()
