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
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from PIL import Image

from emotionlab.data.images import ImageReadError, read_image
from emotionlab.data.transforms import build_eval_transform
from emotionlab.errors import EmotionlabError
from emotionlab.isolation import error_reason, isolated_map, printable
from emotionlab.models.io import load_model_file

ASSETS = Path(__file__).parent / "assets"
log = logging.getLogger("emotionlab")
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
MODEL_ENV = "EMOTIONLAB_MODEL"
BACKENDS = ("torch", "onnx")
# Decode less: a JPEG file is decoded at a reduced scale whose shorter side stays >= DETECT_DECODE_SIDE for
# detection (twice the ~320 px every detector scales to), and a face (or a whole image) is taken from it when
# it keeps >= CROP_OVERSAMPLE x the network's input size there. On 200 generated 4000 x 3000 JPEGs
# (benchmarks/results/decode.json) this prepares 3.3x the images/s with blaze (4.3x whole images); 97% of the
# labels stay, the others were within 0.08 of a tie (a 4x threshold kept one more, at 2.1x the speed).
DETECT_DECODE_SIDE = 640
CROP_OVERSAMPLE = 2
# Probabilities in records are rounded: six decimals is far below any meaningful difference and keeps jsonl short.
DECIMALS = 6


# Models shipped in the package, by short name (`--model ferplus8`); a file of that name in the current folder wins.
SHIPPED_MODELS = {
    "default": "default_model.safetensors",  # five emotions, the default
    "ferplus8": "ferplus8_model.safetensors",  # eight FER+ classes: + neutral, disgusted, contempt
}


def resolve_model_path(path: str | Path | None) -> Path:
    """A model file from ``--model``: a path, a shipped model's short name, or None for the default."""
    if path is None:
        return default_model_path()
    name = str(path)
    if name in SHIPPED_MODELS and not Path(name).exists():
        shipped = ASSETS / SHIPPED_MODELS[name]
        if not shipped.is_file():
            raise EmotionlabError(f"{name}: this install has no shipped model {shipped.name}")
        return shipped
    return Path(path)


def default_model_path() -> Path:
    """The model used when none is given: $EMOTIONLAB_MODEL, else the model shipped with the package."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise EmotionlabError(
        f"no model given and no shipped model in this install ({DEFAULT_MODEL}); pass --model MODEL "
        "(a model.safetensors written by `emotionlab train`)"
    )


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads share a core's arithmetic units)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    cores = set()
    try:
        physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
            elif not key and core is not None:
                cores.add((physical, core))
                physical = core = None
        if core is not None:
            cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(available, len(cores) or available))


# ---- classifiers: model-ready inputs -> probabilities ----------------------------------------------------


class BaseClassifier:
    """Shared part of the PyTorch and ONNX Runtime classifiers: labels, preprocessing, batching."""

    backend = ""

    def __init__(self, metadata: dict):
        self.metadata = metadata
        self.labels: list[str] = list(metadata["labels"])
        self.input_size: int = int(metadata["input_size"])
        self.transform = build_eval_transform(
            image_size=self.input_size,
            normalization=metadata["normalization"],
            grayscale=bool(metadata.get("grayscale", False)),
        )
        self.path: Path | None = None

    def preprocess(self, images: Iterable[Image.Image]) -> torch.Tensor:
        """Face images (PIL RGB) -> the normalised batch the network was trained on."""
        return torch.stack([self.transform(image) for image in images])

    def probabilities(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Softmax probabilities (N x classes, float32) for a preprocessed batch."""
        raise NotImplementedError

    def predict_inputs(self, inputs: np.ndarray | torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
        """Probabilities for preprocessed inputs, ``batch_size`` at a time."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        parts = [
            self.probabilities(inputs[start : start + batch_size])
            for start in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(parts)

    def predict_proba(self, images: list[Image.Image], *, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N x classes) for face images, in batches."""
        outputs = []
        for start in range(0, len(images), batch_size):
            outputs.append(self.probabilities(self.preprocess(images[start : start + batch_size])))
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.labels)), dtype=np.float32)


