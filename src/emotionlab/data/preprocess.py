"""A face crop -> the network's input, with numpy and Pillow only (the light install runs no PyTorch).

``EvalTransform(image_size=48, normalization={"type": "per_image"}, grayscale=True)(face) -> 3 x 48 x 48 float32``:
squash the crop to a square (Pillow's antialiased bilinear resize), optionally to grey (the ITU-R 601 weights
torchvision uses: 0.2989, 0.587, 0.114), scale to [0, 1], then normalise (per image, or a mean and std per
channel). Prediction, evaluation and serving all go through it; training's torchvision transform
(``data/transforms.py``) gives the same values to within one grey level of resampling on some pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)


class EvalTransform:
    """PIL image -> normalised float32 array (channels, size, size), as the model was trained to see faces."""

    def __init__(self, *, image_size: int, normalization: dict, grayscale: bool = False):
        self.image_size = int(image_size)
        self.normalization = normalization
        self.grayscale = bool(grayscale)
        self.per_image = normalization.get("type") == "per_image"
        if not self.per_image:
            self.mean = np.asarray(normalization["mean"], np.float32).reshape(-1, 1, 1)
            self.std = np.asarray(normalization["std"], np.float32).reshape(-1, 1, 1)

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image if image.mode == "RGB" else image.convert("RGB")
        side = self.image_size
        if image.size != (side, side):
            image = image.resize((side, side), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
        if self.grayscale:
            # torchvision's order of operations (r * 0.2989 + g * 0.587 + b * 0.114, truncated to uint8).
            r, g, b = (pixels[..., channel].astype(np.float64) for channel in range(3))
            grey = (r * _GREY_WEIGHTS[0] + g * _GREY_WEIGHTS[1] + b * _GREY_WEIGHTS[2]).astype(np.float32)
            pixels = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
        array = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        if self.per_image:
            # Per-image standardisation: zero mean, unit (sample) standard deviation, floored as in training.
            mean = array.mean(dtype=np.float64)
            std = max(array.std(ddof=1, dtype=np.float64), 1.0 / array.size**0.5)
            return ((array - np.float32(mean)) / np.float32(std)).astype(np.float32)
        return (array - self.mean) / self.std
