"""Photos already kept, in OUT or in an existing dataset (``against``), and whether a new photo duplicates one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotionlab.data.audit import dataset_files, inspect_file
from emotionlab.data.duplicates import popcount
from emotionlab.errors import EmotionlabError


class KnownPhotos:
    """Hashes already in a dataset: exact by SHA-256, near by perceptual hash, with where each one is."""

    def __init__(self, name: str):
        self.name = name
        self.by_sha: dict[str, str] = {}
        self.hashes: list[int] = []
        self.places: list[str] = []
        self._array: np.ndarray | None = None

    def add(self, sha256: str, phash: int | None, place: str) -> None:
        self.by_sha.setdefault(sha256, place)
        if phash is not None:
            self.hashes.append(phash)
            self.places.append(place)
            self._array = None

    def nearest(self, phash: int) -> tuple[int, str] | None:
        if not self.hashes:
            return None
        if self._array is None:
            self._array = np.array(self.hashes, dtype=np.uint64)
        distances = popcount(self._array ^ np.uint64(phash))
        index = int(distances.argmin())
        return int(distances[index]), self.places[index]


def existing_hashes(against: Path) -> KnownPhotos:
    """The hashes of an existing dataset: a folder (read and hashed) or a manifest CSV with sha256 and phash."""
    from emotionlab.data.manifest import read_manifest_rows

    known = KnownPhotos(str(against))
    if against.is_file():
        rows = read_manifest_rows(against)
        if not rows or not {"sha256", "phash", "path"} <= set(rows[0]):
            raise EmotionlabError(
                f"{against}: --against takes a dataset folder or a manifest with sha256 and phash columns"
            )
        for row in rows:
            known.add(row["sha256"], int(row["phash"], 16) if row["phash"] else None, row["path"])
        return known
    if not against.is_dir():
        raise EmotionlabError(f"{against}: --against must be a dataset folder or a manifest CSV")
    for path, split, label in dataset_files(against):
        relpath = path.relative_to(against).as_posix()
        record, hash_value = inspect_file(path, relpath, split, label)
        if record.readable:
            known.add(record.sha256, hash_value, relpath)
    return known


def duplicate_reason(
    sha256: str,
    phash: int | None,
    *,
    new: KnownPhotos,
    existing: KnownPhotos | None,
    imported_shas: set[str],
    threshold: int,
) -> tuple[str, str] | None:
    """``(status, reason)`` when the photo is a copy of one already kept (exact first, then near), else None."""
    if sha256 in imported_shas and sha256 not in new.by_sha:
        return "duplicate", "same bytes as a photo an earlier run imported (no longer in the folder)"
    if existing is not None and sha256 in existing.by_sha:
        return "duplicate", f"same bytes as {existing.by_sha[sha256]} in {existing.name}"
    if sha256 in new.by_sha:
        return "duplicate", f"same bytes as {new.by_sha[sha256]}"
    for known in (existing, new):
        near = known.nearest(phash) if known is not None and phash is not None else None
        if near is not None and near[0] <= threshold:
            where = f"{near[1]} in {known.name}" if known is existing else near[1]
            return "near-duplicate", f"perceptual hash {near[0]} bits from {where}"
    return None
