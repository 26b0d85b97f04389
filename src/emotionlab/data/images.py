"""Safe image reading: the bytes decide the format, EXIF rotation applied, any mode -> RGB, size limits."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from emotionlab.errors import EmotionlabError

# Above this many pixels an image is refused (decompression-bomb guard). 50 MP covers any real photo.
DEFAULT_MAX_PIXELS = 50_000_000

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}

# Never let Pillow "repair" a truncated file silently: a half-grey face is worse than a skipped one.
ImageFile.LOAD_TRUNCATED_IMAGES = False


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
    import errno
    import stat

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
    ``formats`` (Pillow format names, e.g. ``("JPEG", "PNG")``) limits the decoders Pillow may try; None tries
    every one it has (the service passes an allow-list so that no upload ever reaches e.g. Ghostscript).
    ``min_side``: decode less. A JPEG whose shorter side is at least twice ``min_side`` is decoded at the
    smallest scale (1/2, 1/4 or 1/8, done inside the JPEG decoder) that keeps its shorter side >= ``min_side``;
    the image's ``info["decode_scale"]`` then says how many file pixels one of its pixels spans (1.0 when
    decoded in full), so coordinates found on it map back to the file's.
    """
    label = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    if isinstance(source, bytes):
        data = source
    else:
        data = read_file_bytes(Path(source), label)
    if len(data) == 0:
        raise ImageReadError(label, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(formats) if formats is not None else None)
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
        if formats is not None:
            accepted = ", ".join(formats)
            raise ImageReadError(label, f"not an accepted image format (accepted: {accepted})") from error
        raise ImageReadError(label, "not an image (unrecognised format)") from error
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
    """The real format of a file from its bytes (``"PNG"``, ``"JPEG"``, ...), or None if not an image."""
    try:
        with Image.open(path) as image:
            return image.format
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
