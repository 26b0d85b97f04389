"""Figures and images inlined in the page as ``data:`` URIs (so it opens from disk and fetches nothing), the
interval plot shared by comparisons and experiments, and the confusion matrix as a table for the template."""

from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.evaluation.metrics import row_percentages

THUMBNAIL = 128  # px, the longer side of a gallery tile


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_uri(image: Image.Image, *, size: int | None = THUMBNAIL, fmt: str = "JPEG") -> str:
    image = image.convert("RGB")
    if size is not None:
        image = image.copy()
        scale = size / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR
        )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return data_uri(buffer.getvalue(), f"image/{fmt.lower()}")


def figure_uri(plot: Callable[..., Path | None], *args, **kwargs) -> str | None:
    """Run a plotting function that writes a PNG to the path it is given; the PNG as a data: URI (None: none)."""
    with tempfile.TemporaryDirectory() as folder:
        path = plot(*args, Path(folder) / "figure.png", **kwargs)
        return data_uri(Path(path).read_bytes(), "image/png") if path is not None else None


def plot_intervals(names: list[str], means: list[float], intervals: list, path: Path, *, xlabel: str) -> Path:
    """One row per run: the figure and its 95% interval, on a shared axis (percent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    rows = np.arange(len(names))[::-1]
    for row, mean, interval in zip(rows, means, intervals, strict=True):
        if interval:
            axes.plot([100 * interval[0], 100 * interval[1]], [row, row], color="#4c72b0", linewidth=2)
        axes.plot(100 * mean, row, "o", color="#dd8452")
    axes.set_yticks(rows, names)
    axes.set_xlabel(xlabel)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def confusion_table(matrix, labels: list[str], rows: list[str] | None = None) -> dict:
    """Counts and row percentages per cell, with a shade in [0, 1] (the row share) for the template. Columns: the
    model's ``labels``; rows: the data's classes (``rows``, default the same: a six-class model's neutral is a
    column, not a row, on photos of the five emotions)."""
    matrix = np.asarray(matrix)
    percent = row_percentages(matrix)
    rows = list(labels) if rows is None else list(rows)
    return {
        "labels": labels,
        "rows": [
            {
                "label": label,
                "total": int(matrix[row].sum()),
                "cells": [
                    {
                        "count": int(matrix[row, column]),
                        "percent": float(percent[row, column]),
                        "shade": float(percent[row, column] / 100),
                        "diagonal": label == labels[column],
                        "outside": labels[column] not in rows,
                    }
                    for column in range(len(labels))
                ],
            }
            for row, label in enumerate(rows)
        ],
    }
