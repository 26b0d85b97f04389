"""Compound readings: "surprised + happy" when the second emotion is close to the first, in every jsonl record,
with the ratio chosen so the model splits faces as often as the crowd does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import save_model, synthetic_faces
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.inference import Classifier, Recognizer
from emotionlab.inference.compound import COMPOUND_RATIO, choose_ratio, compound_reading, crowd_split, measure
from emotionlab.labels import EMOTIONS

runner = CliRunner()


def test_a_close_second_emotion_gives_a_compound_reading():
    close = {"angry": 0.02, "fearful": 0.03, "happy": 0.37, "sad": 0.03, "surprised": 0.55}
    assert compound_reading(close, ratio=0.6) == {
        "labels": ["surprised", "happy"],
        "text": "surprised + happy",
        "ratio": pytest.approx(0.6727, abs=1e-4),
    }
    assert compound_reading(close, ratio=0.7) is None
    row = [0.8, 0.1, 0.05, 0.03, 0.02]
    assert compound_reading(row, EMOTIONS) is None  # the default ratio: one clear emotion is one label
    assert compound_reading([0.45, 0.4, 0.05, 0.05, 0.05], EMOTIONS)["text"] == "angry + fearful"
    with pytest.raises(ValueError):
        compound_reading([0.5, 0.5], EMOTIONS)


def test_the_ratio_is_the_one_that_splits_faces_as_often_as_the_crowd():
    rng = np.random.default_rng(0)
    votes = np.zeros((400, 5))
    votes[:, 0] = 8
    votes[:100, 1] = 5  # the crowd splits a quarter of the faces (5 of 8 >= half)
    votes[100:, 1] = 1
    truth = np.zeros(400, dtype=int)
    probabilities = np.full((400, 5), 0.01)
    probabilities[:, 0] = 0.6
    probabilities[:, 1] = rng.uniform(0.0, 0.55, 400)  # second / first spread over 0-0.92
    assert crowd_split(votes).mean() == pytest.approx(0.25)
    ratio, sweep = choose_ratio(probabilities, truth, votes, [0.1, 0.3, 0.5, 0.7, 0.9])
    chosen = next(row for row in sweep if row["ratio"] == ratio)
    assert ratio == 0.7 and abs(chosen["compound_rate"] - 0.25) < 0.05
    figures = measure(probabilities, truth, votes, 0.0)
    assert figures["compound_rate"] == 1.0 and figures["true_label_in_reading"] == 1.0
    against = figures["against_crowd"]
    assert against["recall"] == 1.0 and against["precision"] == pytest.approx(0.25)


def test_every_record_has_compound_and_jsonl_prints_it(tmp_path):
    path = save_model("fer_cnn", tmp_path / "m")
    classifier = Classifier.from_file(path)
    record = Recognizer(classifier).predict(synthetic_faces(1)[0])
    assert "compound" in record and "compound" in record["faces"][0]
    assert Recognizer(classifier).compound_ratio == COMPOUND_RATIO
    # A model file may carry its own ratio; 0 splits every face.
    classifier.metadata["compound"] = {"ratio": 0.0}
    record = Recognizer(classifier).predict(synthetic_faces(1)[0])
    first, second = sorted(record["probabilities"], key=record["probabilities"].get, reverse=True)[:2]
    assert record["compound"]["labels"] == [first, second] == record["faces"][0]["compound"]["labels"]

    synthetic_faces(1)[0].save(tmp_path / "face.png")
    result = runner.invoke(
        app, ["predict", str(tmp_path / "face.png"), "--model", str(path), "--format", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    assert "compound" in json.loads(result.stdout.splitlines()[0])  # progress lines go to stderr
    table = runner.invoke(app, ["predict", str(tmp_path / "face.png"), "--model", str(path)])
    assert table.exit_code == 0 and "compound" not in table.output and " + " not in table.output
