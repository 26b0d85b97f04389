"""The recipe registry: what a run trains, by name (``train --recipe scratch|transfer|finetune|pretrain``).

A recipe is a function ``(config, sample_set, train_samples, val_samples) -> Prepared``; each recipe file
registers its own with ``@register_recipe`` and ``emotionlab.training.recipes`` imports them all, so the registry is
complete as soon as any part of the package is imported. Nothing here imports a recipe (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn
from torch.utils.data import Dataset

from emotionlab.errors import EmotionlabError

if TYPE_CHECKING:
    from emotionlab.config import RunConfig
    from emotionlab.data.samples import Sample, SampleSet


@dataclass
class Prepared:
    """What Lightning trains (``net`` on ``train_set``/``val_set``) and how the model file is made from it."""

    net: nn.Module
    train_set: Dataset
    val_set: Dataset
    metadata: dict  # architecture, input_size, normalization, grayscale, faces, architecture_kwargs
    backbone_lr_scale: float = 1.0
    # Names of ``net``'s classifier parameters (from the architecture's declared head): with a
    # ``backbone_lr_scale`` below 1 they keep the full learning rate.
    head_parameters: Collection[str] = frozenset()
    soft_targets: bool = False
    export: Callable[[nn.Module], nn.Module] = field(default=lambda net: net)


RecipeFn = Callable[["RunConfig", "SampleSet", "list[Sample]", "list[Sample]"], Prepared]
_RECIPES: dict[str, RecipeFn] = {}


def register_recipe(name: str):
    """Decorator: register a recipe function under ``name``."""

    def decorate(function: RecipeFn) -> RecipeFn:
        _RECIPES[name] = function
        return function

    return decorate


def create_recipe(name: str) -> RecipeFn:
    """The recipe registered as ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in _RECIPES:
        raise EmotionlabError(f"unknown recipe {name!r}; choose one of {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def list_recipes() -> list[str]:
    return sorted(_RECIPES)
