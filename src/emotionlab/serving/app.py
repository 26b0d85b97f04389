"""The HTTP service: ``emotionlab serve`` -> POST images, get every face's emotion as JSON; a page to try it.

Safe by default: binds 127.0.0.1, never reads a path a client sends (images arrive as bytes only), loads the
model once at start-up through the same loader as ``emotionlab predict``, and bounds what a request may cost
(``limits.py``). This module assembles the app; each job has its own module:

- ``connections.py``: caps on open connections (per client address and in total; 503) and the deadline for
  a request's headers (408), in uvicorn's HTTP protocol;
- ``uploads.py``: the Host check and the optional token, the body cap and its deadlines while it arrives
  (408), the form, each image's header checked against the format allow-list and the pixel budgets before
  any pixel is decoded, and only then a place in the bounded queue (503);
- ``workers.py``: the inference slots (one ``Recognizer`` each, in this process or in worker processes) that
  decode, detect and classify off the event loop, so ``/health`` always answers;
- ``pages.py`` and ``api_docs.py``: the page at /, its static files, and /docs.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import replace

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from emotionlab.serving.api_docs import PREDICT_REQUEST, PREDICT_RESPONSES
from emotionlab.serving.limits import MB, Refused, ServiceLimits
from emotionlab.serving.pages import add_pages
from emotionlab.serving.uploads import (
    LOOPBACK_HOSTS,
    RequestGuard,
    ServiceLoad,
    admitted,
    inspect_uploads,
    read_uploads,
)
from emotionlab.serving.workers import InferencePool, LocalSlot, WorkerSpec, start_process_pool, warm_up
from emotionlab.version import __version__


def create_app(
    recognizer=None,
    *,
    limits: ServiceLimits | None = None,
    pool: InferencePool | None = None,
    max_upload_bytes: int | None = None,
    max_pixels: int | None = None,
    allowed_hosts: Iterable[str] | None = None,
    token: str | None = None,
    connections=None,
) -> FastAPI:
    """A FastAPI app around a loaded ``Recognizer`` (see ``emotionlab.load_model``) or a ``pool`` of them.

    ``pool`` runs the images (e.g. ``start_process_pool``); without one, one slot in this process runs them on
    ``recognizer``, one image at a time. ``max_upload_bytes`` and ``max_pixels`` override ``limits``' fields.
    ``allowed_hosts``: the names a request's Host header may carry (None: any); ``token``: the bearer token
    the API requires (None: none); ``connections``: the ``ConnectionGuard`` whose counts /health shows.
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
        return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)

    capacity = len(pool.slots) + limits.queue_size
    app.add_middleware(RequestGuard, limits=limits, load=load, allowed_hosts=allowed_hosts, token=token)
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
            "body_timeouts": load.body_timeouts,
            **(
                {
                    "connections": connections.total,
                    "refused_connections": connections.refused,
                    "header_timeouts": connections.header_timeouts,
                }
                if connections is not None
                else {}
            ),
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
            checked = await inspect_uploads(images, limits, inspect_limiter)
            with admitted(load, capacity, limits):  # received and checked: only now a place in the queue
                results = await pool.run(checked)
            for result in results:
                if result[0] != "ok":
                    raise HTTPException(result[1], result[2])
            return {"results": [result[1] for result in results]}
        finally:
            await form.close()

    return app


def service_hosts(host: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The names the Host header may carry when listening on ``host`` (None: any, for ``extra`` ``*``).

    On 127.0.0.1 only the loopback names: a web page elsewhere cannot reach the service by pointing its own
    domain at 127.0.0.1 (DNS rebinding). Beyond it: also the address listened on, this machine's name and
    addresses, and ``extra`` (``--allowed-host``, e.g. the name clients use).
    """

    extra = [name.strip().lower() for name in extra if name.strip()]
    if "*" in extra:
        return None
    names = set(LOOPBACK_HOSTS) | set(extra)
    if host in LOOPBACK_HOSTS:
        return frozenset(names)
    if host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host else host)
    hostname = socket.gethostname()
    names |= {hostname.lower(), socket.getfqdn().lower()}
    try:
        for *_, address in socket.getaddrinfo(hostname, None):
            names.add(f"[{address[0]}]" if ":" in address[0] else address[0])
    except OSError:
        pass
    try:  # the address other machines reach this one by (no packet is sent: UDP connect only picks a route)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            names.add(probe.getsockname()[0])
    except OSError:
        pass
    return frozenset(names)


def serve(
    model_path: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    detector: str | None = None,
    backend: str = "auto",
    classes: list[str] | None = None,
    max_upload_mb: float = 10,
    workers: int = 2,
    queue_size: int = ServiceLimits.queue_size,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    limits: ServiceLimits | None = None,
) -> None:
    """Load the model (in each of ``workers`` processes, or once here with 0) and serve it with uvicorn.

    Two workers by default, measured on a 2-core machine at concurrency 8 (benchmarks/results/serve_workers*.json):
    with the blaze detector 39.7 requests/s against 44.3 for one in-process slot (the process hop costs ~10%),
    with the dlib cascade 5.3 against 4.9 (dlib holds the GIL: threads would not help). Chosen for isolation: a
    native crash in a decoder or detector costs one request a 422, never the service.
    ``classes``: answer among these of the model's classes only (`--five`: the study's five, no neutral);
    ``token``: the bearer token the API requires; ``allowed_hosts``: more names for the Host check
    (``service_hosts``); ``limits``: the connection and deadline settings (upload size and queue from the
    arguments above).
    """
    import uvicorn

    from emotionlab.serving.connections import ConnectionGuard, guarded_protocol

    max_upload_bytes = int(max_upload_mb * MB)
    limits = replace(
        limits or ServiceLimits(),
        max_upload_bytes=max_upload_bytes,
        max_request_bytes=max(2 * max_upload_bytes, ServiceLimits.max_request_bytes),
        queue_size=queue_size,
    )
    # Workers or not, the model goes through `load_recognizer`, the loader `emotionlab predict` uses: a model file
    # predict refuses stops the service before it listens.
    if workers > 0:
        spec = WorkerSpec(model_path, detector, backend, tuple(classes) if classes else None)
        pool = start_process_pool(spec, limits, workers)
    else:
        from emotionlab.inference import load_recognizer

        recognizer = load_recognizer(model_path, detector=detector, backend=backend, classes=classes)
        warm_up(recognizer)
        pool = InferencePool([LocalSlot(recognizer, limits)], pixels_in_flight=limits.max_pixels_in_flight)
    guard = ConnectionGuard(limits)
    hosts = service_hosts(host, allowed_hosts)
    app = create_app(limits=limits, pool=pool, allowed_hosts=hosts, token=token, connections=guard)
    if host not in LOOPBACK_HOSTS and not token:
        print(
            f"warning: listening on {host}: anyone who can reach this address can use the service; "
            "set a token with --token or EMOTIONLAB_TOKEN"
        )
    shown = f"[{host}]" if ":" in host else host
    print(f"emotionlab service on http://{shown}:{port}/ (API docs at /docs; Ctrl+C to stop)", flush=True)
    # uvicorn's h11 protocol with the connection caps and the header deadline; keep-alive as uvicorn's default.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", http=guarded_protocol(guard), timeout_keep_alive=5
    )
    try:
        uvicorn.Server(config).run()
    finally:
        app.state.pool.close()
