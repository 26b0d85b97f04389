"""Person-aware grouping: which photos show the same person, so that a split can keep each person on one side.

The duplicate check (``audit.py``) finds copies of one picture; it does not find *other* photos of the same
person, and a model tested on a person it trained on scores higher than it will on strangers. Here every face
gets a 128-number embedding from dlib's face-recognition network (a ResNet trained so that two photos of one
person lie closer than 0.6 apart, Euclidean), faces closer than ``DEFAULT_PERSON_THRESHOLD`` are joined
transitively (union-find), and an image with no face, or no near face, is a person of its own.

- Faces are found with the project's dataset detector (``faces.PREPARE_DETECTOR``, through the face-crop cache),
  the largest face per image; dlib's 5-point shape predictor aligns a 150 px chip for the network.
- Model files: ``dlib_face_recognition_resnet_model_v1.dat`` and ``shape_predictor_5_face_landmarks.dat`` from
  the ``face-recognition-models`` package (found without importing it, ``faces.dlib_model_file``). The package
  ships them under CC0 1.0 Universal (its LICENSE file; its description: "created by Davis King ... licensed in
  the public domain or under CC0 1.0"), so they may be used and redistributed for any purpose.
- Embeddings are cached by the SHA-256 of the file's bytes beside the face crops (``faces.default_cache_dir()``),
  never inside a dataset: a second audit or split of the same photos computes nothing.
- dlib's objects are not safe to share between threads: every call into them takes one lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotionlab.data.duplicates import union_ids
from emotionlab.data.images import ImageReadError, read_image
from emotionlab.faces import (
    PREPARATION_VERSION,
    PREPARE_DETECTOR,
    FaceCropConfig,
    FaceCropper,
    as_rgb_array,
    default_cache_dir,
    dlib_model_file,
)
from emotionlab.fileio import write_atomic
from emotionlab.isolation import error_reason
from emotionlab.labels import SPLITS

log = logging.getLogger("emotionlab")

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
MODEL_LICENCE = "CC0 1.0 Universal (face-recognition-models LICENSE; models by Davis King, dlib)"

# Euclidean distance below which two faces count as one person, joined transitively. dlib's 0.6 is a rule for
# ONE pair (99.38% on LFW); as a transitive rule it chains almost everyone on the seed photos (0.6: 1054 of
# the 1087 faces in one group). Nearest-neighbour pairs looked at side by side there: below 0.30 10 of 10 the
# same person, 0.30-0.35 every adult pair the same, 0.35-0.40 4 of 6 adult pairs, 0.40-0.45 at most 1 of 10,
# 0.45-0.50 none; the largest group at 0.40 is 20 babies and toddlers (the network was trained on adults and
# does not tell infants apart). benchmarks/people.py -> benchmarks/results/people.json.
DEFAULT_PERSON_THRESHOLD = 0.4

EMBEDDING_VERSION = 1  # bump when the way an embedding is made changes (chip size, padding, jitter)
CHIP_SIZE = 150  # the network's input: dlib's aligned face chip
CHIP_PADDING = 0.25  # dlib's default padding around the landmarks

_DLIB_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    return (
        dlib.shape_predictor(str(dlib_model_file(LANDMARK_MODEL))),
        dlib.face_recognition_model_v1(str(dlib_model_file(RECOGNITION_MODEL))),
    )


def face_chip(image, box) -> np.ndarray:
    """The aligned 150 px RGB chip of ``box`` (a ``FaceBox``) that the network sees."""
    import dlib

    array = as_rgb_array(image)
    predictor, _ = _dlib_models()
    rect = dlib.rectangle(int(box.x), int(box.y), int(box.x + box.w - 1), int(box.y + box.h - 1))
    with _DLIB_LOCK:
        shape = predictor(array, rect)
        return np.asarray(dlib.get_face_chip(array, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def embed_chip(chip: np.ndarray) -> np.ndarray:
    """The 128-number embedding of an aligned chip (float32)."""
    _, network = _dlib_models()
    with _DLIB_LOCK:
        return np.asarray(network.compute_face_descriptor(np.ascontiguousarray(chip)), dtype=np.float32)


@dataclass(frozen=True)
class FaceEmbedding:
    """One image's face embedding (None: no face found, or the image could not be read)."""

    sha256: str
    embedding: np.ndarray | None
    box: tuple[int, int, int, int] | None = None
    reason: str | None = None  # why there is no embedding