class Classifier(BaseClassifier):
    """A trained PyTorch network with its own preprocessing: face images (PIL) -> class probabilities."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, metadata: dict, *, device: str = "cpu"):
        super().__init__(metadata)
        self.model = model.to(device).eval()
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "cpu") -> Classifier:
        model, metadata = load_model_file(path)
        classifier = cls(model, metadata, device=device)
        classifier.path = Path(path)
        return classifier

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).float().cpu()

    def probabilities(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        return torch.softmax(self.logits(batch), dim=1).numpy()


def load_classifier(
    path: str | Path | None = None, *, backend: str = "torch", device: str = "cpu", int8: bool = False
) -> BaseClassifier:
    """A model file as a classifier. ``backend="onnx"`` runs ONNX Runtime: a ``.onnx`` file is loaded as is,
    a ``.safetensors`` model is exported once to the cache (``int8``: quantised) and loaded from there."""
    path = resolve_model_path(path)
    if backend not in BACKENDS:
        raise EmotionlabError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")
    if path.suffix.lower() == ".onnx":
        from emotionlab.onnx_export import OnnxClassifier

        if backend != "onnx":
            raise EmotionlabError(f"{path}: an ONNX model runs only with --backend onnx")
        return OnnxClassifier.from_file(path)
    if backend == "onnx":
        from emotionlab.onnx_export import OnnxClassifier, cached_onnx

        classifier = OnnxClassifier.from_file(cached_onnx(path, int8=int8))
        classifier.path = path
        return classifier
    if int8:
        raise EmotionlabError("int8 quantisation needs the ONNX backend (--backend onnx)")
    return Classifier.from_file(path, device=device)


# ---- preparation: image -> faces -> model inputs (no model; runs in worker processes) -----------------


@dataclass
class PreparedImage:
    """One image ready for the network: its faces' boxes and crops as model inputs, or why it failed."""

    name: str
    size: tuple[int, int] = (0, 0)  # width, height
    boxes: list = field(default_factory=list)  # FaceBox, largest first; empty when no face was found
    inputs: np.ndarray | None = None  # one row per box, or one row for the whole image
    no_face: bool = False
    error: str | None = None
    image: np.ndarray | None = None  # the RGB pixels, kept only for annotation
    extra: dict = field(default_factory=dict)  # e.g. frame and time for video frames

    @property
    def num_inputs(self) -> int:
        return 0 if self.inputs is None else len(self.inputs)


