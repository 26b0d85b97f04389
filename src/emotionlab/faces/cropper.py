"""``FaceCropper``: the largest face of an image, cropped with the configured settings, cached on disk by the
file's SHA-256 and the settings (boxes and crops), so training and evaluation detect each file once."""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.data.images import open_image, read_file_bytes, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.faces.boxes import FaceBox, as_rgb_array
from emotionlab.faces.crop import FaceCropConfig, crop_box, largest_face
from emotionlab.fileio import write_atomic
from emotionlab.paths import cache_dir

log = logging.getLogger("emotionlab")


# Bump when detection or cropping changes in a way that makes cached boxes or crops stale.
# 2: hog and mmod at a 320 px shorter side (was 256). 3: no detection on images under MIN_IMAGE_SIDE (was 8).
DETECTION_VERSION = 4  # 4: blaze adds a full-range pass on wide scenes
CROP_VERSION = 1


def default_cache_dir() -> Path:
    """``$EMOTIONLAB_CACHE/faces`` when set, else ``~/.cache/emotionlab/faces`` (``emotionlab.paths``)."""
    return cache_dir("faces")


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _short_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class FaceCropper:
    """``cropper(path_or_image) -> (crop, box or None)``; the whole image when no face is found.

    Crops of files are cached under ``cache_dir`` by the SHA-256 of the file's bytes and the crop settings:
    ``<sha>.<detection-key>.json`` holds the box (so a hit needs no detection and a new margin reuses it) and
    ``<sha>.<detection-key>.<crop-key>.png`` the crop. Detectors are created lazily, so the object pickles
    into DataLoader workers cheaply.
    """

    def __init__(self, config: FaceCropConfig | None = None, cache_dir: str | Path | None = None):
        self.config = config or FaceCropConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._cache_warned = False

    def __repr__(self) -> str:
        return f"FaceCropper({self.config!r}, cache_dir={str(self.cache_dir)!r})"

    # Keys ----------------------------------------------------------------------------------------------
    def _detection_key(self) -> str:
        model = None
        if self.config.detector_model is not None:
            path = Path(self.config.detector_model)
            stat = path.stat() if path.is_file() else None
            model = _file_digest(str(path), stat.st_size, stat.st_mtime_ns) if stat else str(path)
        return _short_hash({"detector": self.config.detector, "model": model, "version": DETECTION_VERSION})

    def _crop_key(self) -> str:
        return _short_hash(
            {"margin": self.config.margin, "align": self.config.align, "version": CROP_VERSION}
        )

    def cache_paths(self, digest: str) -> tuple[Path, Path]:
        """(box JSON, crop PNG) for the file whose SHA-256 is ``digest``."""
        folder = self.cache_dir / digest[:2]
        stem = f"{digest}.{self._detection_key()}"
        return folder / f"{stem}.json", folder / f"{stem}.{self._crop_key()}.png"

    # Detection -------------------------------------------------------------------------------------------
    def detect(self, image: Image.Image | np.ndarray) -> FaceBox | None:
        """The largest face the configured detector finds that can be cropped, or None."""
        return largest_face(image, self.config)

    def crop(self, image: Image.Image | np.ndarray, box: FaceBox | None) -> Image.Image:
        """Crop ``box`` with the configured margin and alignment; the whole image (RGB) when ``box`` is None."""
        if box is None:
            return (
                image.convert("RGB")
                if isinstance(image, Image.Image)
                else Image.fromarray(as_rgb_array(image))
            )
        return crop_box(image, box, self.config)

    def __call__(self, source: str | Path | Image.Image | np.ndarray) -> tuple[Image.Image, FaceBox | None]:
        if isinstance(source, Image.Image | np.ndarray):
            box = self.detect(source)
            return self.crop(source, box), box
        return self._crop_file(Path(source))

    def _crop_file(self, path: Path) -> tuple[Image.Image, FaceBox | None]:
        data = read_file_bytes(path)  # never opens a FIFO (reading one blocks for ever)
        box_file, crop_file = self.cache_paths(hashlib.sha256(data).hexdigest())
        cached = self._read_box(box_file)
        if cached is not None:
            box = cached[0]
            if box is None:
                return read_image(data, name=str(path)), None
            try:
                with open_image(crop_file) as crop:
                    return crop.convert("RGB"), box
            except (OSError, ValueError):
                pass  # box cached, crop not (yet, or for other settings): crop below without detecting
            image = read_image(data, name=str(path))
        else:
            image = read_image(data, name=str(path))
            box = self.detect(image)
            self._write(
                box_file, lambda name: Path(name).write_text(json.dumps(self._box_record(box, image)))
            )
        crop = self.crop(image, box)
        if box is not None:
            self._write(crop_file, lambda name: crop.save(name, format="PNG"))
        return crop, box

    def _box_record(self, box: FaceBox | None, image: Image.Image) -> dict:
        return {
            "box": box.to_dict() if box else None,
            "image_size": list(image.size),
            "config": self.config.to_dict(),
            "version": DETECTION_VERSION,
        }

    @staticmethod
    def _read_box(box_file: Path) -> tuple[FaceBox | None] | None:
        """``(box or None,)`` from the cache, or None on a miss (or an unreadable entry)."""
        try:
            record = json.loads(box_file.read_text())
            return (FaceBox.from_dict(record["box"]) if record["box"] else None,)
        except (OSError, ValueError, KeyError, TypeError):
            return None

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
        """The face box of one file (from the cache, or detected), filling the cache with box and crop."""
        return self._crop_file(Path(path))[1]

    # Training loader -------------------------------------------------------------------------------------
    def crop_file(self, path: str | Path, box: tuple[int, int, int, int] | None = None) -> Image.Image:
        """The crop of one file: of ``box`` (``x, y, w, h`` in the file's pixels, e.g. a manifest's ``face_box``)
        when given, with no detection; else of the largest face found (from the cache, or detected)."""
        if box is None:
            return self._crop_file(Path(path))[0]
        image = read_image(path)
        x, y, w, h = box
        try:
            return crop_box(image, FaceBox(x, y, w, h, detector="manifest"), self.config)
        except EmotionlabError as error:
            raise EmotionlabError(f"{path}: {error}") from error
