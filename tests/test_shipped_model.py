"""The shipped model: loads with no argument, is small, and predicts every example image."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import emotionlab
from emotionlab.inference import DEFAULT_MODEL
from emotionlab.labels import EMOTIONS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_load_model_without_argument_uses_the_shipped_model():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 25 * 1024 * 1024
    model = emotionlab.load_model()
    assert model.labels == [*EMOTIONS, "neutral"]  # the five emotions and a calm face
    record = model.predict(EXAMPLES / "astronaut.jpg")
    assert record["label"] in model.labels and not record["no_face"] and len(record["faces"]) == 1
    assert record["label"] == "happy"  # a broad smile: the one example whose answer is not in doubt


def test_the_default_answers_among_the_studys_five_when_asked():
    five = emotionlab.load_model(classes=list(EMOTIONS))
    record = five.predict(EXAMPLES / "astronaut.jpg")
    assert five.labels == list(EMOTIONS) and set(record["probabilities"]) == set(EMOTIONS)
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-3


def test_several_faces_in_one_example():
    record = emotionlab.load_model().predict(EXAMPLES / "two_people.jpg")
    assert len(record["faces"]) == 2


def _probabilities(records: list[dict]) -> np.ndarray:
    return np.array([list(face["probabilities"].values()) for record in records for face in record["faces"]])


@pytest.mark.parametrize("name", ["default", "ferplus8"])
def test_shipped_models_run_on_onnx_runtime_by_default_with_pytorchs_answers(name):
    from emotionlab.inference import load_classifier, load_recognizer

    assert load_classifier(name).backend == "onnx"  # the export shipped beside the model file
    images = sorted(EXAMPLES.glob("*.jpg"))
    fast = list(load_recognizer(name).predict_many(images))
    exact = list(load_recognizer(name, backend="torch").predict_many(images))
    assert [face["label"] for r in fast for face in r["faces"]] == [
        f["label"] for r in exact for f in r["faces"]
    ]
    assert len(exact) == len(images) and np.abs(_probabilities(fast) - _probabilities(exact)).max() < 1e-3


def test_a_user_model_file_stays_on_pytorch_and_a_stale_export_is_not_used(tmp_path, monkeypatch, caplog):
    from emotionlab.inference import loading as classifier_module

    copy = tmp_path / "default_model.safetensors"
    shutil.copy(DEFAULT_MODEL, copy)
    assert (
        classifier_module.load_classifier(copy).backend == "torch"
    )  # not a shipped file: no export at start
    # A shipped folder whose ONNX file exports other weights (e.g. the .safetensors was replaced, not the .onnx):
    shutil.copy(DEFAULT_MODEL.parent / "ferplus8_model.onnx", tmp_path / "default_model.onnx")
    monkeypatch.setattr(classifier_module, "ASSETS", tmp_path)
    with caplog.at_level("WARNING", logger="emotionlab"):
        assert classifier_module.load_classifier(copy).backend == "torch"
    assert "does not match" in caplog.text


def test_short_names_and_forced_onnx_use_the_shipped_files(tmp_path, monkeypatch):
    from emotionlab.inference import load_classifier, resolve_model_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder of that name is not a model file: the short name still works
    assert resolve_model_path("default") == DEFAULT_MODEL
    forced = load_classifier("default", backend="onnx")  # the shipped export, not a new one in the cache
    assert forced.onnx_path == DEFAULT_MODEL.with_suffix(".onnx")
