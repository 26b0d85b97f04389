"""Synthetic faces for tests and demos: drawn faces whose mouth and eyebrows differ per emotion.

The five classes differ in mouth shape (frown, wide open, smile, down-turned, round open) and eyebrow angle,
with noise, position, scale and colour jitter, so a small network must learn shape, not a fixed pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emotionlab.labels import EMOTIONS

# Per label: (eyebrow tilt, mouth kind). Tilt > 0 raises the outer ends of the brows.
_SHAPES = {
    "angry": (-0.35, "flat"),
    "fearful": (0.35, "wide"),
    "happy": (0.0, "smile"),
    "sad": (0.25, "frown"),
    "surprised": (0.0, "round"),
}


def make_face(label: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Draw one RGB face of ``label`` (one of ``EMOTIONS``) on a noisy background."""
    tilt, mouth = _SHAPES[label]
    canvas = 4 * size  # draw large, then downsample: smooth edges
    background = rng.integers(60, 200, size=3)
    image = Image.new("RGB", (canvas, canvas), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.55, 0.8)
    radius = canvas * scale / 2
    cx = canvas / 2 + rng.uniform(-0.12, 0.12) * canvas
    cy = canvas / 2 + rng.uniform(-0.12, 0.12) * canvas
    skin = tuple(int(v) for v in rng.integers([170, 120, 90], [255, 200, 170]))
    draw.ellipse([cx - radius * 0.85, cy - radius, cx + radius * 0.85, cy + radius], fill=skin)
    ink = (30, 20, 20)
    width = max(2, int(radius * 0.06))
    eye_y = cy - radius * 0.25
    for side in (-1, 1):
        ex = cx + side * radius * 0.35
        er = radius * (0.10 if label not in ("surprised", "fearful") else 0.14)
        draw.ellipse(
            [ex - er, eye_y - er * 0.7, ex + er, eye_y + er * 0.7], fill=(250, 250, 250), outline=ink
        )
        draw.ellipse([ex - er * 0.4, eye_y - er * 0.4, ex + er * 0.4, eye_y + er * 0.4], fill=ink)
        brow_y = eye_y - radius * 0.22
        inner = (cx + side * radius * 0.15, brow_y + tilt * radius * 0.15)
        outer = (cx + side * radius * 0.55, brow_y - tilt * radius * 0.15)
        draw.line([inner, outer], fill=ink, width=width)
    my = cy + radius * 0.45
    mw = radius * rng.uniform(0.35, 0.45)
    if mouth == "smile":
        draw.arc([cx - mw, my - mw * 0.6, cx + mw, my + mw * 0.5], 10, 170, fill=ink, width=width)
    elif mouth == "frown":
        draw.arc([cx - mw, my - mw * 0.1, cx + mw, my + mw * 0.9], 200, 340, fill=ink, width=width)
    elif mouth == "flat":
        draw.line([(cx - mw, my), (cx + mw, my)], fill=ink, width=width)
    elif mouth == "wide":
        draw.rectangle([cx - mw, my - mw * 0.15, cx + mw, my + mw * 0.3], fill=ink)
    else:  # round
        mr = mw * 0.45
        draw.ellipse([cx - mr, my - mr, cx + mr, my + mr * 1.3], fill=ink)
    image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32)
    array += rng.normal(0, 8, size=array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def write_dataset(
    root: str | Path,
    per_class: int = 20,
    *,
    labels: tuple[str, ...] = EMOTIONS,
    splits: dict[str, float] | None = None,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``root/[split/]label/label_i.png`` synthetic faces; ``splits`` maps split name to a fraction."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label in labels:
        names = list(splits) if splits else [None]
        fractions = list(splits.values()) if splits else [1.0]
        counts = [max(1, round(per_class * fraction)) for fraction in fractions]
        for split, count in zip(names, counts, strict=True):
            folder = root / split / label if split else root / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                make_face(label, rng, size).save(folder / f"{label}_{index}.png")
    return root
