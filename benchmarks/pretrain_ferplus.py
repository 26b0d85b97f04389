"""Score a model file on the FER+ test set (five classes, majority vote) -> benchmarks/results/pretrain_ferplus.json.

    .venv/bin/python benchmarks/pretrain_ferplus.py                                   # models/ferplus_backbone
    .venv/bin/python benchmarks/pretrain_ferplus.py --model src/emotionlab/assets/default_model.safetensors \\
        --out benchmarks/results/default_model_ferplus.json

The images go through the product's own preprocessing (``Classifier``: PIL -> model transform), once as they
are and once mirrored, so the figures hold for ``emotionlab evaluate`` (no flip) and show what test-time flip
averaging would add. The training command is read from the model file's stored run config.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

import numpy as np
import recorded
import torch

from emotionlab.config import run_config_from_dict
from emotionlab.data.dataset import load_samples
from emotionlab.data.images import read_image
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.inference import Classifier

REPO = Path(__file__).resolve().parents[1]


def training_command(meta: dict) -> str | None:
    """The `emotionlab train` command that reproduces a model file (from its stored config)."""
    config = (meta.get("training") or {}).get("config")
    if not config:
        return None
    data, train = config["data"], config["train"]
    parts = ["emotionlab", "train", "--recipe", train["recipe"]]
    if train["recipe"] != "finetune":  # finetune takes its architecture from --from
        parts += ["--arch", train["model"]]
    if data.get("root"):
        parts += ["--data", data["root"]]
    if data.get("manifest"):
        parts += ["--manifest", data["manifest"]]
    parts += ["--image-size", str(data["image_size"]), "--augment", data["augment"]]
    for key, flag in (
        ("epochs", "--epochs"),
        ("batch_size", "--batch-size"),
        ("learning_rate", "--lr"),
        ("optimizer", "--optimizer"),
        ("weight_decay", "--weight-decay"),
        ("scheduler", "--scheduler"),
        ("warmup_epochs", "--warmup-epochs"),
        ("label_smoothing", "--label-smoothing"),
        ("seed", "--seed"),
    ):
        parts += [flag, str(train[key])]
    if train.get("early_stopping_patience"):
        parts += ["--patience", str(train["early_stopping_patience"])]
    if train.get("weights"):
        parts += ["--weights", train["weights"]]
    if train.get("init_from"):
        parts += ["--init-from", train["init_from"]]
    if train["recipe"] == "finetune":
        parts += ["--backbone-lr-scale", str(train["backbone_lr_scale"])]
    if data.get("faces"):
        parts += [
            "--detect",
            "--detector",
            data["faces"]["detector"],
            "--margin",
            str(data["faces"]["margin"]),
        ]
    typed = run_config_from_dict(config).train  # also reads the former free-form ``extra`` of older files
    if typed.mix.ferplus:
        parts += ["--mix-ferplus", typed.mix.ferplus, "--mix-ratio", str(typed.mix.ratio)]
    if typed.recipe == "pretrain":
        parts += [
            "--ferplus-classes",
            str(typed.pretrain.ferplus_classes),
            "--ferplus-targets",
            typed.pretrain.ferplus_targets,
        ]
    if typed.loss.mixup:
        parts += ["--mixup", str(typed.loss.mixup)]
    if typed.loss.class_balance != "none":
        parts += ["--class-balance", typed.loss.class_balance]
    parts += ["--out", config["out"]]
    return shlex.join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models/ferplus_backbone.safetensors"))
    parser.add_argument("--ferplus", default=str(REPO.parent / "shared/datasets/ferplus"))
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/pretrain_ferplus.json"))
    args = parser.parse_args()

    classifier = Classifier.from_file(args.model)
    samples = load_samples(args.ferplus).split(args.split)
    started = time.perf_counter()
    batch = classifier.preprocess([read_image(sample.path) for sample in samples])
    plain = np.concatenate([classifier.probabilities(part) for part in torch.split(batch, 256)])
    mirrored = np.concatenate([classifier.probabilities(part.flip(-1)) for part in torch.split(batch, 256)])
    seconds = time.perf_counter() - started
    truth = np.array([classifier.labels.index(sample.label) for sample in samples])
    metrics = compute_metrics(truth, plain, classifier.labels)
    flipped = compute_metrics(truth, (plain + mirrored) / 2, classifier.labels)
    meta = classifier.metadata
    history = (meta.get("training") or {}).get("history") or []
    result = {
        "model": os.path.relpath(args.model, REPO),
        "model_bytes": Path(args.model).stat().st_size,
        "weights_sha256": meta.get("weights_sha256"),
        "architecture": meta["architecture"],
        "input_size": meta["input_size"],
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "dataset": f"FER+ {args.split} ({len(samples)} faces: majority vote, ties/unknown/not-a-face dropped, five classes)",
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": metrics["accuracy_ci95"],
        "macro_f1": metrics["macro_f1"],
        "macro_f1_ci95": metrics["macro_f1_ci95"],
        "per_class_recall": {label: row["recall"] for label, row in metrics["per_class"].items()},
        "confusion_matrix": metrics["confusion_matrix"],
        "flip_averaged": {
            "accuracy": flipped["accuracy"],
            "accuracy_ci95": flipped["accuracy_ci95"],
            "macro_f1": flipped["macro_f1"],
        },
        "training_command": training_command(meta),
        "training_epochs": len(history),
        "training_seconds": round(sum(row.get("seconds", 0.0) for row in history), 1),
        "best_validation": min(history, key=lambda row: row.get("val_loss", 1e9)) if history else None,
        "evaluation_seconds": round(seconds, 1),
        "machine": {**recorded.machine(), "torch_threads": torch.get_num_threads()},
        "command": recorded.command_line(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    low, high = metrics["accuracy_ci95"]
    print(f"{result['model']} on {result['dataset']}")
    print(
        f"accuracy {metrics['accuracy']:.4f} (95% CI {low:.4f}-{high:.4f})  macro-F1 {metrics['macro_f1']:.4f}  "
        f"flip-averaged accuracy {flipped['accuracy']:.4f}"
    )
    print("recall: " + ", ".join(f"{k} {v:.3f}" for k, v in result["per_class_recall"].items()))
    print(f"training: {result['training_command']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