class FaceEmbedder:
    """``embedder(path) -> FaceEmbedding``, cached by content under ``cache_dir`` (default: the crop cache)."""

    def __init__(self, *, detector: str = PREPARE_DETECTOR, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cropper = FaceCropper(FaceCropConfig(detector=detector), cache_dir=self.cache_dir)
        model = dlib_model_file(RECOGNITION_MODEL)
        self.key = hashlib.sha256(
            json.dumps(
                {
                    "detector": self.cropper.config.detector,
                    "detection": PREPARATION_VERSION,
                    "model": [model.name, model.stat().st_size],
                    "version": EMBEDDING_VERSION,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        self._cache_warned = False

    def cache_path(self, sha256: str) -> Path:
        return self.cache_dir / sha256[:2] / f"{sha256}.{self.key}.face128.json"

    def __call__(self, path: str | Path) -> FaceEmbedding:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            return FaceEmbedding("", None, reason=f"cannot read file ({error.strerror or error})")
        sha256 = hashlib.sha256(data).hexdigest()
        cached = self._read(sha256)
        if cached is not None:
            return cached
        try:
            box = self.cropper.detect_file(path)
            if box is None:
                result = FaceEmbedding(sha256, None, reason="no face found")
            else:
                chip = face_chip(read_image(data, name=str(path)), box)
                result = FaceEmbedding(sha256, embed_chip(chip), (box.x, box.y, box.w, box.h))
        except ImageReadError as error:
            return FaceEmbedding(sha256, None, reason=error.reason)  # not cached: the file may be fixed
        except Exception as error:  # noqa: BLE001 - one odd image is one image without a face, the rest goes on
            return FaceEmbedding(sha256, None, reason=error_reason(error))
        self._write(result)
        return result

    def _read(self, sha256: str) -> FaceEmbedding | None:
        try:
            record = json.loads(self.cache_path(sha256).read_text())
            embedding = record["embedding"]
            return FaceEmbedding(
                sha256,
                np.asarray(embedding, dtype=np.float32) if embedding is not None else None,
                tuple(record["box"]) if record.get("box") else None,
                record.get("reason"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, result: FaceEmbedding) -> None:
        record = {
            "embedding": [float(value) for value in result.embedding]
            if result.embedding is not None
            else None,
            "box": list(result.box) if result.box else None,
            "reason": result.reason,
        }
        try:
            write_atomic(
                self.cache_path(result.sha256), lambda name: Path(name).write_text(json.dumps(record))
            )
        except OSError as error:
            if not self._cache_warned:
                log.warning(
                    "embedding cache %s is not writable (%s); embeddings are not cached",
                    self.cache_dir,
                    error,
                )
                self._cache_warned = True


def embed_files(
    paths: Sequence[str | Path],
    *,
    detector: str = PREPARE_DETECTOR,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FaceEmbedding]:
    """Embeddings of ``paths`` in order (one thread: dlib's objects are shared)."""
    embedder = FaceEmbedder(detector=detector, cache_dir=cache_dir)
    results = []
    for index, path in enumerate(paths):
        results.append(embedder(path))
        if progress is not None:
            progress(index + 1)
    return results


# ---- distances and groups ---------------------------------------------------------------------------------


def _embedding_matrix(embeddings: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """(rows with a face, N x 128 matrix of their embeddings)."""
    present = np.array([index for index, value in enumerate(embeddings) if value is not None], dtype=np.int64)
    matrix = (
        np.stack([embeddings[index] for index in present]).astype(np.float32)
        if len(present)
        else np.zeros((0, 128), np.float32)
    )
    return present, matrix


def distance_blocks(matrix: np.ndarray, block: int = 1024):
    """Yield ``(start, distances)``: Euclidean distances of rows ``start:start+block`` to every row."""
    squared = (matrix.astype(np.float64) ** 2).sum(axis=1)
    for start in range(0, len(matrix), block):
        part = matrix[start : start + block].astype(np.float64)
        values = (
            squared[start : start + block, None] + squared[None, :] - 2.0 * part @ matrix.T.astype(np.float64)
        )
        yield start, np.sqrt(np.maximum(values, 0.0))


def nearest_face_distances(embeddings: Sequence[np.ndarray | None]) -> np.ndarray:
    """Each image's distance to the closest other face (NaN when it has no face, inf when it is the only one)."""
    present, matrix = _embedding_matrix(embeddings)
    result = np.full(len(embeddings), np.nan)
    for start, block in distance_blocks(matrix):
        rows = np.arange(block.shape[0])
        block[rows, rows + start] = np.inf
        result[present[start : start + block.shape[0]]] = block.min(axis=1) if block.shape[1] else np.inf
    return result


def close_pairs(embeddings: Sequence[np.ndarray | None], threshold: float) -> list[tuple[int, int, float]]:
    """Every pair ``(i, j, distance)``, ``i < j``, of images whose faces lie closer than ``threshold``."""
    present, matrix = _embedding_matrix(embeddings)
    pairs = []
    for start, block in distance_blocks(matrix):
        rows, cols = np.nonzero(block < threshold)
        for row, col in zip(rows + start, cols, strict=True):
            if col > row:
                pairs.append((int(present[row]), int(present[col]), float(block[row - start, col])))
    return pairs


def person_ids(
    paths: Sequence[str], embeddings: Sequence[np.ndarray | None], threshold: float = DEFAULT_PERSON_THRESHOLD
) -> list[str]:
    """A person id (``p0001``, ...) per image: faces closer than ``threshold``, transitively, share one."""
    pairs = close_pairs(embeddings, threshold)
    return union_ids(paths, [(first, second) for first, second, _ in pairs], "p")


def merged_group_ids(paths: Sequence[str], *groupings: Sequence[str]) -> list[str]:
    """One id per image joining every grouping given (duplicate groups and person groups): ``g0001``, ...

    Two images share the merged id when any chain of shared ids links them, so a split on these ids keeps
    both each duplicate group and each person on one side.
    """
    pairs = []
    for grouping in groupings:
        first_of: dict[str, int] = {}
        for index, group in enumerate(grouping):
            if group in first_of:
                pairs.append((first_of[group], index))
            else:
                first_of[group] = index
    return union_ids(paths, pairs, "g")


# ---- datasets: person ids and leakage ----------------------------------------------------------------------


def embed_with_progress(
    files: Sequence[str | Path], *, cache_dir: str | Path | None = None, console=None
) -> list[FaceEmbedding]:
    """``embed_files`` with a progress bar on ``console`` when one is given."""
    from rich.progress import Progress

    with Progress(console=console, disable=console is None, transient=True) as bar:
        task = bar.add_task("embedding faces", total=len(files))
        return embed_files(files, cache_dir=cache_dir, progress=lambda done: bar.update(task, completed=done))


def person_groups(
    files: Sequence[str | Path],
    keys: Sequence[str],
    *,
    threshold: float = DEFAULT_PERSON_THRESHOLD,
    cache_dir: str | Path | None = None,
    console=None,
) -> tuple[list[str], list[str]]:
    """(person id per file, keys of the files with no face): faces closer than ``threshold`` share an id.

    ``keys`` (relative paths) name the files and number the ids, so the same files give the same ids.
    """
    embeddings = embed_with_progress(files, cache_dir=cache_dir, console=console)
    ids = person_ids(list(keys), [result.embedding for result in embeddings], threshold)
    return ids, [key for key, result in zip(keys, embeddings, strict=True) if result.embedding is None]


def person_leakage(
    relpaths: Sequence[str],
    splits: Sequence[str | None],
    labels: Sequence[str | None],
    persons: Sequence[str],
    duplicates: Sequence[str],
    *,
    examples: int | None = None,
) -> dict:
    """The same person in more than one split: counts and example groups, ready for JSON.

    ``*_sharing_person_with_train`` counts validation/test images with a photo of the same person in train;
    ``*_beyond_duplicates`` counts those of them that the duplicate check does not flag (no copy of the
    picture itself in train): the leakage only a person-aware split removes.
    """
    members: dict[str, list[int]] = {}
    for index, person in enumerate(persons):
        members.setdefault(person, []).append(index)
    dup_splits: dict[str, set] = {}
    for duplicate, split in zip(duplicates, splits, strict=True):
        dup_splits.setdefault(duplicate, set()).add(split)
    spanning = []
    sharing = {"validation": [], "test": []}
    beyond = {"validation": [], "test": []}
    for person, indices in sorted(members.items()):
        person_splits = {splits[index] for index in indices if splits[index]}
        if len(person_splits) < 2:
            continue
        ordered = sorted(
            indices,
            key=lambda i: (SPLITS.index(splits[i]) if splits[i] in SPLITS else 9, relpaths[i]),
        )
        spanning.append(
            {
                "person": person,
                "size": len(indices),
                "splits": [split for split in SPLITS if split in person_splits],
                "members": [{"path": relpaths[i], "split": splits[i], "label": labels[i]} for i in ordered],
            }
        )
        if "train" not in person_splits:
            continue
        for index in indices:
            if splits[index] in sharing:
                sharing[splits[index]].append(relpaths[index])
                if "train" not in dup_splits[duplicates[index]]:
                    beyond[splits[index]].append(relpaths[index])
    spanning.sort(key=lambda group: (-group["size"], group["person"]))
    sizes = [len(indices) for indices in members.values()]
    return {
        "summary": {
            "people_with_several_photos": sum(size > 1 for size in sizes),
            "photos_in_them": sum(size for size in sizes if size > 1),
            "largest_group": max(sizes, default=0),
            "people_spanning_splits": len(spanning),
            "validation_sharing_person_with_train": len(sharing["validation"]),
            "test_sharing_person_with_train": len(sharing["test"]),
            "validation_beyond_duplicates": len(beyond["validation"]),
            "test_beyond_duplicates": len(beyond["test"]),
        },
        "validation_sharing_person_with_train": sharing["validation"],
        "test_sharing_person_with_train": sharing["test"],
        "groups_spanning_splits": spanning if examples is None else spanning[:examples],
    }
