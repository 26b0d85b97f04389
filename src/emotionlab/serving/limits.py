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
    # Time, counted outside the queue (a request takes a queue slot only once its body is in and checked). A
    # header must be complete within header_timeout_seconds of the connection opening; a body must keep
    # arriving at body_min_bytes_per_second after a grace period (the deadline moves on with every byte
    # received), and never take longer than body_timeout_seconds: 408 past either. A 10 MB photo at the minimum
    # rate takes ~110 s; a client trickling a byte a second is cut off after the grace (benchmarks/security.py).
    header_timeout_seconds: float = 10.0
    body_grace_seconds: float = 10.0
    body_min_bytes_per_second: int = 100_000
    body_timeout_seconds: float = 120.0
    # Open connections (each a file descriptor and a little memory, slow or not): one client address may hold
    # max_connections_per_client, all together max_connections; one more is answered 503 + Retry-After.
    max_connections_per_client: int = 32
    max_connections: int = 256
    image_timeout_seconds: float = 120.0  # a worker still busy after this is stopped (the image gets a 422)
    formats: tuple[str, ...] = ALLOWED_FORMATS


class Refused(Exception):
    """A request or an image the service will not process: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
