"""Safe image reading: the bytes decide the format, EXIF rotation applied, any mode -> RGB, size limits.

One decoder policy for every reader (every command, the Python API and the service): Pillow may decode the
formats in ``ALLOWED_FORMATS`` and no other. Importing this module loads only their plugins and stops
``PIL.Image.init()`` from loading the rest, so e.g. Ghostscript (EPS/PS) is never reached even when it is
installed; any other file is refused by its bytes with one line naming its real format (``sniff_format``).

Which files are images and videos by name (``is_image_name``, ``is_video_name``), and the inputs of a run:
files, folders and glob patterns -> one sorted, de-duplicated file list (``list_inputs``).
"""

from __future__ import annotations

import errno
import glob
import importlib
import io
import math
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from emotionlab.errors import EmotionlabError

# Above this many pixels an image is refused (decompression-bomb guard). 50 MP covers any real photo.
DEFAULT_MAX_PIXELS = 50_000_000

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}

# The image formats any emotionlab reader decodes: what photos are (camera MPO files open as JPEG). Never
# EPS/PS (Ghostscript, a long record of code-execution bugs), PDF, SVG, ICO or the rarer decoders: each is attack
# surface no photo needs. Pillow's names; the one list for every command, the Python API and the service.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_ALLOWED_PLUGINS = (
    "JpegImagePlugin",
    "PngImagePlugin",
    "WebPImagePlugin",
    "BmpImagePlugin",
    "GifImagePlugin",
    "TiffImagePlugin",
)

# Never let Pillow "repair" a truncated file silently: a half-grey face is worse than a skipped one.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def restrict_decoders() -> None:
    """Load Pillow's allowed plugins only and unregister any other opener (idempotent; runs on import).

    ``Image.init()`` (called by ``open`` and ``save`` when a format is unknown) imports every module named in
    ``PIL._plugins``: that list is cut to the allowed plugins, then ``init`` runs once, so ``preinit`` (which
    would load PPM) and later ``init`` calls do nothing. Openers registered before this ran are dropped from
    ``Image.OPEN``/``Image.ID``; ``read_image`` also passes ``ALLOWED_FORMATS`` to every ``Image.open``, so a
    plugin some other library imports later is not tried either.
    """
    import PIL

    for plugin in _ALLOWED_PLUGINS:
        importlib.import_module(f"PIL.{plugin}")
    PIL._plugins[:] = list(_ALLOWED_PLUGINS)
    Image.init()
    for name in [name for name in Image.OPEN if name not in ALLOWED_FORMATS]:
        del Image.OPEN[name]
    Image.ID[:] = [name for name in Image.ID if name in ALLOWED_FORMATS]


restrict_decoders()

