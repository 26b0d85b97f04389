"""One preparation of a photo: `evaluate` scores exactly the crops `predict` classifies, on small photos and on
large JPEGs (which both decode at a reduced scale), so a published accuracy is measured on the path users run."""

from __future__ import annotations

import csv

import numpy as np
from helpers import FACES, save_tiny_model
from PIL import Image

from emotionlab.data.dataset import scan_image_folder
from emotionlab.evaluation.evaluate import evaluate, evaluate_samples
from emotionlab.inference import load_recognizer
from emotionlab.synthetic import make_face


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
