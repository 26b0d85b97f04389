"""Ensembles and test-time flips as one model file: every command uses them, ONNX gives the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import save_model, synthetic_faces
from PIL import ImageOps
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.errors import EmotionlabError
from emotionlab.inference import Classifier
from emotionlab.inference.classifier import OnnxClassifier
from emotionlab.inference.export import export_onnx
from emotionlab.models.ensemble import build_ensemble
from emotionlab.models.io import read_metadata

runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def members(tmp_path):
    """Two different fer_cnn models (different weights) sharing labels and input format."""
    first = save_model("fer_cnn", tmp_path / "a", logit_scale=200.0)
    second = save_model("fer_cnn", tmp_path / "b", seed=1, logit_scale=200.0)
    return first, second


def test_ensemble_averages_its_members_probabilities(members, tmp_path):
    path = build_ensemble(list(members), tmp_path / "ensemble.safetensors", tta="none")
    images = synthetic_faces(6)
    expected = np.mean([Classifier.from_file(m).predict_proba(images) for m in members], axis=0)
    got = Classifier.from_file(path).predict_proba(images)
    assert np.abs(got - expected).max() < 1e-4
    meta = read_metadata(path)
    assert [m["file"] for m in meta["ensemble"]["members"]] == [m.name for m in members]


def test_flip_tta_gives_a_face_and_its_mirror_the_same_answer(members, tmp_path):
    plain = Classifier.from_file(members[0])
    tta = Classifier.from_file(build_ensemble([members[0]], tmp_path / "tta.safetensors", tta="flip"))
    images = synthetic_faces(6)
    mirrored = [ImageOps.mirror(image) for image in images]
    assert np.abs(tta.predict_proba(images) - tta.predict_proba(mirrored)).max() < 1e-4
    assert np.abs(plain.predict_proba(images) - plain.predict_proba(mirrored)).max() > 1e-3  # premise
    expected = (plain.predict_proba(images) + plain.predict_proba(mirrored)) / 2
    assert np.abs(tta.predict_proba(images) - expected).max() < 1e-4


def test_tta_can_be_switched_off_again(members, tmp_path):
    tta = build_ensemble([members[0]], tmp_path / "tta.safetensors", tta="flip")
    result = runner.invoke(
        app, ["ensemble", str(tta), "--tta", "none", "--output", str(tmp_path / "off.safetensors")]
    )
    assert result.exit_code == 0, result.output
    images = synthetic_faces(4)
    off = Classifier.from_file(tmp_path / "off.safetensors").predict_proba(images)
    assert np.abs(off - Classifier.from_file(members[0]).predict_proba(images)).max() < 1e-6


def test_ensemble_with_tta_exports_as_one_onnx_graph_with_parity(members, tmp_path):
    path = build_ensemble(list(members), tmp_path / "ensemble.safetensors", tta="flip")
    onnx_path = export_onnx(path, tmp_path / "ensemble.onnx")
    images = synthetic_faces(9)
    expected = Classifier.from_file(path).predict_proba(images)
    for batch_size in (1, 9):
        got = OnnxClassifier.from_file(onnx_path).predict_proba(images, batch_size=batch_size)
        assert np.abs(got - expected).max() < 1e-4


def test_members_with_different_inputs_are_refused(tmp_path):
    grey = save_model("fer_cnn", tmp_path / "a")
    colour = save_model("seed_cnn", tmp_path / "b")
    with pytest.raises(EmotionlabError, match="ensemble members must share labels and input format"):
        build_ensemble([grey, colour], tmp_path / "bad.safetensors")


def test_an_ensemble_of_fold_models_counts_every_members_training_images_as_seen():
    from emotionlab.models.ensemble import merge_dataset_records

    fold_a = {
        "digest": "d",
        "source": "manifest:fold0.csv",
        "train": ["a1", "a2"],
        "validation": ["v1"],
        "test": [["x.png", "happy", "b1"]],
    }
    fold_b = {
        "digest": "d",
        "source": "manifest:fold1.csv",
        "train": ["b1", "a2"],
        "validation": ["v2"],
        "test": [["y.png", "sad", "a1"]],
    }
    merged = merge_dataset_records([fold_a, fold_b])
    assert merged["train"] == ["a1", "a2", "b1"] and merged["validation"] == ["v1", "v2"]
    assert merged["test"] == []  # each fold's held-out images are in the other's training data
    assert merge_dataset_records([fold_a, fold_a])["test"] == [["x.png", "happy", "b1"]]
