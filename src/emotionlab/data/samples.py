"""What a dataset is made of: labelled images (``Sample``) and the usable images of one dataset (``SampleSet``).

The readers (folder trees and FER+ in ``dataset.py`` and ``ferplus.py``, manifests in ``manifest.py``) import this
module, never the other way, so a ``Sample`` can be handed around without loading any reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.labels import SPLIT_NAMES


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``path`` is absolute; ``relpath`` is relative to the dataset root."""

    path: Path
    label: str
    split: str | None = None
    relpath: str = ""
    face_box: tuple[int, int, int, int] | None = None


@dataclass
class SampleSet:
    """The usable images of a dataset, its fixed class order, and the files that were skipped (and why)."""

    root: Path
    samples: list[Sample]
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = "folders"

    def split(self, name: str) -> list[Sample]:
        name = SPLIT_NAMES.get(name, name)
        return [sample for sample in self.samples if sample.split == name]

    @property
    def has_splits(self) -> bool:
        return any(sample.split for sample in self.samples)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and label (``{"train": {"angry": 10, ...}, ...}``), as the study tabulated."""
        table: dict[str, dict[str, int]] = {}
        for sample in self.samples:
            row = table.setdefault(sample.split or "all", {label: 0 for label in self.labels})
            row[sample.label] += 1
        return table

    def summary(self) -> dict:
        return {
            "root": str(self.root),
            "source": self.source,
            "labels": list(self.labels),
            "num_images": len(self.samples),
            "num_skipped": len(self.skipped),
            "counts": self.counts(),
        }


def parse_box(text: str | None) -> tuple[int, int, int, int] | None:
    """A manifest's ``face_box`` text (``x y w h``; commas or semicolons also separate) -> a tuple, or None."""
    if not text:
        return None
    parts = [round(float(value)) for value in text.replace(";", " ").replace(",", " ").split()]
    return tuple(parts) if len(parts) == 4 else None  # type: ignore[return-value]
