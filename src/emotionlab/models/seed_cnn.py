"""The study's baseline CNN: 4 x [conv 3x3 + ReLU, max-pool 2x2, batch-norm], dense 128, dense classes."""

from __future__ import annotations

import torch
from torch import nn

from emotionlab.data.transforms import UNIT_NORMALIZATION
from emotionlab.models.registry import register_model


class SeedCNN(nn.Module):
    """Keras' ``Conv2D(k, 3, activation="relu") -> MaxPool2D(2) -> BatchNormalization()`` x 4, as in the study.

    Exposes timm's hooks (``forward_features``, ``forward_head``, ``reset_classifier``, ``num_features``) so
    the training code treats it like any other backbone.
    """

    def __init__(
        self, num_classes: int = 5, *, image_size: int = 128, widths=(32, 64, 128, 256), hidden: int = 128
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        size = image_size
        for width in widths:
            # Keras' default padding is "valid": each 3x3 conv trims a pixel per side.
            layers += [
                nn.Conv2d(channels, width, 3),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(width),
            ]
            channels = width
            size = (size - 2) // 2
        if size < 1:
            raise ValueError(f"seed_cnn needs inputs of at least 46x46 pixels, got {image_size}")
        self.features = nn.Sequential(*layers)
        self.num_features = channels * size * size
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(self.num_features, hidden), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(hidden, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(x)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("seed_cnn", input_size=128, normalization=UNIT_NORMALIZATION, head="classifier")
def _seed_cnn(num_classes: int, image_size: int = 128, **kwargs) -> nn.Module:
    return SeedCNN(num_classes, image_size=image_size, **kwargs)
