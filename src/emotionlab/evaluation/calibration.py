"""Calibration: does a face read at 80% confidence come out right 80% of the time?

The reliability diagram bins images by the model's top-class confidence and compares, bin by bin, the mean
confidence with the accuracy; the expected calibration error (ECE, Guo et al. 2017) is the gap averaged over
images. Equal-width bins over [0, 1]: with five classes no confidence falls below 0.2, so the first two bins stay
empty and the populated ones keep ~10 or more of the ~110 images of the seed test split.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from emotionlab.evaluation.metrics import bootstrap

BINS = 10
RESAMPLES = 1000  # bootstrap draws for the ECE interval: stable to ~0.2 points, 0.1 s for 3,000 images


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    # A confidence of exactly 1.0 belongs to the last bin, not to an eleventh one.
    return np.minimum((confidence * bins).astype(int), bins - 1)


def expected_calibration_error(confidence, correct, *, bins: int = BINS) -> float:
    """Mean over images of |accuracy - mean confidence| of the image's confidence bin."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if len(confidence) == 0:
        return float("nan")
    index = _bin_index(confidence, bins)
    counts = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, correct, bins) - np.bincount(index, confidence, bins))
    return float(gap.sum() / counts.sum())


def calibration_summary(
    confidence, correct, *, bins: int = BINS, resamples: int = RESAMPLES, seed: int = 0
) -> dict:
    """ECE with a 95% bootstrap interval over images, mean confidence vs accuracy, and the per-bin table.

    ``confidence``: each image's top-class probability; ``correct``: whether that class was the true one.
    """
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    count = len(confidence)
    draws = bootstrap(
        lambda index: expected_calibration_error(confidence[index], correct[index], bins=bins),
        count,
        resamples=resamples if count else 0,
        seed=seed,
    )
    index = _bin_index(confidence, bins)
    table = []
    for number in range(bins):
        members = index == number
        table.append(
            {
                "low": number / bins,
                "high": (number + 1) / bins,
                "count": int(members.sum()),
                "confidence": float(confidence[members].mean()) if members.any() else None,
                "accuracy": float(correct[members].mean()) if members.any() else None,
            }
        )
    return {
        "ece": expected_calibration_error(confidence, correct, bins=bins),
        "ece_ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
        if len(draws)
        else None,
        "mean_confidence": float(confidence.mean()) if count else float("nan"),
        "accuracy": float(correct.mean()) if count else float("nan"),
        "bins": table,
    }


def plot_reliability(summary: dict, path: str | Path, *, title: str = "") -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration, image counts below."""
    table = summary["bins"]
    width = table[0]["high"] - table[0]["low"]
    centres = np.array([(row["low"] + row["high"]) / 2 for row in table])
    accuracy = np.array([np.nan if row["accuracy"] is None else row["accuracy"] for row in table])
    confidence = np.array([np.nan if row["confidence"] is None else row["confidence"] for row in table])
    counts = np.array([row["count"] for row in table])
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    top.bar(centres, accuracy, width=width * 0.9, color="#4c72b0", alpha=0.85, label="accuracy in bin")
    top.plot(confidence, accuracy, "o", color="#dd8452", markersize=4, label="(mean confidence, accuracy)")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    low, high = summary["ece_ci95"] or (np.nan, np.nan)
    top.set_title(
        title or f"Reliability: ECE {100 * summary['ece']:.1f}% (95% CI {100 * low:.1f}-{100 * high:.1f})"
    )
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(centres, counts, width=width * 0.9, color="#8c8c8c")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("top-class confidence")
    bottom.set_ylabel("images")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
