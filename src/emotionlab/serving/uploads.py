"""What a request to /predict may send, checked before any pixel is decoded.

- who may ask (``RequestGuard``, a pure ASGI middleware): the Host header must name this service (against DNS
  rebinding; 403), and with a token set every API request must carry ``Authorization: Bearer TOKEN`` (401);
- the body is capped while it arrives (same guard): a ``Content-Length`` above the cap is refused before
  anything is read, a chunked body is counted and stopped at the cap (413); it must arrive at a minimum rate
  and within a total time (408), so a slow client holds only its own connection;
- the form holds 1 to ``max_files`` files (``read_uploads``); a client's file name is echoed back, never
  opened;
- every image's format (an allow-list: no EPS/PDF/SVG...) and size are read from its header
  (``inspect_upload``); one image and the sum over a request have pixel budgets (413/415/422, one line each);
- only then does the request take a place in the queue (``admitted``): at most ``queue_size`` beyond the busy
  slots; one more gets 503 with ``Retry-After`` at once.
"""

from __future__ import annotations

import hmac
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import HTTPException, Request
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from emotionlab.data.images import open_image, sniff_format
from emotionlab.serving.limits import MB, Refused, ServiceLimits

# ---- who may ask, and the body while it arrives, before the app reads anything -----------------------------

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# With a token, only the API (/predict, /model) needs it: the pages and their files are the same for everyone
# (the page sends the token it finds in its address's #token=... fragment, which never reaches a server log).
PUBLIC_PATHS = ("/", "/health", "/docs", "/openapi.json", "/local")
PUBLIC_PREFIXES = ("/static/", "/local/")


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


@dataclass
class ServiceLoad:
    """Requests admitted to /predict and not yet answered, and those refused as busy or slow (event loop only)."""

    active: int = 0
    refused_busy: int = 0
    body_timeouts: int = 0
    disconnected: int = 0  # clients gone before their body arrived


