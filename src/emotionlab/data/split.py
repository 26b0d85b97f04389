"""Stratified, seeded splits; samples that share a duplicate group always land in the same split."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from emotionlab.data.dataset import Sample
from emotionlab.errors import EmotionlabError

SPLIT_NAMES = ("train", "validation", "test")


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
            assigned[_unit_key(member)] = SPLIT_NAMES[choice]
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
    missing = [sample for sample in samples if sample.split not in SPLIT_NAMES]
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
        target = min((m.split for m in group_members), key=SPLIT_NAMES.index)  # type: ignore[arg-type]
        for member in group_members:
            destination[_unit_key(member)] = target
            if member.split != target:
                moves.append(Move(_unit_key(member), member.label, group, member.split, target))  # type: ignore[arg-type]
    return [replace(sample, split=destination[_unit_key(sample)]) for sample in samples], moves
