"""Face preparation: image -> faces -> model inputs. Holds no model, so it runs in worker processes.

``FacePreparer(transform, crop_config)(path_or_image) -> PreparedImage``: decode (a large JPEG at a reduced
scale), find every face, crop each (the crops a model is trained on), apply the model's eval transform.
Whatever goes wrong with one image becomes that image's ``error`` reason; the run goes on.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.data.images import ImageReadError, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.faces import detectors
from emotionlab.faces.boxes import FaceBox, as_rgb_array
from emotionlab.faces.crop import crop_box, crop_faces
from emotionlab.faces.detectors import find_faces
from emotionlab.isolation import error_reason

# Decode less: a JPEG file is decoded at a reduced scale whose shorter side stays >= DETECT_DECODE_SIDE for
# detection (twice the ~320 px every detector scales to), and a face (or a whole image) is taken from it when
# it keeps >= CROP_OVERSAMPLE x the network's input size there. On 200 generated 4000 x 3000 JPEGs
# (benchmarks/results/decode.json) this prepares 3.3x the images/s with blaze (4.3x whole images); 97% of the
# labels stay, the others were within 0.08 of a tie (a 4x threshold kept one more, at 2.1x the speed).
DETECT_DECODE_SIDE = 640
CROP_OVERSAMPLE = 2


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
    crops: list | None = (
        None  # with keep_crops: one PIL image per input row (a face crop, or the whole image)
    )

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
    a few dozen), else from a finer decode chosen for that face alone (so a face's crop never depends on the
    other faces in the photo). Whole-image inputs are decoded at a shorter side >= ``min_crop_side``.
    None / 0: always decode in full.

    This is the one preparation of a photo: ``predict``, ``serve``, ``evaluate`` (the largest face, or a
    manifest's ``face_box`` passed as ``box``), ``report``, ``explain`` and training's cached crops
    (``faces/cropper.py``) all go through it, so a model is trained, and its score measured, on exactly the
    crops users run. ``transform`` None: crops only (``inputs`` stays None).
    """

    def __init__(
        self,
        transform,
        crop_config=None,
        *,
        detector=None,
        max_faces: int | None = None,
        keep_image: bool = False,
        keep_crops: bool = False,
        decode_side: int | None = None,
        min_crop_side: int = 0,
    ):
        self.keep_crops = keep_crops
        self.transform = transform
        self.crop_config = crop_config
        self.detector = detector  # an object with detect(image); None: the crop config's detector by name
        self.max_faces = max_faces
        self.keep_image = keep_image
        self.decode_side = decode_side
        self.min_crop_side = min_crop_side

    def detect(self, array: np.ndarray) -> list:
        return find_faces(array, self.crop_config, detector=self.detector, max_faces=self.max_faces)

    def _inputs(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        return None if self.transform is None else np.stack([self.transform(image) for image in images])

    def reduced_side(self) -> int | None:
        """The shorter side a file may be decoded down to (None: decode in full)."""
        if not self.min_crop_side:
            return None
        if self.crop_config is None:
            return self.min_crop_side
        return max(self.decode_side or 0, self.min_crop_side) or None

    def __call__(
        self, source, *, name: str | None = None, extra: dict | None = None, box: Sequence[int] | None = None
    ) -> PreparedImage:
        """``box``: the face's ``x, y, w, h`` in the file's pixels (a manifest's ``face_box``), used instead of
        detection; a box that cannot be cropped is this image's error."""
        if name is None:
            name = str(source) if isinstance(source, str | Path) else "<image>"
        extra = extra or {}
        try:
            item = self._prepare(source, name, extra, box)
            if not self.keep_crops:
                item.crops = None
            return item
        except Exception as error:  # noqa: BLE001 - one image's failure is its error record, the run goes on
            return PreparedImage(name, error=error_reason(error, stage="preparing the image"), extra=extra)

    def _prepare(self, source, name: str, extra: dict, given: Sequence[int] | None = None) -> PreparedImage:
        scale = 1.0  # file pixels per pixel of the decoded image
        try:
            if isinstance(source, str | Path):
                image = read_image(source, min_side=self.reduced_side())
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
        # An annotated copy is drawn on the full image; the inputs are made as without it (the same crops).
        kept = (as_rgb_array(read_image(source)) if scale != 1.0 else array) if self.keep_image else None
        if self.crop_config is None:  # the image is the face
            box = FaceBox(0, 0, width, height, detector="none")
            whole = PreparedImage(
                name, (width, height), [box], self._inputs([image]), False, None, kept, extra
            )
            whole.crops = [image]
            return whole
        config = self.crop_config
        if given is not None:
            x, y, w, h = given
            on_file = [FaceBox(x, y, w, h, detector="manifest")]
            found = [_scaled_box(on_file[0], 1 / scale)] if scale != 1.0 else on_file
        else:
            try:
                found = self.detect(array)
            except Exception as error:  # noqa: BLE001 - e.g. dlib's RuntimeError on an image it cannot scan
                return PreparedImage(
                    name, (width, height), error=error_reason(error, stage="face detection"), extra=extra
                )
            on_file = [_scaled_box(box, scale) for box in found] if scale != 1.0 else found
        faces = []
        finer: dict[
            int, tuple[np.ndarray, float]
        ] = {}  # shorter side asked for -> (pixels, reduced px per its px)
        for box_on_file, box in zip(on_file, found, strict=True):
            pixels = array
            crop_side = (1 + 2 * config.margin) * max(box.w, box.h)
            if scale != 1.0 and crop_side < self.min_crop_side:
                # Too small in the reduced image to crop from: decode again, as finely as this face needs.
                needed = math.ceil(min(image.size) * self.min_crop_side / crop_side)
                if needed not in finer:
                    decoded = read_image(source, min_side=needed)
                    finer[needed] = (as_rgb_array(decoded), scale / decoded.info.get("decode_scale", 1.0))
                pixels, factor = finer[needed]
                box = _scaled_box(box, factor)
            # The one crop path (emotionlab.faces.crop): the same crops evaluation and training make.
            crop = (
                crop_box(pixels, box, config) if given is not None else crop_faces(pixels, [box], config)[0]
            )
            if crop is not None:
                faces.append((box_on_file, crop))
        if not faces:
            item = PreparedImage(name, (width, height), [], self._inputs([image]), True, None, kept, extra)
            item.crops = [image]
            return item
        boxes, crops = [box for box, _ in faces], [crop for _, crop in faces]
        item = PreparedImage(name, (width, height), boxes, self._inputs(crops), False, None, kept, extra)
        item.crops = crops
        return item


def thread_safe_detection(preparer: FacePreparer) -> bool:
    """Whether several threads may prepare images with ``preparer`` at once: no detection, or a detector that
    says so (``thread_safe = True``: BlazeFace, and the dlib/OpenCV detectors, which lock around their native
    call). A detector object of unknown make gets one preparing thread."""
    if preparer.crop_config is None:
        return True
    if preparer.detector is not None:
        return bool(getattr(preparer.detector, "thread_safe", False))
    config = preparer.crop_config
    detector = detectors.create_detector(config.detector, model_file=config.detector_model)
    return bool(getattr(detector, "thread_safe", False))


def prepare_in_threads(
    prepare: Callable[[object], PreparedImage],
    sources: Iterable,
    *,
    threads: int,
    prefetch: int,
) -> Iterator[PreparedImage]:
    """``prepare(source)`` for each source in ``threads`` threads, results in input order, at most ``prefetch``
    images ahead of the consumer. Decoding (Pillow) and detection (ONNX Runtime) release the GIL, so the
    images of the next batch are prepared while the caller's thread runs the classifier on this one."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="emotionlab-prepare") as pool:
        pending: deque = deque()
        try:
            for source in sources:
                pending.append(pool.submit(prepare, source))
                if len(pending) >= prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (break, Ctrl+C): drop what has not started
            for future in pending:
                future.cancel()


def _scaled_box(box, factor: float):
    """``box`` (and its landmarks) with every coordinate multiplied by ``factor``."""
    landmarks = box.landmarks
    return replace(
        box,
        x=round(box.x * factor),
        y=round(box.y * factor),
        w=max(1, round(box.w * factor)),
        h=max(1, round(box.h * factor)),
        landmarks=tuple((px * factor, py * factor) for px, py in landmarks) if landmarks else None,
    )
