"""The HTTP service: ``emotionlab serve`` -> POST images, get every face's emotion as JSON; a page to try it.

Safe by default: binds 127.0.0.1, never reads a path a client sends (images arrive as bytes only), loads the
model once at start-up through the same loader as ``emotionlab predict``, and bounds what a request may cost:

- the body is capped while it arrives (``RequestGuard``, a pure ASGI middleware): a ``Content-Length`` above the
  cap is refused before anything is read, a chunked body is counted and stopped at the cap (413);
- at most ``queue_size`` requests wait for a worker; one more gets 503 with ``Retry-After`` at once;
- every image's format (an allow-list: no EPS/PDF/SVG...) and size are read from its header before its pixels
  are decoded; one image and the sum over a request have pixel budgets (413/415/422, one line each);
- decoding, detection and classification run off the event loop, so ``/health`` always answers.

Face detectors (dlib, OpenCV) are not thread-safe: sharing one between FastAPI's threads corrupted memory
(issue 8). Each inference *slot* here owns its own ``Recognizer`` and runs one image at a time: with
``workers=0`` one slot in this process; with ``workers=N`` N worker processes, each built by the same loader.
A worker that dies on an image (a native crash) costs that image a 422 and is started again; the server stays up.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import threading
import traceback
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotionlab import __version__
from emotionlab.data.images import ImageReadError, read_image
from emotionlab.errors import EmotionlabError

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)

MB = 1024 * 1024
# Pillow decoders an upload may reach (the bytes decide, not the file name; camera MPO files open as JPEG).
# Never EPS/PS/PDF (Ghostscript), SVG, ICO or the rarer decoders: each is attack surface no photo needs.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

# The only files /static/ serves: a name from the client is looked up here, never joined to a path.
STATIC_FILES = {"predict.js": "text/javascript", "predict.css": "text/css"}
# The pages load only this service's own files; the uploaded photo is shown from a blob: URL.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}

# What /openapi.json and /docs say about POST /predict (the handler reads the form itself, to bound it).
PREDICT_REQUEST = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "1 to 16 images: JPEG, PNG, WebP, BMP, GIF or TIFF (read from the bytes)",
                        }
                    },
                }
            }
        },
    }
}
_PROBABILITIES = {"angry": 0.02, "fearful": 0.01, "happy": 0.91, "sad": 0.02, "surprised": 0.04}
PREDICT_RESPONSES = {
    200: {
        "description": "One record per image, in the order sent; faces largest first",
        "content": {
            "application/json": {
                "example": {
                    "results": [
                        {
                            "path": "photo.jpg",
                            "size": [640, 480],
                            "label": "happy",
                            "confidence": 0.91,
                            "no_face": False,
                            "probabilities": _PROBABILITIES,
                            "compound": None,
                            "faces": [
                                {
                                    "box": [212, 96, 180, 180],
                                    "label": "happy",
                                    "confidence": 0.91,
                                    "probabilities": _PROBABILITIES,
                                    "compound": None,
                                }
                            ],
                        }
                    ]
                }
            }
        },
    },
    413: {"description": "a file, the request, or an image's pixels over a limit (GET /model lists them)"},
    415: {"description": "not an accepted image format"},
    422: {
        "description": "no files, an empty, corrupt or undecodable image, or one that could not be processed",
        "content": {"application/json": {"example": {"detail": "photo.jpg: corrupt image header (...)"}}},
    },
    503: {"description": "busy: the queue is full; try again after Retry-After seconds"},
}


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


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker process builds its Recognizer: the arguments of ``load_recognizer``."""

    model_path: str | None = None
    detector: str | None = None
    backend: str = "torch"


