"""The study's baseline protocol on the seed dataset: its CNN, 128x128, Adam 1e-4, 50 epochs, best-val-loss checkpoint.

Usage:
    python benchmarks/seed_baseline.py                      # the dataset's own folders (leaky split)
    python benchmarks/seed_baseline.py --manifest benchmarks/splits/seed-emotions.csv   # duplicate-aware split

Prints validation and test accuracy / macro-F1, wall time and peak memory, and stores them under one key of
benchmarks/results/seed_baseline.json ("folder_split" or "canonical_split").
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import recorded
import torch

from emotionlab.config import DataConfig, RunConfig, TrainConfig
from emotionlab.data.dataset import load_samples
from emotionlab.evaluation.evaluate import evaluate_samples
from emotionlab.training.callbacks import read_history
from emotionlab.training.train import train

RESULTS = Path(__file__).parent / "results" / "seed_baseline.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=None, help="seed-emotions root (default: $EMOTIONLAB_DATA or ../shared)"
    )
    parser.add_argument("--manifest", default=None, help="manifest CSV; default: the dataset's own folders")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--out", default=None, help="run folder (default: runs/seed_baseline_<key>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted benchmark run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    key = "canonical_split" if args.manifest else "folder_split"
    out = Path(args.out or f"runs/seed_baseline_{key}")
    config = RunConfig(
        data=DataConfig(root=args.data, manifest=args.manifest, image_size=128),
        train=TrainConfig(
            model="seed_cnn",
            epochs=args.epochs,
            batch_size=32,
            learning_rate=1e-4,
            optimizer="adam",
            seed=args.seed,
        ),
        out=str(out),
    )
    started = time.perf_counter()
    result = train(config, resume=args.resume, progress=False)
    wall = time.perf_counter() - started
    sample_set = load_samples(args.data, args.manifest)
    report = {
        "protocol": "seed_cnn, 128x128 in [0,1], Adam 1e-4, batch 32, cross-entropy, "
        f"{args.epochs} epochs, best validation loss checkpoint",
        "split": "dataset folders (leaks: near-duplicates across splits)"
        if key == "folder_split"
        else f"duplicate-aware manifest {args.manifest}",
        "command": recorded.command_line(),
        "seed": args.seed,
        "epochs_run": result.epochs_run,
        "best_val_loss": result.best_val_loss,
        "wall_seconds": round(wall, 1),  # this invocation (small when --resume found the run finished)
        "train_seconds": round(sum(row.get("seconds", 0) for row in read_history(out / "metrics.csv")), 1),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": recorded.machine(),
        "study_reported_accuracy": 0.619,
    }
    for split in ("validation", "test"):
        metrics = evaluate_samples(result.model_path, sample_set.split(split))
        report[split] = {
            "num_images": metrics["num_images"],
            "accuracy": metrics["accuracy"],
            "accuracy_ci95": metrics["accuracy_ci95"],
            "macro_f1": metrics["macro_f1"],
            "macro_f1_ci95": metrics["macro_f1_ci95"],
        }
        print(
            f"{key} {split}: accuracy {metrics['accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f} "
            f"({metrics['num_images']} images)"
        )
    print(f"wall {wall:.0f} s, peak memory {report['peak_memory_mb']:.0f} MB")
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    existing[key] = report
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {RESULTS} [{key}]")


if __name__ == "__main__":
    main()
