"""Manifests: one CSV row per usable image (path, label, split, sha256, phash, group, face_box).

A manifest pins down exactly which files a run used and how they were split. Paths are relative to the dataset
root (posix), so one manifest serves every copy of the dataset; lines starting with ``#`` are comments. This
module is the one reader and writer of the format; ``split.py`` makes manifests (`emotionlab data split`) and
``face_boxes.py`` adds face boxes (`emotionlab data faces`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from emotionlab.data.samples import Sample, SampleSet, parse_box
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import write_atomic
from emotionlab.labels import SPLIT_NAMES, order_labels
from emotionlab.paths import default_data_root

MANIFEST_COLUMNS = ("path", "label", "split", "sha256", "phash", "group", "face_box")


def write_manifest(
    rows: Sequence[dict],
    path: str | Path,
    *,
    comments: Sequence[str] = (),
    columns: Sequence[str] | None = None,
) -> Path:
    """Write rows as CSV, ``# comment`` lines on top (``comments`` without their ``#``). ``columns``: the
    columns in order (others in the rows are left out); default ``MANIFEST_COLUMNS`` first, any extra keys after.

    Written through ``fileio.write_atomic`` (a temporary name, then renamed), so a crash never leaves half a
    manifest. File names that are not UTF-8 are written back as their own bytes (``surrogateescape``).
    """
    path = Path(path)
    if columns is None:
        columns = list(MANIFEST_COLUMNS) + [
            key for key in (rows[0] if rows else {}) if key not in MANIFEST_COLUMNS
        ]

    def write(name: str) -> None:
        with open(name, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.writelines(f"# {comment}\n" for comment in comments)
            writer = csv.DictWriter(
                handle, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(rows)

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)
    return path


def read_manifest_file(path: str | Path) -> tuple[list[str], list[str], list[dict]]:
    """(comments without their ``# ``, column names, rows) of a manifest CSV: the one manifest reader."""
    path = Path(path)
    if not path.is_file():
        raise EmotionlabError(f"{path}: manifest file not found")
    # surrogateescape: file names need not be UTF-8 (`data faces` writes them back as their own bytes).
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        lines = handle.readlines()
    comments = [line.rstrip("\r\n")[1:].removeprefix(" ") for line in lines if line.startswith("#")]
    reader = csv.DictReader([line for line in lines if not line.startswith("#")])
    rows = list(reader)
    return comments, list(reader.fieldnames or []), rows


def read_manifest_rows(path: str | Path) -> list[dict]:
    """All columns of a manifest as dicts (comment lines skipped); ``read_manifest`` gives Samples instead."""
    return read_manifest_file(path)[2]


def read_manifest(manifest: str | Path, root: str | Path | None = None) -> SampleSet:
    """Read a manifest CSV (columns ``path``, ``label``, ``split``; paths relative to ``root``).

    ``root`` defaults to the manifest's folder, else the default dataset root ($EMOTIONLAB_DATA, workspace copy).
    """
    manifest = Path(manifest)
    rows = read_manifest_rows(manifest)
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise EmotionlabError(f"{manifest}: not a manifest (needs at least the columns path,label)")
    if root is not None:
        base = Path(root)
    else:
        # Paths are relative to the dataset root: the manifest's own folder, else the default dataset root.
        candidates = [manifest.parent] + ([default_data_root()] if default_data_root() else [])
        base = next((c for c in candidates if (c / rows[0]["path"]).is_file()), manifest.parent)
    samples = []
    for row in rows:
        split = row.get("split") or None
        samples.append(
            Sample(
                path=(base / row["path"]).resolve(),
                label=row["label"],
                split=SPLIT_NAMES.get(split, split) if split else None,
                relpath=row["path"],
                face_box=parse_box(row.get("face_box")),
            )
        )
    missing = [sample for sample in samples if not sample.path.is_file()]
    if missing:
        raise EmotionlabError(
            f"{manifest}: {len(missing)} listed file(s) not found under {base} (first: {missing[0].relpath}); "
            "pass the dataset root with --data"
        )
    labels = order_labels(sample.label for sample in samples)
    check_classes(manifest, Counter(sample.label for sample in samples), labels)
    return SampleSet(root=base, samples=samples, labels=labels, source=f"manifest:{manifest.name}")


def check_classes(root: Path, per_label: Counter, declared: list[str]) -> None:
    """Refuse a dataset with a class without usable images, or fewer than two classes."""
    empty = [label for label in declared if per_label[label] == 0]
    if empty:
        raise EmotionlabError(f"{root}: class folder(s) with no usable image: {', '.join(sorted(empty))}")
    if len(declared) < 2:
        raise EmotionlabError(
            f"{root}: need at least two class folders, found {len(declared)} ({', '.join(declared)})"
        )