class Refused(Exception):
    """A request or an image the service will not process: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---- one image through a Recognizer (in a slot: this process's or a worker's) ----------------------------


def predict_image(recognizer, name: str, data: bytes, limits: ServiceLimits) -> tuple:
    """``("ok", record)`` or ``("refused", status, message)`` for one uploaded image; never raises."""
    try:
        image = read_image(data, max_pixels=limits.max_image_pixels, name=name, formats=limits.formats)
    except ImageReadError as error:
        return ("refused", 422, str(error))
    try:
        record = recognizer.predict(image)
    except EmotionlabError as error:
        return ("refused", 422, f"{name}: {error}")
    except Exception as error:  # noqa: BLE001 - a detector failing on one image: that image's answer only
        log.warning("%s: prediction failed:\n%s", name, traceback.format_exc())
        return ("refused", 422, f"{name}: could not be processed ({type(error).__name__}: {error})")
    record["path"] = name
    record["size"] = list(image.size)
    return ("ok", record)


def _warm_up(recognizer) -> None:
    """Run one blank image through every stage, so a missing detector file fails at start-up, not per request."""
    recognizer.predict(Image.new("RGB", (96, 96), (128, 128, 128)))


def describe_model(recognizer) -> dict:
    """What /model shows: the model's labels and preprocessing, and the detector in use."""
    metadata = recognizer.classifier.metadata
    return {
        "architecture": metadata.get("architecture"),
        "labels": list(recognizer.labels),
        "input_size": metadata.get("input_size"),
        "faces": metadata.get("faces"),
        "detector": recognizer.detector_name,
    }


class LocalSlot:
    """Runs images on a Recognizer in this process; the pool lends a slot to one request at a time."""

    def __init__(self, recognizer, limits: ServiceLimits):
        self.recognizer = recognizer
        self.limits = limits
        self.model_info = describe_model(recognizer)
        self.needs_restart = False

    def run(self, name: str, data: bytes) -> tuple:
        return predict_image(self.recognizer, name, data, self.limits)

    def close(self) -> None:
        pass


def _worker_main(connection, spec: WorkerSpec, limits: ServiceLimits) -> None:
    """A worker process: build the Recognizer, say ready, then answer ``(name, bytes)`` jobs until EOF."""
    import cv2
    import torch

    from emotionlab.inference import load_recognizer

    # One core per worker: the slots are the parallelism; threads inside a worker would fight over the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        recognizer = load_recognizer(spec.model_path, detector=spec.detector, backend=spec.backend)
        _warm_up(recognizer)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which refuses to start
        connection.send(("failed", str(error) or type(error).__name__))
        return
    connection.send(("ready", describe_model(recognizer)))
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):  # the server has gone: so do we
            return
        if job is None:
            return
        connection.send(predict_image(recognizer, job[0], job[1], limits))


