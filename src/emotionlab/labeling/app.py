"""The labelling page: a FastAPI app in front of one ``LabelSession``.

The server never opens a path a client sent: images are addressed by their index in the session's own list
(``/api/image/{id}``), and unknown ids get 404. Every action is journalled (flushed and fsync'd) before the
response goes out. Run it with ``emotionlab label FOLDER``; tests build it with ``create_label_app``.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel

from emotionlab.data.images import ImageReadError, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.labeling.folder import display_bytes, scan_images
from emotionlab.labeling.session import LabelSession, StaleImageError

log = logging.getLogger("emotionlab")

STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Suggestions and encoded images kept in memory: enough for the current, next and a few undone images.
CACHE_SIZE = 32


class Predictor(Protocol):
    """What ``emotionlab.load_model(path)`` returns, as far as the labelling page needs it."""

    def predict(self, image: Any) -> dict: ...


class LabelRequest(BaseModel):
    id: int
    label: str


class SkipRequest(BaseModel):
    id: int


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def create_label_app(
    session: LabelSession,
    *,
    predictor: Predictor | None = None,
    allowed_hosts: Iterable[str] | None = LOOPBACK_HOSTS,
) -> FastAPI:
    """Build the labelling app for ``session``.

    ``predictor`` (an object with ``predict(PIL image) -> {"label", "probabilities"}``) adds the model's
    suggestion. ``allowed_hosts`` is checked against the Host header, so a web page elsewhere cannot reach
    this server through DNS rebinding; pass None to accept any host (when serving on a network address).
    """
    app = FastAPI(title="emotionlab label", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the input, and JSON cannot carry the NaN or Infinity Python's parser
        # accepts (a 500): say what is wrong without it.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'body'}: {problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    # Image URLs carry this token: ids are stable for one server run, so the browser may cache them that long.
    token = secrets.token_hex(4)
    images = _LRU(CACHE_SIZE)
    suggestions = _LRU(CACHE_SIZE)
    cache_lock = threading.Lock()
    predict_lock = threading.Lock()  # models are not assumed to be thread-safe
    hosts = None if allowed_hosts is None else {host.lower() for host in allowed_hosts}

    @app.middleware("http")
    async def check_host(request: Request, call_next):
        if hosts is not None:
            host = request.headers.get("host", "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in hosts:
                return JSONResponse({"detail": f"host {host!r} not allowed"}, status_code=403)
        return await call_next(request)

    def state(snapshot: dict) -> dict:
        for key in ("current", "next"):
            if snapshot[key] is not None:
                snapshot[key]["url"] = f"/api/image/{snapshot[key]['id']}?t={token}"
        snapshot["has_model"] = predictor is not None or bool(session.state.scores)
        return snapshot

    def no_cache(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return no_cache(FileResponse(STATIC / "label.html", media_type="text/html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        # A fixed list, not a path join: nothing outside these files can be asked for.
        files = {"label.js": "text/javascript", "label.css": "text/css"}
        if name not in files:
            raise HTTPException(404, "not found")
        return no_cache(FileResponse(STATIC / name, media_type=files[name]))

    @app.get("/api/state")
    def get_state() -> Response:
        return no_cache(JSONResponse(state(session.snapshot())))

    def act(action) -> Response:
        try:
            return no_cache(JSONResponse(state(action())))
        except KeyError as error:
            raise HTTPException(404, "unknown image id") from error
        except StaleImageError as error:
            body = state(session.snapshot())
            body["detail"] = str(error)
            return no_cache(JSONResponse(body, status_code=409))
        except EmotionlabError as error:
            raise HTTPException(400, str(error)) from error

    @app.post("/api/label")
    def post_label(request: LabelRequest) -> Response:
        with cache_lock:  # what the page showed for this photo goes into the journal with the label
            shown = suggestions.get(request.id)
        return act(lambda: session.label(request.id, request.label, suggestion=shown))

    @app.post("/api/skip")
    def post_skip(request: SkipRequest) -> Response:
        return act(lambda: session.skip(request.id))

    @app.post("/api/undo")
    def post_undo() -> Response:
        return act(session.undo)

    def image_path(image_id: int) -> Path:
        try:
            return session.image_path(image_id)
        except KeyError as error:
            raise HTTPException(404, "unknown image id") from error

    @app.get("/api/image/{image_id}")
    def get_image(image_id: int) -> Response:
        path = image_path(image_id)
        with cache_lock:
            cached = images.get(image_id)
        if cached is None:
            try:
                cached = display_bytes(path)
            except ImageReadError as error:  # changed or removed since the scan
                raise HTTPException(404, f"cannot read this image now: {error.reason}") from error
            with cache_lock:
                images.put(image_id, cached)
        data, media_type = cached
        return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/suggestion/{image_id}")
    def get_suggestion(image_id: int) -> Response:
        path = image_path(image_id)
        ranked = session.suggestion(session.images.relpaths[image_id])
        if ranked is not None:  # from the journalled ranking: no model call
            return no_cache(JSONResponse({**ranked, "id": image_id, "no_face": False, "error": None}))
        if predictor is None:
            raise HTTPException(404, "no model given (start with --model MODEL)")
        with cache_lock:
            cached = suggestions.get(image_id)
        if cached is None:
            cached = _suggest(predictor, predict_lock, path, session.classes)
            cached.update(id=image_id, model=_model_name(predictor), order="path", round=0)
            with cache_lock:
                suggestions.put(image_id, cached)
        return no_cache(JSONResponse(cached))

    return app


def _model_name(predictor: Predictor) -> str | None:
    """The model file's name, for the journal: what produced a suggestion."""
    path = getattr(getattr(predictor, "classifier", None), "path", None)
    return Path(path).name if path else type(predictor).__name__


