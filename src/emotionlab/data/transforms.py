"""Train and eval transforms (torchvision v2), and named augmentation policies."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from emotionlab.config import AUGMENT_POLICIES


class PerImageStandardize(torch.nn.Module):
    """Whitening read as per-image standardisation: each image to zero mean and unit variance."""

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = tensor.mean()
        std = tensor.std().clamp_min(1.0 / (tensor.numel() ** 0.5))
        return (tensor - mean) / std


def _normalize(normalization: dict) -> torch.nn.Module:
    if normalization.get("type") == "per_image":
        return PerImageStandardize()
    return v2.Normalize(mean=list(normalization["mean"]), std=list(normalization["std"]))


def _augmentations(policy: str, image_size: int) -> list:
    """The random part of a training transform; applied to uint8 images before scaling."""
    if policy in ("none", ""):
        return []
    if policy == "flip":
        return [v2.RandomHorizontalFlip()]
    if policy == "seed":
        # The study's Keras ImageDataGenerator: rotation 20 deg, shifts 30%, shear 30%, zoom 30%, h-flip,
        # saturation +-20%. Keras' shear_range is in degrees-ish radians; 0.3 rad ~ 17 degrees.
        return [
            v2.RandomAffine(degrees=20, translate=(0.3, 0.3), scale=(0.7, 1.3), shear=17),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(saturation=0.2),
        ]
    if policy == "light":
        # Milder geometry for tight face crops, where 30% shifts push the face out of the frame.
        return [
            v2.RandomResizedCrop(image_size, scale=(0.75, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        ]
    if policy == "randaugment":
        return [v2.RandomHorizontalFlip(), v2.RandAugment(num_ops=2, magnitude=9)]
    if policy == "trivialaugment":
        return [v2.RandomHorizontalFlip(), v2.TrivialAugmentWide()]
    raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {', '.join(AUGMENT_POLICIES)}")


def build_eval_transform(*, image_size: int, normalization: dict, grayscale: bool = False) -> v2.Compose:
    """PIL RGB image -> normalised float tensor at ``image_size`` (squashed to a square, as the study did)."""
    steps: list = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if grayscale:
        steps.append(v2.Grayscale(num_output_channels=3))
    steps += [v2.ToDtype(torch.float32, scale=True), _normalize(normalization)]
    return v2.Compose(steps)


def build_train_transform(
    *, image_size: int, normalization: dict, policy: str = "none", grayscale: bool = False
) -> v2.Compose:
    steps: list = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if grayscale:
        steps.append(v2.Grayscale(num_output_channels=3))
    steps += _augmentations(policy, image_size)
    steps += [v2.ToDtype(torch.float32, scale=True), _normalize(normalization)]
    return v2.Compose(steps)


def imagenet_normalization(mean: Sequence[float], std: Sequence[float]) -> dict:
    return {"type": "mean_std", "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


UNIT_NORMALIZATION = {"type": "mean_std", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # [0, 1] scaling
