"""Figures: confusion matrices (counts and row percentages), training curves, misclassified gallery."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from emotionlab.evaluation.metrics import row_percentages


def plot_confusion(
    matrix,
    labels: list[str],
    path: str | Path,
    *,
    percent: bool = False,
    title: str = "",
    rows: list[str] | None = None,
) -> Path:
    """Columns: the model's ``labels``; rows: the data's classes (``rows``, default the same), e.g. a six-class
    model's answers (neutral included) on photos of the five emotions."""
    rows = list(labels) if rows is None else list(rows)
    values = row_percentages(matrix) if percent else np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 1.0 * len(rows) + 2))
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=100 if percent else max(1, values.max()))
    axes.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    threshold = (100 if percent else max(1, values.max())) / 2
    for row in range(len(rows)):
        for column in range(len(labels)):
            value = values[row, column]
            text = f"{value:.0f}%" if percent else f"{int(value)}"
            axes.text(
                column, row, text, ha="center", va="center", color="white" if value > threshold else "black"
            )
    axes.set_title(
        title or ("Confusion matrix (% of each true label)" if percent else "Confusion matrix (counts)")
    )
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_training_curves(history: list[dict], path: str | Path) -> Path | None:
    """Accuracy and loss per epoch, train vs validation; None when the model carries no history."""
    if not history:
        return None
    epochs = [row["epoch"] + 1 for row in history]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, key, name in ((loss_axes, "loss", "Loss"), (acc_axes, "acc", "Accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{key}", np.nan) for row in history]
            axes.plot(
                epochs, values, style, markersize=3, label="train" if split == "train" else "validation"
            )
        axes.set_xlabel("epoch")
        axes.set_title(name)
        axes.grid(alpha=0.3)
    best = min(history, key=lambda row: row.get("val_loss", np.inf))
    loss_axes.axvline(best["epoch"] + 1, color="grey", linestyle=":", label="kept: lowest validation loss")
    loss_axes.legend()
    acc_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_gallery(items: list[dict], path: str | Path, *, columns: int = 6, limit: int = 36) -> Path | None:
    """A grid of images with "true -> predicted (confidence)" captions; items have image, true, pred, confidence."""
    items = items[:limit]
    if not items:
        return None
    rows = -(-len(items) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, item in zip(grid.flat, items, strict=False):
        axes.imshow(item["image"])
        axes.set_title(f"true {item['true']}\npred {item['pred']} ({item['confidence']:.0%})", fontsize=8)
    figure.suptitle("Misclassified images", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
