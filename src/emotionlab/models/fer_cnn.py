"""A compact VGG-style CNN sized for FER+ pre-training on a CPU (48-64 px grey faces)."""

from __future__ import annotations

import torch
from torch import nn

from emotionlab.models.registry import register_model

PER_IMAGE = {"type": "per_image"}  # each face standardised by its own mean and std, as FER+ faces are


class FerCNN(nn.Module):
    """4 stages of two 3x3 conv + BN + ReLU and a max-pool, then global average pooling and a linear head.

    ~0.66M parameters at widths 24-48-96-192: 11 epochs of FER+ fit in ~35 CPU minutes (notes) and reach
    ~87% on the FER+ test set, so it is the offline stand-in for an ImageNet backbone.
    """

    def __init__(self, num_classes: int = 5, *, widths=(24, 48, 96, 192), dropout: float = 0.3, **_):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            for _repeat in range(2):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        return x if pre_logits else self.classifier(self.dropout(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("fer_cnn", input_size=64, normalization=PER_IMAGE, grayscale=True, head="classifier")
def _fer_cnn(num_classes: int, image_size: int = 64, **kwargs) -> nn.Module:
    return FerCNN(num_classes, **kwargs)


@register_model("fer_cnn_wide", input_size=64, normalization=PER_IMAGE, grayscale=True, head="classifier")
def _fer_cnn_wide(num_classes: int, image_size: int = 64, **kwargs) -> nn.Module:
    """fer_cnn at widths 32-64-128-256 (~1.2M parameters): the larger FER+ backbone of the accuracy work."""
    kwargs.setdefault("widths", (32, 64, 128, 256))
    return FerCNN(num_classes, **kwargs)
