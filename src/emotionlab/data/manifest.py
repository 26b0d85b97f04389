"""Manifests: one CSV row per usable image (path, label, split, sha256, phash, group, face_box).

A manifest pins down exactly which files a run used and how they were split. Paths are relative to the dataset
root (posix), so one manifest serves every copy of the dataset; ``emotionlab.data.dataset.read_manifest`` reads
it back (lines starting with ``#`` are comments).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from emotionlab.data.audit import inspect_file
from emotionlab.data.dataset import SampleSet
from emotionlab.data.duplicates import DEFAULT_THRESHOLD, group_ids
from emotionlab.data.split import SPLIT_NAMES, keep_splits_without_leakage, parse_ratios, split_samples
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import ensure_outside_root

log = logging.getLogger("emotionlab")

MANIFEST_COLUMNS = ("path", "label", "split", "sha256", "phash", "group", "face_box")


def build_manifest(
    sample_set: SampleSet,
    *,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    threshold: int = DEFAULT_THRESHOLD,
    keep_splits: bool = False,
    person_threshold: float | None = None,
    console=None,
) -> list[dict]:
    """Manifest rows for every readable sample, with a split in which no duplicate group straddles splits.

    With ``person_threshold`` photos of one person are grouped too (``people.py``): ``person`` holds the person
    id and ``group`` the merged id of duplicates and people, so no person straddles splits either (and
    cross-validation folds, which read ``group``, keep people whole).

    A fresh split (default) is stratified by label and seeded. With ``keep_splits`` the samples' own splits
    stay, except for the duplicate groups that span splits, which move whole to their earliest split
    (see ``keep_splits_without_leakage``); compare the rows with the samples to list those moves
    (``moved_images``). Files that cannot be read are left out with a warning.
    """
    readable, fingerprints = [], {}
    for sample in sample_set.samples:
        relpath = sample.relpath or sample.path.name
        record, hash_value = inspect_file(sample.path, relpath, sample.split, sample.label)
        if hash_value is None:
            log.warning("skipped %s: %s", sample.path, record.reason)
            continue
        readable.append(replace(sample, relpath=relpath))
        fingerprints[relpath] = (record.sha256, hash_value)
    if not readable:
        raise EmotionlabError(f"{sample_set.root}: no readable image to put in a manifest")
    paths = [sample.relpath for sample in readable]
    ids = group_ids(paths, [fingerprints[path][1] for path in paths], threshold)
    persons = None
    if person_threshold is not None:
        from emotionlab.data.people import merged_group_ids, person_groups

        files = [sample.path for sample in readable]
        persons, _ = person_groups(files, paths, threshold=person_threshold, console=console)
        ids = merged_group_ids(paths, ids, persons)
    groups = dict(zip(paths, ids, strict=True))
    person_of = dict(zip(paths, persons, strict=True)) if persons is not None else {}
    if keep_splits:
        placed, _ = keep_splits_without_leakage(readable, groups)
    else:
        placed = split_samples(readable, ratios=parse_ratios(ratios), seed=seed, groups=groups)
    rows = []
    for sample in placed:
        sha256, hash_value = fingerprints[sample.relpath]
        box = " ".join(str(value) for value in sample.face_box) if sample.face_box else ""
        rows.append(
            {
                "path": sample.relpath,
                "label": sample.label,
                "split": sample.split,
                "sha256": sha256,
                "phash": f"{hash_value:016x}",
                "group": groups[sample.relpath],
                "face_box": box,
                **({"person": person_of[sample.relpath]} if persons is not None else {}),
            }
        )
    return rows


def moved_images(sample_set: SampleSet, rows: Sequence[dict]) -> list[dict]:
    """Rows whose split differs from the sample's own (folder) split: ``path, label, group, from, to``."""
    original = {sample.relpath: sample.split for sample in sample_set.samples}
    return [
        {
            "path": row["path"],
            "label": row["label"],
            "group": row["group"],
            "from": original[row["path"]],
            "to": row["split"],
        }
        for row in rows
        if original.get(row["path"]) and original[row["path"]] != row["split"]
    ]


