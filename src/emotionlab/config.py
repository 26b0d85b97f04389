"""Configuration as frozen dataclasses, parsed once at the CLI edge and saved with every run and model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


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
    precision: str = "32-true"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/latest"


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def run_config_from_dict(raw: dict) -> RunConfig:
    return RunConfig(
        data=DataConfig(**raw.get("data", {})),
        train=TrainConfig(**raw.get("train", {})),
        out=raw.get("out", "runs/latest"),
    )


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    return run_config_from_dict(yaml.safe_load(Path(path).read_text()))
