"""The ``pretrain`` recipe: train a backbone (default ``fer_cnn``) on FER+ faces held in memory.

Offline there are no ImageNet weights, so the project's transfer learning starts from a backbone pre-trained on
FER+ (28k crowd-labelled faces) instead. Usage::

    emotionlab train --recipe pretrain --data /path/to/ferplus --model fer_cnn --image-size 48 \\
        --epochs 11 --optimizer adamw --lr 2e-3 --weight-decay 1e-4 --scheduler cosine --label-smoothing 0.1 \\
        --augment light --out runs/ferplus

It is an ordinary run (checkpoints, ``--resume``, ``model.safetensors``); the model file is a complete
five-class FER+ classifier whose weights ``--weights`` accepts as a backbone for any later recipe.

Options in ``TrainConfig.pretrain`` (``--ferplus-classes``, ``--ferplus-targets``): ``ferplus_classes`` 5
(default) or 8, ``ferplus_targets`` ``majority`` (default) or ``soft`` (vote distributions). ``data.augment``: ``none`` = no augmentation,
``flip`` = flips only, any other policy = the cheap tensor augmentation of ``ferplus.TensorAugment``
(shift/zoom 10%, rotation 10 degrees, flip), because the PIL policies would decode and re-encode every face.
A dataset that is not a FER+ folder is also accepted (its images are decoded once to 48 px grey, hard labels).
"""

from __future__ import annotations

import logging

import torch

from emotionlab.config import RunConfig
from emotionlab.data import ferplus
from emotionlab.data.samples import SampleSet
from emotionlab.errors import EmotionlabError
from emotionlab.models.factory import create_model
from emotionlab.training.recipes.images import image_metadata
from emotionlab.training.recipes.registry import Prepared, register_recipe

log = logging.getLogger("emotionlab")


def _augment_policy(name: str) -> ferplus.TensorAugment | None:
    if name in ("none", ""):
        return None
    if name == "flip":
        return ferplus.TensorAugment(max_shift=0.0, max_rotation=0.0, scale=(1.0, 1.0))
    return ferplus.TensorAugment()


def build_ferplus_datasets(config: RunConfig, sample_set: SampleSet, train_samples, val_samples):
    """(train, validation, labels, soft): in-memory tensor datasets for FER+ or any labelled face folder."""
    classes, targets = config.train.pretrain.ferplus_classes, config.train.pretrain.ferplus_targets
    size, seed = config.data.image_size, config.train.seed
    augment = _augment_policy(config.data.augment)
    if ferplus.is_ferplus_root(sample_set.root):
        soft = targets == "soft"
        train_items = ferplus.read_split(sample_set.root, "train", classes=classes, targets=targets)
        val_items = ferplus.read_split(sample_set.root, "validation", classes=classes, targets=targets)
        train_set = ferplus.FerPlusTensors.from_items(
            train_items, soft=soft, image_size=size, augment=augment, seed=seed
        )
        val_set = ferplus.FerPlusTensors.from_items(val_items, soft=soft, image_size=size, seed=seed)
        return train_set, val_set, ferplus.class_names(classes), soft
    if targets != "majority" or classes != 5:
        raise EmotionlabError(
            f"{sample_set.root}: soft targets and 8 classes need a FER+ folder (with label.csv files)"
        )
    index = {label: position for position, label in enumerate(sample_set.labels)}

    def tensors(samples, augment_policy):
        images = ferplus.load_grey_images([sample.path for sample in samples])
        labels = torch.tensor([index[sample.label] for sample in samples])
        return ferplus.FerPlusTensors(images, labels, image_size=size, augment=augment_policy, seed=seed)

    return tensors(train_samples, augment), tensors(val_samples, None), list(sample_set.labels), False


@register_recipe("pretrain")
def pretrain(config: RunConfig, sample_set: SampleSet, train_samples, val_samples) -> Prepared:
    """Train every weight of ``config.train.model`` on FER+ faces (grey, per-image standardised)."""
    if config.data.faces:
        raise EmotionlabError("the pretrain recipe reads FER+ faces as they are; drop --detect")
    train_set, val_set, labels, soft = build_ferplus_datasets(config, sample_set, train_samples, val_samples)
    log.info("pretrain: %d training and %d validation faces in memory", len(train_set), len(val_set))
    net = create_model(
        config.train.model,
        num_classes=len(labels),
        image_size=config.data.image_size,
        pretrained=config.train.pretrained,
        weights=config.train.weights,
    )
    metadata = {
        **image_metadata(config),
        # FER faces are grey and per-image standardised whatever the backbone's default preprocessing is.
        "normalization": {"type": "per_image"},
        "grayscale": True,
        "labels": labels,
        "pretraining": {
            "dataset": "FER+" if ferplus.is_ferplus_root(sample_set.root) else str(sample_set.root),
            "classes": len(labels),
            "targets": "soft" if soft else "majority",
        },
    }
    return Prepared(net=net, train_set=train_set, val_set=val_set, metadata=metadata, soft_targets=soft)