async def _send_json(send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str:
    """The host of a Host header, lower case, without its port (``[::1]:8000`` -> ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class RequestGuard:
    """Pure ASGI middleware: the Host check, the token, the body cap (declared and counted) and its deadlines.

    ``allowed_hosts``: names the Host header may carry (None: any). ``token``: the bearer token every request
    but ``PUBLIC_PATHS`` must carry (None: no token).
    """

    def __init__(
        self,
        app,
        *,
        limits: ServiceLimits,
        load: ServiceLoad,
        allowed_hosts: Iterable[str] | None = None,
        token: str | None = None,
    ):
        self.app = app
        self.limits = limits
        self.load = load
        self.hosts = None if allowed_hosts is None else {host.lower() for host in allowed_hosts}
        self.token = token.encode() if token else None

    def _authorised(self, scope) -> bool:
        if self.token is None or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIXES):
            return True
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credential = given.partition(b" ")
        # Constant time: the comparison takes as long however many leading bytes of a guess are right.
        return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.hosts:
                await _send_json(send, 403, f"host {host!r} not allowed")
                return
        if not self._authorised(scope):
            await _send_json(
                send,
                401,
                "this service needs a token: send the header 'Authorization: Bearer TOKEN'",
                [(b"www-authenticate", b'Bearer realm="emotionlab"')],
            )
            return
        cap = self.limits.max_request_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _send_json(send, 400, "invalid Content-Length header")
                return
            if int(declared) > cap:
                await _send_json(
                    send,
                    413,
                    f"request body of {int(declared):,} bytes is over the limit of "
                    f"{cap:,} bytes ({cap / MB:g} MB)",
                )
                return
        limits = self.limits
        started_at = anyio.current_time()
        received = 0
        body_done = scope["method"] in ("GET", "HEAD", "OPTIONS")
        started = False

        async def counted_receive():
            nonlocal received, body_done
            if body_done:  # after the body: e.g. waiting for a disconnect, no deadline
                return await receive()
            # The body keeps its deadline only while it keeps arriving: grace + bytes so far / minimum rate.
            deadline = started_at + min(
                limits.body_timeout_seconds,
                limits.body_grace_seconds + received / limits.body_min_bytes_per_second,
            )
            message = None
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
            if message is None:
                raise _BodyTooSlow
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise _BodyTooLarge
                body_done = not message.get("more_body", False)
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, f"request body over the limit of {cap:,} bytes ({cap / MB:g} MB)")
        except ClientDisconnect:
            # The client went away mid-body (a slow client giving up, a closed tab): nobody to answer, and no
            # traceback in the log for each (200 dropped at once filled a console pipe and stalled the server).
            self.load.disconnected += 1
        except _BodyTooSlow:
            self.load.body_timeouts += 1
            if not started:
                seconds = anyio.current_time() - started_at
                await _send_json(
                    send,
                    408,
                    f"request body too slow: {received:,} bytes in {seconds:.0f} s (at least "
                    f"{limits.body_min_bytes_per_second:,} bytes/s after {limits.body_grace_seconds:g} s, "
                    f"{limits.body_timeout_seconds:g} s in all)",
                )


@contextmanager
def admitted(load: ServiceLoad, capacity: int, limits: ServiceLimits):
    """A place in the queue for a received, checked request, or ``Refused`` 503 + Retry-After when full."""
    if load.active >= capacity:
        load.refused_busy += 1
        raise Refused(
            503,
            f"busy: {load.active} requests in progress or waiting; retry in {limits.retry_after_seconds} s",
            {"Retry-After": str(limits.retry_after_seconds)},
        )
    load.active += 1
    try:
        yield
    finally:
        load.active -= 1


# ---- the form and each image's header ----------------------------------------------------------------------


async def read_uploads(
    request: Request, limits: ServiceLimits
) -> tuple[FormData, list[tuple[str, UploadFile]]]:
    """The form and its ``(name, upload)`` pairs; 413 over ``max_files``, 422 for no files or text fields.
    The caller closes the form (its files are spooled to disk past 1 MB)."""
    try:
        form = await request.form(max_files=limits.max_files, max_fields=limits.max_files + 16)
    except StarletteHTTPException as error:  # Starlette's 400 for a malformed or too-long form
        if "Too many files" in str(error.detail):
            raise HTTPException(413, f"at most {limits.max_files} images per request") from None
        raise HTTPException(422, f"cannot read the form: {error.detail}") from None
    uploads = form.getlist("files")
    if not uploads:
        await form.close()
        raise HTTPException(422, "no images: send them as multipart/form-data in the field 'files'")
    images = []
    for upload in uploads:
        if not isinstance(upload, UploadFile):
            await form.close()
            raise HTTPException(422, "the field 'files' must hold files, not text")
        name = Path(upload.filename or "upload").name or "upload"  # echoed back only; never opened
        images.append((name, upload))
    return form, images


def inspect_upload(name: str, upload: UploadFile, limits: ServiceLimits) -> tuple[str, int, int]:
    """``(format, width, height)`` from the image's header only (Pillow reads no pixels in ``open``); refuses a
    file over the size cap, a format outside the allow-list and an image over the per-image pixel budget."""
    file = upload.file
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    if size == 0:
        raise Refused(422, f"{name}: empty file (0 bytes)")
    if size > limits.max_upload_bytes:
        raise Refused(
            413,
            f"{name}: upload of {size:,} bytes is over the limit of {limits.max_upload_bytes:,} "
            f"bytes per image",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(file, limits.formats) as image:
                image_format, (width, height) = image.format, image.size
    except UnidentifiedImageError:
        file.seek(0)
        real = sniff_format(file.read(4096))
        real = f" ({real})" if real else ""
        raise Refused(
            415, f"{name}: not an accepted image format{real}; accepted: {', '.join(limits.formats)}"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused(413, f"{name}: image too large to decode (decompression-bomb guard)") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for a damaged header
        raise Refused(422, f"{name}: corrupt image header ({type(error).__name__}: {error})") from None
    finally:
        file.seek(0)
    if width <= 0 or height <= 0:
        raise Refused(422, f"{name}: image has zero width or height")
    if width * height > limits.max_image_pixels:
        raise Refused(
            413,
            f"{name}: image too large ({width}x{height} = {width * height:,} pixels; limit "
            f"{limits.max_image_pixels:,} per image)",
        )
    return image_format, width, height


async def inspect_uploads(
    images: list[tuple[str, UploadFile]], limits: ServiceLimits, limiter: anyio.CapacityLimiter
) -> list[tuple[str, UploadFile, int]]:
    """``(name, upload, pixels)`` for each image once every header passed ``inspect_upload`` (in a thread,
    never on the event loop) and their pixels together are within ``max_request_pixels`` (else 413)."""
    total, checked = 0, []
    for name, upload in images:
        _format, width, height = await anyio.to_thread.run_sync(
            inspect_upload, name, upload, limits, limiter=limiter
        )
        checked.append((name, upload, width * height))
        total += width * height
        if total > limits.max_request_pixels:
            raise HTTPException(
                413,
                f"images too large together: over {limits.max_request_pixels:,} pixels "
                f"per request; send fewer or smaller images",
            )
    return checked
