"""`emotionlab predict --engine ray`: the images of a run go through Ray Data (``emotionlab.inference.ray``)
instead of this process and its worker processes. Everything else is the plain job's (``cli.predict``): the
inputs, shards, --resume, the record writers, videos. Records arrive in input order and are written (and
flushed) one by one as Ray hands them over, so a run that dies keeps them and --resume continues after them."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from emotionlab.errors import EmotionlabError

log = logging.getLogger("emotionlab")
# The predict options ``ray_results`` takes (the fields of ``cli.predict.PredictOptions`` of the same names).
RAY_OPTIONS = (
    "address",
    "workers",
    "actors",
    "model",
    "backend",
    "int8",
    "detect",
    "detector",
    "max_faces",
    "batch_size",
    "classes",
)


def check_ray_options(*, annotate: Path | None, camera: int | None) -> None:
    """One line for options the Ray engine cannot take, and for a missing Ray, before any model loads."""
    if camera is not None:
        raise EmotionlabError("--engine ray reads files, not a camera; use --engine local for --camera")
    if annotate is not None:
        raise EmotionlabError("--annotate draws in this process: use it with --engine local")
    from emotionlab.inference.ray import import_ray

    import_ray()  # "Ray is not installed: ..." now, not after the model has loaded


def ray_results(
    images: Sequence[Path],
    *,
    address: str | None,
    workers: int,
    actors: int,
    progress: bool,
    **load,
) -> Iterator[tuple[None, dict]]:
    """``(None, record)`` for each image, in order (the plain job's ``(prepared image, record)`` pairs; Ray's
    prepared images stay in Ray). Joins ``address`` / ``$RAY_ADDRESS``, else starts a local Ray instance with
    ``workers`` CPUs (0: every CPU), which is stopped at the end. ``load``: the model and face options of
    ``predict_dataset`` (model, backend, int8, detect, detector, max_faces, batch_size, classes)."""

    from emotionlab.inference import progress_bar
    from emotionlab.inference.ray import connect, first_line, predict_dataset
    from emotionlab.isolation import printable

    if not images:
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if actors < 1:
        raise EmotionlabError("--actors must be at least 1")
    if address is None and workers and workers < actors + 1:
        raise EmotionlabError(
            f"--workers {workers} with --actors {actors}: a local Ray instance needs a CPU for each actor and "
            f"at least one more for decoding and detection; use --workers {actors + 1} or more"
        )
    start = time.perf_counter()
    started = connect(address, num_cpus=workers or None)
    import ray  # imported by connect already

    _quiet_ray(ray)
    where = f"joined the cluster at {address}" if address else "started a local instance"
    if not started:
        where = "connected already"
    cpus = int(ray.cluster_resources().get("CPU", 0))
    print(f"ray: {where} in {time.perf_counter() - start:.1f} s ({cpus} CPUs)", file=sys.stderr, flush=True)
    try:
        dataset = predict_dataset(images, actors=actors, **load)
        rows = dataset.iter_rows()
        for row in progress_bar(rows, total=len(images), description="predicting (ray)", enabled=progress):
            record = json.loads(row["record"])
            if record.get("error", "").startswith("worker died"):
                # The plain path's warning for an image that killed its process, which Ray keeps in a worker's log
                log.warning(
                    "%s: %s; reported as its error, the run goes on",
                    printable(record["path"]),
                    record["error"],
                )
            yield None, record
    except ray.exceptions.RayError as error:
        raise EmotionlabError(f"Ray stopped the run: {first_line(error)}") from None
    finally:
        if started:
            ray.shutdown()


def _quiet_ray(ray) -> None:
    """Our progress bar and records on the terminal, not Ray Data's per-operator progress and INFO lines."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Ray prints its cluster's error messages ("(raylet) A worker died ...", "Task failed ... will be retried")
    # on the driver's stdout, whatever log_to_driver says: they would land among records written to stdout.
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is not None and not getattr(original, "to_stderr", False):

        def print_to_stdstream(data, *args, **kwargs):
            if data.get("pid") == "raylet":
                data = {**data, "is_err": True}
            return original(data, *args, **kwargs)

        print_to_stdstream.to_stderr = True
        worker.print_to_stdstream = print_to_stdstream
