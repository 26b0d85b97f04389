"""Linear heads on frozen features (scikit-learn): refitted many times, so they must be quick and light.

Used by model-in-the-loop labelling (in its refit worker process: this module imports no torch), the label-error
audit (``emotionlab.evaluation.suspects``) and the active-learning benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotionlab.errors import EmotionlabError


def fit_head(features: np.ndarray, labels: Sequence[str], *, classes: Sequence[str], seed: int = 0):
    """A logistic-regression head on frozen features: ``predict(features) -> N x len(classes)`` probabilities.

    Classes never labelled so far get probability 0 (the head cannot predict what it has not seen). Fitting
    on a thousand 256-dimensional rows takes well under a second, so it can run after every few labels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = list(labels)
    seen = sorted(set(labels), key=list(classes).index)
    if len(seen) < 2:
        raise EmotionlabError("a head needs labels of at least two classes")
    # C=0.5: the same light regularisation for 20 or 2,000 labels; a tuned C gained < 1 point in the benchmark.
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=300, random_state=seed))
    pipeline.fit(features, labels)
    columns = [list(classes).index(name) for name in pipeline.classes_]

    def predict(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), len(classes)), dtype=np.float32)
        if len(rows):
            out[:, columns] = pipeline.predict_proba(rows)
        return out

    return predict