def _process_context():
    """Workers never start as a plain fork of the server: its threads (uvicorn, OpenCV, torch) may hold locks.
    A fork server that has only imported the inference module starts clean workers fast; else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["emotionlab.inference"])
    return context


class ProcessSlot:
    """One worker process with its own Recognizer; started again after it dies."""

    def __init__(self, spec: WorkerSpec, limits: ServiceLimits, *, start_timeout: float = 300.0):
        self.spec = spec
        self.limits = limits
        self.start_timeout = start_timeout
        self.process = None
        self.connection = None
        self.restarts = 0
        self.model_info: dict = {}

    def start(self) -> None:
        context = _process_context()
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(child_end, self.spec, self.limits),
            daemon=True,
            name="emotionlab-serve",
        )
        process.start()
        child_end.close()  # only the worker holds it now: its death shows here as EOF
        self.process, self.connection = process, parent_end

    def wait_ready(self) -> None:
        if not self.connection.poll(self.start_timeout):
            self._discard()
            raise EmotionlabError(f"a service worker did not start within {self.start_timeout:.0f} s")
        try:
            status, detail = self.connection.recv()
        except (EOFError, OSError):
            code = self._discard()
            raise EmotionlabError(f"a service worker stopped while starting ({_exit_reason(code)})") from None
        if status != "ready":
            self._discard()
            raise EmotionlabError(detail)
        self.model_info = detail

    def run(self, name: str, data: bytes) -> tuple:
        # A worker found dead before it took the job (killed while idle) is replaced and the job given to the
        # new one; a worker that dies while working on it costs this image a 422.
        for _attempt in range(2):
            if self.process is None or not self.process.is_alive():
                try:
                    self.restart()
                except EmotionlabError as error:
                    return ("refused", 503, f"{name}: no worker available ({error}); try again later")
            try:
                self.connection.send((name, data))
                break
            except OSError:
                self._discard()
        else:
            return ("refused", 503, f"{name}: no worker available; try again later")
        timeout = self.limits.image_timeout_seconds
        try:
            if not self.connection.poll(timeout):
                self._discard()
                return ("refused", 422, f"{name}: not processed within {timeout:.0f} s; stopped")
            return self.connection.recv()
        except (EOFError, OSError):
            code = self._discard()
            reason = _exit_reason(code)
            log.warning("%s: a service worker stopped (%s); another will start", name, reason)
            return (
                "refused",
                422,
                f"{name}: not processed (its worker stopped: {reason}); the service is up",
            )

    @property
    def needs_restart(self) -> bool:
        return self.process is None

    def restart(self) -> None:
        self._discard()
        self.restarts += 1
        self.start()
        self.wait_ready()

    def _discard(self) -> int | None:
        """Stop the worker (if still running) and forget it; its exit code."""
        process, self.process = self.process, None
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if process is None:
            return None
        process.join(timeout=1.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)
        return process.exitcode

    def close(self) -> None:
        if self.connection is not None and self.process is not None and self.process.is_alive():
            try:
                self.connection.send(None)
                self.process.join(timeout=5.0)
            except OSError:
                pass
        self._discard()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class PixelBudget:
    """How many pixels all slots together may be decoding at once (a weighted semaphore for threads)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_use = 0
        self._changed = threading.Condition()

    @contextmanager
    def taking(self, pixels: int):
        pixels = min(pixels, self.capacity)  # one image over the budget still runs, alone
        with self._changed:
            self._changed.wait_for(lambda: self.in_use + pixels <= self.capacity)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()


class InferencePool:
    """Slots lent to one request at a time; the work runs in threads (one per slot), never on the event loop."""

    def __init__(self, slots: Sequence, *, pixels_in_flight: int = ServiceLimits.max_pixels_in_flight):
        if not slots:
            raise ValueError("an inference pool needs at least one slot")
        self.slots = list(slots)
        self.budget = PixelBudget(pixels_in_flight)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for slot in self.slots:
            self._idle.put(slot)
        # One thread token per slot (made in the event loop on first use): a thread that holds one always finds
        # an idle slot, and requests waiting for a slot wait in the event loop, not in threads.
        self._limiter = None

    @property
    def model_info(self) -> dict:
        return self.slots[0].model_info

    def _run_images(self, images: list[tuple[str, UploadFile, int]]) -> list[tuple]:
        slot = self._idle.get()
        try:
            results = []
            for name, upload, pixels in images:
                upload.file.seek(0)
                data = upload.file.read()
                with self.budget.taking(pixels):
                    result = slot.run(name, data)
                results.append(result)
                if result[0] != "ok":  # the request is refused: its other images need not be processed
                    break
            return results
        finally:
            if slot.needs_restart:  # replace a dead worker now, without delaying this answer
                threading.Thread(target=self._restart_then_release, args=(slot,), daemon=True).start()
            else:
                self._idle.put(slot)

    def _restart_then_release(self, slot) -> None:
        try:
            slot.restart()
        except EmotionlabError as error:  # the next request through this slot tries again
            log.warning("a service worker could not start again: %s", error)
        finally:
            self._idle.put(slot)

    async def run(self, images: list[tuple[str, UploadFile, int]]) -> list[tuple]:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(len(self.slots))
        return await anyio.to_thread.run_sync(self._run_images, images, limiter=self._limiter)

    def close(self) -> None:
        for slot in self.slots:
            slot.close()


