"""The one macro-F1 and the one bootstrap behind every interval the project reports."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from emotionlab.evaluation.metrics import bootstrap_ci, macro_f1, pooled_bootstrap


@pytest.mark.parametrize("num_classes", [2, 5, 8])
@pytest.mark.parametrize("images", [1, 9, 110])
def test_macro_f1_is_sklearns_including_absent_classes(num_classes, images):
    rng = np.random.default_rng(num_classes * 1000 + images)
    for trial in range(20):
        # Some trials leave classes out of the truth, the predictions or both (absent classes score 0 when counted).
        truth_classes = rng.integers(1, num_classes + 1)
        y_true = rng.integers(0, truth_classes, images)
        y_pred = rng.integers(0, num_classes - (trial % 2), images)
        every = f1_score(y_true, y_pred, average="macro", labels=list(range(num_classes)), zero_division=0)
        present = f1_score(y_true, y_pred, average="macro", zero_division=0)
        assert macro_f1(y_true, y_pred, num_classes) == every
        assert macro_f1(y_true, y_pred) == present


def test_macro_f1_bootstrap_interval_is_the_sklearn_loops():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 5, 110), rng.integers(0, 4, 110)  # class 4 never predicted
    expected = []
    draws = np.random.default_rng(0)
    for _ in range(300):
        index = draws.integers(0, 110, 110)
        expected.append(
            f1_score(y_true[index], y_pred[index], average="macro", labels=list(range(5)), zero_division=0)
        )
    low, high = np.percentile(expected, 2.5), np.percentile(expected, 97.5)
    assert bootstrap_ci(y_true, y_pred, "macro_f1", resamples=300, num_classes=5) == pytest.approx(
        (low, high), abs=1e-12
    )


def test_pooled_bootstrap_of_one_seed_is_the_plain_interval():
    rng = np.random.default_rng(4)
    y_true, y_pred = rng.integers(0, 5, 110), rng.integers(0, 5, 110)
    pooled = pooled_bootstrap(y_true, [y_pred], 5, resamples=300)
    assert pooled["accuracy_ci95"] == pytest.approx(
        bootstrap_ci(y_true, y_pred, "accuracy", resamples=300), abs=1e-12
    )
    assert pooled["macro_f1_ci95"] == pytest.approx(
        bootstrap_ci(y_true, y_pred, "macro_f1", resamples=300, num_classes=5), abs=1e-12
    )
