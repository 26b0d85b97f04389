"""The shipped models' figures -> benchmarks/results/default_model.json (the source of MODEL_CARD.md's numbers).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_model.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_model.py --model runs/x/model.safetensors --out /tmp/x.json \\
        --cv runs/cv/cv.json --cv-recipe chosen --previous benchmarks/results/default_model_v1.json

For the five-class model: the canonical seed validation and test splits through the product's path
(``evaluate_samples``: face detection and crops as the model file says, the whole image when no face is found),
FER+ test (five classes, majority vote; faces classified as they are), per-class recall each with a 95%
percentile-bootstrap interval over test images, and classification throughput (ONNX Runtime, batch 64, every
core; test-time augmentation and ensemble members included since they are inside the graph). With ``--cv`` the
cross-validated figures of the recipe the model was chosen by are copied in; with ``--previous`` the figures of
the model it replaces are kept beside the new ones. With ``--eight`` the eight-class FER+ model is scored on
FER+ test with all eight classes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.data import ferplus
from emotionlab.data.dataset import load_samples
from emotionlab.data.images import read_image
from emotionlab.evaluation.evaluate import evaluate_samples
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.inference import Classifier
from emotionlab.inference.classifier import restrict_labels
from emotionlab.labels import EMOTIONS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import recorded
from pretrain_ferplus import training_command

RESAMPLES = 2000


def recall_intervals(truth: np.ndarray, predicted: np.ndarray, labels: list[str], *, seed: int = 0) -> dict:
    """95% percentile-bootstrap interval of each class's recall (resampling test images); classes without
    images (neutral on the seed photos) get none."""
    present = set(np.asarray(truth).tolist())
    labels = [label if k in present else None for k, label in enumerate(labels)]
    rng = np.random.default_rng(seed)
    draws = np.full((RESAMPLES, len(labels)), np.nan)
    for draw in range(RESAMPLES):
        index = rng.integers(0, len(truth), len(truth))
        t, p = truth[index], predicted[index]
        for k in range(len(labels)):
            if (t == k).any():
                draws[draw, k] = np.mean(p[t == k] == k)
    return {
        label: [float(np.nanpercentile(draws[:, k], 2.5)), float(np.nanpercentile(draws[:, k], 97.5))]
        for k, label in enumerate(labels)
        if label is not None
    }


def summary(metrics: dict, truth: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict:
    intervals = recall_intervals(truth, np.asarray(probabilities).argmax(axis=1), labels)
    data_labels = metrics.get("data_labels") or labels
    return {
        "num_images": metrics["num_images"],
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": list(metrics["accuracy_ci95"]),
        "macro_f1": metrics["macro_f1"],
        "macro_f1_ci95": list(metrics["macro_f1_ci95"]),
        "per_class": {
            label: {**values, "recall_ci95": intervals[label]}
            for label, values in metrics["per_class"].items()
        },
        "data_labels": data_labels,
        "confusion_matrix": metrics["confusion_matrix"],
        **(
            {"answers_outside_data": metrics["answers_outside_data"]}
            if "answers_outside_data" in metrics
            else {}
        ),
        **({"no_face": metrics["no_face"]} if "no_face" in metrics else {}),
    }


def model_facts(classifier: Classifier, path: str) -> dict:
    meta = classifier.metadata
    facts = {
        "model": os.path.relpath(path, REPO),
        "model_bytes": Path(path).stat().st_size,
        "weights_sha256": meta.get("weights_sha256"),
        "architecture": meta["architecture"],
        "input_size": meta["input_size"],
        "labels": classifier.labels,
        "faces": meta.get("faces"),
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "training_command": training_command(meta),
    }
    if "ensemble" in meta:
        facts["ensemble"] = {
            "tta": meta["ensemble"]["tta"],
            "members": [
                {
                    "file": m["file"],
                    "training_command": training_command(m) if m.get("training") else None,
                    "train_seconds": _train_seconds(m),
                }
                for m in meta["ensemble"]["members"]
            ],
        }
        facts["training_cpu_seconds"] = sum(m["train_seconds"] or 0 for m in facts["ensemble"]["members"])
    else:
        facts["training_cpu_seconds"] = _train_seconds(meta)
    return facts


def _train_seconds(meta: dict) -> float | None:
    history = (meta.get("training") or {}).get("history") or []
    seconds = [row.get("seconds") for row in history if row.get("seconds") is not None]
    return round(float(sum(seconds)), 1) if seconds else None


def seed_figures(classifier: Classifier, data: str, manifest: str, *, suffix: str = "") -> dict:
    """The canonical seed validation and test splits; every photo shows one of the five emotions, so a
    six-class model's answer of neutral counts as a miss (``suffix="_five"``: answers among the five only)."""
    seed = load_samples(data, manifest)
    out = {}
    for split in ("validation", "test"):
        samples = seed.split(split)
        metrics = evaluate_samples(classifier, samples)
        truth = np.array([classifier.labels.index(s.label) for s in samples])
        probabilities = np.asarray(metrics["_probabilities"])
        key = f"seed_{split}{suffix}"
        out[key] = summary(metrics, truth, probabilities, classifier.labels)
        if split == "test":
            out[key]["misclassified"] = [
                {"path": s.relpath, "label": s.label, "predicted": classifier.labels[p]}
                for s, t, p in zip(samples, truth, probabilities.argmax(axis=1), strict=True)
                if t != p
            ]
    return out


