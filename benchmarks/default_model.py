"""The shipped model on the canonical seed test split and the FER+ test set -> benchmarks/results/default_model.json.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_model.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_model.py --model runs/ship-b/model.safetensors --out /tmp/x.json

Seed images go through the product's path (``evaluate_samples``: face detection and crops as the model file says,
the whole image when no face is found); FER+ faces are classified as they are (they are already face crops).
Accuracy and macro-F1 come with 95% percentile-bootstrap intervals over test images. The figures in MODEL_CARD.md
come from this script's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from emotionlab.data.dataset import load_samples
from emotionlab.data.images import read_image
from emotionlab.evaluation.evaluate import evaluate_samples
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.inference import Classifier

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from pretrain_ferplus import training_command


def _summary(metrics: dict) -> dict:
    return {
        "num_images": metrics["num_images"],
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": list(metrics["accuracy_ci95"]),
        "macro_f1": metrics["macro_f1"],
        "macro_f1_ci95": list(metrics["macro_f1_ci95"]),
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        **({"no_face": metrics["no_face"]} if "no_face" in metrics else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "src/emotionlab/assets/default_model.safetensors"))
    parser.add_argument("--data", default=str(REPO.parent / "shared/datasets/seed-emotions"))
    parser.add_argument("--manifest", default=str(REPO / "benchmarks/splits/seed-emotions.csv"))
    parser.add_argument("--ferplus", default=str(REPO.parent / "shared/datasets/ferplus"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/default_model.json"))
    args = parser.parse_args()

    classifier = Classifier.from_file(args.model)
    seed = load_samples(args.data, args.manifest)
    result = {
        "model": os.path.relpath(args.model, REPO),
        "model_bytes": Path(args.model).stat().st_size,
        "weights_sha256": classifier.metadata.get("weights_sha256"),
        "architecture": classifier.metadata["architecture"],
        "input_size": classifier.metadata["input_size"],
        "faces": classifier.metadata.get("faces"),
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "training_command": training_command(classifier.metadata),
    }
    for split in ("validation", "test"):
        samples = seed.split(split)
        metrics = evaluate_samples(classifier, samples)
        truth = np.array([classifier.labels.index(s.label) for s in samples])
        predicted = np.asarray(metrics["_probabilities"]).argmax(axis=1)
        result[f"seed_{split}"] = _summary(metrics)
        if split == "test":
            result["seed_test"]["misclassified"] = [
                {"path": s.relpath, "label": s.label, "predicted": classifier.labels[p]}
                for s, t, p in zip(samples, truth, predicted, strict=True)
                if t != p
            ]
    fer = load_samples(args.ferplus).split("test")
    probabilities = classifier.predict_proba([read_image(s.path) for s in fer], batch_size=256)
    truth = np.array([classifier.labels.index(s.label) for s in fer])
    result["ferplus_test"] = _summary(compute_metrics(truth, probabilities, classifier.labels))
    result["ferplus_test"]["dataset"] = (
        "FER+ test, majority vote, ties/unknown/not-a-face dropped, five classes"
    )
    result["command"] = ".venv/bin/python benchmarks/default_model.py " + shlex.join(sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key in ("seed_validation", "seed_test", "ferplus_test"):
        block = result[key]
        low, high = block["accuracy_ci95"]
        f1_low, f1_high = block["macro_f1_ci95"]
        recall = ", ".join(f"{k} {v['recall']:.2f}" for k, v in block["per_class"].items())
        print(
            f"{key}: {block['num_images']} images, accuracy {block['accuracy']:.3f} ({low:.3f}-{high:.3f}), "
            f"macro-F1 {block['macro_f1']:.3f} ({f1_low:.3f}-{f1_high:.3f}); recall {recall}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
