"""One preparation of a photo: `evaluate` scores exactly the crops `predict` classifies, on small photos and on
large JPEGs (which both decode at a reduced scale), so a published accuracy is measured on the path users run."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from helpers import FACES, save_tiny_model
from PIL import Image

from emotionlab.config import DataConfig, RunConfig
from emotionlab.data.dataset import scan_image_folder
from emotionlab.data.images import read_image
from emotionlab.evaluation.evaluate import evaluate, evaluate_samples
from emotionlab.faces import crop_face
from emotionlab.faces import cropper as cropper_module
from emotionlab.inference import load_recognizer
from emotionlab.synthetic import make_face
from emotionlab.training.recipes.images import build_image_loader


def _photo(path, label: str, size: tuple[int, int], seed: int) -> None:
    """A synthetic face (BlazeFace finds it) filling 30% of the shorter side, drawn large and resized to ``size``."""
    scale = 3000 / min(size)
    canvas = Image.new("RGB", (round(size[0] * scale), round(size[1] * scale)), (120, 110, 100))
    canvas.paste(make_face(label, np.random.default_rng(seed), 900), (round(0.4 * canvas.width), 900))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.resize(size, Image.Resampling.LANCZOS).save(path, quality=92)


def test_evaluate_and_predict_give_identical_crops_and_probabilities_on_large_and_small_photos(tmp_path):
    model = save_tiny_model(tmp_path / "model.safetensors", faces={**FACES, "detector": "blaze"})
    data = tmp_path / "data"
    # decoded at 1/4 for detection and the crop
    _photo(data / "happy" / "large.jpg", "happy", (4000, 3000), seed=1)
    _photo(data / "happy" / "small.jpg", "happy", (480, 360), seed=6)
    _photo(data / "sad" / "large.jpg", "sad", (3000, 4000), seed=3)
    _photo(data / "sad" / "small.png", "sad", (480, 360), seed=4)
    samples = scan_image_folder(data).samples
    recognizer = load_recognizer(model)
    preparer = recognizer.preparer(keep_crops=True)

    metrics = evaluate_samples(recognizer.classifier, samples)
    for sample, crop, row in zip(samples, metrics["_images"], metrics["_probabilities"], strict=True):
        item = preparer(sample.path)
        assert not item.no_face, sample.relpath  # the face path is what is compared
        assert np.array_equal(np.asarray(crop), np.asarray(item.crops[0])), sample.relpath  # pixel for pixel
        record = recognizer.predict(sample.path)
        assert [round(float(p), 6) for p in row] == list(record["probabilities"].values()), sample.relpath
    large = next(s for s in samples if s.relpath == "happy/large.jpg")
    assert preparer(large.path).size == (4000, 3000)

    # The command's own function (each image prepared in a worker process) writes the same answers.
    evaluate(model, samples, tmp_path / "evaluation", split="all")
    with (tmp_path / "evaluation" / "predictions.csv").open(newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    for sample in samples:
        record = recognizer.predict(sample.path)
        assert rows[sample.relpath]["pred"] == record["label"]
        assert float(rows[sample.relpath]["confidence"]) == round(record["confidence"], 4)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_training_crops_are_the_crops_evaluate_and_predict_use_on_large_and_small_photos(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    faces = {**FACES, "detector": "blaze"}
    model = save_tiny_model(tmp_path / "model.safetensors", faces=faces)  # a 64 px network
    data = tmp_path / "data"
    (data / "happy").mkdir(parents=True)
    (data / "sad").mkdir()
    shutil.copy(EXAMPLES / "astronaut.jpg", data / "happy" / "small.jpg")  # 512 x 512: decoded in full
    with Image.open(EXAMPLES / "grace_hopper.jpg") as image:  # 3000 x 3516: decoded at a reduced scale
        image.convert("RGB").resize((3000, 3516), Image.Resampling.BICUBIC).save(
            data / "sad" / "large.jpg", quality=92
        )
    samples = scan_image_folder(data).samples
    recognizer = load_recognizer(model)
    preparer = recognizer.preparer(keep_crops=True)
    large = next(s for s in samples if s.relpath == "sad/large.jpg")
    found = preparer(large.path).boxes[0]
    # The same photo with a manifest face_box (a little off the detector's box): cropped there, not detected.
    boxed = replace(large, face_box=(found.x + 40, found.y - 30, found.w + 60, found.h + 60))
    samples.append(boxed)

    loader = build_image_loader(RunConfig(data=DataConfig(faces=faces, image_size=64)))
    trained = [
        loader(sample) for sample in samples
    ]  # the crops the training Dataset transforms for the network
    metrics = evaluate_samples(recognizer.classifier, samples)
    for sample, crop, evaluated, row in zip(
        samples, trained, metrics["_images"], metrics["_probabilities"], strict=True
    ):
        name = f"{sample.relpath} box={sample.face_box}"
        item = preparer(sample.path, box=sample.face_box)
        assert not item.no_face, name  # the face path is what is compared
        assert np.array_equal(np.asarray(crop), np.asarray(evaluated)), name  # pixel for pixel
        assert np.array_equal(np.asarray(crop), np.asarray(item.crops[0])), name
        assert np.array_equal(np.asarray(loader(sample)), np.asarray(crop)), name  # from the cache: the same
        if sample.face_box is None:
            record = recognizer.predict(sample.path)
            assert [round(float(p), 6) for p in row] == list(record["probabilities"].values()), name
    assert len(list((tmp_path / "cache" / "faces").rglob("*.png"))) == 3  # one cached crop per sample

    # Decoded in full, the large photo's face crop is another image: the test sees which decode training used.
    full = crop_face(read_image(large.path), found, margin=0.1)
    assert full.size != trained[1].size
    # A network of another input size decodes differently: its crops are other cache entries, never these.
    other = build_image_loader(RunConfig(data=DataConfig(faces=faces, image_size=160)))
    digest = "0" * 64
    assert other.cropper.cache_paths(digest) != loader.cropper.cache_paths(digest)
    # Nor is a crop of an earlier preparation (PREPARATION_VERSION) reused.
    before = loader.cropper.cache_paths(digest)
    monkeypatch.setattr(cropper_module, "PREPARATION_VERSION", cropper_module.PREPARATION_VERSION + 1)
    assert loader.cropper.cache_paths(digest) != before
