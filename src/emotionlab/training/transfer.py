"""Transfer learning (frozen backbone, features computed once) and fine-tuning (every weight, low learning rate).

``transfer``: the backbone (any registry name: ``fer_cnn``, ``seed_cnn`` or a timm model; weights from
``--weights FILE`` or, online, ``--pretrained``) is frozen, so its features for each training and validation
image are computed once, cached in memory and on disk (``$EMOTIONLAB_CACHE/features`` or
``~/.cache/emotionlab/features``), and only a new head is trained on them: seconds per run on a CPU. The cache key
covers the backbone's weights (SHA-256), its architecture, the input size, normalisation, face-crop settings,
the transform and every image file (path, size, modification time), so a changed input never reuses stale
features. Augmentation with frozen features: ``--augment none`` trains on one feature vector per image; any
other policy adds ``feature_views`` (default 4, ``TrainConfig.transfer``) augmented views per training image,
drawn once with that policy and cached too, so every epoch sees the original and the same fixed views.
The head is linear, or a small MLP with ``transfer.head_hidden`` hidden units. The exported model file is the
backbone with the trained head in place of its classifier: it predicts from images like any other model.

``finetune``: starts from a complete model file (``--from RUN_DIR_OR_MODEL_FILE``, e.g. a transfer run, or the
FER+ pre-trained ``models/ferplus_backbone.safetensors``) and trains every weight, the backbone at
``learning_rate * backbone_lr_scale`` and the head at ``learning_rate``, with ``warmup_epochs`` of linear
warm-up before the cosine schedule. The head is kept when the labels match the dataset's, else replaced.
(``--recipe scratch --weights FILE`` also starts from a file's weights, but with one learning rate for all.)
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from emotionlab.config import RunConfig
from emotionlab.data.dataset import ImageDataset, Sample, SampleSet
from emotionlab.data.transforms import build_eval_transform, build_train_transform
from emotionlab.errors import EmotionlabError
from emotionlab.models.io import _digest, load_model_file
from emotionlab.models.registry import attach_mlp_head, classifier_of, create_model, model_spec
from emotionlab.training.recipes import Prepared, build_image_datasets, build_image_loader, register_recipe

log = logging.getLogger("emotionlab")

CACHE_ENV = "EMOTIONLAB_CACHE"
FEATURE_VERSION = 1  # bump when feature extraction changes, so old cache files are not reused
DEFAULT_FEATURE_VIEWS = 4
_MEMORY_CACHE: dict[str, torch.Tensor] = {}


def feature_cache_dir() -> Path:
    """``$EMOTIONLAB_CACHE/features`` when set, else ``~/.cache/emotionlab/features``."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "emotionlab") / "features"


def head_parameter_names(net: nn.Module) -> set[str]:
    path, head = classifier_of(net)
    return {f"{path}.{name}" for name, _ in head.named_parameters()}


def backbone_digest(net: nn.Module) -> str:
    """SHA-256 of the backbone's tensors (classifier excluded: a fresh random head must not miss the cache)."""
    head = {name.rpartition(".")[0] for name in head_parameter_names(net)}
    state = {
        key: value
        for key, value in net.state_dict().items()
        if not any(key.startswith(h + ".") for h in head)
    }
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
    path = feature_cache_dir() / key[:2] / f"{key}.safetensors"
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
        attach_mlp_head(backbone, len(labels), int(hidden))
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
    digest = backbone_digest(backbone)
    train_set = _feature_set(backbone, config, train_samples, labels, metadata, digest, train=True)
    val_set = _feature_set(backbone, config, val_samples, labels, metadata, digest, train=False)
    log.info(
        "transfer: %d training and %d validation feature vectors of size %d",
        len(train_set),
        len(val_set),
        train_set.features.shape[1],
    )
    path, classifier = classifier_of(backbone)
    head = TransferHead(
        copy.deepcopy(classifier).requires_grad_(True), train.transfer.head_dropout
    ).train()

    def export(trained: nn.Module) -> nn.Module:
        full = copy.deepcopy(backbone)
        parent_path, _, attribute = path.rpartition(".")
        setattr(
            full.get_submodule(parent_path) if parent_path else full,
            attribute,
            copy.deepcopy(trained.classifier),
        )
        return full.requires_grad_(True).eval()

    return Prepared(net=head, train_set=train_set, val_set=val_set, metadata=metadata, export=export)


def resolve_model_source(source: str | None) -> Path:
    """``--from``: a model file, or a run folder holding ``model.safetensors``."""
    if not source:
        raise EmotionlabError(
            "the finetune recipe needs --from RUN_DIR_OR_MODEL_FILE (a transfer run or a model file)"
        )
    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
        if not path.is_file():
            raise EmotionlabError(f"{source}: run folder without model.safetensors (did the run finish?)")
    elif not path.is_file():
        raise EmotionlabError(f"{source}: no such model file or run folder")
    return path


