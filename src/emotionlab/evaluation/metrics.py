"""Classification metrics: accuracy, loss, macro-F1, per-class scores, confusion matrix, bootstrap CIs."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def bootstrap_ci(
    y_true: np.ndarray, y_pred: np.ndarray, metric: str = "accuracy", *, resamples: int = 2000, seed: int = 0,
    level: float = 0.95, num_classes: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI over test images of ``accuracy`` or ``macro_f1``."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    if n == 0:
        return (float("nan"), float("nan"))
    labels = list(range(num_classes)) if num_classes else None
    values = np.empty(resamples)
    for i in range(resamples):
        index = rng.integers(0, n, n)
        if metric == "accuracy":
            values[i] = np.mean(y_true[index] == y_pred[index])
        else:
            values[i] = f1_score(y_true[index], y_pred[index], average="macro", labels=labels, zero_division=0)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def compute_metrics(y_true, probabilities, labels: list[str], *, ci: bool = True) -> dict:
    """All figures of ``metrics.json``; ``y_true`` are label indices, ``probabilities`` N x classes."""
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_pred = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    eps = 1e-12
    loss = float(-np.mean(np.log(probabilities[np.arange(len(y_true)), y_true] + eps))) if len(y_true) else float("nan")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=indices, zero_division=0
    )
    result = {
        "labels": list(labels),
        "num_images": len(y_true),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "loss": loss,
        "macro_f1": float(f1_score(y_true, y_pred, labels=indices, average="macro", zero_division=0)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=indices).tolist(),
    }
    if ci:
        result["accuracy_ci95"] = bootstrap_ci(y_true, y_pred, "accuracy")
        result["macro_f1_ci95"] = bootstrap_ci(y_true, y_pred, "macro_f1", resamples=500, num_classes=len(labels))
    return result


def row_percentages(matrix) -> np.ndarray:
    """Confusion matrix rows as percentages (each row with any support sums to 100)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix * 100.0, totals, out=np.zeros_like(matrix), where=totals > 0)
