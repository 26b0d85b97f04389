"""Compound emotions: a top-2 reading ("surprised + happy") when the model's second emotion is close to its first.

The study proposed compound classes ("joie surprise", "peur colère") for ambiguous faces. FER+ shows how often
people disagree: each face has ten crowd votes, and on many the second emotion gets nearly as many as the first.
Rather than train new classes, a record gets ``compound`` when the model's second probability is at least
``ratio`` times its first. The ratio is calibrated on FER+ *validation*: the model gives a compound reading as
often as the crowd itself splits a face (its second emotion with at least ``CROWD_RATIO`` of the first's votes).
Matching the rate, not the best F1 against the crowd's split faces: that F1 is flat (0.27-0.28 for ratios
0.1-0.4) and its maximum would give a compound on 36% of faces, where the crowd splits 9%. FER+ test measures
the chosen ratio once (``benchmarks/compound.py`` -> ``benchmarks/results/compound.json``).

A model file may carry its own ``{"compound": {"ratio": r}}`` in its metadata; otherwise ``COMPOUND_RATIO``
(chosen for the shipped model) is used.

Neutral is the absence of an emotion, not one of two emotions shown at once: a face read as neutral has no
compound reading, and neutral is never half of one ("sad + neutral" would only say the emotion is mild, which
the confidence says already). When an emotion wins, the second is the next *emotion*, and the ratio is taken
between the two emotions' probabilities: the same reading the model gives restricted to the five (`--five`),
since dropping neutral and renormalising keeps that ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emotionlab.labels import NEUTRAL

# The shipped model on FER+ validation (2,098 faces): compound on 10.1% of faces at 0.55, where the crowd splits 9.2%.
# benchmarks/results/compound.json has the sweep, and the figures on FER+ test.
COMPOUND_RATIO = 0.55
# The crowd splits a face when its second emotion has at least half the votes of its first (e.g. 6 and 3 of 10).
CROWD_RATIO = 0.5


def compound_ratio(metadata: Mapping | None) -> float:
    """The model's own ratio (metadata ``compound.ratio``), else ``COMPOUND_RATIO``."""
    own = (metadata or {}).get("compound") if isinstance(metadata, Mapping) else None
    return float(own["ratio"]) if isinstance(own, Mapping) and "ratio" in own else COMPOUND_RATIO


def compound_reading(
    probabilities: Mapping[str, float] | Sequence[float],
    labels: Sequence[str] | None = None,
    *,
    ratio: float = COMPOUND_RATIO,
) -> dict | None:
    """``{"labels": [first, second], "text": "first + second", "ratio": p2 / p1}`` when the second emotion is
    within ``ratio`` of the first, else None (also when neutral wins: neutral is never part of a compound).
    ``probabilities``: a label -> probability mapping, or a row in the order of ``labels``."""
    if isinstance(probabilities, Mapping):
        labels, values = list(probabilities), np.array([float(v) for v in probabilities.values()])
    else:
        values = np.asarray(probabilities, dtype=float)
        labels = list(labels or [])
        if len(labels) != len(values):
            raise ValueError("compound_reading: give one label per probability")
    order = [int(index) for index in np.argsort(-values, kind="stable")]
    if len(order) < 2 or labels[order[0]] == NEUTRAL:
        return None
    emotions = [index for index in order if labels[index] != NEUTRAL]
    if len(emotions) < 2:
        return None
    first, second = emotions[:2]
    if values[first] <= 0 or values[second] < ratio * values[first]:
        return None
    return {
        "labels": [labels[first], labels[second]],
        "text": f"{labels[first]} + {labels[second]}",
        "ratio": round(float(values[second] / values[first]), 4),
    }


# ---- choosing and measuring the ratio (benchmarks/compound.py) ------------------------------------------


def crowd_split(votes: np.ndarray, *, crowd_ratio: float = CROWD_RATIO) -> np.ndarray:
    """Per face (rows of vote counts over the emotions): True when the crowd's second emotion has at least
    ``crowd_ratio`` of the first's votes."""
    ordered = -np.sort(-np.asarray(votes, dtype=float), axis=1)
    return (ordered[:, 1] >= crowd_ratio * ordered[:, 0]) & (ordered[:, 1] > 0)


def model_split(probabilities: np.ndarray, ratio: float) -> np.ndarray:
    ordered = -np.sort(-np.asarray(probabilities, dtype=float), axis=1)
    return ordered[:, 1] >= ratio * ordered[:, 0]


def measure(probabilities: np.ndarray, truth: np.ndarray, votes: np.ndarray, ratio: float) -> dict:
    """What a ratio does: how often a compound is given, how often the true label is in the reading, and how
    well compound readings match the faces the crowd splits (precision, recall, F1; same pair of emotions)."""
    probabilities, truth, votes = (
        np.asarray(probabilities, float),
        np.asarray(truth, int),
        np.asarray(votes, float),
    )
    order = np.argsort(-probabilities, axis=1, kind="stable")
    top1, top2 = order[:, 0], order[:, 1]
    given = model_split(probabilities, ratio)
    crowd = crowd_split(votes)
    in_reading = (top1 == truth) | (given & (top2 == truth))
    crowd_order = np.argsort(-votes, axis=1, kind="stable")
    same_pair = (
        given
        & crowd
        & (
            ((top1 == crowd_order[:, 0]) & (top2 == crowd_order[:, 1]))
            | ((top1 == crowd_order[:, 1]) & (top2 == crowd_order[:, 0]))
        )
    )
    both = int((given & crowd).sum())
    precision = both / given.sum() if given.any() else float("nan")
    recall = both / crowd.sum() if crowd.any() else float("nan")
    return {
        "ratio": float(ratio),
        "faces": len(truth),
        "compound_rate": float(given.mean()),
        "crowd_split_rate": float(crowd.mean()),
        "top1_accuracy": float((top1 == truth).mean()),
        "true_label_in_reading": float(in_reading.mean()),
        "on_compound_faces": {
            "faces": int(given.sum()),
            "top1_accuracy": float((top1 == truth)[given].mean()) if given.any() else None,
            "true_label_in_pair": float(in_reading[given].mean()) if given.any() else None,
        },
        "against_crowd": {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(2 * precision * recall / (precision + recall)) if both else 0.0,
            "same_pair_share": float(same_pair.sum() / both) if both else None,
        },
    }


def choose_ratio(
    probabilities: np.ndarray, truth: np.ndarray, votes: np.ndarray, candidates: Sequence[float]
) -> tuple[float, list[dict]]:
    """The candidate ratio whose compound rate is closest to the crowd's split rate, and every candidate's figures."""
    sweep = [measure(probabilities, truth, votes, ratio) for ratio in candidates]
    best = min(
        sweep,
        key=lambda row: (abs(row["compound_rate"] - row["crowd_split_rate"]), -row["against_crowd"]["f1"]),
    )
    return best["ratio"], sweep
