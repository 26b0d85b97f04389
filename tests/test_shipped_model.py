"""The shipped model: loads with no argument, is small, and predicts every example image."""

from pathlib import Path

import emotionlab
from emotionlab.inference import DEFAULT_MODEL
from emotionlab.labels import EMOTIONS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_load_model_without_argument_uses_the_shipped_model():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 25 * 1024 * 1024
    model = emotionlab.load_model()
    assert model.labels == list(EMOTIONS)
    record = model.predict(EXAMPLES / "astronaut.jpg")
    assert record["label"] in EMOTIONS and not record["no_face"] and len(record["faces"]) == 1
    assert record["label"] == "happy"  # a broad smile: the one example whose answer is not in doubt


def test_several_faces_in_one_example():
    record = emotionlab.load_model().predict(EXAMPLES / "two_people.jpg")
    assert len(record["faces"]) == 2