def suggesting_model(model: str | Path, classes: Sequence[str]):
    """The model as a ``Recognizer`` that suggests among the labelling classes it knows: a model that also knows
    neutral, labelling the study's five emotions, suggests one of the five (``restrict_labels``, renormalised).
    All of its classes when it knows fewer than two of them (its suggestion is then shown as outside them)."""
    from emotionlab.inference import Recognizer, load_classifier
    from emotionlab.inference.classifier import restrict_labels

    classifier = load_classifier(model)
    shared = [label for label in classifier.labels if label in classes]
    return Recognizer(restrict_labels(classifier, shared if len(shared) >= 2 else None))


def _suggest(predictor: Predictor, lock: threading.Lock, path: Path, classes: list[str]) -> dict:
    """The model's label and confidence for one image; a failure becomes a message, never a broken page."""
    try:
        image = read_image(path)
        with lock:
            result = predictor.predict(image)
    except Exception as error:  # noqa: BLE001 (a model failing on one image must not stop the labelling)
        log.warning("model failed on %s: %s", path, error)
        return {"label": None, "confidence": None, "top": [], "error": f"model failed: {error}"}
    label = result.get("label")
    probabilities = {str(name): float(value) for name, value in (result.get("probabilities") or {}).items()}
    top = sorted(probabilities.items(), key=lambda item: -item[1])[:3]
    return {
        "label": label,
        "no_face": bool(result.get("no_face")),
        "confidence": probabilities.get(label) if label is not None else None,
        "top": top,
        "in_classes": label in classes,
        "error": None if label is not None else (result.get("error") or "no suggestion (no face found?)"),
    }


