"""Fault isolation for per-item work: one bad file costs one error record, never the run.

- ``error_reason(error)``: any exception as a one-line reason for an ``error`` record.
- ``isolated_map(function, items, workers=N)``: ``function(item)`` for every item in worker processes, results
  in input order, and a worker that dies (segfault, abort, OOM kill) is replaced: the items it may have held
  are run again one at a time in a fresh process, so the culprit is found, reported through ``on_error(item,
  "worker died ...")`` and every other item still gets its result.
- ``printable(text)``: a name safe to print on any terminal (file names need not be UTF-8).

Native code (dlib, OpenCV, Pillow's decoders) can take the whole process down on one image; a
``concurrent.futures`` pool reports that as ``BrokenProcessPool`` for every pending task without saying which
task did it, hence the one-at-a-time retry of the suspects.

One mechanism for every child process of ours: ``worker_context`` (how it starts: a fork server, never a plain
fork), ``start_worker`` (what it does first: Ctrl+C ignored, one thread, gone with its parent) and
``exit_reason`` (how its death is worded). A list of items goes through ``IsolatedPool`` (predict, evaluate,
``data check``, ``data faces``, Ray's retried tasks). The service's ``serving.workers.ProcessSlot`` and the
labeller's refit worker build on the same three but keep their own loop, and must: their worker holds a model
across requests (loaded once, its failure reported before the service listens), answers one image at a time
to a request thread that waits with a deadline, and is killed when it overruns it. A ``ProcessPoolExecutor``
can neither stop one overrunning task nor keep a worker between two ``map`` calls.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from multiprocessing import forkserver

log = logging.getLogger("emotionlab")


def error_reason(error: BaseException, *, stage: str = "") -> str:
    """``"stage: Type: message"`` on one line (native libraries put newlines and indentation in messages)."""
    from emotionlab.errors import EmotionlabError

    message = " ".join(str(error).split())
    if not isinstance(error, EmotionlabError):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{stage}: {message}" if stage else message


def printable(text: str) -> str:
    """``text`` with undecodable bytes of a file name (``\\udcxx`` surrogates) shown as ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ---- worker processes -----------------------------------------------------------------------------------


def worker_context(preload: Sequence[str] = ()):
    """How worker processes start: never a plain fork of this process. A child forked while OpenCV's (or
    dlib's, ORT's) thread pool runs inherits its locks held and deadlocks (seen: cv2.setNumThreads hanging
    in every worker). A fork server that has only imported ``preload`` gives clean workers that start fast;
    where there is none (Windows), spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    _start_fork_server_deaf_to_ctrl_c()
    return context


def _start_fork_server_deaf_to_ctrl_c() -> None:
    """Start the fork server with Ctrl+C ignored (the setting survives its exec): it imports the preloaded
    modules (torch: seconds) before it ignores SIGINT itself, and a Ctrl+C meanwhile printed its traceback.
    The main process ignores Ctrl+C only while the server process is started, not while it imports."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_when_gone(main_pid: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(main_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the number now belongs to another user's process: ours is gone
            os._exit(0)


def start_worker(main_pid: int) -> None:
    """What every worker process of ours does first."""
    # Ctrl+C reaches the whole process group: the main process says what was kept and stops the workers; a
    # worker that took it too would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads()
    # A worker's parent is the fork server: a killed main process (kill -9, the OOM killer) would otherwise
    # leave its workers running.
    threading.Thread(target=_exit_when_gone, args=(main_pid,), daemon=True).start()


def limit_threads() -> None:
    """One thread per worker: the workers are the parallelism, threads inside one would fight over the cores.
    Only libraries already imported are set: importing torch in a worker that never needs it costs seconds."""
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def exit_reason(code: int | None) -> str:
    """How a worker process ended, from its exit code: ``"killed by SIGSEGV"``, ``"exit code 3"``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


_FUNCTION: Callable | None = None


def _worker_init(main_pid: int, function: Callable, initializer: Callable | None) -> None:
    global _FUNCTION
    start_worker(main_pid)
    if initializer is not None:
        initializer()
    _FUNCTION = function


class _Failed:
    """What a worker returns for an item whose function raised (the function should not, but may)."""

    def __init__(self, reason: str):
        self.reason = reason


def _run_chunk(chunk: list) -> list:
    results = []
    for item in chunk:
        try:
            results.append(_FUNCTION(item))
        except Exception as error:  # noqa: BLE001 - becomes this item's error, the run goes on
            results.append(_Failed(error_reason(error)))
    return results


def _death_reason(pool: ProcessPoolExecutor) -> str:
    """Why the pool broke, from the exit codes of its processes (a private attribute, read defensively)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    # The pool's manager thread joins the dead worker at the same moment: with a fork server the exit status
    # is read once from a pipe, and a second reader racing it gets end-of-file and reports 255. Let that thread
    # finish first; the status it read is then kept on the process object.
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and manager is not threading.current_thread():
        manager.join(timeout=10.0)
    codes = []
    for process in processes:
        code = getattr(process, "exitcode", None)
        if code:
            codes.append(code)
    signalled = [code for code in codes if code < 0]  # a signal says more than an exit code
    return f"worker died ({exit_reason((signalled or codes)[0])})" if codes else "worker died"


