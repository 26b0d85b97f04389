"""Configuration as frozen dataclasses, parsed once at the CLI edge and saved with every run and model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from emotionlab.errors import EmotionlabError

# The choices of every option, validated when a config is built (one line, before any data is read).
RECIPES = ("scratch", "transfer", "finetune", "pretrain")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine")
AUGMENT_POLICIES = ("none", "flip", "seed", "light", "randaugment", "trivialaugment")
FERPLUS_TARGETS = ("majority", "soft")
CLASS_BALANCE = ("none", "weight", "logit-adjust")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024


class ConfigError(EmotionlabError):
    """A configuration value out of its range or choices."""


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}")


def _at_least(name: str, value, low, *, strict: bool = False) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or value < low
        or (strict and value == low)
    ):
        raise ConfigError(f"{name}: {value!r} must be {'greater than' if strict else 'at least'} {low}")


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None  # dataset folder; None -> $EMOTIONLAB_DATA or the workspace copy
    manifest: str | None = None  # manifest CSV (path,label,split,...); paths relative to root
    image_size: int = 128  # the study's input size
    augment: str = "none"  # name of a policy in data/transforms.py
    # Face crops: None uses whole images; otherwise a FaceCropConfig dict (detector, margin, align).
    faces: dict | None = None
    split_seed: int = 0  # only used when the dataset has no split folders and no manifest
    num_workers: int = 0  # DataLoader worker processes; 0 keeps small CPU runs simplest and fastest

    def __post_init__(self):
        if not isinstance(self.image_size, int) or not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image_size: {self.image_size!r} must be {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} pixels"
            )
        _choice("augment", self.augment, AUGMENT_POLICIES)
        _at_least("num_workers", self.num_workers, 0)


@dataclass(frozen=True)
class PretrainOptions:
    """``pretrain`` recipe: which FER+ classes and targets train the backbone."""

    ferplus_classes: int = 5  # 5 (the project's emotions) or 8 (with neutral, disgust, contempt)
    ferplus_targets: str = "majority"  # majority (hard labels) | soft (crowd-vote distributions)

    def __post_init__(self):
        _choice("ferplus_classes", self.ferplus_classes, (5, 8))
        _choice("ferplus_targets", self.ferplus_targets, FERPLUS_TARGETS)


@dataclass(frozen=True)
class TransferOptions:
    """``transfer`` recipe: the new head and the pre-computed augmented feature views."""

    head_hidden: int | None = None  # None: a linear head; N: an MLP with N hidden units
    head_dropout: float = 0.2
    feature_views: int = 4  # augmented views per training image (augment policy not "none")

    def __post_init__(self):
        if self.head_hidden is not None:
            _at_least("head_hidden", self.head_hidden, 1)
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"head_dropout: {self.head_dropout!r} must be in [0, 1)")
        _at_least("feature_views", self.feature_views, 1)


@dataclass(frozen=True)
class LossOptions:
    """Regularisation and class balance of the training loss."""

    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0 = off
    class_balance: str = "none"  # none | weight (inverse frequency) | logit-adjust (log-prior shift)

    def __post_init__(self):
        _at_least("mixup", self.mixup, 0)
        _choice("class_balance", self.class_balance, CLASS_BALANCE)


@dataclass(frozen=True)
class MixOptions:
    """``finetune``: FER+ faces mixed into each epoch (keeps the backbone's FER+ skill)."""

    ferplus: str | None = None  # a FER+ folder; None = no mixing
    ratio: float = 1.0  # FER+ faces per task image, per epoch
    # FER+ classes the task's data lacks, added as outputs and learnt from FER+ faces alone: ("neutral",) gives
    # the default model its calm-face class although no seed photo is labelled neutral.
    add_classes: tuple[str, ...] = ()
    # True: every class equally often among the mixed faces (FER+'s prior under-calls fearful: ~3% of its faces)
    balanced: bool = False

    def __post_init__(self):
        _at_least("mix ratio", self.ratio, 0, strict=True)
        object.__setattr__(self, "add_classes", tuple(self.add_classes or ()))
        if self.add_classes and not self.ferplus:
            raise ConfigError("add_classes needs a FER+ folder to learn them from (--mix-ferplus)")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "seed_cnn"  # any name of models/registry.py: seed_cnn, or a timm backbone
    recipe: str = "scratch"  # scratch | transfer | finetune | pretrain
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-4  # the study's Adam learning rate
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    scheduler: str = "none"  # none | cosine
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    seed: int = 0
    early_stopping_patience: int | None = None  # epochs without a new lowest validation loss
    weights: str | None = None  # a local weights file for pretrained backbones (offline)
    pretrained: bool = False  # download pretrained weights from the hub (online users)
    init_from: str | None = None  # a model file or run folder whose weights start fine-tuning
    backbone_lr_scale: float = 0.1  # finetune: backbone learning rate = learning_rate * this
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    # Machines taking part (Lightning's num_nodes): each starts the same command, e.g. under torchrun, which
    # sets MASTER_ADDR, NODE_RANK and the world size; devices x num_nodes processes train together.
    num_nodes: int = 1
    precision: str = "32-true"
    pretrain: PretrainOptions = field(default_factory=PretrainOptions)
    transfer: TransferOptions = field(default_factory=TransferOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    mix: MixOptions = field(default_factory=MixOptions)

    def __post_init__(self):
        _choice("recipe", self.recipe, RECIPES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("learning_rate", self.learning_rate, 0, strict=True)
        _at_least("weight_decay", self.weight_decay, 0)
        _at_least("num_nodes", self.num_nodes, 1)
        _at_least("warmup_epochs", self.warmup_epochs, 0)
        _at_least("backbone_lr_scale", self.backbone_lr_scale, 0, strict=True)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing: {self.label_smoothing!r} must be in [0, 1)")
        if self.early_stopping_patience is not None:
            _at_least("early_stopping_patience", self.early_stopping_patience, 1)
        for name, kind in (
            ("pretrain", PretrainOptions),
            ("transfer", TransferOptions),
            ("loss", LossOptions),
            ("mix", MixOptions),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):  # built from a dict (YAML): make it the dataclass
                object.__setattr__(self, name, _build(kind, value, f"train.{name}"))


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/latest"


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def _build(kind, values: dict, where: str):
    """``kind(**values)`` with unknown keys refused in one line (no silently ignored typo)."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return kind(**values)


# Keys of the former free-form ``train.extra`` dict, mapped to their typed place (configs of older runs).
_LEGACY_EXTRA = {
    "ferplus_classes": ("pretrain", "ferplus_classes"),
    "ferplus_targets": ("pretrain", "ferplus_targets"),
    "head_hidden": ("transfer", "head_hidden"),
    "head_dropout": ("transfer", "head_dropout"),
    "feature_views": ("transfer", "feature_views"),
    "mixup": ("loss", "mixup"),
    "class_balance": ("loss", "class_balance"),
    "mix_ferplus": ("mix", "ferplus"),
    "mix_ratio": ("mix", "ratio"),
}


def _train_from_dict(raw: dict) -> TrainConfig:
    raw = dict(raw)
    extra = raw.pop("extra", None) or {}
    for key, value in extra.items():
        if key not in _LEGACY_EXTRA:
            raise ConfigError(
                f"train.extra: unknown option {key!r} (known: {', '.join(sorted(_LEGACY_EXTRA))})"
            )
        group, name = _LEGACY_EXTRA[key]
        raw[group] = {**(raw.get(group) or {}), name: value}
    return _build(TrainConfig, raw, "train")


def run_config_from_dict(raw: dict) -> RunConfig:
    unknown = sorted(set(raw) - {"data", "train", "out"})
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r} (data, train, out)")
    return RunConfig(
        data=_build(DataConfig, raw.get("data") or {}, "data"),
        train=_train_from_dict(raw.get("train") or {}),
        out=raw.get("out", "runs/latest"),
    )


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    return run_config_from_dict(yaml.safe_load(Path(path).read_text()))
