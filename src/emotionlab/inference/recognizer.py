"""Inference: a model file -> classifier (faces in, probabilities out) -> ``Recognizer`` (images in, records out).

``emotionlab.load_model(path)`` returns a ``Recognizer``; ``recognizer.predict(image_or_path)`` gives one record,
exactly one line of ``emotionlab predict --format jsonl``::

    {"path": "group.jpg", "label": "happy", "confidence": 0.91, "no_face": false,
     "probabilities": {"angry": 0.01, ...},
     "faces": [{"box": [x, y, w, h], "label": "happy", "confidence": 0.91, "probabilities": {...}}, ...]}

Faces are found and cropped exactly as the model's training data was (the model file's ``faces`` settings:
detector, margin, alignment); every face of every image in a batch goes through the network in one call.
``faces`` is sorted largest first and the image's ``label``/``probabilities`` are the largest face's. When no
face is found the whole image is classified and ``no_face`` is true. Models trained on whole images
(``faces`` null) classify whole images unless detection is forced.

The pipeline is split so that decoding, detection and cropping (``FacePreparer``, no model inside) can run in
worker processes while the main process only runs the network. One bad image never stops a run: whatever goes
wrong with it (unreadable, a detector exception, a worker process killed by native code) becomes that image's
record with an ``error`` reason, in its place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypedDict

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.faces import PREDICT_DETECTOR, FaceCropConfig, as_rgb_array
from emotionlab.faces.preparation import (
    CROP_OVERSAMPLE,
    DETECT_DECODE_SIDE,
    FacePreparer,
    PreparedImage,
    prepare_in_threads,
    thread_safe_detection,
)
from emotionlab.inference.classifier import BaseClassifier, physical_cores
from emotionlab.isolation import isolated_map
from emotionlab.progress import progress as progress_bar  # public as emotionlab.inference.progress_bar

log = logging.getLogger("emotionlab")
# Probabilities in records are rounded: six decimals is far below any meaningful difference and keeps jsonl short.
DECIMALS = 6


class Recognizer:
    """Images in, one record per image out: finds every face, crops it as the model was trained, classifies.

    ``detect``: None follows the model (detect when it was trained on face crops), True forces detection
    (with the model's crop settings, or a 10% margin for whole-image models), False uses whole images.
    ``detector`` overrides the model's detector (e.g. a faster one for video): a name for
    ``emotionlab.faces.create_detector`` or any object with ``detect(image) -> [FaceBox]``.
    """

    def __init__(
        self,
        classifier: BaseClassifier,
        *,
        detect: bool | None = None,
        detector=None,
        max_faces: int | None = None,
    ):
        from emotionlab.inference.compound import compound_ratio

        self.classifier = classifier
        self.labels = classifier.labels
        # "surprised + happy" in records when the second emotion is this close to the first (emotionlab.inference.compound)
        self.compound_ratio = compound_ratio(classifier.metadata)
        faces = classifier.metadata.get("faces")
        self.detect = bool(faces) if detect is None else bool(detect)
        self.crop_config = None
        if self.detect:
            config = FaceCropConfig.from_dict(faces) if faces else FaceCropConfig(detector=PREDICT_DETECTOR)
            if isinstance(detector, str) and detector:
                config = FaceCropConfig.from_dict(
                    {**config.to_dict(), "detector": detector}
                )  # checks the name
            self.crop_config = config
        self.face_detector = None if detector is None or isinstance(detector, str) else detector
        self.max_faces = max_faces

    @property
    def detector_name(self) -> str:
        if not self.detect:
            return "none"
        if self.face_detector is not None:
            return getattr(self.face_detector, "name", type(self.face_detector).__name__)
        return self.crop_config.detector

    def preparer(
        self, *, keep_image: bool = False, keep_crops: bool = False, decode_less: bool = True
    ) -> FacePreparer:
        """What prepares images for this recognizer (and for evaluation, the report and explanations of its
        model); ``keep_crops``: the crops too, as PIL images; ``decode_less=False`` decodes every file in full."""
        return FacePreparer(
            self.classifier.transform,
            self.crop_config,
            detector=self.face_detector,
            max_faces=self.max_faces,
            keep_image=keep_image,
            keep_crops=keep_crops,
            decode_side=DETECT_DECODE_SIDE if decode_less else None,
            min_crop_side=CROP_OVERSAMPLE * self.classifier.input_size if decode_less else 0,
        )

    # Records ---------------------------------------------------------------------------------------------
    def _probabilities_dict(self, row: np.ndarray) -> dict[str, float]:
        return {label: round(float(p), DECIMALS) for label, p in zip(self.labels, row, strict=True)}

    def make_record(self, item: PreparedImage, probabilities: np.ndarray | None) -> dict:
        """The record of one prepared image, given one probability row per input."""
        from emotionlab.inference.compound import compound_reading

        if item.error is not None:
            return {"path": item.name, **item.extra, "error": item.error}
        faces = []
        for box, row in zip(item.boxes, probabilities, strict=False):
            best = int(np.argmax(row))
            faces.append(
                {
                    "box": [int(box.x), int(box.y), int(box.w), int(box.h)],
                    "label": self.labels[best],
                    "confidence": round(float(row[best]), DECIMALS),
                    "probabilities": self._probabilities_dict(row),
                    "compound": compound_reading(row, self.labels, ratio=self.compound_ratio),
                }
            )
        main = probabilities[0]
        best = int(np.argmax(main))
        return {
            "path": item.name,
            **item.extra,
            "label": self.labels[best],
            "confidence": round(float(main[best]), DECIMALS),
            "no_face": bool(item.no_face),
            "probabilities": self._probabilities_dict(main),
            "compound": compound_reading(main, self.labels, ratio=self.compound_ratio),
            "faces": faces,
        }

    def classify(
        self, items: Iterable[PreparedImage], *, batch_size: int = 64
    ) -> Iterator[tuple[PreparedImage, dict]]:
        """Classify prepared images in order; the faces of several images share one network call."""
        pending: list[PreparedImage] = []
        count = 0

        def flush():
            inputs = [item.inputs for item in pending if item.num_inputs]
            rows = (
                self.classifier.predict_inputs(np.concatenate(inputs), batch_size=batch_size)
                if inputs
                else None
            )
            start = 0
            for item in pending:
                yield (
                    item,
                    self.make_record(
                        item, rows[start : start + item.num_inputs] if item.num_inputs else None
                    ),
                )
                start += item.num_inputs
            pending.clear()

        for item in items:
            pending.append(item)
            count += item.num_inputs
            if count >= batch_size:
                yield from flush()
                count = 0
        if pending:
            yield from flush()

    # Public API ------------------------------------------------------------------------------------------
    def predict(self, source, *, channels: str = "rgb"):
        """Classify one image (path, PIL image or array) -> an ``ImageRecord``; raises for an unreadable file.

        A list or tuple of images gives a list of records (an unreadable one gets a record with ``error``).
        Arrays are RGB; pass ``channels="bgr"`` for OpenCV frames (``cv2.imread``, ``VideoCapture.read``)."""
        if isinstance(source, list | tuple):
            return list(self.predict_many([_as_rgb(item, channels) for item in source]))
        item = self.preparer()(_as_rgb(source, channels))
        if item.error is not None:
            raise EmotionlabError(f"{item.name}: {item.error}")
        return next(self.classify([item]))[1]

    def classify_face(self, face, *, channels: str = "rgb") -> tuple[str, dict[str, float]]:
        """``(label, probabilities)`` for a ready face crop (PIL image or array), no detection: the crop is used
        as it is (the model was trained on square crops with a 10% margin around the face)."""
        face = _as_rgb(face, channels)
        image = face.convert("RGB") if isinstance(face, Image.Image) else Image.fromarray(as_rgb_array(face))
        row = self.classifier.predict_proba([image])[0]
        return self.labels[int(np.argmax(row))], self._probabilities_dict(row)

    def iter_predictions(
        self,
        sources: Sequence | Iterable,
        *,
        batch_size: int = 32,
        workers: int = 0,
        threads: int | None = None,
        keep_images: bool = False,
        progress: bool = False,
        on_prepare: Callable[[object], None] | None = None,
    ) -> Iterator[tuple[PreparedImage, dict]]:
        """``(prepared image, record)`` for each source, in order. With ``workers`` > 0, decoding, detection and
        cropping run in that many processes (``sources`` must then be a sequence, e.g. a list of paths). Workers
        start clean (fork server or spawn), so a script using them needs the ``if __name__ == "__main__":`` guard.
        A failing image gives a record with ``error``; so does an image whose worker process dies on it (the
        worker is replaced). Without workers, ``threads`` threads of this process prepare the next images while
        this thread classifies (None: ``prepare_threads()``; 0: prepare in this thread, one image at a time).
        ``on_prepare(source)`` is called in this process just before an image is prepared here (``workers`` =
        0), e.g. to note which image a crash of this process was on: then one thread prepares, so the image
        named is the only one being prepared."""
        preparer = self.preparer(keep_image=keep_images)
        total = len(sources) if hasattr(sources, "__len__") else None
        if workers > 0:
            if total is None:
                raise EmotionlabError("worker processes need a list of inputs, not a stream")
            # A pool we control rather than a DataLoader: a worker killed by native code on one image (segfault,
            # abort) is replaced and that image alone gets an error record, where a DataLoader stops the run.
            prepared = isolated_map(
                preparer,
                sources,
                workers=workers,
                on_error=lambda source, reason: PreparedImage(str(source), error=reason),
                preload=["emotionlab.inference", "emotionlab.faces"],  # torch and cv2: set to one thread
                chunk_size=4,  # images per worker task: fewer round trips, still a short pipeline
                prefetch=4,
            )
        else:

            def prepare_here(source):
                if on_prepare is not None:
                    on_prepare(source)
                return preparer(source)

            count = self.prepare_threads(preparer) if threads is None else max(0, threads)
            if on_prepare is not None:
                count = min(count, 1)
            if count:
                # Enough images ahead for the next network batch; fewer when whole images are kept for drawing.
                prefetch = 2 * count if keep_images else max(2 * count, batch_size)
                prepared = prepare_in_threads(prepare_here, sources, threads=count, prefetch=prefetch)
            else:
                prepared = (prepare_here(source) for source in sources)
        results = self.classify(prepared, batch_size=batch_size)
        yield from progress_bar(results, total=total, description="predicting", enabled=progress)

    def prepare_threads(self, preparer: FacePreparer | None = None) -> int:
        """Threads that prepare images beside the classifier by default: one per physical core when the
        detector may run in several threads at once, else one (a detector of unknown make)."""
        preparer = preparer or self.preparer()
        return physical_cores() if thread_safe_detection(preparer) else 1

    def predict_many(
        self,
        sources: Iterable,
        *,
        batch_size: int = 32,
        workers: int = 0,
        threads: int | None = None,
        progress: bool = False,
    ) -> Iterator[dict]:
        """Classify many images in batches; unreadable files yield a record with an ``error`` instead."""
        for _, record in self.iter_predictions(
            sources, batch_size=batch_size, workers=workers, threads=threads, progress=progress
        ):
            yield record


CHANNELS = ("rgb", "bgr")


def _as_rgb(source, channels: str):
    """Arrays in BGR(A) order (OpenCV) turned to RGB(A); paths and PIL images pass unchanged."""
    if channels not in CHANNELS:
        raise EmotionlabError(f"channels={channels!r}: use 'rgb' or 'bgr' (OpenCV frames)")
    if (
        channels == "bgr"
        and isinstance(source, np.ndarray)
        and source.ndim == 3
        and source.shape[2] in (3, 4)
    ):
        flipped = source.copy()
        flipped[:, :, :3] = source[:, :, 2::-1]
        return flipped
    return source


class FaceRecord(TypedDict):
    """One face of an image: its box ``[x, y, w, h]`` in the image's pixels, label, probabilities."""

    box: list[int]
    label: str
    confidence: float
    probabilities: dict[str, float]
    compound: dict | None


class ImageRecord(TypedDict, total=False):
    """What ``Recognizer.predict`` returns for one image (and ``predict --format jsonl`` writes per line).

    The largest face names the image; ``no_face`` is true when no face was found and the whole image was
    classified. Video frames add ``frame`` and ``time``; an unusable input has only ``path`` and ``error``."""

    path: str
    label: str
    confidence: float
    no_face: bool
    probabilities: dict[str, float]
    compound: dict | None
    faces: list[FaceRecord]
    frame: int
    time: float
    error: str


def to_dataframe(records):
    """Records (from ``predict``, ``predict_many``, a video) -> a pandas DataFrame with one row per face (one
    row for an image without a face or with an error): path, [frame, time], face, x, y, w, h, label,
    confidence, no_face, error and one column per emotion. Needs pandas (``pip install 'emotionlab[pandas]'``)."""
    try:
        import pandas as pd
    except ImportError as error:
        raise EmotionlabError("to_dataframe needs pandas: pip install 'emotionlab[pandas]'") from error
    rows = []
    for record in [records] if isinstance(records, dict) else records:
        base = {key: record[key] for key in ("path", "frame", "time") if key in record}
        if "error" in record:
            rows.append({**base, "error": record["error"]})
            continue
        faces = record.get("faces") or []
        if not faces:  # no face: the whole image's reading
            rows.append(
                {
                    **base,
                    "face": None,
                    "label": record["label"],
                    "confidence": record["confidence"],
                    "no_face": record.get("no_face", True),
                    **record["probabilities"],
                }
            )
        for index, face in enumerate(faces):
            x, y, w, h = face["box"]
            rows.append(
                {
                    **base,
                    "face": index,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "label": face["label"],
                    "confidence": face["confidence"],
                    "no_face": False,
                    **face["probabilities"],
                }
            )
    table = pd.DataFrame(rows)
    # The same columns in the same order whatever the first record holds (a face, no face, an error).
    first = [name for name in RECORD_COLUMNS if name in table]
    return table[first + [name for name in table.columns if name not in first]]


RECORD_COLUMNS = (
    "path",
    "frame",
    "time",
    "face",
    "x",
    "y",
    "w",
    "h",
    "label",
    "confidence",
    "no_face",
    "error",
)
