"""Batch prediction on Ray Data: the same records as ``Recognizer.predict_many``, spread over a Ray cluster.

``predict_records(paths, model=...)`` yields one record per path, in the order given, each exactly the record
the plain path (``emotionlab predict``, ``Recognizer.predict_many``) gives for that file; ``predict_dataset``
returns the lazy ``ray.data.Dataset`` behind it (columns ``index`` and ``record``, one jsonl line) for a user
who wants to go on in Ray. Two stages:

- decoding, face detection and cropping (``FacePreparer``, no model inside) run as Ray tasks, a few images a
  task, on any CPU of the cluster;
- classification runs in a pool of actors (``map_batches`` with a callable class), each loading the model once
  (PyTorch or ONNX Runtime, as ``--backend`` says).

Ray is an optional dependency (``pip install 'emotionlab[ray]'``) imported only when these functions run. On a
cluster every node reads the input paths itself (a shared file system or the same mount everywhere); the model
file too (shipped models are found by name in every installation).

Fault tolerance: a task whose worker process dies is run again by Ray (``max_retries``), an actor that dies is
restarted and its batch resent. A task run again prepares its images one at a time in a child process
(``emotionlab.isolation``, as the plain path's ``--workers`` do), so an image that kills its process every time
(native code crashing on it) gets the plain path's error record (``"worker died (killed by SIGSEGV)"``) and the
run goes on, while a task whose worker died for another reason (a node lost) simply succeeds the second time.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError

INSTALL_HINT = "Ray is not installed: pip install 'emotionlab[ray]'"
# Images per preparation task: enough to amortise a task's scheduling (~1 ms) against decoding and detection
# (~10-50 ms an image), few enough that a retried task redoes little work.
PREPARE_BATCH = 8
# Attempts after a worker process dies; Ray Data's default is unlimited, which turns an image that crashes its
# worker every time into an endless loop.
MAX_RETRIES = 3


def import_ray():
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise EmotionlabError(INSTALL_HINT) from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local Ray instance with
    ``num_cpus`` CPUs (None: all of them). True when this call started or joined one, False when this
    process was connected already (then nothing changes)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus, **options)
    except ConnectionError as error:
        raise EmotionlabError(f"Ray cluster at {address}: {first_line(error)}") from None
    return True


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _StartedBatches:
    """Ray actor (no CPU): which preparation batches have started. Ray runs a task again only when its worker
    died (or its output was lost with a node), so a batch seen before is a retry, and the image that killed
    the worker may be in it."""

    def __init__(self, count: int):
        self.started = bytearray(count)  # one byte per input: a batch is known by its first image's index

    def begin(self, first_index: int) -> bool:
        """Mark the batch started; True when it had started before."""
        again = bool(self.started[first_index])
        self.started[first_index] = 1
        return again


def _died_on(source, reason: str):
    from emotionlab.inference import PreparedImage

    return PreparedImage(str(source), error=reason)


def _is_retry(started, first_index: int) -> bool:
    import ray

    try:
        return ray.get(started.begin.remote(first_index))
    except ray.exceptions.RayError:
        return True  # the bookkeeping actor is gone: isolating is slower but always right


def _prepare_batch(batch: dict, *, preparer, started) -> dict:
    """Ray task: decode, detect and crop a few images (``FacePreparer``); each result travels pickled. The
    first attempt prepares them here; a retry (this batch's worker died) prepares them one at a time in a
    child process, so an image that kills its process every time becomes that image's error record, exactly
    as on the plain path, instead of using up Ray's retries and stopping the run."""
    from emotionlab.isolation import isolated_map

    paths = [os.fsdecode(path) for path in batch["path"]]
    if _is_retry(started, int(batch["index"][0])):
        prepared = isolated_map(
            preparer,
            paths,
            workers=1,
            on_error=_died_on,
            preload=["emotionlab.inference", "emotionlab.faces"],  # as the plain path's workers
            chunk_size=1,
        )
    else:
        prepared = (preparer(path) for path in paths)
    blobs = [pickle.dumps(item) for item in prepared]
    return {"index": batch["index"], "prepared": np.array(blobs, dtype=object)}


class _Classify:
    """Ray actor: one model, loaded once; prepared images in, one jsonl record line each out."""

    def __init__(
        self,
        model: str | None,
        *,
        backend: str,
        int8: bool,
        batch_size: int,
        classes: list[str] | None = None,
    ):
        from emotionlab.inference import Recognizer, load_classifier
        from emotionlab.inference.classifier import restrict_labels

        # detect=False: this Recognizer only turns probabilities into records; faces were found upstream.
        classifier = restrict_labels(load_classifier(model, backend=backend, int8=int8), classes)
        self.recognizer = Recognizer(classifier, detect=False)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        items = [pickle.loads(blob) for blob in batch["prepared"]]
        records = [
            json.dumps(record) for _, record in self.recognizer.classify(items, batch_size=self.batch_size)
        ]
        return {"index": batch["index"], "record": np.array(records, dtype=object)}


def _model_for_actors(model: str | Path | None) -> str:
    """What the actors load: a shipped model by its short name (found in every installation, wherever it
    is), any other model file by its absolute path (actors may start in another folder)."""
    from emotionlab.inference import ASSETS, SHIPPED_MODELS, resolve_model_path

    path = resolve_model_path(model).resolve()
    for name, file_name in SHIPPED_MODELS.items():
        if path == (ASSETS / file_name).resolve():
            return name
    return str(path)


def predict_dataset(
    paths: Sequence[str | Path],
    *,
    model: str | Path | None = None,
    backend: str = "auto",
    int8: bool = False,
    detect: bool | None = None,
    detector=None,
    max_faces: int | None = None,
    batch_size: int = 32,
    actors: int = 1,
    classes: list[str] | None = None,
    prepare_batch: int = PREPARE_BATCH,
    max_retries: int = MAX_RETRIES,
):
    """A lazy ``ray.data.Dataset`` of the records of ``paths``: columns ``index`` (the position in ``paths``)
    and ``record`` (one jsonl line, exactly as ``emotionlab predict --format jsonl`` writes it), in the order
    of ``paths``. ``detector`` is a name or a picklable object with ``detect(image)``; ``actors`` models
    classify at once; ``classes``: answer among these of the model's classes only (``load_recognizer``).
    Starts a local Ray instance unless this process is connected to one (``connect``)."""
    from emotionlab.inference import load_recognizer

    ray = import_ray()
    if batch_size < 1 or actors < 1 or prepare_batch < 1:
        raise EmotionlabError("batch size, actors and images per task must each be at least 1")
    # Loaded here once: a bad model file or option is one line before Ray starts anything, and the preparer
    # (crop settings, transform, detector) is the recognizer's own.
    recognizer = load_recognizer(
        model,
        detect=detect,
        detector=detector,
        backend=backend,
        int8=int8,
        max_faces=max_faces,
        classes=classes,
    )
    preparer = recognizer.preparer()
    items = [{"index": index, "path": os.fsencode(str(path))} for index, path in enumerate(paths)]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // prepare_batch)))
    # Beside the driver (soft: anywhere if it cannot be there): losing the driver's node ends the run anyway.
    here = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=True
    )
    started = ray.remote(_StartedBatches).options(num_cpus=0, scheduling_strategy=here).remote(len(items))
    # Records come out in input order (a slow image holds back the ones after it, not the work on them).
    dataset.context.execution_options.preserve_order = True
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing retry settings as ray_remote_args but has no named parameter for them yet.
        warnings.filterwarnings("ignore", ".*ray_remote_args.*deprecated", category=Warning)
        dataset = dataset.map_batches(
            _prepare_batch,
            fn_kwargs={"preparer": preparer, "started": started},
            batch_size=prepare_batch,
            num_cpus=1,
            max_retries=max_retries,  # a task whose worker died runs again, its images isolated; a few times at most
        )
        return dataset.map_batches(
            _Classify,
            # The model by name or path, loaded on the actor's node: the shipped models are in every
            # installation; a model file must be at the same path there (a shared file system), as the images.
            fn_constructor_args=(_model_for_actors(model),),
            fn_constructor_kwargs={
                "backend": backend,
                "int8": int8,
                "batch_size": batch_size,
                "classes": classes,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            max_restarts=-1,  # a dead actor is replaced ...
            max_task_retries=max_retries,  # ... and its batch sent again, a few times at most
        )


def predict_records(paths: Sequence[str | Path], **options) -> Iterator[dict]:
    """The record of each path, in order, as ``Recognizer.predict_many`` gives it; options as
    ``predict_dataset``."""
    for row in predict_dataset(paths, **options).iter_rows():
        yield json.loads(row["record"])
