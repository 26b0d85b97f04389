"""The HTTP service: ``emotionlab serve`` -> POST an image, get every face's emotion as JSON; a page to try it.

Safe by default: binds 127.0.0.1, bounds upload size and pixel count, never reads a path a client sends
(images arrive as bytes only), and loads the model once at start-up.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from emotionlab import __version__
from emotionlab.data.images import ImageReadError, read_image

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB: any phone photo, far from a memory problem
DEFAULT_MAX_PIXELS = 40_000_000
MAX_FILES_PER_REQUEST = 16


async def _read_bounded(upload: UploadFile, limit: int) -> bytes:
    """Read an upload in chunks and stop as soon as it exceeds ``limit`` bytes (HTTP 413)."""
    chunks, size = [], 0
    while chunk := await upload.read(1 << 16):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{upload.filename}: upload larger than {limit // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(recognizer, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> FastAPI:
    """A FastAPI app around a loaded ``Recognizer`` (see ``emotionlab.load_model``)."""
    app = FastAPI(title="emotionlab", version=__version__, description="Emotions of the faces in an image.")
    metadata = recognizer.classifier.metadata

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "predict.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/model")
    def model() -> dict:
        return {
            "architecture": metadata.get("architecture"),
            "labels": recognizer.labels,
            "input_size": metadata.get("input_size"),
            "faces": metadata.get("faces"),
            "detector": recognizer.detector_name,
            "max_upload_bytes": max_upload_bytes,
        }

    @app.post("/predict")
    async def predict(request: Request, files: list[UploadFile]) -> dict:
        """One record per uploaded image: faces (box, label, probabilities), the largest face's label, no_face."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload_bytes * min(len(files), MAX_FILES_PER_REQUEST) + 65536:
            raise HTTPException(413, "request too large")
        if len(files) > MAX_FILES_PER_REQUEST:
            raise HTTPException(413, f"at most {MAX_FILES_PER_REQUEST} images per request")
        images = []
        for upload in files:
            data = await _read_bounded(upload, max_upload_bytes)
            name = Path(upload.filename or "upload").name  # echoed back only; never used to open anything
            try:
                images.append((name, read_image(data, max_pixels=max_pixels, name=name)))
            except ImageReadError as error:
                raise HTTPException(400, str(error)) from error

        def run() -> list[dict]:
            records = []
            for name, image in images:
                record = recognizer.predict(image)
                record["path"] = name
                record["size"] = list(image.size)
                records.append(record)
            return records

        return {"results": await run_in_threadpool(run)}

    return app


def serve(model_path: str | None, *, host: str = "127.0.0.1", port: int = 8000, detector: str | None = None,
          backend: str = "torch", max_upload_mb: float = 10) -> None:
    """Load the model once and serve it with uvicorn."""
    import uvicorn

    from emotionlab.inference import load_recognizer

    recognizer = load_recognizer(model_path, detector=detector, backend=backend)
    app = create_app(recognizer, max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: anyone who can reach this address can use the service (no password)")
    print(f"emotionlab service on http://{host}:{port}/ (API docs at /docs; Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
