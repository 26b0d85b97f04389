"""One run of an experiment: train it, or reuse it when finished, or resume it when interrupted.

The ablation and cross-validation are many ordinary training runs; each goes through ``run_or_reuse``, so a
killed experiment costs only the run in progress and a re-run gives the same table.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from emotionlab.config import RunConfig

log = logging.getLogger("emotionlab")


def run_or_reuse(config: RunConfig) -> tuple[Path, dict]:
    """Train one run (or reuse / resume it); returns its model path and a summary."""
    from emotionlab.training.callbacks import read_history
    from emotionlab.training.train import train

    run_dir = Path(config.out)
    model_path = run_dir / "model.safetensors"
    started = time.perf_counter()
    if model_path.is_file():
        log.info("experiment: reusing %s", model_path)
    else:
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        model_path = train(config, resume=resume, progress=False).model_path
    history = read_history(run_dir / "metrics.csv")
    best = min(history, key=lambda row: row.get("val_loss", float("inf"))) if history else {}
    return model_path, {
        "run_dir": str(run_dir),
        "epochs_run": len(history),
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "val_acc_at_best": best.get("val_acc"),
        "train_seconds": round(sum(row.get("seconds", 0.0) for row in history), 1),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
    }
