"""Evaluate a model file on a dataset split: metrics.json, predictions.csv and figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from emotionlab.data.dataset import Sample
from emotionlab.data.images import read_image
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.evaluation.plots import plot_confusion, plot_gallery, plot_training_curves
from emotionlab.inference import Classifier, Recognizer


def _inputs(recognizer: Recognizer, samples: list[Sample]) -> tuple[list, list[bool]]:
    """The images the model sees: face crops as in training (manifest boxes win), else whole images."""
    images, no_face = [], []
    for sample in samples:
        if recognizer.cropper is not None:
            if sample.face_box is not None:
                images.append(recognizer.cropper.for_sample(sample))
                no_face.append(False)
            else:
                crop, box = recognizer.cropper(sample.path)
                images.append(crop)
                no_face.append(box is None)
        else:
            images.append(read_image(sample.path))
            no_face.append(False)
    return images, no_face


def evaluate_samples(model: str | Path | Classifier, samples: list[Sample], *, batch_size: int = 64) -> dict:
    """Metrics of a model on labelled samples (no files written); adds ``predictions`` for callers."""
    classifier = model if isinstance(model, Classifier) else Classifier.from_file(model)
    recognizer = Recognizer(classifier)
    unknown = sorted({s.label for s in samples} - set(classifier.labels))
    if unknown:
        raise EmotionlabError(f"the dataset has labels the model does not know: {', '.join(unknown)}")
    images, no_face = _inputs(recognizer, samples)
    probabilities = classifier.predict_proba(images, batch_size=batch_size)
    truth = np.array([classifier.labels.index(s.label) for s in samples])
    metrics = compute_metrics(truth, probabilities, classifier.labels)
    if recognizer.cropper is not None:
        flags = np.array(no_face)
        correct = probabilities.argmax(1) == truth
        metrics["no_face"] = {
            "count": int(flags.sum()),
            "accuracy_no_face": float(correct[flags].mean()) if flags.any() else None,
            "accuracy_face": float(correct[~flags].mean()) if (~flags).any() else None,
        }
    metrics["_probabilities"] = probabilities
    metrics["_images"] = images
    return metrics


def evaluate(model_path: str | Path, samples: list[Sample], out_dir: str | Path, *, split: str) -> dict:
    """Write metrics.json, predictions.csv and the PNG figures of ``model_path`` on ``samples`` to ``out_dir``."""
    if not samples:
        raise EmotionlabError(f"no images in split {split!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier.from_file(model_path)
    metrics = evaluate_samples(classifier, samples)
    probabilities, images = metrics.pop("_probabilities"), metrics.pop("_images")
    labels = classifier.labels
    metrics.update({"split": split, "model": str(model_path), "architecture": classifier.metadata["architecture"]})
    predicted = probabilities.argmax(1)
    with (out / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "pred", "confidence", *labels])
        for sample, row in zip(samples, probabilities, strict=True):
            writer.writerow([sample.relpath or sample.path, sample.label, labels[int(row.argmax())], f"{row.max():.4f}",
                             *(f"{p:.4f}" for p in row)])
    figures = {
        "confusion_counts": plot_confusion(metrics["confusion_matrix"], labels, out / "confusion_counts.png"),
        "confusion_percent": plot_confusion(metrics["confusion_matrix"], labels, out / "confusion_percent.png", percent=True),
        "training_curves": plot_training_curves(
            classifier.metadata.get("training", {}).get("history", []), out / "training_curves.png"
        ),
    }
    wrong = [
        {"image": images[i], "true": samples[i].label, "pred": labels[predicted[i]], "confidence": float(probabilities[i].max())}
        for i in np.argsort(-probabilities.max(1))
        if labels[predicted[i]] != samples[i].label
    ]
    figures["misclassified"] = plot_gallery(wrong, out / "misclassified.png")
    metrics["figures"] = {name: str(path) for name, path in figures.items() if path is not None}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