@register_recipe("finetune")
def finetune(config: RunConfig, sample_set: SampleSet, train_samples, val_samples) -> Prepared:
    """Train every weight of a complete model file at a low learning rate (backbone lower than the head)."""
    if config.train.weights:
        raise EmotionlabError(
            "finetune starts from --from RUN_DIR_OR_MODEL_FILE; --weights belongs to scratch/transfer"
        )
    source = resolve_model_source(config.train.init_from)
    net, source_meta = load_model_file(source)
    labels = list(sample_set.labels)
    kwargs = dict(source_meta.get("architecture_kwargs") or {})
    if list(source_meta["labels"]) != labels:
        log.warning(
            "finetune: %s predicts %s, the data has %s: starting with a new head",
            source,
            ", ".join(source_meta["labels"]),
            ", ".join(labels),
        )
        net.reset_classifier(len(labels))
        if kwargs.get("head_hidden"):
            attach_mlp_head(net, len(labels), int(kwargs["head_hidden"]))
    if config.train.model != source_meta["architecture"]:
        log.info("finetune: architecture %s comes from %s", source_meta["architecture"], source)
    net.requires_grad_(True).train()
    metadata = {
        "architecture": source_meta["architecture"],
        "architecture_kwargs": kwargs,
        "input_size": config.data.image_size,
        "normalization": source_meta["normalization"],
        "grayscale": bool(source_meta.get("grayscale", False)),
        "faces": config.data.faces,
        "finetuned_from": {"path": str(source), "weights_sha256": source_meta.get("weights_sha256")},
    }
    train_set, val_set = build_image_datasets(config, labels, train_samples, val_samples, metadata)
    mix = config.train.mix.ferplus
    if mix:
        train_set = _mix_ferplus(config, train_set, labels, metadata, mix)
        metadata["finetuned_from"]["mixed_with"] = {
            "dataset": "FER+ train (majority, five classes)",
            "ratio": config.train.mix.ratio,
        }
    return Prepared(
        net=net,
        train_set=train_set,
        val_set=val_set,
        metadata=metadata,
        backbone_lr_scale=config.train.backbone_lr_scale,
    )


class MixedDataset(Dataset):
    """The task's images plus, each epoch, a fresh random subset of extra faces (``(index, epoch)`` keys).

    Mixing FER+ faces into fine-tuning keeps the backbone's FER+ skill (no catastrophic forgetting) while the
    model adapts to the task; validation stays on the task's own images, so model selection is unchanged.
    """

    def __init__(self, primary: Dataset, extra: Dataset, per_epoch: int, *, seed: int = 0):
        self.primary, self.extra, self.per_epoch, self.seed = primary, extra, min(per_epoch, len(extra)), seed

    def __len__(self) -> int:
        return len(self.primary) + self.per_epoch

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if index < len(self.primary):
            return self.primary[(index, epoch)]
        generator = torch.Generator().manual_seed(self.seed * 7_777 + epoch)
        chosen = torch.randperm(len(self.extra), generator=generator)[index - len(self.primary)]
        return self.extra[(int(chosen), epoch)]


def _mix_ferplus(
    config: RunConfig, train_set: Dataset, labels: list[str], metadata: dict, root: str
) -> Dataset:
    from emotionlab.data import ferplus

    if not ferplus.is_ferplus_root(root):
        raise EmotionlabError(f"{root}: not a FER+ folder (FER2013Train/label.csv missing) for mix_ferplus")
    if not metadata["grayscale"] or metadata["normalization"].get("type") != "per_image":
        raise EmotionlabError(
            "mix_ferplus needs a grey, per-image standardised model (fer_cnn), as FER+ faces are"
        )
    names = ferplus.class_names(5)
    items = [item for item in ferplus.read_split(root, "train") if item.label in labels]
    faces = ferplus.FerPlusTensors.from_items(
        items, image_size=metadata["input_size"], augment=ferplus.TensorAugment(), seed=config.train.seed
    )
    # FER+ class indices follow FER+'s five-class order; remap them to this dataset's label order.
    faces.targets = torch.tensor([labels.index(names[int(target)]) for target in faces.targets])
    ratio = config.train.mix.ratio
    log.info("finetune: mixing %d of %d FER+ faces into each epoch", int(ratio * len(train_set)), len(faces))
    return MixedDataset(train_set, faces, int(ratio * len(train_set)), seed=config.train.seed)
