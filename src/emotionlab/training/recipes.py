"""Recipes turn a run config and a dataset into what Lightning trains and what gets exported.

A recipe returns a ``Prepared``: the network to optimise, the train/validation datasets, the learning-rate
layout, and ``export`` (trained network -> the complete model saved to the model file). ``scratch`` trains a
model end to end on images; other recipes (transfer with cached frozen features, fine-tuning, FER+
pre-training) register themselves with ``register_recipe``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn
from torch.utils.data import Dataset

from emotionlab.config import RunConfig
from emotionlab.data.dataset import ImageDataset, Sample, SampleSet
from emotionlab.data.transforms import build_eval_transform, build_train_transform
from emotionlab.errors import EmotionlabError
from emotionlab.models.registry import create_model, model_spec


@dataclass
class Prepared:
    net: nn.Module
    train_set: Dataset
    val_set: Dataset
    metadata: dict  # architecture, input_size, normalization, grayscale, faces, architecture_kwargs
    backbone_lr_scale: float = 1.0
    soft_targets: bool = False
    export: Callable[[nn.Module], nn.Module] = field(default=lambda net: net)


RecipeFn = Callable[[RunConfig, SampleSet, list[Sample], list[Sample]], Prepared]
_RECIPES: dict[str, RecipeFn] = {}


def register_recipe(name: str):
    def decorate(function: RecipeFn) -> RecipeFn:
        _RECIPES[name] = function
        return function

    return decorate


def create_recipe(name: str) -> RecipeFn:
    _load_recipes()
    if name not in _RECIPES:
        raise EmotionlabError(f"unknown recipe {name!r}; choose one of {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def list_recipes() -> list[str]:
    _load_recipes()
    return sorted(_RECIPES)


def _load_recipes() -> None:
    import importlib

    for module in ("emotionlab.training.transfer", "emotionlab.training.pretrain"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def build_image_loader(config: RunConfig):
    """What reads a sample for training: the whole image, or its face crop when ``data.faces`` is set."""
    if not config.data.faces:
        return None
    from emotionlab.data.faces import FaceCropConfig, FaceCropper

    return FaceCropper(FaceCropConfig.from_dict(config.data.faces)).for_sample


def image_metadata(config: RunConfig) -> dict:
    spec = model_spec(config.train.model)
    return {
        "architecture": config.train.model,
        "architecture_kwargs": {},
        "input_size": config.data.image_size,
        "normalization": spec.normalization,
        "grayscale": spec.grayscale,
        "faces": config.data.faces,
    }


def build_image_datasets(config: RunConfig, labels, train_samples, val_samples, metadata: dict):
    size, normalization, grey = metadata["input_size"], metadata["normalization"], metadata["grayscale"]
    loader = build_image_loader(config)
    train_transform = build_train_transform(
        image_size=size, normalization=normalization, policy=config.data.augment, grayscale=grey
    )
    eval_transform = build_eval_transform(image_size=size, normalization=normalization, grayscale=grey)
    seed = config.train.seed
    return (
        ImageDataset(train_samples, labels, train_transform, loader=loader, seed=seed),
        ImageDataset(val_samples, labels, eval_transform, loader=loader, seed=seed),
    )


@register_recipe("scratch")
def scratch(config: RunConfig, sample_set: SampleSet, train_samples, val_samples) -> Prepared:
    """Train every weight of the model on images (the study's baseline and augmentation steps)."""
    train = config.train
    net = create_model(
        train.model,
        num_classes=len(sample_set.labels),
        image_size=config.data.image_size,
        pretrained=train.pretrained,
        weights=train.weights,
    )
    metadata = image_metadata(config)
    train_set, val_set = build_image_datasets(config, sample_set.labels, train_samples, val_samples, metadata)
    return Prepared(net=net, train_set=train_set, val_set=val_set, metadata=metadata)
