"""ONNX export: self-describing files, parity with PyTorch, int8 quantisation, and the ONNX Runtime backend."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from helpers import save_model, synthetic_faces
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.errors import EmotionlabError
from emotionlab.inference import Classifier, load_classifier, load_recognizer
from emotionlab.inference.classifier import OnnxClassifier, read_onnx_metadata
from emotionlab.inference.export import export_onnx
from emotionlab.labels import EMOTIONS


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_model("seed_cnn", tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("architecture", ["seed_cnn", "fer_cnn"])
def test_export_is_self_describing_and_matches_pytorch(architecture, tmp_path):
    model = save_model(architecture, tmp_path)
    path = export_onnx(model, tmp_path / "model.onnx")
    metadata = read_onnx_metadata(path)
    assert metadata["labels"] == list(EMOTIONS) and metadata["input_size"] == 64
    assert metadata["onnx"]["int8"] is False
    graph = onnx.load(str(path))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # any batch size

    torch_classifier = Classifier.from_file(model)
    onnx_classifier = OnnxClassifier.from_file(path)
    assert onnx_classifier.labels == torch_classifier.labels
    images = synthetic_faces(9)
    for batch_size in (1, 4, 9):  # the dynamic batch axis, including a ragged last batch
        expected = torch_classifier.predict_proba(images, batch_size=batch_size)
        got = onnx_classifier.predict_proba(images, batch_size=batch_size)
        assert got.shape == (9, 5)
        assert np.abs(got - expected).max() < 1e-4


def test_int8_exports_run(model, tmp_path):
    images = synthetic_faces(6)
    reference = Classifier.from_file(model).predict_proba(images)
    calibration = Classifier.from_file(model).preprocess(synthetic_faces(16, seed=5)).numpy()
    for name, inputs in (("dynamic", None), ("static", calibration)):
        path = export_onnx(model, tmp_path / f"{name}.onnx", int8=True, calibration=inputs)
        info = read_onnx_metadata(path)["onnx"]
        assert info["int8"] is True and info["quantization"] == name
        got = OnnxClassifier.from_file(path).predict_proba(images)
        assert got.shape == reference.shape and np.allclose(got.sum(1), 1, atol=1e-4)
        assert np.abs(got - reference).max() < 0.2  # quantised, yet still the same network


def test_onnx_backend_exports_once_to_the_cache_and_agrees(model, tmp_path):
    images = synthetic_faces(3)
    torch_records = [load_recognizer(model).predict(image) for image in images]
    recognizer = load_recognizer(model, backend="onnx")
    assert recognizer.classifier.backend == "onnx"
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    load_recognizer(model, backend="onnx")
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx")) == cached  # reused, not exported again
    for image, expected in zip(images, torch_records, strict=True):
        got = recognizer.predict(image)
        assert got["label"] == expected["label"]
        assert max(abs(got["probabilities"][k] - expected["probabilities"][k]) for k in EMOTIONS) < 1e-4


def test_cli_export_and_predict_with_an_onnx_file(model, tmp_path):
    out = tmp_path / "exported.onnx"
    result = CliRunner().invoke(app, ["export", "--model", str(model), "--onnx", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "float32" in result.stdout
    image = tmp_path / "face.png"
    synthetic_faces(1)[0].save(image)
    result = CliRunner().invoke(
        app, ["predict", str(image), "--model", str(out), "--backend", "onnx", "--format", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    expected = load_recognizer(model).predict(image)
    assert record["label"] == expected["label"] and record["path"] == str(image)

    quantised = tmp_path / "int8.onnx"
    result = CliRunner().invoke(app, ["export", "--model", str(model), "--onnx", str(quantised), "--int8"])
    assert result.exit_code == 0 and "int8" in result.stdout


def test_clear_errors(model, tmp_path):
    out = export_onnx(model, tmp_path / "model.onnx")
    with pytest.raises(EmotionlabError, match="--backend onnx"):
        load_classifier(out, backend="torch")
    with pytest.raises(EmotionlabError, match="needs the ONNX backend"):
        load_classifier(model, backend="torch", int8=True)
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    onnx.save(graph, str(foreign))
    with pytest.raises(EmotionlabError, match="without emotionlab metadata"):
        load_classifier(foreign, backend="onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(EmotionlabError, match="not an ONNX model"):
        load_classifier(garbage, backend="onnx")
    with pytest.raises(EmotionlabError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "model.bin")
