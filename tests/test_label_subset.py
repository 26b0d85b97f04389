"""A six-class model (five emotions + neutral) answering among the study's five only (`--five`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.inference.classifier import BaseClassifier, restrict_labels
from emotionlab.labels import EMOTIONS

SIX = [*EMOTIONS, "neutral"]


class FixedClassifier(BaseClassifier):
    """Every face gets the same probabilities: a calm face, neutral first and sad second."""

    def __init__(self, row):
        super().__init__({"labels": SIX, "input_size": 8, "normalization": {"type": "per_image"}})
        self.row = np.asarray(row, dtype=np.float32)

    def probabilities(self, batch):
        return np.tile(self.row, (len(batch), 1))


def test_five_turns_a_calm_reading_into_the_most_likely_emotion_with_renormalised_probabilities():
    calm = FixedClassifier([0.05, 0.05, 0.1, 0.2, 0.1, 0.5])
    five = restrict_labels(calm, EMOTIONS)
    probabilities = five.predict_proba([Image.new("RGB", (8, 8))])[0]
    assert five.labels == list(EMOTIONS)
    assert probabilities.sum() == pytest.approx(1.0)
    assert five.labels[int(np.argmax(probabilities))] == "sad"
    assert probabilities[EMOTIONS.index("sad")] == pytest.approx(0.4)
    # the full model still says neutral
    assert SIX[int(np.argmax(calm.predict_proba([Image.new("RGB", (8, 8))])[0]))] == "neutral"


def test_asking_for_a_class_the_model_does_not_have_is_one_line():
    five_class = FixedClassifier([0.2] * 5 + [0.0])
    five_class.labels = list(EMOTIONS)
    with pytest.raises(EmotionlabError) as error:
        restrict_labels(five_class, ["neutral"])
    assert "no class neutral" in str(error.value) and "\n" not in str(error.value)


def test_all_of_a_models_classes_leave_it_unchanged():
    model = FixedClassifier([0.1] * 5 + [0.5])
    assert restrict_labels(model, SIX) is model and restrict_labels(model, None) is model
