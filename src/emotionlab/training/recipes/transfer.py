"""The ``transfer`` recipe: a frozen backbone, its features computed once, only a new head trained.

The backbone (any registry name: ``fer_cnn``, ``seed_cnn`` or a timm model; weights from
``--weights FILE`` or, online, ``--pretrained``) is frozen, so its features for each training and validation
image are computed once, cached in memory and on disk (``$EMOTIONLAB_CACHE/features`` or
``~/.cache/emotionlab/features``), and only a new head is trained on them: seconds per run on a CPU. The cache key
covers the backbone's weights (SHA-256), its architecture, the input size, normalisation, face-crop settings,
the transform and every image file (path, size, modification time), so a changed input never reuses stale
features. Augmentation with frozen features: ``--augment none`` trains on one feature vector per image; any
other policy adds ``feature_views`` (default 4, ``TrainConfig.transfer``) augmented views per training image,
drawn once with that policy and cached too, so every epoch sees the original and the same fixed views.
The head is linear, or a small MLP with ``transfer.head_hidden`` hidden units. The exported model file is the
backbone with the trained head in place of its classifier (the one its architecture declares): it predicts from
images like any other model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from emotionlab.config import RunConfig
from emotionlab.data.dataset import ImageDataset
from emotionlab.data.samples import Sample, SampleSet
from emotionlab.data.transforms import build_eval_transform, build_train_transform
from emotionlab.models.factory import (
    attach_mlp_head,
    classifier_of,
    create_model,
    model_spec,
    replace_classifier,
)
from emotionlab.models.io import _digest
from emotionlab.paths import cache_dir
from emotionlab.training.recipes.images import build_image_loader
from emotionlab.training.recipes.registry import Prepared, register_recipe

log = logging.getLogger("emotionlab")

FEATURE_VERSION = 1  # bump when feature extraction changes, so old cache files are not reused
_MEMORY_CACHE: dict[str, torch.Tensor] = {}


def head_parameter_names(net: nn.Module, architecture: str) -> set[str]:
    """Names of the parameters of the classifier ``architecture`` declares (``ModelSpec.head``)."""
    path, head = classifier_of(net, architecture)
    return {f"{path}.{name}" for name, _ in head.named_parameters()}


def backbone_digest(net: nn.Module, architecture: str) -> str:
    """SHA-256 of the backbone's tensors (classifier excluded: a fresh random head must not miss the cache)."""
    head_path = classifier_of(net, architecture)[0]
    state = {key: value for key, value in net.state_dict().items() if not key.startswith(head_path + ".")}
    return _digest(state)


def _file_identity(sample: Sample) -> list:
    stat = sample.path.stat()
    return [str(sample.path), stat.st_size, stat.st_mtime_ns]


@torch.no_grad()
def extract_features(
    backbone: nn.Module, dataset: Dataset, keys: list, *, batch_size: int = 64
) -> torch.Tensor:
    """Pre-logit features (``forward_head(pre_logits=True)``) of ``dataset[key]`` for each key, in order."""
    backbone.eval()
    loader = DataLoader(_Keyed(dataset, keys), batch_size=batch_size)
    chunks = [
        backbone.forward_head(backbone.forward_features(images), pre_logits=True) for images, _ in loader
    ]
    return torch.cat(chunks).float().contiguous()


class _Keyed(Dataset):
    def __init__(self, dataset: Dataset, keys: list):
        self.dataset, self.keys = dataset, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, position):
        return self.dataset[self.keys[position]]


def cached_features(backbone: nn.Module, dataset: ImageDataset, keys: list, identity: dict) -> torch.Tensor:
    """Features from memory, else from the disk cache, else computed (and then stored in both)."""
    key = hashlib.sha256(
        json.dumps({**identity, "version": FEATURE_VERSION}, sort_keys=True).encode()
    ).hexdigest()
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = cache_dir("features") / key[:2] / f"{key}.safetensors"
    features = None
    if path.is_file():
        try:
            features = load_file(str(path))["features"]
            log.info("transfer: features from cache %s", path)
        except (SafetensorError, OSError, KeyError, ValueError) as error:  # damaged: recompute, never trust
            log.warning("feature cache %s unreadable (%s); recomputing", path, error)
    if features is None:
        features = extract_features(backbone, dataset, keys)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"features": features}, str(temporary))
            os.replace(temporary, path)
        except OSError as error:
            log.warning(
                "feature cache %s not writable (%s); features are not cached on disk", path.parent, error
            )
    _MEMORY_CACHE[key] = features
    return features


