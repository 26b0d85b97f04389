"""Inference slots for the service: where an uploaded image meets a ``Recognizer``, off the event loop.

Face detectors (dlib, OpenCV) are not thread-safe: sharing one between FastAPI's threads corrupted memory
(issue 8). Each inference *slot* here owns its own ``Recognizer`` and runs one image at a time: ``LocalSlot``
in this process (``workers=0``), ``ProcessSlot`` in a worker process built by the same loader as
``emotionlab predict`` (``workers=N``). A worker that dies on an image (a native crash) costs that image a
422 and is started again; the server stays up. The worker starts, sets itself up and has its death worded as
every worker of ours (``emotionlab.isolation``); why it keeps its own loop instead of ``IsolatedPool`` is
said there (a model held across requests, one image at a time under a deadline). ``InferencePool`` lends the slots to one request at a time and
bounds the pixels decoded at once over all of them (``PixelBudget``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import traceback
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from PIL import Image
from starlette.datastructures import UploadFile

from emotionlab.data.images import ImageReadError, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.isolation import exit_reason, limit_threads, start_worker, worker_context
from emotionlab.serving.limits import ServiceLimits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker process builds its Recognizer: the arguments of ``load_recognizer``."""

    model_path: str | None = None
    detector: str | None = None
    backend: str = "auto"
    classes: tuple[str, ...] | None = None  # answer among these of the model's classes (`serve --five`)


# ---- one image through a Recognizer (in a slot: this process's or a worker's) ------------------------------


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


def warm_up(recognizer) -> None:
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
        # `serve --five`: the model's own classes, of which it answers among ``labels`` only
        "restricted_from": metadata.get("restricted_from"),
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


# ---- worker processes --------------------------------------------------------------------------------------


# A worker says it has an image before it works on it: a worker that dies before saying so (killed while idle,
# found dead only as the image reached it) died of something else, and the image goes to a new worker.
TAKEN = ("taken",)


def _worker_main(connection, spec: WorkerSpec, limits: ServiceLimits, main_pid: int) -> None:
    """A worker process: build the Recognizer, say ready, then answer ``(name, bytes)`` jobs until EOF: first
    ``TAKEN``, then the image's answer."""
    start_worker(main_pid)  # Ctrl+C stops the service, which stops its workers
    from emotionlab.inference import load_recognizer  # in the worker only: the service may never need it

    try:
        recognizer = load_recognizer(
            spec.model_path, detector=spec.detector, backend=spec.backend, classes=spec.classes
        )
        # One core per worker: the slots are the parallelism. Only libraries the model needed are loaded (the
        # shipped models: neither torch nor OpenCV), so set again now that the model has loaded.
        limit_threads()
        warm_up(recognizer)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which refuses to start
        _answer(connection, ("failed", str(error) or type(error).__name__))
        return
    if not _answer(connection, ("ready", describe_model(recognizer))):
        return
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):  # the server has gone: so do we
            return
        if job is None or not _answer(connection, TAKEN):
            return
        if not _answer(connection, predict_image(recognizer, job[0], job[1], limits)):
            return


def _answer(connection, message) -> bool:
    """Send ``message`` to the server; False if it has gone. When one worker fails to start, the server stops
    and closes every pipe while the others may still be loading: their answer then has no reader, and a
    traceback about it would bury the one line that says what went wrong."""
    try:
        connection.send(message)
        return True
    except OSError:  # BrokenPipeError, ConnectionResetError: nobody to tell
        return False


def _process_context():
    """Workers never start as a plain fork of the server: its threads (uvicorn, OpenCV, torch) may hold locks.
    A fork server that has only imported the inference module starts clean workers fast; else spawn."""
    return worker_context(["emotionlab.inference"])


class ProcessSlot:
    """One worker process with its own Recognizer; started again after it dies.

    Not an ``isolation.IsolatedPool``: that pool maps a list of items and cannot stop one item that overruns;
    a slot keeps its model loaded between requests and kills a worker past ``image_timeout_seconds``."""

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
            args=(child_end, self.spec, self.limits, os.getpid()),
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
            raise EmotionlabError(f"a service worker stopped while starting ({exit_reason(code)})") from None
        if status != "ready":
            self._discard()
            raise EmotionlabError(detail)
        self.model_info = detail

    def run(self, name: str, data: bytes) -> tuple:
        # A worker that dies before it has taken the image (killed while idle, found dead only now, or dying as
        # the image is sent) is replaced and the image given to the new one; a worker that dies while working
        # on it costs this image a 422 (the image may be what killed it: it is not tried again).
        timeout = self.limits.image_timeout_seconds
        for _attempt in range(2):
            if self.process is None or not self.process.is_alive():
                try:
                    self.restart()
                except EmotionlabError as error:
                    return ("refused", 503, f"{name}: no worker available ({error}); try again later")
            try:
                self.connection.send((name, data))
                if not self.connection.poll(timeout):
                    self._discard()
                    return (
                        "refused",
                        422,
                        f"{name}: not taken by its worker within {timeout:.0f} s; stopped",
                    )
                if self.connection.recv() == TAKEN:
                    break
            except (EOFError, OSError):
                pass
            self._discard()
        else:
            return ("refused", 503, f"{name}: no worker available; try again later")
        try:
            if not self.connection.poll(timeout):
                self._discard()
                return ("refused", 422, f"{name}: not processed within {timeout:.0f} s; stopped")
            return self.connection.recv()
        except (EOFError, OSError):
            code = self._discard()
            reason = exit_reason(code)
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


# ---- the pool: slots lent to one request at a time ---------------------------------------------------------


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
