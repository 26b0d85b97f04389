"""The HTTP service: ``emotionlab serve`` -> POST images, get every face's emotion as JSON; a page to try it.

Safe by default: binds 127.0.0.1, never reads a path a client sends (images arrive as bytes only), loads the
model once at start-up through the same loader as ``emotionlab predict``, and bounds what a request may cost
(``limits.py``). This module assembles the app; each job has its own module:

- ``uploads.py``: the body cap while it arrives, the bounded queue (503), the form, and each image's header
  checked against the format allow-list and the pixel budgets before any pixel is decoded;
- ``workers.py``: the inference slots (one ``Recognizer`` each, in this process or in worker processes) that
  decode, detect and classify off the event loop, so ``/health`` always answers;
- ``pages.py`` and ``api_docs.py``: the page at /, its static files, and /docs.
"""

from __future__ import annotations

from dataclasses import replace

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from emotionlab import __version__
from emotionlab.serving.api_docs import PREDICT_REQUEST, PREDICT_RESPONSES
from emotionlab.serving.limits import MB, Refused, ServiceLimits
from emotionlab.serving.pages import add_pages
from emotionlab.serving.uploads import RequestGuard, ServiceLoad, inspect_uploads, read_uploads
from emotionlab.serving.workers import InferencePool, LocalSlot, WorkerSpec, start_process_pool, warm_up


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
    add_pages(app)

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
        form, images = await read_uploads(request, limits)
        try:
            results = await pool.run(await inspect_uploads(images, limits, inspect_limiter))
            for result in results:
                if result[0] != "ok":
                    raise HTTPException(result[1], result[2])
            return {"results": [result[1] for result in results]}
        finally:
            await form.close()

    return app


def serve(
    model_path: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    detector: str | None = None,
    backend: str = "auto",
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
        warm_up(recognizer)
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
