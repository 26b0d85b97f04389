"""Stratified, seeded splits; samples that share a duplicate group always land in the same split.

``run_split`` is `emotionlab data split`: scan a dataset, split it, write the manifest (``manifest.py``), print
a summary.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from emotionlab.data.audit import inspect_file
from emotionlab.data.dataset import load_samples
from emotionlab.data.duplicates import DEFAULT_THRESHOLD, group_ids
from emotionlab.data.manifest import write_manifest
from emotionlab.data.samples import Sample, SampleSet
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import ensure_outside_root
from emotionlab.labels import SPLITS

log = logging.getLogger("emotionlab")


def _unit_key(sample: Sample) -> str:
    return sample.relpath or str(sample.path)


def _integer_targets(count: int, ratios: Sequence[float]) -> list[int]:
    """Split ``count`` into integers proportional to ``ratios`` (largest remainder; ties go to earlier splits).

    A small class still gets one image in every split whose ratio is not zero (taken from the largest), so
    that each class can be validated and tested: 5 images at 80/10/10 give 3/1/1, not 4/1/0.
    """
    exact = [ratio * count for ratio in ratios]
    targets = [int(value) for value in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - targets[i]), i))
    for index in by_remainder[: count - sum(targets)]:
        targets[index] += 1
    wanted = [index for index, ratio in enumerate(ratios) if ratio > 0]
    if count >= len(wanted):
        for index in wanted:
            if targets[index] == 0:
                targets[max(range(len(targets)), key=lambda i: targets[i])] -= 1
                targets[index] += 1
    return targets


def parse_ratios(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or ``"80,10,10"``) -> normalised ``(train, validation, test)`` fractions."""
    try:
        values = (
            [float(part) for part in text.split(",")] if isinstance(text, str) else [float(v) for v in text]
        )
    except ValueError as error:
        raise EmotionlabError(f"ratios {text!r}: expected three numbers like 0.8,0.1,0.1") from error
    if len(values) != 3 or any(value < 0 for value in values) or sum(values) <= 0 or values[0] == 0:
        raise EmotionlabError(
            f"ratios {text!r}: expected three non-negative numbers (train > 0) like 0.8,0.1,0.1"
        )
    total = sum(values)
    return tuple(value / total for value in values)  # type: ignore[return-value]


def split_samples(
    samples: Sequence[Sample],
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: dict[str, str] | None = None,
) -> list[Sample]:
    """Assign ``train``/``validation``/``test`` to every sample, stratified by label.

    ``groups`` maps a sample's relpath to a duplicate-group id; a group is placed as one unit so that no group
    straddles splits. Every label gets integer targets per split (its count times the ratios, rounded by
    largest remainder); units are then placed largest first, in a seeded random order among equal sizes, each
    into the split whose targets for the unit's labels are least filled (relative to their size). With single
    images this hits the targets exactly; groups can overshoot by at most the group's size. The result depends
    only on the samples, ratios and seed, and keeps the input order.
    """
    ratios = parse_ratios(ratios)
    units: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        key = (groups or {}).get(_unit_key(sample)) or f"single:{_unit_key(sample)}"
        units[key].append(sample)
    per_label = Counter(sample.label for sample in samples)
    targets = {label: _integer_targets(count, ratios) for label, count in per_label.items()}
    filled = {label: [0, 0, 0] for label in per_label}
    rng = random.Random(seed)
    keys = sorted(units)
    rng.shuffle(keys)
    keys.sort(key=lambda key: len(units[key]), reverse=True)  # stable: the shuffle orders equal sizes

    def room(split: int, members: list[Sample]) -> float:
        # Fraction of this split's targets still open for the unit's labels; a split with a zero target has none.
        return sum(
            (targets[m.label][split] - filled[m.label][split]) / targets[m.label][split]
            if targets[m.label][split]
            else -1.0
            for m in members
        ) / len(members)

    assigned: dict[str, str] = {}
    for key in keys:
        members = units[key]
        choice = max(range(3), key=lambda split: (room(split, members), -split))
        for member in members:
            filled[member.label][choice] += 1
            assigned[_unit_key(member)] = SPLITS[choice]
    return [replace(sample, split=assigned[_unit_key(sample)]) for sample in samples]


@dataclass(frozen=True)
class Move:
    """An image that ``keep_splits_without_leakage`` reassigned, and why."""

    path: str
    label: str
    group: str
    from_split: str
    to_split: str


def keep_splits_without_leakage(
    samples: Sequence[Sample], groups: dict[str, str]
) -> tuple[list[Sample], list[Move]]:
    """Keep the given splits but move every duplicate group that spans splits into one split.

    Rule: the group goes to its earliest split in the order train, validation, test (to train if any member
    is in train, else to validation). So evaluation splits only ever lose images, never gain a copy of a
    training image, and test stays untouched unless a twin of a test image sits in train or validation.
    """
    missing = [sample for sample in samples if sample.split not in SPLITS]
    if missing:
        raise EmotionlabError(
            f"{missing[0].relpath or missing[0].path}: has no train/validation/test split; "
            "--keep-splits needs a dataset with split folders (or leave it out for a fresh split)"
        )
    members: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        members[groups.get(_unit_key(sample)) or f"single:{_unit_key(sample)}"].append(sample)
    destination: dict[str, str] = {}
    moves: list[Move] = []
    for group, group_members in sorted(members.items()):
        target = min((m.split for m in group_members), key=SPLITS.index)  # type: ignore[arg-type]
        for member in group_members:
            destination[_unit_key(member)] = target
            if member.split != target:
                moves.append(Move(_unit_key(member), member.label, group, member.split, target))  # type: ignore[arg-type]
    return [replace(sample, split=destination[_unit_key(sample)]) for sample in samples], moves


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


def manifest_counts(rows: Sequence[dict], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Images per split and label, splits in train/validation/test order."""
    counts = Counter((row["split"], row["label"]) for row in rows)
    splits = [name for name in SPLITS if any(row["split"] == name for row in rows)]
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
