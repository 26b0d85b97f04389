"""A picture of the training augmentation: each image beside views of it as training sees them
(``emotionlab augment-preview``)."""

from __future__ import annotations

from pathlib import Path

from emotionlab.config import DataConfig, RunConfig
from emotionlab.errors import EmotionlabError


def augment_preview(
    root: str | Path,
    out: str | Path,
    *,
    policy: str = "seed",
    image_size: int = 128,
    rows: int = 6,
    views: int = 7,
    seed: int = 0,
    faces: dict | None = None,
    manifest: str | Path | None = None,
) -> Path:
    """A PNG grid: one row per image (spread over the classes), the original then ``views`` augmented views."""
    import torch
    from torchvision.utils import make_grid

    from emotionlab.data.dataset import ImageDataset, load_samples
    from emotionlab.data.transforms import AUGMENT_POLICIES, UNIT_NORMALIZATION, build_eval_transform
    from emotionlab.data.transforms import build_train_transform as build_train
    from emotionlab.training.recipes.images import build_image_loader

    if policy not in AUGMENT_POLICIES:
        raise EmotionlabError(
            f"unknown augmentation policy {policy!r}; choose one of {', '.join(AUGMENT_POLICIES)}"
        )
    sample_set = load_samples(root, manifest)
    pool = sample_set.split("train") or sample_set.samples
    by_label = [[s for s in pool if s.label == label] for label in sample_set.labels]
    chosen = []  # round-robin over the classes, so every emotion shows up
    for position in range(max(map(len, by_label))):
        chosen += [group[position] for group in by_label if position < len(group)]
    chosen = chosen[:rows]
    loader = build_image_loader(RunConfig(data=DataConfig(faces=faces, image_size=image_size)))
    plain = ImageDataset(
        chosen,
        sample_set.labels,
        build_eval_transform(image_size=image_size, normalization=UNIT_NORMALIZATION),
        loader=loader,
        seed=seed,
    )
    augmented = ImageDataset(
        chosen,
        sample_set.labels,
        build_train(image_size=image_size, normalization=UNIT_NORMALIZATION, policy=policy),
        loader=loader,
        seed=seed,
    )
    tiles = []
    for index in range(len(chosen)):
        tiles.append(plain[index][0])
        tiles += [augmented[(index, view)][0] for view in range(1, views + 1)]
    grid = make_grid(torch.stack(tiles).clamp(0, 1), nrow=views + 1, padding=2, pad_value=1.0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(out)
    return out