def write_manifest(rows: Sequence[dict], path: str | Path, *, comments: Sequence[str] = ()) -> Path:
    """Write rows as CSV (``MANIFEST_COLUMNS`` first, any extra keys after), ``# comment`` lines on top.

    The file is written to a temporary name and renamed, so a crash never leaves half a manifest.
    """
    path = Path(path)
    columns = list(MANIFEST_COLUMNS) + [
        key for key in (rows[0] if rows else {}) if key not in MANIFEST_COLUMNS
    ]
    buffer = io.StringIO()
    for comment in comments:
        buffer.write(f"# {comment}\n")
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(buffer.getvalue())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_manifest_rows(path: str | Path) -> list[dict]:
    """All columns of a manifest as dicts (comment lines skipped); ``read_manifest`` gives Samples instead."""
    path = Path(path)
    if not path.is_file():
        raise EmotionlabError(f"{path}: manifest file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def manifest_counts(rows: Sequence[dict], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Images per split and label, splits in train/validation/test order."""
    counts = Counter((row["split"], row["label"]) for row in rows)
    splits = [name for name in SPLIT_NAMES if any(row["split"] == name for row in rows)]
    return {split: {label: counts[(split, label)] for label in labels} for split in splits}


def print_split_summary(
    rows: Sequence[dict], moves: Sequence[dict], labels: Sequence[str], console, *, keep_splits: bool
) -> None:
    """Counts per split and label, duplicate groups, and (with --keep-splits) every moved image."""
    from rich.table import Table

    counts = manifest_counts(rows, labels)
    table = Table(title="Manifest: images per split and class", title_justify="left")
    table.add_column("split")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    table.add_column("share", justify="right")
    for split, row in counts.items():
        total = sum(row.values())
        table.add_row(split, *(str(row[label]) for label in labels), str(total), f"{total / len(rows):.1%}")
    console.print(table)
    sizes = Counter(Counter(row["group"] for row in rows).values())
    in_groups = sum(size * number for size, number in sizes.items() if size > 1)
    groups = sum(number for size, number in sizes.items() if size > 1)
    by_person = bool(rows) and "person" in rows[0]
    kind = "groups of duplicates or of one person" if by_person else "duplicate groups"
    console.print(
        f"  {len(rows)} images; {groups} {kind} ({in_groups} images), each kept within one split",
        soft_wrap=True,
    )
    if by_person:
        photos = Counter(row["person"] for row in rows).values()
        console.print(
            f"  people with several photos: {sum(size > 1 for size in photos)} (largest: {max(photos)} photos)",
            soft_wrap=True,
        )
    if keep_splits:
        console.print(
            f"  kept the folder splits; moved {len(moves)} image(s) to remove leakage:", soft_wrap=True
        )
        for move in moves:
            console.print(
                f"    {move['path']} ({move['group']}): {move['from']} -> {move['to']}",
                highlight=False,
                soft_wrap=True,
            )
    else:
        console.print(
            f"  fresh split; {len(moves)} image(s) are in a different split than their folder says",
            soft_wrap=True,
        )


def run_split(
    root: str | Path,
    out: str | Path,
    *,
    ratios: str | Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    threshold: int = DEFAULT_THRESHOLD,
    keep_splits: bool = False,
    group_by: str = "duplicates",
    person_threshold: float | None = None,
    console=None,
) -> list[dict]:
    """The ``emotionlab data split`` command: scan the folder, split, write the manifest, print a summary.

    ``group_by="person"`` keeps each person (and each duplicate group) within one split.
    """
    from emotionlab.data.dataset import load_samples

    ensure_outside_root(root, out)
    ratio_values = parse_ratios(ratios)
    sample_set = load_samples(Path(root))
    if group_by not in ("duplicates", "person"):
        raise EmotionlabError(f"--group-by {group_by!r}: choose duplicates or person")
    if group_by == "person" and person_threshold is None:
        from emotionlab.data.people import DEFAULT_PERSON_THRESHOLD

        person_threshold = DEFAULT_PERSON_THRESHOLD
    rows = build_manifest(
        sample_set,
        ratios=ratio_values,
        seed=seed,
        threshold=threshold,
        keep_splits=keep_splits,
        person_threshold=person_threshold if group_by == "person" else None,
        console=console,
    )
    moves = moved_images(sample_set, rows)
    mode = (
        "kept folder splits, leaking groups moved to their earliest split"
        if keep_splits
        else (f"fresh stratified split, ratios {','.join(f'{r:g}' for r in ratio_values)}, seed {seed}")
    )
    comments = [
        f"emotionlab manifest of {Path(root).as_posix()}: {len(rows)} images",
        f"split: {mode}; duplicate groups: phash distance <= {threshold}"
        + (
            f"; people: face distance < {person_threshold:g} (group: both merged)"
            if group_by == "person"
            else ""
        ),
    ]
    write_manifest(rows, out, comments=comments)
    if console is not None:
        print_split_summary(rows, moves, sample_set.labels, console, keep_splits=keep_splits)
        console.print(f"  wrote {out}", highlight=False, soft_wrap=True)
    return rows
