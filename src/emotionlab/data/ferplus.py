"""FER+ (FER2013 faces with ten crowd votes each): reader, label selection and a fast in-memory dataset.

Layout: ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each with 48x48 grey PNGs and a ``label.csv``
whose rows are ``file, face box, votes...`` with votes for neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown and NF (not a face).

Labels:
- ``majority`` (the default): the column with the most votes over all ten columns; rows with a tie for the
  most votes, or whose winner is ``unknown`` or ``NF``, are dropped (as Barsoum et al. 2016 "majority voting").
  In five-class mode, rows whose winner is neutral, disgust or contempt are dropped too.
- ``soft``: the same rows as majority mode, except that ties between kept classes are allowed; the target
  is the vote distribution over the kept classes (it sums to 1).

Classes: ``5`` maps FER+ to the project's emotions (angry<-anger, fearful<-fear, happy<-happiness,
sad<-sadness, surprised<-surprise); ``8`` keeps all eight emotions (neutral, disgusted and contempt added).
The images are small (35k x 48 x 48 bytes = 82 MB at most), so :class:`FerPlusTensors` holds them in memory
as one uint8 tensor and augments batches-worth of tensors cheaply, instead of decoding PNGs every epoch.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import Dataset

from emotionlab.data.images import open_image
from emotionlab.data.samples import Sample, SampleSet
from emotionlab.errors import EmotionlabError
from emotionlab.labels import ALIASES, order_labels

VOTE_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
SPLIT_FOLDERS = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}
# FER+ column -> our label name, for the five emotions of the project (their spellings in ``labels.ALIASES``) and
# the three extra FER+ emotions.
FIVE_CLASSES = {column: ALIASES[column] for column in ("anger", "fear", "happiness", "sadness", "surprise")}
EIGHT_CLASSES = {**FIVE_CLASSES, "neutral": "neutral", "disgust": "disgusted", "contempt": "contempt"}
TARGETS = ("majority", "soft")


@dataclass(frozen=True)
class FerPlusRow:
    """One row of a ``label.csv``: the file name, the face box text and the ten vote counts."""

    file: str
    box: str
    votes: tuple[int, ...]


@dataclass(frozen=True)
class FerPlusItem:
    """A kept image: its path, its (hard) label and the target distribution over the chosen classes."""

    path: Path
    label: str
    distribution: tuple[float, ...]


def is_ferplus_root(root: str | Path) -> bool:
    """True when ``root`` has the FER+ layout (at least ``FER2013Train/label.csv``)."""
    return (Path(root) / SPLIT_FOLDERS["train"] / "label.csv").is_file()


def class_names(classes: int = 5) -> list[str]:
    """The label order of FER+ models: canonical emotions first, then neutral/disgusted/contempt sorted."""
    if classes not in (5, 8):
        raise EmotionlabError(f"FER+ classes must be 5 or 8, not {classes}")
    return order_labels((FIVE_CLASSES if classes == 5 else EIGHT_CLASSES).values())


def read_label_csv(path: str | Path) -> list[FerPlusRow]:
    """Parse one ``label.csv`` (no header). Raises ``EmotionlabError`` naming the file and line when malformed."""
    path = Path(path)
    if not path.is_file():
        raise EmotionlabError(f"{path}: FER+ label file not found")
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, fields in enumerate(csv.reader(handle), start=1):
            if not fields:
                continue
            if len(fields) != 2 + len(VOTE_COLUMNS):
                raise EmotionlabError(f"{path}: line {number} has {len(fields)} fields, expected 12")
            try:
                votes = tuple(int(float(value)) for value in fields[2:])
            except ValueError as error:
                raise EmotionlabError(f"{path}: line {number}: vote counts must be numbers") from error
            rows.append(FerPlusRow(fields[0].strip(), fields[1], votes))
    return rows


def select_row(
    row: FerPlusRow, *, classes: int = 5, targets: str = "majority"
) -> tuple[str, tuple[float, ...]] | None:
    """The (label, target distribution) of one row, or None when the row is dropped (see the module doc)."""
    if targets not in TARGETS:
        raise EmotionlabError(f"unknown FER+ targets {targets!r}: use majority or soft")
    mapping = FIVE_CLASSES if classes == 5 else EIGHT_CLASSES
    names = class_names(classes)
    votes = dict(zip(VOTE_COLUMNS, row.votes, strict=True))
    top = max(row.votes)
    if top <= 0:
        return None
    winners = [column for column in VOTE_COLUMNS if votes[column] == top]
    if any(column not in mapping for column in winners):
        return None  # unknown / not-a-face / a dropped emotion wins or ties for the lead
    if targets == "majority" and len(winners) > 1:
        return None
    kept = {mapping[column]: votes[column] for column in mapping}
    total = sum(kept.values())
    if targets == "majority":
        label = mapping[winners[0]]
        distribution = tuple(1.0 if name == label else 0.0 for name in names)
    else:
        label = mapping[winners[0]]
        distribution = tuple(kept[name] / total for name in names)
    return label, distribution


def read_split(
    root: str | Path, split: str, *, classes: int = 5, targets: str = "majority"
) -> list[FerPlusItem]:
    """The kept images of one split (``train``, ``validation`` or ``test``) of a FER+ folder."""
    if split not in SPLIT_FOLDERS:
        raise EmotionlabError(f"unknown FER+ split {split!r}: use train, validation or test")
    folder = Path(root) / SPLIT_FOLDERS[split]
    items = []
    for row in read_label_csv(folder / "label.csv"):
        chosen = select_row(row, classes=classes, targets=targets)
        if chosen is not None:
            items.append(FerPlusItem(folder / row.file, chosen[0], chosen[1]))
    return items


def load_ferplus(root: str | Path, *, classes: int = 5) -> SampleSet:
    """FER+ as a ``SampleSet`` (majority labels, splits from the folders) for the generic train/evaluate code.

    Image files are not decoded here (FER+ has 35k of them); a missing file is reported with its path.
    """
    root = Path(root)
    samples = []
    for split, folder in SPLIT_FOLDERS.items():
        if not (root / folder / "label.csv").is_file():
            continue
        for item in read_split(root, split, classes=classes):
            samples.append(
                Sample(
                    path=item.path,
                    label=item.label,
                    split=split,
                    relpath=item.path.relative_to(root).as_posix(),
                )
            )
    missing = next((sample for sample in samples if not sample.path.is_file()), None)
    if missing is not None:
        raise EmotionlabError(f"{missing.path}: listed in label.csv but the image file is missing")
    return SampleSet(root=root, samples=samples, labels=class_names(classes), source=f"ferplus:{classes}")


def load_grey_images(paths: list[Path], size: int = 48) -> torch.Tensor:
    """Decode images as one ``(N, size, size)`` uint8 tensor (grey; resized only when not already ``size``)."""
    array = np.empty((len(paths), size, size), dtype=np.uint8)
    for index, path in enumerate(paths):
        try:
            with open_image(path, ["PNG"]) as image:
                grey = image.convert("L")
                if grey.size != (size, size):
                    grey = grey.resize((size, size), Image.Resampling.BILINEAR)
                array[index] = np.asarray(grey)
        except OSError as error:
            raise EmotionlabError(f"{path}: cannot read FER+ image ({error})") from error
    return torch.from_numpy(array)


def standardize(batch: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation of a float batch ``(N, C, H, W)``, as ``PerImageStandardize`` per image."""
    flat = batch.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    floor = 1.0 / math.sqrt(flat.shape[1])
    std = flat.std(dim=1).clamp_min(floor).view(-1, 1, 1, 1)
    return (batch - mean) / std