class FacePreparer:
    """``preparer(path_or_image) -> PreparedImage``: decode, find every face, crop each as in training,
    and apply the model's eval transform. Holds no model, so it pickles cheaply into worker processes.

    Decode less (``decode_side``, ``min_crop_side``): a large JPEG file is decoded at a reduced scale inside
    the JPEG decoder (shorter side >= ``decode_side``, enough for any detector, which scales to ~320 px
    anyway); faces are found on it, their boxes mapped back to the file's pixels, and each face is cropped
    from the reduced image when its crop there is still at least ``min_crop_side`` pixels (the network sees
    a few dozen), else from a full decode. Whole-image inputs are decoded at a shorter side >=
    ``min_crop_side``. None / 0: always decode in full.
    """

    def __init__(
        self,
        transform,
        crop_config=None,
        *,
        detector=None,
        max_faces: int | None = None,
        keep_image: bool = False,
        decode_side: int | None = None,
        min_crop_side: int = 0,
    ):
        self.transform = transform
        self.crop_config = crop_config
        self.detector = detector  # an object with detect(image); None: the crop config's detector by name
        self.max_faces = max_faces
        self.keep_image = keep_image
        self.decode_side = decode_side
        self.min_crop_side = min_crop_side

    def detect(self, array: np.ndarray) -> list:
        from emotionlab.data.faces import create_detector

        config = self.crop_config
        detector = self.detector or create_detector(config.detector, model_file=config.detector_model)
        # Largest first whatever the detector's order: the largest face names the image.
        boxes = sorted(detector.detect(array), key=lambda box: -box.w * box.h)
        return boxes[: self.max_faces] if self.max_faces else boxes

    def _inputs(self, images: Sequence[Image.Image]) -> np.ndarray:
        return torch.stack([self.transform(image) for image in images]).numpy()

    def _reduced_side(self) -> int | None:
        """The shorter side a file may be decoded down to (None: decode in full)."""
        if self.keep_image or not self.min_crop_side:  # an annotated copy is drawn on the full image
            return None
        if self.crop_config is None:
            return self.min_crop_side
        return max(self.decode_side or 0, self.min_crop_side) or None

    def __call__(self, source, *, name: str | None = None, extra: dict | None = None) -> PreparedImage:
        if name is None:
            name = str(source) if isinstance(source, str | Path) else "<image>"
        extra = extra or {}
        try:
            return self._prepare(source, name, extra)
        except Exception as error:  # noqa: BLE001 - one image's failure is its error record, the run goes on
            return PreparedImage(name, error=error_reason(error, stage="preparing the image"), extra=extra)

    def _prepare(self, source, name: str, extra: dict) -> PreparedImage:
        from emotionlab.data.faces import FaceBox, as_rgb_array, crop_face

        scale = 1.0  # file pixels per pixel of the decoded image
        try:
            if isinstance(source, str | Path):
                image = read_image(source, min_side=self._reduced_side())
                scale = image.info.get("decode_scale", 1.0)
            elif isinstance(source, Image.Image):
                image = source.convert("RGB")
            else:
                image = Image.fromarray(as_rgb_array(source))
        except ImageReadError as error:
            return PreparedImage(name, error=error.reason, extra=extra)
        except EmotionlabError as error:
            return PreparedImage(name, error=str(error), extra=extra)
        width, height = round(image.width * scale), round(image.height * scale)
        array = as_rgb_array(image)
        kept = array if self.keep_image else None
        if self.crop_config is None:  # the image is the face
            box = FaceBox(0, 0, width, height, detector="none")
            return PreparedImage(
                name, (width, height), [box], self._inputs([image]), False, None, kept, extra
            )
        config = self.crop_config
        try:
            found = self.detect(array)
        except Exception as error:  # noqa: BLE001 - e.g. dlib's RuntimeError on an image it cannot scan
            return PreparedImage(
                name, (width, height), error=error_reason(error, stage="face detection"), extra=extra
            )
        on_file = found  # boxes in the file's pixels, as every record gives them
        if scale != 1.0:
            on_file = [_scaled_box(box, scale) for box in found]
            crop_sides = [(1 + 2 * config.margin) * max(box.w, box.h) for box in found]
            if crop_sides and min(crop_sides) < self.min_crop_side:
                # A face too small in the reduced image to crop from: decode again, as finely as it needs.
                needed = math.ceil(min(image.size) * self.min_crop_side / min(crop_sides))
                finer = read_image(source, min_side=needed)
                factor = scale / finer.info.get("decode_scale", 1.0)
                array = as_rgb_array(finer)
                found = [_scaled_box(box, factor) for box in found]
        boxes, crops = [], []
        for on_array, box in zip(found, on_file, strict=True):
            try:
                crops.append(crop_face(array, on_array, margin=config.margin, align=config.align))
                boxes.append(box)
            except EmotionlabError:  # a degenerate box (no area, outside the image): not a face to classify
                continue
        if not boxes:
            return PreparedImage(name, (width, height), [], self._inputs([image]), True, None, kept, extra)
        return PreparedImage(name, (width, height), boxes, self._inputs(crops), False, None, kept, extra)


def _scaled_box(box, factor: float):
    """``box`` (and its landmarks) with every coordinate multiplied by ``factor``."""
    from dataclasses import replace

    landmarks = box.landmarks
    return replace(
        box,
        x=round(box.x * factor),
        y=round(box.y * factor),
        w=max(1, round(box.w * factor)),
        h=max(1, round(box.h * factor)),
        landmarks=tuple((px * factor, py * factor) for px, py in landmarks) if landmarks else None,
    )


# ---- recognizer: images -> records -------------------------------------------------------------------------