class FeatureDataset(Dataset):
    """Pre-computed features: ``(index, epoch) -> (feature vector, label index)``."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor):
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        return self.features[index], self.targets[index]


class TransferHead(nn.Module):
    """What trains in a transfer run: dropout on the frozen features, then the new classifier."""

    def __init__(self, classifier: nn.Module, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))


def _feature_set(
    backbone, config: RunConfig, samples, labels, metadata, digest, *, train: bool
) -> FeatureDataset:
    size, normalization, grey = metadata["input_size"], metadata["normalization"], metadata["grayscale"]
    loader, seed = build_image_loader(config), config.train.seed
    identity = {
        "backbone": digest,
        "architecture": metadata["architecture"],
        "input_size": size,
        "normalization": normalization,
        "grayscale": grey,
        "faces": config.data.faces,
        "files": [_file_identity(sample) for sample in samples],
    }
    eval_set = ImageDataset(
        samples,
        labels,
        build_eval_transform(image_size=size, normalization=normalization, grayscale=grey),
        loader=loader,
        seed=seed,
    )
    indices = list(range(len(samples)))
    parts = [cached_features(backbone, eval_set, indices, {**identity, "transform": "eval"})]
    views = config.train.transfer.feature_views
    if train and config.data.augment not in ("none", "") and views > 0:
        transform = build_train_transform(
            image_size=size, normalization=normalization, policy=config.data.augment, grayscale=grey
        )
        train_set = ImageDataset(samples, labels, transform, loader=loader, seed=seed)
        for view in range(1, views + 1):
            keys = [
                (index, view) for index in indices
            ]  # ImageDataset seeds augmentation by (seed, view, index)
            parts.append(
                cached_features(
                    backbone,
                    train_set,
                    keys,
                    {**identity, "transform": f"augment:{config.data.augment}", "seed": seed, "view": view},
                )
            )
    label_index = {label: position for position, label in enumerate(labels)}
    targets = torch.tensor([label_index[sample.label] for sample in samples]).repeat(len(parts))
    return FeatureDataset(torch.cat(parts), targets)


@register_recipe("transfer")
def transfer(config: RunConfig, sample_set: SampleSet, train_samples, val_samples) -> Prepared:
    """Freeze the backbone, cache its features once, train only a new head (linear or MLP) on them."""
    train = config.train
    labels = list(sample_set.labels)
    backbone = create_model(
        train.model,
        num_classes=len(labels),
        image_size=config.data.image_size,
        pretrained=train.pretrained,
        weights=train.weights,
    )
    if not train.pretrained and train.weights is None:
        log.warning(
            "transfer: %s has random weights (no --weights FILE, no --pretrained): features are noise",
            train.model,
        )
    backbone.reset_classifier(len(labels))  # always a new head: a file's head may order labels differently
    hidden = train.transfer.head_hidden
    if hidden:
        attach_mlp_head(backbone, train.model, len(labels), int(hidden))
    backbone.requires_grad_(False).eval()
    spec = model_spec(train.model)
    metadata = {
        "architecture": train.model,
        "architecture_kwargs": {"head_hidden": int(hidden)} if hidden else {},
        "input_size": config.data.image_size,
        "normalization": spec.normalization,
        "grayscale": spec.grayscale,
        "faces": config.data.faces,
    }
    digest = backbone_digest(backbone, train.model)
    train_set = _feature_set(backbone, config, train_samples, labels, metadata, digest, train=True)
    val_set = _feature_set(backbone, config, val_samples, labels, metadata, digest, train=False)
    log.info(
        "transfer: %d training and %d validation feature vectors of size %d",
        len(train_set),
        len(val_set),
        train_set.features.shape[1],
    )
    path, classifier = classifier_of(backbone, train.model)
    head = TransferHead(copy.deepcopy(classifier).requires_grad_(True), train.transfer.head_dropout).train()

    def export(trained: nn.Module) -> nn.Module:
        full = replace_classifier(copy.deepcopy(backbone), path, copy.deepcopy(trained.classifier))
        return full.requires_grad_(True).eval()

    return Prepared(net=head, train_set=train_set, val_set=val_set, metadata=metadata, export=export)