# Signatures of formats people have under image names, for the refusal message only (nothing here decodes).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%!PS-Adobe-", "PostScript/EPS"),
    (0, b"%!", "PostScript"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS (binary)"),
    (0, b"%PDF-", "PDF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x02\x00", "CUR"),
    (0, b"icns", "ICNS"),
    (0, b"8BPS", "PSD (Photoshop)"),
    (0, b"gimp xcf", "XCF (GIMP)"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (4, b"jP  ", "JPEG 2000"),
    (0, b"DDS ", "DDS"),
    (0, b"qoif", "QOI"),
    (0, b"SIMPLE  =", "FITS"),
    (0, b"\xd7\xcd\xc6\x9a", "WMF"),
    (0, b"#define", "XBM"),
    (0, b"/* XPM */", "XPM"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (0, b"RIFF", "RIFF (AVI/WAV)"),
    (0, b"PK\x03\x04", "ZIP archive"),
    (0, b"\x1f\x8b", "gzip archive"),
    (0, b"\x7fELF", "ELF executable"),
)


def sniff_format(data: bytes) -> str | None:
    """A name for the real format of ``data`` when it is a known non-photo format (``"PostScript/EPS"``,
    ``"PDF"``, ``"SVG"``, ``"HEIF"``...), else None. For messages only: decides nothing about decoding."""
    for offset, magic, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "HEIF/HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "MP4/QuickTime video"
    if len(data) >= 3 and data[:1] == b"P" and data[1:2] in b"1234567" and data[2:3] in b" \t\r\n":
        return "PPM/PGM"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "SVG"
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None


def format_refusal(data: bytes, formats: Sequence[str] = ALLOWED_FORMATS) -> str:
    """Why ``data`` is refused when no allowed decoder recognises it: its real format when known."""
    accepted = ", ".join(formats)
    real = sniff_format(data)
    if real is not None:
        return f"{real} file, not an accepted image format (accepted: {accepted})"
    return f"not an image (unrecognised format; accepted: {accepted})"


def allowed_formats(formats: Sequence[str] | None = None) -> list[str]:
    """``formats`` within the allow-list (None: all of ``ALLOWED_FORMATS``); a name outside it is dropped."""
    if formats is None:
        return list(ALLOWED_FORMATS)
    return [name for name in formats if name in ALLOWED_FORMATS]


def open_image(source, formats: Sequence[str] | None = None) -> Image.Image:
    """``Image.open`` restricted to the allowed decoders (a file object, path or bytes); the header only."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    return Image.open(source, formats=allowed_formats(formats))


class ImageReadError(EmotionlabError):
    """An image file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent areas become white, 16-bit is rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        # Fully opaque (most PNGs with an alpha channel, e.g. every seed photo): the same pixels as composited
        # on white, at 60% of the cost of compositing (benchmarks/profile_predict.py).
        return image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    # L, 1 and anything else Pillow can convert.
    return image.convert("RGB")


def read_file_bytes(path: Path, label: str | None = None) -> bytes:
    """The bytes of a regular file, or ``ImageReadError`` saying what the path is instead. Never opens a
    FIFO, socket or device (reading one can block for ever or never end)."""

    label = label or str(path)
    try:
        info = path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ImageReadError(label, "symbolic link loop") from error
        if error.errno == errno.ENOENT and path.is_symlink():
            raise ImageReadError(label, "broken symbolic link (its target does not exist)") from error
        if error.errno == errno.ENOENT:
            raise ImageReadError(label, "file not found") from error
        raise ImageReadError(label, f"cannot read file ({error.strerror or error})") from error
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(label, "is a folder, not an image")
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "FIFO" if stat.S_ISFIFO(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode) else "device"
        )
        raise ImageReadError(label, f"not a regular file ({kind})")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageReadError(label, f"cannot read file ({error.strerror or error})") from error


def _draft(image: Image.Image, min_side: int) -> float:
    """Ask the JPEG decoder for the smallest DCT scale keeping the shorter side >= ``min_side``; the scale."""
    width, height = image.size
    short = min(width, height)
    if image.format != "JPEG" or short < 2 * min_side:
        return 1.0
    wanted = (math.ceil(width * min_side / short), math.ceil(height * min_side / short))
    result = image.draft(None, wanted)
    if result is None or image.size == (width, height):
        return 1.0
    return width / result[1][2]  # the decoder's box: (0, 0, width / scale, height / scale)


def read_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    formats: Sequence[str] | None = None,
    min_side: int | None = None,
):
    """Read an image from a path or bytes as an upright 8-bit RGB ``PIL.Image``.

    Raises ``ImageReadError`` (one line: file and reason) for empty, truncated, corrupt, non-image or
    oversized inputs. The file's extension is ignored: Pillow identifies the format from the bytes.
    ``formats`` (Pillow format names, e.g. ``("JPEG", "PNG")``) narrows the decoders Pillow may try; None (and
    any name) stays within ``ALLOWED_FORMATS``: an EPS, PDF or SVG file is refused with its real format named.
    ``min_side``: decode less. A JPEG whose shorter side is at least twice ``min_side`` is decoded at the
    smallest scale (1/2, 1/4 or 1/8, done inside the JPEG decoder) that keeps its shorter side >= ``min_side``;
    the image's ``info["decode_scale"]`` then says how many file pixels one of its pixels spans (1.0 when
    decoded in full), so coordinates found on it map back to the file's.
    """
    label = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    data = source if isinstance(source, bytes) else read_file_bytes(Path(source), label)
    if len(data) == 0:
        raise ImageReadError(label, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = open_image(data, formats)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(
                    label,
                    f"image too large ({width}x{height} = {width * height:,} pixels, limit {max_pixels:,}); "
                    "refusing to decode it (decompression-bomb guard)",
                )
            if width == 0 or height == 0:
                raise ImageReadError(label, "image has zero width or height")
            scale = _draft(image, min_side) if min_side else 1.0
            image.load()
            image = _to_rgb(ImageOps.exif_transpose(image))
            if min_side:
                image.info["decode_scale"] = scale
            return image
    except ImageReadError:
        raise
    except UnidentifiedImageError as error:
        raise ImageReadError(label, format_refusal(data, allowed_formats(formats))) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(label, f"image too large (decompression-bomb guard): {error}") from error
    except OSError as error:
        message = str(error) or type(error).__name__
        if "truncated" in message.lower():
            message = "truncated image (file ends early)"
        raise ImageReadError(label, f"corrupt image: {message}") from error
    except (SyntaxError, ValueError, TypeError, EOFError) as error:
        raise ImageReadError(label, f"corrupt image: {error}") from error


def image_format(path: str | Path) -> str | None:
    """The format of a file from its bytes (``"PNG"``, ``"JPEG"``, ...), or None if not an allowed image."""
    try:
        with open_image(path) as image:
            return image.format
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


# Video files predict reads frame by frame (emotionlab.inference.video, the [video] extra).
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


def is_video_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# Files a photo folder holds that are nobody's photo: skipped without a line each, counted in the summary.
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}