def start_process_pool(spec: WorkerSpec, limits: ServiceLimits, workers: int) -> InferencePool:
    """``workers`` worker processes, started together; raises ``EmotionlabError`` if one cannot load."""
    slots = [ProcessSlot(spec, limits) for _ in range(workers)]
    pool = InferencePool(slots, pixels_in_flight=limits.max_pixels_in_flight)
    try:
        for slot in slots:
            slot.start()
        for slot in slots:
            slot.wait_ready()
    except BaseException:
        for slot in slots:
            slot._discard()
        raise
    return pool


# ---- request limits before any decoding -----------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


@dataclass
class ServiceLoad:
    """Requests admitted to /predict and not yet answered, and those refused as busy (event loop only)."""

    active: int = 0
    refused_busy: int = 0


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


class RequestGuard:
    """Pure ASGI middleware: the body cap (declared and counted) and the bounded queue of /predict requests."""

    def __init__(self, app, *, limits: ServiceLimits, load: ServiceLoad, capacity: int, paths=("/predict",)):
        self.app = app
        self.limits = limits
        self.load = load
        self.capacity = capacity  # slots + queue_size
        self.paths = set(paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.max_request_bytes
        declared = dict(scope["headers"]).get(b"content-length")
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
        guarded = scope["path"] in self.paths
        if guarded:
            if self.load.active >= self.capacity:
                self.load.refused_busy += 1
                retry = str(self.limits.retry_after_seconds).encode()
                await _send_json(
                    send,
                    503,
                    f"busy: {self.load.active} requests in progress or waiting; "
                    f"retry in {self.limits.retry_after_seconds} s",
                    [(b"retry-after", retry)],
                )
                return
            self.load.active += 1
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise _BodyTooLarge
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
        finally:
            if guarded:
                self.load.active -= 1


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
            with Image.open(file, formats=list(limits.formats)) as image:
                image_format, (width, height) = image.format, image.size
    except UnidentifiedImageError:
        raise Refused(
            415, f"{name}: not an accepted image format (accepted: {', '.join(limits.formats)})"
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


# ---- the app -------------------------------------------------------------------------------------------


def create_app(
    recognizer=None,
    *,
    limits: ServiceLimits | None = None,
    pool: InferencePool | None = None,
    max_upload_bytes: int | None = None,
    max_pixels: int | None = None,
) -> FastAPI:
    """A FastAPI app around a loaded ``Recognizer`` (see ``emotionlab.load_model``) or a ``pool`` of them.

    ``pool`` runs the images (e.g. ``start_process_pool``); without one, one slot in this process runs them on
    ``recognizer``, one image at a time. ``max_upload_bytes`` and ``max_pixels`` override ``limits``' fields.
    """
    limits = limits or ServiceLimits()
    if max_upload_bytes is not None:
        limits = replace(limits, max_upload_bytes=max_upload_bytes)
    if max_pixels is not None:
        limits = replace(
            limits, max_image_pixels=max_pixels, max_request_pixels=max(max_pixels, limits.max_request_pixels)
        )
    if pool is None:
        if recognizer is None:
            raise ValueError("create_app needs a recognizer or a pool")
        pool = InferencePool([LocalSlot(recognizer, limits)], pixels_in_flight=limits.max_pixels_in_flight)
    model_info = pool.model_info
    load = ServiceLoad()
    inspect_limiter = anyio.CapacityLimiter(2)  # header checks: cheap, but never on the event loop

    # FastAPI's own /docs and /redoc load their scripts from a CDN: this service renders /docs itself.
    app = FastAPI(
        title="emotionlab",
        version=__version__,
        description="Emotions of the faces in an image.",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(Refused)
    async def refused(_request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    app.add_middleware(RequestGuard, limits=limits, load=load, capacity=len(pool.slots) + limits.queue_size)
    app.state.pool = pool
    app.state.load = load
    page_html = (STATIC / "predict.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        """Rendered from the app's OpenAPI schema: no script, nothing from another host (api_docs.py)."""
        from emotionlab.serving.api_docs import render_api_docs

        html = render_api_docs(app.openapi(), base_url=str(request.base_url))
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get("/health", summary="Is the service up, and how busy")
    async def health() -> dict:
        """Answered on the event loop, which never decodes or detects: fast even under load."""
        return {
            "status": "ok",
            "version": __version__,
            "workers": len(pool.slots),
            "active": load.active,
            "refused_busy": load.refused_busy,
        }

    @app.get("/model", summary="The model and the limits of a request")
    async def model() -> dict:
        """The model (architecture, labels, input size, face settings, detector in use) and the service's
        limits and accepted formats."""
        return {
            **model_info,
            "max_upload_bytes": limits.max_upload_bytes,
            "max_request_bytes": limits.max_request_bytes,
            "max_files": limits.max_files,
            "max_image_pixels": limits.max_image_pixels,
            "max_request_pixels": limits.max_request_pixels,
            "formats": list(limits.formats),
        }

    @app.post(
        "/predict",
        summary="Emotions of every face in 1 to 16 images",
        openapi_extra=PREDICT_REQUEST,
        responses=PREDICT_RESPONSES,
    )
    async def predict(request: Request) -> dict:
        """Multipart field ``files`` (1 to 16 images). One record per image: faces (box, label, probabilities),
        the largest face's label, no_face. 413/415/422 with one line if any image is refused."""
        form, images = await _read_uploads(request, limits)
        try:
            total, checked = 0, []
            for name, upload in images:
                _format, width, height = await anyio.to_thread.run_sync(
                    inspect_upload, name, upload, limits, limiter=inspect_limiter
                )
                checked.append((name, upload, width * height))
                total += width * height
                if total > limits.max_request_pixels:
                    raise HTTPException(
                        413,
                        f"images too large together: over {limits.max_request_pixels:,} pixels "
                        f"per request; send fewer or smaller images",
                    )
            results = await pool.run(checked)
            for result in results:
                if result[0] != "ok":
                    raise HTTPException(result[1], result[2])
            return {"results": [result[1] for result in results]}
        finally:
            await form.close()

    return app


async def _read_uploads(
    request: Request, limits: ServiceLimits
) -> tuple[FormData, list[tuple[str, UploadFile]]]:
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


def serve(
    model_path: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    detector: str | None = None,
    backend: str = "torch",
    max_upload_mb: float = 10,
    workers: int = 2,
    queue_size: int = ServiceLimits.queue_size,
) -> None:
    """Load the model (in each of ``workers`` processes, or once here with 0) and serve it with uvicorn.

    Two workers by default, measured on a 2-core machine at concurrency 8 (benchmarks/results/serve_workers*.json):
    with the blaze detector 39.7 requests/s against 44.3 for one in-process slot (the process hop costs ~10%),
    with the dlib cascade 5.3 against 4.9 (dlib holds the GIL: threads would not help). Chosen for isolation: a
    native crash in a decoder or detector costs one request a 422, never the service.
    """
    import uvicorn

    max_upload_bytes = int(max_upload_mb * MB)
    limits = ServiceLimits(
        max_upload_bytes=max_upload_bytes,
        max_request_bytes=max(2 * max_upload_bytes, ServiceLimits.max_request_bytes),
        queue_size=queue_size,
    )
    # Workers or not, the model goes through `load_recognizer`, the loader `emotionlab predict` uses: a model file
    # predict refuses stops the service before it listens. With workers, this process never loads torch.
    if workers > 0:
        pool = start_process_pool(WorkerSpec(model_path, detector, backend), limits, workers)
    else:
        from emotionlab.inference import load_recognizer

        recognizer = load_recognizer(model_path, detector=detector, backend=backend)
        _warm_up(recognizer)
        pool = InferencePool([LocalSlot(recognizer, limits)], pixels_in_flight=limits.max_pixels_in_flight)
    app = create_app(limits=limits, pool=pool)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {host}: anyone who can reach this address can use the service (no password)"
        )
    print(f"emotionlab service on http://{host}:{port}/ (API docs at /docs; Ctrl+C to stop)", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        app.state.pool.close()