def ferplus_figures(classifier: Classifier, root: str, classes: int) -> dict:
    """FER+ test faces of ``classes`` (5: our five emotions; 8: all) that the model knows, majority vote.

    With 8 and a six-class model: its six classes (neutral included); with 5: a six-class model's neutral
    answers count as misses."""
    items = ferplus.read_split(root, "test", classes=classes, targets="majority")
    items = [item for item in items if item.label in classifier.labels]
    probabilities = classifier.predict_proba([read_image(item.path) for item in items], batch_size=256)
    truth = np.array([classifier.labels.index(item.label) for item in items])
    data_labels = [label for label in classifier.labels if label in {item.label for item in items}]
    metrics = compute_metrics(truth, probabilities, classifier.labels, data_labels=data_labels)
    block = summary(metrics, truth, probabilities, classifier.labels)
    block["dataset"] = (
        f"FER+ test, majority vote over {classes} classes, ties/unknown/not-a-face dropped; "
        f"the faces of {', '.join(data_labels)}"
    )
    return block


def throughput(path: str, *, batch: int = 64, seconds: float = 5.0) -> dict:
    """Faces/s of classification alone (preprocessed batches) with ONNX Runtime, every core."""
    from emotionlab.inference import load_classifier

    classifier = load_classifier(path, backend="onnx")
    shape = classifier.preprocess([Image.new("RGB", (96, 96))]).shape[1:]
    inputs = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    classifier.probabilities(inputs)  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.probabilities(inputs)
        count += batch
    return {
        "backend": "onnx",
        "batch": batch,
        "faces_per_second": round(count / (time.perf_counter() - started), 1),
        "load_average": recorded.load_average(),
    }


def print_block(key: str, block: dict) -> None:
    low, high = block["accuracy_ci95"]
    f1_low, f1_high = block["macro_f1_ci95"]
    recall = ", ".join(
        f"{k} {v['recall']:.2f} ({v['recall_ci95'][0]:.2f}-{v['recall_ci95'][1]:.2f})"
        for k, v in block["per_class"].items()
    )
    print(
        f"{key}: {block['num_images']} images, accuracy {block['accuracy']:.3f} ({low:.3f}-{high:.3f}), "
        f"macro-F1 {block['macro_f1']:.3f} ({f1_low:.3f}-{f1_high:.3f}); recall {recall}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "src/emotionlab/assets/default_model.safetensors"))
    parser.add_argument("--eight", default=None, help="The eight-class FER+ model file to score as well.")
    parser.add_argument("--data", default=str(REPO.parent / "shared/datasets/seed-emotions"))
    parser.add_argument("--manifest", default=str(REPO / "benchmarks/splits/seed-emotions.csv"))
    parser.add_argument("--ferplus", default=str(REPO.parent / "shared/datasets/ferplus"))
    parser.add_argument("--cv", default=None, help="cv.json of the cross-validation the model's recipe won.")
    parser.add_argument("--cv-recipe", default=None, help="The recipe's name in --cv.")
    parser.add_argument("--previous", default=None, help="JSON of the model this one replaces (kept beside).")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/default_model.json"))
    args = parser.parse_args()

    classifier = Classifier.from_file(args.model)
    result = model_facts(classifier, args.model)
    result.update(seed_figures(classifier, args.data, args.manifest))
    result["ferplus_test"] = ferplus_figures(classifier, args.ferplus, 5)
    if classifier.labels != list(
        EMOTIONS
    ):  # a sixth class (neutral): the same figures answering among the five
        five = restrict_labels(classifier, EMOTIONS)
        result.update(seed_figures(five, args.data, args.manifest, suffix="_five"))
        result["ferplus_test_five"] = ferplus_figures(five, args.ferplus, 5)
        result["ferplus_test_own_classes"] = ferplus_figures(classifier, args.ferplus, 8)
    result["throughput"] = throughput(args.model)
    if args.cv:
        cv = json.loads(Path(args.cv).read_text())
        recipe = cv["recipes"][args.cv_recipe]
        result["cross_validation"] = {
            "file": os.path.relpath(args.cv, REPO),
            "recipe": args.cv_recipe,
            "folds": cv["settings"]["folds"],
            "num_images": cv["num_images"],
            "command": cv.get("command"),
            **{
                key: recipe[key]
                for key in ("accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "per_class_recall")
            },
        }
    if args.eight:
        eight = Classifier.from_file(args.eight)
        result["eight_class"] = {
            **model_facts(eight, args.eight),
            "ferplus_test": ferplus_figures(eight, args.ferplus, 8),
        }
        result["eight_class"]["throughput"] = throughput(args.eight)
    if args.previous:
        previous = json.loads(Path(args.previous).read_text())
        previous.pop("previous", None)  # one generation back is enough
        result["previous"] = previous
    result["command"] = recorded.command_line()
    result["machine"] = recorded.machine()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key in (
        "seed_validation",
        "seed_test",
        "ferplus_test",
        "seed_validation_five",
        "seed_test_five",
        "ferplus_test_five",
        "ferplus_test_own_classes",
    ):
        if key in result:
            print_block(key, result[key])
    if "eight_class" in result:
        print_block("ferplus_test (eight classes)", result["eight_class"]["ferplus_test"])
    if "cross_validation" in result:
        cv = result["cross_validation"]
        print(
            f"cross-validation ({cv['recipe']}): accuracy {cv['accuracy']:.3f} "
            f"({cv['accuracy_ci95'][0]:.3f}-{cv['accuracy_ci95'][1]:.3f}), macro-F1 {cv['macro_f1']:.3f}"
        )
    print(f"throughput: {result['throughput']['faces_per_second']} faces/s (ONNX, batch 64)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
