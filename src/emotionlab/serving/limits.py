"""What one request to the service may cost (``ServiceLimits``), and ``Refused``, the answer when it costs more.

Each bound is checked before the work it protects: the body while it arrives and each image's header in
``uploads.py``, the pixels being decoded at once and a worker's time per image in ``workers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Pillow decoders an upload may reach: the one allow-list every emotionlab reader uses (data/images.py).
from emotionlab.data.images import ALLOWED_FORMATS

MB = 1024 * 1024


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may cost; each bound is checked before the work it protects."""

    max_upload_bytes: int = 10 * MB  # one image file: any phone photo
    max_request_bytes: int = 20 * MB  # the whole body, counted while it arrives
    max_files: int = 16
    # One image, from its header before decoding. A 40-MP RGB image is 120 MB decoded; decoding and detection
    # on one took ~0.8 s here (16 in one request took 13 s and 3.8 GB before these budgets, issue 8).
    max_image_pixels: int = 40_000_000
    # The sum over a request's images: one large photo, or many small ones.
    max_request_pixels: int = 50_000_000
    # All workers together: a 40-MP PNG took a worker from 1.07 to 1.72 GB while it was decoded and searched,
    # so two at once would pass 2 GB; small photos still run beside one large one.
    max_pixels_in_flight: int = 48_000_000
    # Requests admitted but not yet answered beyond the ones being served. 32 lets a benchmark at concurrency
    # 32 run without refusals; bodies waiting are on disk past 1 MB each (Starlette spools them), so memory
    # stays small; the disk holds at most (queue_size + workers) x max_request_bytes.
    queue_size: int = 32
    retry_after_seconds: int = 2
    image_timeout_seconds: float = 120.0  # a worker still busy after this is stopped (the image gets a 422)
    formats: tuple[str, ...] = ALLOWED_FORMATS


class Refused(Exception):
    """A request or an image the service will not process: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
