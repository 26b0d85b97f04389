"""``FaceCropper``: training's face crops, made by the one preparation (``FacePreparer``: the decode, detector
and crop ``predict`` uses for a model of the same input size) and cached on disk by the file's SHA-256 and
everything that shapes the crop, so each file is prepared once across epochs and runs."""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.data.images import ImageReadError, open_image, read_file_bytes, read_image
from emotionlab.faces.boxes import FaceBox
from emotionlab.faces.crop import FaceCropConfig
from emotionlab.faces.preparation import CROP_OVERSAMPLE, DETECT_DECODE_SIDE, FacePreparer
from emotionlab.fileio import write_atomic
from emotionlab.paths import cache_dir

log = logging.getLogger("emotionlab")

# Part of every cache key: bump when decoding, detection or cropping changes, so older crops are not reused.
# 2: hog and mmod at a 320 px shorter side (was 256). 3: no detection on images under MIN_IMAGE_SIDE (was 8).
# 4: blaze adds a full-range pass on wide scenes. 5: crops made by FacePreparer (predict's reduced JPEG decode).
PREPARATION_VERSION = 5


def default_cache_dir() -> Path:
    """``$EMOTIONLAB_CACHE/faces`` when set, else ``~/.cache/emotionlab/faces`` (``emotionlab.paths``)."""
    return cache_dir("faces")


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FaceCropper:
    """``cropper(path_or_image, box=None) -> (crop, box or None)``: the crop ``predict`` makes of the largest
    face (of ``box``, ``x, y, w, h`` in the file's pixels, e.g. a manifest's ``face_box``, when given: no
    detection), or the whole image, as predict decodes it, when no face is found.

    ``input_size``: the network's input side, which sets predict's decode (``Recognizer.preparer``); None
    decodes in full (``data faces`` and ``data people``, which only need boxes). Crops of files are cached
    under ``cache_dir``: ``<sha>.<key>.json`` holds the box and ``<sha>.<key>.png`` the crop, the key hashing
    the crop settings, detector model, decode sizes, ``box`` and ``PREPARATION_VERSION``. Detectors are made
    lazily, so the object pickles into DataLoader workers cheaply.
    """

    def __init__(
        self,
        config: FaceCropConfig | None = None,
        cache_dir: str | Path | None = None,
        *,
        input_size: int | None = None,
    ):
        self.config = config or FaceCropConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.preparer = FacePreparer(
            None,
            self.config,
            keep_crops=True,
            decode_side=DETECT_DECODE_SIDE if input_size else None,
            min_crop_side=CROP_OVERSAMPLE * input_size if input_size else 0,
        )
        self._cache_warned = False

    def __repr__(self) -> str:
        return f"FaceCropper({self.config!r}, cache_dir={str(self.cache_dir)!r})"

    def cache_paths(self, digest: str, box: tuple[int, int, int, int] | None = None) -> tuple[Path, Path]:
        """(box JSON, crop PNG) for the file whose SHA-256 is ``digest``, cropped at ``box`` or the largest face."""
        model = self.config.detector_model
        if model is not None and Path(model).is_file():
            stat = Path(model).stat()
            model = _file_digest(str(model), stat.st_size, stat.st_mtime_ns)
        settings = {
            "config": self.config.to_dict(),
            "model": model,
            "decode": [self.preparer.decode_side, self.preparer.min_crop_side],
            "box": list(box) if box is not None else None,
            "version": PREPARATION_VERSION,
        }
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        folder = self.cache_dir / digest[:2]
        return folder / f"{digest}.{key}.json", folder / f"{digest}.{key}.png"

    def __call__(
        self, source: str | Path | Image.Image | np.ndarray, box: tuple[int, int, int, int] | None = None
    ) -> tuple[Image.Image, FaceBox | None]:
        if not isinstance(source, str | Path):
            return self._prepare(source, "<image>", box)
        path = Path(source)
        data = read_file_bytes(path)  # never opens a FIFO (reading one blocks for ever)
        box_file, crop_file = self.cache_paths(hashlib.sha256(data).hexdigest(), box)
        try:
            record = json.loads(box_file.read_text())
            found = FaceBox.from_dict(record["box"]) if record["box"] else None
            if found is None:  # the whole image, decoded as predict decodes it
                return read_image(data, name=str(path), min_side=self.preparer.reduced_side()), None
            with open_image(crop_file) as crop:
                return crop.convert("RGB"), found
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a miss, or an unreadable entry: prepare again
        crop, found = self._prepare(path, str(path), box)
        record = {"box": found.to_dict() if found else None, "version": PREPARATION_VERSION}
        if found is not None:
            self._write(crop_file, lambda name: crop.save(name, format="PNG"))
        self._write(box_file, lambda name: Path(name).write_text(json.dumps(record)))
        return crop, found

    def _prepare(self, source, name: str, box) -> tuple[Image.Image, FaceBox | None]:
        item = self.preparer(source, name=name, box=box)
        if item.error is not None:
            raise ImageReadError(name, item.error)
        return item.crops[0], None if item.no_face else item.boxes[0]

    def _write(self, path: Path, write) -> None:
        try:
            write_atomic(path, write)
        except OSError as error:
            if not self._cache_warned:
                log.warning(
                    "face-crop cache %s is not writable (%s); crops are not cached", self.cache_dir, error
                )
                self._cache_warned = True

    def detect_file(self, path: str | Path) -> FaceBox | None:
        """The largest face box of one file, in its pixels (from the cache, or detected), or None."""
        return self(path)[1]
