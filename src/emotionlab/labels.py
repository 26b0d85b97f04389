"""Canonical emotion labels: the one source of label names and their order."""

from collections.abc import Iterable

# The study's five emotions, in the order every model shipped by this project uses.
EMOTIONS: tuple[str, ...] = ("angry", "fearful", "happy", "sad", "surprised")

# A calm face: the sixth class of the default model (after the five), absent from the study's photos. `--five`
# answers among EMOTIONS only.
NEUTRAL = "neutral"

# Spellings found in other datasets and tools, mapped to ours.
ALIASES: dict[str, str] = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}


def canonical_label(name: str) -> str:
    """Return our spelling of an emotion name (``"fear"`` -> ``"fearful"``); unknown names pass through."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def order_labels(names: Iterable[str]) -> list[str]:
    """Fix the class order of a dataset: canonical emotions first in their order, then any others sorted."""
    unique = sorted(set(names))
    known = [label for label in EMOTIONS if label in unique]
    return known + [label for label in unique if label not in EMOTIONS]


# The dataset splits, in order; every module spells them from here.
SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Folder names accepted as dataset splits, mapped to the names used everywhere else.
SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}
