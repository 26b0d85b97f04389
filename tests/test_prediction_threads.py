"""Preparing images in threads beside the classifier (``Recognizer.predict_many(threads=...)``): the same records
in the same order as one image at a time, a detector of unknown make never called from two threads at once,
and a consumer that stops early does not make the threads prepare every remaining image."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import BIG, SMALL, BoxDetector, save_tiny_model, two_face_image

from emotionlab.inference import load_recognizer
from emotionlab.inference.classifier import physical_cores
from emotionlab.synthetic import make_face


@pytest.fixture(scope="module")
def face_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "faces.safetensors")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def files(tmp_path) -> list[Path]:
    """Twelve two-face images, a one-face-less small image and an unreadable file, in a sorted list."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(12):
        two_face_image(rng).save(folder / f"group_{index:02d}.png")
    make_face("angry", rng, 64).save(folder / "lonely.png")
    (folder / "broken.png").write_bytes(b"not an image")
    return sorted(folder.iterdir())


class CountingDetector(BoxDetector):
    """The stub detector, slow enough to overlap, noting how many calls ran at the same time."""

    def __init__(self, *, thread_safe: bool):
        super().__init__({(300, 200): [SMALL, BIG]})
        self.thread_safe = thread_safe
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def detect(self, image):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.02)
        try:
            with self._lock:
                return super().detect(image)
        finally:
            with self._lock:
                self.running -= 1


def test_threads_give_the_same_records_in_the_same_order(face_model, files):
    recognizer = load_recognizer(face_model, detector=CountingDetector(thread_safe=True))
    one_at_a_time = list(recognizer.predict_many(files, batch_size=5, threads=0))
    threaded = list(recognizer.predict_many(files, batch_size=5, threads=3))
    assert [r["path"] for r in threaded] == [str(f) for f in files]
    assert threaded == one_at_a_time
    assert "error" in threaded[0] and threaded[0]["path"].endswith("broken.png")
    assert [len(r.get("faces", [])) for r in threaded[1:]] == [2] * 12 + [0]
    assert recognizer.face_detector.most_at_once > 1  # the threads did prepare images side by side


def test_a_detector_of_unknown_make_is_never_called_from_two_threads(face_model, files):
    detector = CountingDetector(thread_safe=False)
    recognizer = load_recognizer(face_model, detector=detector)
    assert recognizer.prepare_threads() == 1
    records = list(recognizer.predict_many(files, batch_size=4, threads=None))
    assert len(records) == len(files)
    assert detector.most_at_once == 1


def test_the_default_detector_prepares_in_one_thread_per_core(face_model):
    assert load_recognizer(face_model).prepare_threads() == physical_cores()


def test_stopping_early_leaves_the_remaining_images_unprepared(face_model, files):
    detector = CountingDetector(thread_safe=True)
    recognizer = load_recognizer(face_model, detector=detector)
    endless = (files[1] for _ in range(10_000))
    for _ in recognizer.predict_many(endless, batch_size=2, threads=2):
        break
    time.sleep(0.1)
    assert detector.calls < 50  # a few batches ahead at most, not the 10,000 images