def _bind(host: str, port: int):
    """Bind and listen before printing the URL, so the printed port (even for --port 0) is the real one."""

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise EmotionlabError(f"--host {host}: not an address of this machine ({error})") from error
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise EmotionlabError(
            f"{host}:{port}: cannot listen there ({error.strerror}); pass another --port"
        ) from error
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_labels(
    folder: str | Path,
    classes: list[str],
    *,
    journal: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    model: str | Path | None = None,
    order: str = "path",
    retrain_every: int | None = None,
    review: str | Path | None = None,
    out=print,
) -> None:
    """The `emotionlab label FOLDER` command: scan, resume from the journal, serve the page until Ctrl+C.

    ``order`` and ``retrain_every`` put the model in the loop (``ordering.py``); ``review`` shows only the photos
    of a suspects CSV, most suspicious first, to confirm or relabel."""

    import uvicorn

    from emotionlab.labeling.journal import check_outside, default_journal_path

    journal = Path(journal) if journal is not None else default_journal_path(folder)
    if not Path(folder).is_dir():
        raise EmotionlabError(f"{folder}: folder not found")
    check_outside(journal, folder, "labelling journal")  # fail before a long scan
    started = time.perf_counter()
    out(f"scanning {folder} ...")
    images = scan_images(folder)
    out(f"found {len(images.relpaths)} image(s) in {time.perf_counter() - started:.1f} s")
    if images.unreadable:
        out(f"skipping {len(images.unreadable)} file(s) that are not usable images:")
        for relpath, reason in images.unreadable[:50]:
            out(f"  {relpath}: {reason}")
        if len(images.unreadable) > 50:
            out(f"  ... and {len(images.unreadable) - 50} more")
    if not images.relpaths:
        raise EmotionlabError(f"{folder}: no images found (looked in all subfolders)")
    predictor = None
    ordering = None
    if review is not None:
        from emotionlab.labeling.ordering import read_review

        ordering = read_review(review, images.relpaths)
        chosen = {relpath for relpath, _, _ in ordering.rows}
        images = replace(images, relpaths=[relpath for relpath in images.relpaths if relpath in chosen])
        out(f"reviewing {len(images.relpaths)} suspect(s) from {review}, most suspicious first")
    elif order != "path" or retrain_every:
        from emotionlab.labeling.ordering import Ordering, score_folder

        started = time.perf_counter()
        out(
            f"scoring {len(images.relpaths)} image(s) with {model or 'the default model'} (cached for next time) ..."
        )
        scores = score_folder(images.relpaths, images.root, model)
        out(f"scored in {time.perf_counter() - started:.1f} s; order: {order}")
        ordering = Ordering(order, classes=classes, scores=scores, retrain_every=retrain_every)
    elif model is not None:
        predictor = suggesting_model(model, classes)
    sock = _bind(host, port)
    session = LabelSession(folder, classes, journal, images=images, ordering=ordering)
    try:
        for message in session.warnings():
            out(f"warning: {message}")
        snapshot = session.snapshot()
        out(f"journal: {session.journal_path} ({session.resumed_actions} earlier action(s) replayed)")
        if ordering is not None and retrain_every:
            out(f"the head is refitted in the background every {retrain_every} new label(s)")
        out(f"{snapshot['done']} labelled, {snapshot['left']} left")
        loopback = host in LOOPBACK_HOSTS
        if not loopback:
            out(
                f"warning: listening on {host}: anyone who can reach this machine can label, there is no password"
            )
        real_port = sock.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        out(f"open http://{shown}:{real_port}/ in a browser (Ctrl+C to stop)")
        sys.stdout.flush()  # whoever reads our output through a pipe needs the URL now
        app = create_label_app(
            session, predictor=predictor, allowed_hosts=LOOPBACK_HOSTS if loopback else None
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        # uvicorn stops cleanly on SIGTERM, then re-raises it: exit through `finally` to print the summary.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        done_now = session.snapshot()["done"]
        session.wait_for_refit(5)  # a refit about to finish is journalled; a slower one is redone next time
        session.close()
        sock.close()
        out(f"stopped: {done_now} labelled in total; journal: {session.journal_path}")
        out(
            f"copy them into class folders with: emotionlab label {folder} --journal {session.journal_path} --apply DEST"
        )