def progress_bar(items: Iterable, *, total: int | None, description: str, enabled: bool = True) -> Iterator:
    """Yield ``items`` while a rich progress bar (on stderr) counts them."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class Recognizer:
    """Images in, one record per image out: finds every face, crops it as the model was trained, classifies.

    ``detect``: None follows the model (detect when it was trained on face crops), True forces detection
    (with the model's crop settings, or a 10% margin for whole-image models), False uses whole images.
    ``detector`` overrides the model's detector (e.g. a faster one for video): a name for
    ``emotionlab.data.faces.create_detector`` or any object with ``detect(image) -> [FaceBox]``.
    """

    def __init__(
        self,
        classifier: BaseClassifier,
        *,
        detect: bool | None = None,
        detector=None,
        max_faces: int | None = None,
    ):
        from emotionlab.compound import compound_ratio
        from emotionlab.data.faces import PREDICT_DETECTOR, FaceCropConfig, FaceCropper

        self.classifier = classifier
        self.labels = classifier.labels
        # "surprised + happy" in records when the second emotion is this close to the first (emotionlab.compound)
        self.compound_ratio = compound_ratio(classifier.metadata)
        faces = classifier.metadata.get("faces")
        self.detect = bool(faces) if detect is None else bool(detect)
        self.crop_config = None
        self.cropper = None  # the largest-face cropper that evaluation and training use
        if self.detect:
            config = FaceCropConfig.from_dict(faces) if faces else FaceCropConfig(detector=PREDICT_DETECTOR)
            if isinstance(detector, str) and detector:
                config = FaceCropConfig.from_dict(
                    {**config.to_dict(), "detector": detector}
                )  # checks the name
            self.crop_config = config
            self.cropper = FaceCropper(config)
        self.face_detector = None if detector is None or isinstance(detector, str) else detector
        self.max_faces = max_faces

    @property
    def detector_name(self) -> str:
        if not self.detect:
            return "none"
        if self.face_detector is not None:
            return getattr(self.face_detector, "name", type(self.face_detector).__name__)
        return self.crop_config.detector

    def preparer(self, *, keep_image: bool = False, decode_less: bool = True) -> FacePreparer:
        """What prepares images for this recognizer; ``decode_less=False`` decodes every file in full."""
        return FacePreparer(
            self.classifier.transform,
            self.crop_config,
            detector=self.face_detector,
            max_faces=self.max_faces,
            keep_image=keep_image,
            decode_side=DETECT_DECODE_SIDE if decode_less else None,
            min_crop_side=CROP_OVERSAMPLE * self.classifier.input_size if decode_less else 0,
        )

    # Records ---------------------------------------------------------------------------------------------
    def _probabilities_dict(self, row: np.ndarray) -> dict[str, float]:
        return {label: round(float(p), DECIMALS) for label, p in zip(self.labels, row, strict=True)}

    def make_record(self, item: PreparedImage, probabilities: np.ndarray | None) -> dict:
        """The record of one prepared image, given one probability row per input."""
        from emotionlab.compound import compound_reading

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
        from emotionlab.data.faces import as_rgb_array

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
        keep_images: bool = False,
        progress: bool = False,
        on_prepare: Callable[[object], None] | None = None,
    ) -> Iterator[tuple[PreparedImage, dict]]:
        """``(prepared image, record)`` for each source, in order. With ``workers`` > 0, decoding, detection and
        cropping run in that many processes (``sources`` must then be a sequence, e.g. a list of paths). Workers
        start clean (fork server or spawn), so a script using them needs the ``if __name__ == "__main__":`` guard.
        A failing image gives a record with ``error``; so does an image whose worker process dies on it (the
        worker is replaced). ``on_prepare(source)`` is called in this process just before an image is prepared
        here (``workers`` = 0), e.g. to note which image a crash of this process was on."""
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
                preload=["emotionlab.inference", "emotionlab.data.faces"],  # torch and cv2: set to one thread
                chunk_size=4,  # images per worker task: fewer round trips, still a short pipeline
                prefetch=4,
            )
        else:

            def prepare_here(source):
                if on_prepare is not None:
                    on_prepare(source)
                return preparer(source)

            prepared = (prepare_here(source) for source in sources)
        results = self.classify(prepared, batch_size=batch_size)
        yield from progress_bar(results, total=total, description="predicting", enabled=progress)

    def predict_many(
        self, sources: Iterable, *, batch_size: int = 32, workers: int = 0, progress: bool = False
    ) -> Iterator[dict]:
        """Classify many images in batches; unreadable files yield a record with an ``error`` instead."""
        for _, record in self.iter_predictions(
            sources, batch_size=batch_size, workers=workers, progress=progress
        ):
            yield record


CHANNELS = ("rgb", "bgr")


def _as_rgb(source, channels: str):
    """Arrays in BGR(A) order (OpenCV) turned to RGB(A); paths and PIL images pass unchanged."""
    if channels not in CHANNELS:
        raise EmotionlabError(f"channels={channels!r}: use 'rgb' or 'bgr' (OpenCV frames)")
    if channels == "bgr" and isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[2] in (3, 4):
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
            rows.append({**base, "face": None, "label": record["label"], "confidence": record["confidence"],
                         "no_face": record.get("no_face", True), **record["probabilities"]})
        for index, face in enumerate(faces):
            x, y, w, h = face["box"]
            rows.append({**base, "face": index, "x": x, "y": y, "w": w, "h": h, "label": face["label"],
                         "confidence": face["confidence"], "no_face": False, **face["probabilities"]})
    return pd.DataFrame(rows)


def load_recognizer(
    path: str | Path | None = None,
    *,
    detect: bool | None = None,
    detector: str | None = None,
    backend: str = "torch",
    int8: bool = False,
    device: str = "cpu",
    max_faces: int | None = None,
) -> Recognizer:
    """Load a model file (default: the shipped model) as a ``Recognizer``; see ``Recognizer`` for options."""
    classifier = load_classifier(path, backend=backend, device=device, int8=int8)
    return Recognizer(classifier, detect=detect, detector=detector, max_faces=max_faces)


# ---- the `emotionlab predict` pipeline: inputs, shards, resume, output writers --------------------------


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files, folders (recursive: images and videos) and glob patterns -> a de-duplicated file list, sorted
    within each argument, arguments in the order given. Entries with an image or video name that are not
    regular files (a broken link, a link loop, a FIFO) are listed too: each gets its error record."""
    import glob

    from emotionlab.data.images import is_image_name
    from emotionlab.video import is_video_name

    def wanted(entry: Path) -> bool:
        return (is_image_name(entry) or is_video_name(entry)) and not entry.is_dir()

    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if wanted(p))
        elif path.is_file() or os.path.lexists(path):
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise EmotionlabError(f"{item}: no such file, folder or matching pattern")
            found += matches
    return list(dict.fromkeys(found))


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1 <= i <= n) -> ``(i, n)``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise EmotionlabError(f"--shard {text!r}: write it as i/n, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise EmotionlabError(f"--shard {text!r}: need 1 <= i <= n")
    return index, count


def select_shard(files: Sequence, shard: str | None) -> list:
    """Shard ``i/n`` of the list: every n-th file starting at the i-th. The same command on n machines (same
    inputs, so the same sorted list) splits the files into n disjoint parts that together cover all of them."""
    if not shard:
        return list(files)
    index, count = parse_shard(shard)
    return list(files[index - 1 :: count])


# ``read_done``'s value for a video whose processing ended with an error: resuming skips it like a finished one.
VIDEO_FAILED = 2**62


def read_done(output: Path, output_format: str) -> dict[str, int]:
    """Inputs already in an output file: path -> last frame written (-1 for images, ``VIDEO_FAILED`` for a
    video that ended in an error record). Streams the file; a last line cut off by a crash is removed from
    it, so appending continues cleanly."""
    import csv
    import json

    from emotionlab.video import is_video_name

    if output_format not in ("jsonl", "csv"):
        raise EmotionlabError("--resume needs --format jsonl or csv")
    done: dict[str, int] = {}
    if not output.is_file():
        return done

    def note(path: str, frame, error) -> None:
        try:
            value = int(frame) if frame not in (None, "") else -1
        except ValueError:
            value = -1
        if error and value == -1 and is_video_name(path):
            value = VIDEO_FAILED
        done[path] = max(done.get(path, -1), value)

    complete = 0  # bytes up to the end of the last whole line

    def lines():
        nonlocal complete
        with output.open("rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    return  # the last record was cut off mid-write
                complete += len(raw)
                yield raw.decode("utf-8", errors="surrogateescape")

    if output_format == "jsonl":
        for line in lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "path" in record:
                note(str(record["path"]), record.get("frame"), record.get("error"))
    else:
        for row in csv.DictReader(lines()):
            if row.get("path"):
                note(row["path"], row.get("frame"), row.get("error"))
    if complete < output.stat().st_size:
        with output.open("rb+") as handle:
            handle.truncate(complete)
    return done


def _format_probabilities(record: dict, labels: list[str]) -> list[str]:
    probabilities = record.get("probabilities", {})
    return [f"{probabilities[label]:.4f}" if label in probabilities else "" for label in labels]


class RecordWriter:
    """Writes records as they come: ``jsonl`` and ``csv`` stream (to stdout or a file); ``table`` collects
    rows and prints one table at the end, or one line per record when ``live`` (camera)."""

    def __init__(
        self,
        output_format: str,
        labels: list[str],
        *,
        output: Path | None = None,
        append: bool = False,
        live: bool = False,
        stream=None,
    ):
        if output_format not in ("table", "jsonl", "csv"):
            raise EmotionlabError(f"unknown --format {output_format!r}: use table, jsonl or csv")
        if output is not None and output_format == "table":
            raise EmotionlabError("--output needs --format jsonl or csv")
        import sys

        self.format, self.labels, self.live = output_format, list(labels), live
        self.count = 0
        self._rows: list[dict] = []
        self._file = None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            fresh = not append or not output.is_file() or output.stat().st_size == 0
            # surrogateescape: a file name that is not UTF-8 is written back as its own bytes, so --resume
            # recognises it (jsonl escapes such names itself).
            self._file = output.open(
                "a" if append else "w", newline="", encoding="utf-8", errors="surrogateescape"
            )
            self.stream = self._file
            self._name = str
        else:
            fresh = True
            self.stream = stream or sys.stdout
            self._name = printable  # a terminal or pipe may refuse undecodable bytes
        if output_format == "csv":
            import csv

            self._csv = csv.writer(self.stream)
            if fresh:
                self._csv.writerow(self.csv_header())

    def csv_header(self) -> list[str]:
        return [
            "path",
            "frame",
            "time",
            "label",
            "confidence",
            "no_face",
            "faces",
            "box",
            *self.labels,
            "error",
        ]

    def write(self, record: dict) -> None:
        import json

        self.count += 1
        if self.format == "jsonl":
            self.stream.write(json.dumps(record) + "\n")
        elif self.format == "csv":
            faces = record.get("faces") or []
            box = " ".join(str(v) for v in faces[0]["box"]) if faces else ""
            confidence = f"{record['confidence']:.4f}" if "confidence" in record else ""
            no_face = "" if "error" in record else int(bool(record.get("no_face")))
            self._csv.writerow(
                [
                    self._name(record["path"]),
                    record.get("frame", ""),
                    record.get("time", ""),
                    record.get("label", ""),
                    confidence,
                    no_face,
                    len(faces) if "error" not in record else "",
                    box,
                    *_format_probabilities(record, self.labels),
                    record.get("error", ""),
                ]
            )
        elif self.live:
            self.stream.write(self._name(_summary_line(record)) + "\n")
        else:
            self._rows.append(record)
            return
        self.stream.flush()

    def close(self) -> None:
        if self.format == "table" and not self.live and self._rows:
            self._print_table()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _print_table(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table()
        for column in ("path", "faces", "label", "confidence", *self.labels):
            table.add_column(column, justify="left" if column in ("path", "label") else "right")
        for record in self._rows:
            name = self._name(record["path"]) + (f" @ {record['time']:.2f}s" if "time" in record else "")
            if "error" in record:
                error = escape(self._name(record["error"]))
                table.add_row(escape(name), "", "[red]error[/]", error, *[""] * len(self.labels))
                continue
            faces = "none" if record["no_face"] else str(len(record["faces"]))
            table.add_row(
                escape(name),
                faces,
                record["label"],
                f"{record['confidence']:.2f}",
                *(f"{record['probabilities'][label]:.2f}" for label in self.labels),
            )
        Console(file=self.stream).print(table)


def _summary_line(record: dict) -> str:
    where = record["path"] + (f" frame {record['frame']} t={record['time']:.2f}s" if "time" in record else "")
    if "error" in record:
        return f"{where}: error: {record['error']}"
    faces = record["faces"]
    if record["no_face"]:
        return f"{where}: no face, whole image {record['label']} {record['confidence']:.2f}"
    rest = ", ".join(f"{face['label']} {face['confidence']:.2f}" for face in faces)
    return f"{where}: {len(faces)} face(s): {rest}"


@dataclass
class PredictOptions:
    """Everything `emotionlab predict` can be asked for (see the command's help for each option)."""

    inputs: list[str] = field(default_factory=list)
    model: Path | None = None
    output_format: str = "table"
    output: Path | None = None
    resume: bool = False
    shard: str | None = None
    batch_size: int = 32
    workers: int = 0
    detect: bool | None = None
    detector: str | None = None
    max_faces: int | None = None
    backend: str = "torch"
    int8: bool = False
    fps: float | None = None
    out_dir: Path | None = None
    annotate: Path | None = None
    camera: int | None = None
    max_frames: int | None = None
    window: bool | None = None  # None: a window when OpenCV has a GUI and there is a display
    progress: bool | None = None  # None: when stderr is a terminal


def _refuse_inside(target: Path | None, inputs: list[str], what: str) -> None:
    """Outputs never go inside an input folder: a dataset root stays untouched, and a rerun would read them."""
    if target is None:
        return
    resolved = target.resolve()
    for item in inputs:
        folder = Path(item)
        if folder.is_dir():
            folder = folder.resolve()
            if resolved == folder or folder in resolved.parents:
                raise EmotionlabError(
                    f"{target}: {what} must not be inside the input folder {item}; choose another"
                )


class PreparingNote:
    """A small hidden file beside ``--output`` naming the image this process is preparing (single-process
    runs). It survives only a run that died (it is removed otherwise), so ``--resume`` knows which image to
    run in isolation instead of crashing on it again; a run killed for another reason (kill -9) loses
    nothing, since that image then simply succeeds."""

    def __init__(self, output: Path):
        self.path = output.with_name(f".{output.name}.preparing")
        self._handle = None

    def mark(self, source) -> None:
        import json

        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
        # Three system calls per image (microseconds); no fsync: the note must outlive the process, not the OS.
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps(str(source)) + "\n")
        self._handle.flush()

    def read(self) -> str | None:
        import json

        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None

    def clear(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


def run_predict(options: PredictOptions, *, stream=None) -> int:
    """Run `emotionlab predict`; returns the number of records written."""
    import sys
    from contextlib import closing

    from emotionlab import video as video_module

    if options.camera is None and not options.inputs:
        raise EmotionlabError("give images, folders, globs or videos to predict, or --camera INDEX")
    if options.resume and options.output is None:
        raise EmotionlabError("--resume needs --output FILE (the file to continue)")
    for target, what in (
        (options.output, "--output"),
        (options.out_dir, "--out"),
        (options.annotate, "--annotate"),
    ):
        _refuse_inside(target, options.inputs, what)
    if options.batch_size < 1:
        raise EmotionlabError("--batch-size must be at least 1")
    recognizer = load_recognizer(
        options.model,
        detect=options.detect,
        detector=options.detector,
        backend=options.backend,
        int8=options.int8,
        max_faces=options.max_faces,
    )
    progress = options.progress if options.progress is not None else sys.stderr.isatty()

    if options.camera is not None:
        window = options.window if options.window is not None else video_module.gui_available()
        if options.window and not video_module.gui_available():
            raise EmotionlabError(
                "no window possible here (opencv-python-headless or no display); use --no-window"
            )
        writer = RecordWriter(
            options.output_format,
            recognizer.labels,
            output=options.output,
            append=False,
            live=True,
            stream=stream,
        )
        frames = video_module.camera_frames(options.camera, fps=options.fps, max_frames=options.max_frames)
        try:
            records = video_module.predict_camera(
                recognizer,
                frames,
                name=f"camera:{options.camera}",
                window=window,
                out_dir=options.out_dir,
                annotate_dir=options.annotate,
                fps=options.fps,
            )
            with closing(records):  # Ctrl+C still finishes the timeline and the annotated video
                for record in records:
                    writer.write(record)
        finally:
            writer.close()
        return writer.count

    files = select_shard(expand_inputs(options.inputs), options.shard)
    done = read_done(options.output, options.output_format) if options.resume else {}
    videos = [f for f in files if video_module.is_video_name(f) and done.get(str(f), -1) != VIDEO_FAILED]
    images = [f for f in files if not video_module.is_video_name(f) and str(f) not in done]
    note = PreparingNote(options.output) if options.output is not None else None
    # An image this process was preparing when it died (native code can kill it: a crash, not an exception):
    # on --resume it goes first, alone, in a worker process, so it cannot take this run down again.
    suspect = note.read() if note is not None and options.resume else None
    suspects = [f for f in images if str(f) == suspect]
    if suspects:
        images.remove(suspects[0])
    writer = RecordWriter(
        options.output_format, recognizer.labels, output=options.output, append=options.resume, stream=stream
    )
    annotate_base = None
    if options.annotate is not None:
        from emotionlab.annotate import common_base

        annotate_base = common_base([*suspects, *images])

    def write_results(results) -> None:
        for item, record in results:
            if options.annotate is not None and item.image is not None:
                _annotate_image(options.annotate, item, record, annotate_base)
                item.image = None
            writer.write(record)

    try:
        common = {"batch_size": options.batch_size, "keep_images": options.annotate is not None}
        if suspects:
            write_results(recognizer.iter_predictions(suspects, workers=1, **common))
        write_results(
            recognizer.iter_predictions(
                images,
                workers=options.workers,
                progress=progress and bool(images),
                on_prepare=note.mark if note is not None and options.workers == 0 else None,
                **common,
            )
        )
        if note is not None:
            note.clear()
        for path in videos:
            _predict_one_video(recognizer, path, options, done, writer, progress)
    finally:
        writer.close()
        if note is not None:
            note.clear()
    return writer.count


def _annotate_image(folder: Path, item: PreparedImage, record: dict, base: Path | None) -> None:
    """Write the annotated copy of one image; a failure is reported and the run goes on."""
    from emotionlab.annotate import annotated_image_path, draw_record, write_image

    try:
        write_image(annotated_image_path(folder, item.name, base), draw_record(item.image, record))
    except Exception as error:  # noqa: BLE001 - the prediction stands; only its picture is missing
        log.warning("%s: no annotated copy: %s", printable(item.name), error_reason(error))


def _predict_one_video(recognizer, path: Path, options: PredictOptions, done: dict, writer, progress) -> None:
    """Write one video's frame records; a video that cannot be read (or fails part way) gets an error record
    and the next video goes on."""
    from contextlib import closing

    from emotionlab import video as video_module

    # A resumed video continues after its last written frame; its timeline and annotated video are not
    # rewritten (they would hold only the remaining frames).
    resumed = str(path) in done
    frames = 0
    try:
        records = video_module.predict_video(
            recognizer,
            path,
            fps=options.fps,
            out_dir=None if resumed else options.out_dir,
            annotate_dir=None if resumed else options.annotate,
            batch_size=min(options.batch_size, 16),
            start_frame=done.get(str(path), -1) + 1,
        )
        with closing(records):
            for record in progress_bar(records, total=None, description=path.name, enabled=progress):
                writer.write(record)
                frames += 1
    except Exception as error:  # noqa: BLE001 - one bad video never stops a folder of videos
        reason = error_reason(error)
        reason = reason.removeprefix(f"{path}: ")  # the record names the file already
        if frames:
            reason = f"video stopped after {frames} frame(s): {reason}"
        writer.write({"path": str(path), "error": reason})
