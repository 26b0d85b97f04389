"""Datasets: folder trees and manifests -> labelled samples -> a deterministic torch Dataset."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from emotionlab.data.ferplus import is_ferplus_root, load_ferplus
from emotionlab.data.images import DEFAULT_MAX_PIXELS, ImageReadError, is_image_name, read_image
from emotionlab.data.manifest import check_classes, read_manifest
from emotionlab.data.samples import Sample, SampleSet
from emotionlab.errors import EmotionlabError
from emotionlab.isolation import error_reason, isolated_map
from emotionlab.labels import SPLIT_NAMES, order_labels
from emotionlab.paths import resolve_data_root
from emotionlab.progress import progress

log = logging.getLogger("emotionlab")


def scan_image_folder(
    root: str | Path, *, verify: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS
) -> SampleSet:
    """Read a folder of class folders, optionally under ``train/``, ``validation/`` (or ``val/``), ``test/``.

    Every file is decoded once when ``verify`` is set, so unreadable ones are skipped here and reported once
    (path and reason) rather than failing later in the middle of training. Files are never modified.
    """
    root = Path(root)
    if not root.is_dir():
        raise EmotionlabError(f"{root}: dataset folder not found")
    children = sorted(child for child in root.iterdir() if child.is_dir() and not child.name.startswith("."))
    split_dirs = [child for child in children if child.name.lower() in SPLIT_NAMES]
    if split_dirs:
        class_dirs = [
            (SPLIT_NAMES[split_dir.name.lower()], class_dir)
            for split_dir in split_dirs
            for class_dir in sorted(split_dir.iterdir())
            if class_dir.is_dir() and not class_dir.name.startswith(".")
        ]
    else:
        class_dirs = [(None, child) for child in children]
    declared = order_labels(class_dir.name for _, class_dir in class_dirs)
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for split, class_dir in class_dirs:
        # Not only regular files: a broken link or a FIFO named .jpg is reported as skipped, not ignored.
        for path in sorted(p for p in class_dir.rglob("*") if not p.is_dir() and not p.name.startswith(".")):
            relpath = path.relative_to(root).as_posix()
            if verify:
                try:
                    read_image(path, max_pixels=max_pixels)
                except ImageReadError as error:
                    skipped.append((str(path), error.reason))
                    continue
                except Exception as error:  # noqa: BLE001 - one odd file is skipped with its reason
                    skipped.append((str(path), error_reason(error)))
                    continue
            elif not is_image_name(path):
                skipped.append((str(path), "not an image (extension)"))
                continue
            samples.append(Sample(path=path, label=class_dir.name, split=split, relpath=relpath))
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    check_classes(root, Counter(sample.label for sample in samples), declared)
    return SampleSet(root=root, samples=samples, labels=declared, skipped=skipped, source="folders")


def load_samples(data: str | Path | None = None, manifest: str | Path | None = None, **kwargs) -> SampleSet:
    """The CLI's one entry to datasets: a manifest when given (its paths under ``data``), else a folder tree.

    A FER+ folder (``FER2013Train/label.csv`` ...) is read from its vote files: majority labels, five classes.
    """
    if manifest is not None:
        return read_manifest(manifest, root=resolve_data_root(data) if data is not None else None)
    root = resolve_data_root(data)
    if is_ferplus_root(root):
        return load_ferplus(root)
    return scan_image_folder(root, **kwargs)


def _check_sample(cropper, sample: Sample) -> str | None:
    """None when the sample's face crop can be made (it is then in the crop cache), else the reason."""
    try:
        cropper(sample.path, sample.face_box)
        return None
    except ImageReadError as error:
        return error.reason
    except Exception as error:  # noqa: BLE001 - one sample's failure is its reason, the run goes on
        return error_reason(error)


def prepare_face_samples(
    sample_set: SampleSet,
    faces: dict | None,
    *,
    image_size: int,
    workers: int = 1,
    show_progress: bool = False,
) -> SampleSet:
    """``sample_set`` without the samples whose face crop cannot be made (they join ``skipped`` with the
    reason); unchanged when ``faces`` is None (whole images were checked by the scan).

    Every sample is tried once, before training starts, in worker processes: an image that raises, or kills
    its worker in native code (a detector), is left out with its reason instead of stopping the run part way.
    The face-crop cache is filled on the way (the crops ``predict`` makes for a network of ``image_size``),
    so the training loader then takes every kept sample's crop from the cache without decoding or detecting.
    """
    if not faces:
        return sample_set
    from emotionlab.faces import FaceCropConfig, FaceCropper

    cropper = FaceCropper(FaceCropConfig.from_dict(faces), input_size=image_size)
    reasons = isolated_map(
        partial(_check_sample, cropper),
        sample_set.samples,
        workers=max(1, workers),
        on_error=lambda _sample, reason: reason,
        preload=["emotionlab.faces"],
    )
    total = len(sample_set.samples)
    reasons = progress(reasons, total=total, description="finding and cropping faces", enabled=show_progress)
    kept, skipped = [], list(sample_set.skipped)
    for sample, reason in zip(sample_set.samples, reasons, strict=True):
        if reason is None:
            kept.append(sample)
        else:
            skipped.append((str(sample.path), reason))
    return replace(sample_set, samples=kept, skipped=skipped)


class EpochSampler(Sampler):
    """Shuffles with a permutation that depends only on (seed, epoch) and shards it over processes.

    It yields ``(index, epoch)`` pairs so that augmentation can also be a pure function of (seed, epoch,
    index): a run resumed after a kill, or spread over workers and devices, sees exactly the same batches.
    """

    def __init__(self, size: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.size + self.world_size - 1) // self.world_size

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = order + order[: len(self) * self.world_size - len(order)]
        for index in padded[self.rank :: self.world_size]:
            yield (index, self.epoch)


class ImageDataset(Dataset):
    """Samples -> (tensor, label index). Augmentation randomness is seeded per (seed, epoch, index)."""

    def __init__(
        self,
        samples: list[Sample],
        labels: list[str],
        transform: Callable,
        *,
        loader: Callable[[Sample], object] | None = None,
        seed: int = 0,
    ):
        self.samples = samples
        self.label_index = {label: index for index, label in enumerate(labels)}
        self.transform = transform
        self.loader = loader or (lambda sample: read_image(sample.path))
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.samples[index]
        image = self.loader(sample)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch * 10_007 + index) % (2**63))
            tensor = self.transform(image)
        return tensor, self.label_index[sample.label]