@dataclass(frozen=True)
class TensorAugment:
    """Cheap augmentation of one grey face tensor: shift/zoom, small rotation, horizontal flip.

    Defaults are mild because FER faces are already tight, aligned crops (bigger shifts lose the mouth).
    """

    max_shift: float = 0.1  # fraction of the side
    max_rotation: float = 10.0  # degrees
    scale: tuple[float, float] = (0.9, 1.1)
    flip: bool = True


class FerPlusTensors(Dataset):
    """In-memory FER+ (or any grey faces): ``(index, epoch) -> (3 x S x S standardised tensor, target)``.

    Targets are class indices (majority) or float distributions (soft). With ``augment`` set, randomness is
    a pure function of (seed, epoch, index), like ``ImageDataset``, so resumed runs repeat exactly.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        image_size: int = 48,
        augment: TensorAugment | None = None,
        seed: int = 0,
    ):
        if images.dtype != torch.uint8 or images.ndim != 3:
            raise ValueError("images must be a (N, H, W) uint8 tensor")
        self.images, self.targets = images, targets
        self.image_size, self.augment, self.seed = image_size, augment, seed

    @classmethod
    def from_items(cls, items: list[FerPlusItem], *, soft: bool = False, **kwargs) -> FerPlusTensors:
        images = load_grey_images([item.path for item in items])
        distributions = torch.tensor([item.distribution for item in items], dtype=torch.float32)
        targets = distributions if soft else distributions.argmax(dim=1)
        return cls(images, targets, **kwargs)

    def __len__(self) -> int:
        return len(self.images)

    def _augment(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        policy = self.augment
        u = torch.rand(5, generator=generator).tolist()
        angle = math.radians((2 * u[0] - 1) * policy.max_rotation)
        scale = policy.scale[0] + u[1] * (policy.scale[1] - policy.scale[0])
        shift_x, shift_y = ((2 * u[2] - 1) * policy.max_shift * 2, (2 * u[3] - 1) * policy.max_shift * 2)
        flip = -1.0 if policy.flip and u[4] < 0.5 else 1.0
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos * flip, -sin, shift_x], [sin * flip, cos, shift_y]], dtype=torch.float32)
        grid = F.affine_grid(theta[None], [1, 1, self.image_size, self.image_size], align_corners=False)
        return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[
            0
        ]

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image = self.images[index].float()[None] / 255.0
        if self.augment is not None:
            generator = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + epoch * 10_007 + index) % (2**63)
            )
            image = self._augment(image, generator)
        elif image.shape[-1] != self.image_size:
            image = F.interpolate(
                image[None], size=(self.image_size, self.image_size), mode="bilinear", antialias=True
            )[0]
        tensor = standardize(image.expand(3, -1, -1)[None])[0]
        target = self.targets[index]
        # Hard labels as plain ints, like ImageDataset, so both kinds of datasets collate together.
        return tensor, (int(target) if target.ndim == 0 else target)
