"""What the bytes of one photo are: the format Pillow finds in them, the pixel limit, a full decode, the hashes."""

from __future__ import annotations

import hashlib
import threading

from emotionlab.data.duplicates import perceptual_hash
from emotionlab.data.images import ImageReadError, open_image, read_image
from emotionlab.data.importer.fetch import FetchError, Network, fetch_url
from emotionlab.data.importer.items import Checked, ImportOptions, Item, utc_now
from emotionlab.isolation import error_reason

# Pillow format -> the extension a kept file gets. MPO is how Pillow names a camera JPEG with a preview image.
ALLOWED_FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
    "TIFF": "tif",
}
DECODERS = [
    "JPEG",
    "PNG",
    "WEBP",
    "BMP",
    "GIF",
    "TIFF",
]  # the decoders Pillow may try (its JPEG one opens MPO)


def check_item(item: Item, options: ImportOptions, network: Network, stop: threading.Event) -> Checked:
    """Fetch (URLs) and check the bytes of one item; runs in the download threads."""
    if item.status is not None:
        return Checked(item, status=item.status, reason=item.reason)
    data = item.data
    item.data = None  # the Checked carries the bytes from here
    if item.url is not None:
        try:
            data = fetch_url(item.url, options, network, stop)
        except FetchError as error:
            return Checked(item, status=error.status, reason=error.reason, unreachable=error.unreachable)
        finally:
            item.fetched_utc = utc_now()
    assert data is not None
    if len(data) > options.max_bytes:
        return Checked(
            item, status="rejected", reason=f"file too large (more than {options.max_bytes:,} bytes)"
        )
    return inspect_bytes(item, data, options)


def inspect_bytes(item: Item, data: bytes, options: ImportOptions) -> Checked:
    """Identify the format from the bytes, decode fully (pixel limit first) and hash."""

    checked = Checked(item, sha256=hashlib.sha256(data).hexdigest())
    try:
        # read_image checks the pixel limit from the header before decoding, then decodes every pixel.
        image = read_image(data, max_pixels=options.max_pixels, name=item.origin, formats=DECODERS)
        checked.phash = perceptual_hash(image)
        with open_image(data, DECODERS) as header:
            checked.format = header.format
            checked.width, checked.height = header.size
    except ImageReadError as error:
        checked.status, checked.reason = "rejected", error.reason
        return checked
    except Exception as error:  # noqa: BLE001 - any decoder failure on one file is that file's reason
        checked.status, checked.reason = "rejected", f"corrupt image: {error_reason(error)}"
        return checked
    checked.data = data
    return checked