class IsolatedPool:
    """A process pool that outlives its workers: see ``isolated_map``."""

    def __init__(
        self,
        function: Callable,
        *,
        workers: int,
        on_error: Callable[[object, str], object],
        initializer: Callable | None = None,
        preload: Sequence[str] = (),
    ):
        self.function, self.workers, self.on_error = function, max(1, workers), on_error
        self.initializer = initializer
        self.context = worker_context(preload)
        self.deaths = 0  # workers that died (each replaced)
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=self.context,
            initializer=_worker_init,
            initargs=(os.getpid(), self.function, self.initializer),
        )

    def _pool_for_work(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = self._new_pool(self.workers)
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor | None) -> None:
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # a worker still busy on a cancelled run must not keep a core
            try:
                if process.is_alive():
                    process.kill()
            except (OSError, ValueError, AttributeError):
                pass

    def close(self) -> None:
        self._discard(self._pool)
        self._pool = None

    def _convert(self, item, result):
        return self.on_error(item, result.reason) if isinstance(result, _Failed) else result

    def _isolate(self, items: list) -> list:
        """Each item alone in a fresh one-worker pool: the one that kills its worker is the culprit."""
        results = []
        pool = None
        for item in items:
            if pool is None:
                pool = self._new_pool(1)
            try:
                results.append(self._convert(item, pool.submit(_run_chunk, [item]).result()[0]))
            except BrokenProcessPool:
                self.deaths += 1
                reason = _death_reason(pool)
                name = printable(str(getattr(item, "path", item)))  # a path, or a sample's path
                log.warning("%s: %s; reported as its error, the run goes on", name, reason)
                results.append(self.on_error(item, reason))
                self._discard(pool)
                pool = None
        self._discard(pool)
        return results

    def map(self, items: Iterable, *, chunk_size: int = 4, prefetch: int = 4) -> Iterator:
        """Results of ``function(item)`` in the order of ``items``; ``workers * prefetch`` chunks in flight."""
        source = iter(items)
        chunks = iter(lambda: list(islice(source, chunk_size)), [])
        pending: deque[tuple[list, Future]] = deque()
        limit = self.workers * prefetch
        try:
            while True:
                while len(pending) < limit:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    pending.append((chunk, self._submit(chunk)))
                if not pending:
                    return
                chunk, future = pending.popleft()
                try:
                    results = future.result()
                except BrokenProcessPool:
                    # Every chunk not finished when the pool broke may hold the culprit: run them again alone.
                    self.deaths += 1
                    log.warning("%s; finding the image that did it", _death_reason(self._pool))
                    done_before: list[tuple[list, list | None]] = []
                    for other_chunk, other in pending:
                        ok = other.done() and not other.cancelled() and other.exception() is None
                        done_before.append((other_chunk, other.result() if ok else None))
                    pending.clear()
                    self._discard(self._pool)
                    self._pool = None
                    yield from self._isolate(chunk)
                    for other_chunk, other_results in done_before:
                        if other_results is not None:
                            yield from (
                                self._convert(i, r) for i, r in zip(other_chunk, other_results, strict=True)
                            )
                        else:
                            yield from self._isolate(other_chunk)
                    continue
                yield from (self._convert(item, result) for item, result in zip(chunk, results, strict=True))
        finally:
            for _, future in pending:
                future.cancel()
            self.close()

    def _submit(self, chunk: list) -> Future:
        try:
            return self._pool_for_work().submit(_run_chunk, chunk)
        except BrokenProcessPool:  # broke between two submissions: a fresh pool takes the work
            self._discard(self._pool)
            self._pool = None
            return self._pool_for_work().submit(_run_chunk, chunk)


def isolated_map(
    function: Callable,
    items: Iterable,
    *,
    workers: int,
    on_error: Callable[[object, str], object],
    initializer: Callable | None = None,
    preload: Sequence[str] = (),
    chunk_size: int = 4,
    prefetch: int = 4,
) -> Iterator:
    """``function(item)`` for each item in ``workers`` processes, in order. An exception inside ``function``
    or a dead worker becomes ``on_error(item, reason)`` for that item only; the run goes on.

    ``function`` (picklable, e.g. a module-level function or an object with ``__call__``) is sent to each
    worker once; ``initializer()`` runs in each worker first. ``preload``: modules the fork server imports.
    """
    pool = IsolatedPool(
        function, workers=workers, on_error=on_error, initializer=initializer, preload=preload
    )
    yield from pool.map(items, chunk_size=chunk_size, prefetch=prefetch)
