"""Build any model by name: the project's own architectures and every timm backbone.

``create_model("seed_cnn", num_classes=5)`` and ``create_model("resnet18", num_classes=5)`` go through the same
call, so recipes (scratch, transfer, fine-tune) never special-case an architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from emotionlab.data.transforms import UNIT_NORMALIZATION, imagenet_normalization
from emotionlab.errors import EmotionlabError


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and what input it expects (stored with the weights, as timm's pretrained_cfg)."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    normalization: dict
    grayscale: bool = False
    kwargs: dict = field(default_factory=dict)
    trainable: bool = True  # False: built only from a model file (ensembles), never offered to `train --model`


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, input_size: int, normalization: dict, grayscale: bool = False, trainable: bool = True):
    """Decorator: register a builder ``fn(num_classes, image_size, **kwargs) -> nn.Module`` under ``name``."""

    def decorate(builder):
        _REGISTRY[name] = ModelSpec(name, builder, input_size, normalization, grayscale, trainable=trainable)
        return builder

    return decorate


@register_model("seed_cnn", input_size=128, normalization=UNIT_NORMALIZATION)
def _seed_cnn(num_classes: int, image_size: int = 128, **kwargs) -> nn.Module:
    from emotionlab.models.seed_cnn import SeedCNN

    return SeedCNN(num_classes, image_size=image_size, **kwargs)


def _load_project_models() -> None:
    # Architectures defined in other modules register themselves on import.
    import emotionlab.models.ensemble  # noqa: F401
    import emotionlab.models.fer_cnn  # noqa: F401


def list_models(include_timm: bool = False) -> list[str]:
    _load_project_models()
    names = sorted(name for name, spec in _REGISTRY.items() if spec.trainable)
    if include_timm:
        import timm

        names += timm.list_models()
    return names


def _timm_exists(name: str) -> bool:
    import timm

    return timm.is_model(name)


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a spec derived from timm's pretrained config."""
    _load_project_models()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if not _timm_exists(name):
        raise EmotionlabError(
            f"unknown model {name!r}: use one of {', '.join(sorted(_REGISTRY))} or a timm model name "
            "(e.g. resnet18, vgg16, mobilenetv3_large_100, efficientnet_b0, convnext_atto)"
        )
    import timm

    config = timm.get_pretrained_cfg(name)
    mean = getattr(config, "mean", None) or (0.485, 0.456, 0.406)
    std = getattr(config, "std", None) or (0.229, 0.224, 0.225)
    size = (getattr(config, "input_size", None) or (3, 224, 224))[-1]
    return ModelSpec(name, _timm_builder(name), size, imagenet_normalization(mean, std))


def _timm_builder(name: str):
    def build(num_classes: int, image_size: int | None = None, pretrained: bool = False, weights=None, **kwargs):
        import timm

        options = dict(num_classes=num_classes, **kwargs)
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise EmotionlabError(f"{weights}: weights file not found")
            if path.suffix in (".safetensors", ".pth", ".pt", ".bin", ".npz") and not _is_emotionlab_file(path):
                # timm loads local files with weights_only / safetensors and adapts the classifier itself.
                options["pretrained_cfg_overlay"] = dict(file=str(path))
                return timm.create_model(name, pretrained=True, **options)
            model = timm.create_model(name, pretrained=False, **options)
            from emotionlab.models.io import load_backbone_weights

            load_backbone_weights(model, path)
            return model
        if pretrained:
            try:
                return timm.create_model(name, pretrained=True, **options)
            except Exception as error:  # the hub raises many types (OSError, HTTP errors, LocalEntryNotFound...)
                raise EmotionlabError(
                    f"could not download pretrained weights for {name} ({type(error).__name__}); offline? "
                    f"pass --weights FILE (a local timm/torchvision weights file or an emotionlab model file), "
                    "or train from scratch without --pretrained"
                ) from error
        return timm.create_model(name, pretrained=False, **options)

    return build


def _is_emotionlab_file(path: Path) -> bool:
    from emotionlab.models.io import is_model_file

    return is_model_file(path)


def classifier_of(model: nn.Module) -> tuple[str, nn.Module]:
    """(attribute path, module) of the model's classifier: timm's ``get_classifier()`` or ``.classifier``."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "classifier", None)
    for path, module in model.named_modules():
        if head is not None and module is head and path:
            return path, module
    raise EmotionlabError(f"{type(model).__name__}: cannot find its classifier to replace")


def attach_mlp_head(model: nn.Module, num_classes: int, hidden: int) -> nn.Module:
    """Replace the linear classifier with Linear -> ReLU -> Dropout -> Linear (a transfer-learning head)."""
    path, head = classifier_of(model)
    in_features = head.in_features if isinstance(head, nn.Linear) else model.num_features
    mlp = nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(hidden, num_classes)
    )
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attribute, mlp)
    return model


def create_model(
    name: str,
    num_classes: int,
    *,
    image_size: int | None = None,
    pretrained: bool = False,
    weights: str | None = None,
    head_hidden: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build model ``name`` with a fresh ``num_classes`` head; ``weights`` is a local file for the backbone.

    ``head_hidden`` replaces the linear classifier by a small MLP with that many hidden units (transfer heads).
    """
    model = _create_model(name, num_classes, image_size=image_size, pretrained=pretrained, weights=weights, **kwargs)
    if head_hidden:
        attach_mlp_head(model, num_classes, int(head_hidden))
    return model


def _create_model(name: str, num_classes: int, *, image_size, pretrained, weights, **kwargs) -> nn.Module:
    spec = model_spec(name)
    size = image_size or spec.input_size
    if name in _REGISTRY:
        model = spec.builder(num_classes, image_size=size, **kwargs)
        if weights is not None:
            from emotionlab.models.io import load_backbone_weights

            load_backbone_weights(model, Path(weights))
        elif pretrained:
            raise EmotionlabError(f"{name} has no hub weights; pass --weights FILE (an emotionlab model file)")
        return model
    return spec.builder(num_classes, image_size=size, pretrained=pretrained, weights=weights, **kwargs)