@dataclass
class InputListing:
    """What the inputs name: ``files`` to score, and what folders hold that is not scored."""

    files: list[Path] = field(default_factory=list)
    # In a folder, not named as an image or video (notes.txt, photo.heic, a file without extension): named in
    # the summary, since a user may expect it scored.
    not_images: list[Path] = field(default_factory=list)
    # Hidden files and folders (dot-files: .DS_Store, macOS ._ copies, .git), Thumbs.db, desktop.ini: counted.
    junk: int = 0

    def summary(self, limit: int = 10) -> list[str]:
        """One line per kind of file a folder run did not score (none when every file was listed)."""
        lines = []
        if self.not_images:
            names = ", ".join(str(path) for path in self.not_images[:limit])
            more = f" and {len(self.not_images) - limit} more" if len(self.not_images) > limit else ""
            lines.append(
                f"not scored: {len(self.not_images)} file(s) not named as an image or video: {names}{more}"
            )
        if self.junk:
            lines.append(f"skipped {self.junk} hidden or system file(s) (.DS_Store, Thumbs.db, dot-files)")
        return lines


def _is_junk(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts) or relative.name.lower() in JUNK_NAMES


def list_inputs(items: Iterable[str | Path]) -> InputListing:
    """Files, folders (recursive: images and videos) and glob patterns -> a de-duplicated file list, sorted
    within each argument, arguments in the order given. Entries with an image or video name that are not
    regular files (a broken link, a link loop, a FIFO) are listed too: each gets its error record. What a folder
    holds besides is accounted for: other names in ``not_images``, hidden and system files in ``junk``."""

    listing = InputListing()
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            for entry in sorted(path.rglob("*")):
                if entry.is_dir():
                    continue
                if _is_junk(entry.relative_to(path)):
                    listing.junk += 1
                elif is_image_name(entry) or is_video_name(entry):
                    found.append(entry)
                else:
                    listing.not_images.append(entry)
        elif path.is_file() or os.path.lexists(path):
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise EmotionlabError(f"{item}: no such file, folder or matching pattern")
            found += matches
    listing.files = list(dict.fromkeys(found))
    return listing


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """The files ``list_inputs`` lists to score."""
    return list_inputs(items).files
