"""Stratified, seeded splits; samples that share a duplicate group always land in the same split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from emotionlab.data.dataset import Sample


def split_samples(
    samples: Sequence[Sample],
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: dict[str, str] | None = None,
) -> list[Sample]:
    """Assign ``train``/``validation``/``test`` to every sample, stratified by label.

    ``groups`` maps a sample's relpath to a duplicate-group id; a group is placed as one unit (by the label
    of its majority) so that no group straddles splits.
    """
    names = ("train", "validation", "test")
    total = sum(ratios)
    ratios = tuple(r / total for r in ratios)  # type: ignore[assignment]
    units: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        key = (groups or {}).get(sample.relpath) or f"single:{sample.relpath}"
        units[key].append(sample)
    by_label: dict[str, list[list[Sample]]] = defaultdict(list)
    for key in sorted(units):
        members = units[key]
        majority = max(sorted({m.label for m in members}), key=lambda label: sum(m.label == label for m in members))
        by_label[majority].append(members)
    rng = random.Random(seed)
    assigned: list[Sample] = []
    for label in sorted(by_label):
        label_units = by_label[label]
        rng.shuffle(label_units)
        size = sum(len(unit) for unit in label_units)
        targets = [ratio * size for ratio in ratios]
        filled = [0.0, 0.0, 0.0]
        # Larger groups first, each to the split furthest below its target: keeps ratios close with groups.
        for unit in sorted(label_units, key=len, reverse=True):
            deficits = [targets[i] - filled[i] for i in range(3)]
            choice = max(range(3), key=lambda i: (deficits[i] / max(targets[i], 1e-9), -i))
            filled[choice] += len(unit)
            assigned.extend(replace(member, split=names[choice]) for member in unit)
    order = {sample.relpath: position for position, sample in enumerate(samples)}
    return sorted(assigned, key=lambda sample: order[sample.relpath])
