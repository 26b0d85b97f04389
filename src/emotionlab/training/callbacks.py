"""Callbacks: a per-epoch metrics.csv that survives resumes, and per-epoch reseeding for exact resumes."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L
import torch

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def read_history(path: str | Path) -> list[dict]:
    """Rows of a run's metrics.csv as dicts of floats (epoch as int)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{key: (int(value) if key == "epoch" else float(value)) for key, value in row.items() if value != ""} for row in rows]


class EpochMetricsCSV(L.Callback):
    """Writes one row per finished epoch (train and validation loss and accuracy) to ``metrics.csv``.

    On resume, rows of epochs that will be re-run are dropped first, so the file never holds duplicates.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._started = 0.0

    def on_train_start(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        kept = []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["epoch"]) < trainer.current_epoch]
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def on_train_epoch_start(self, trainer, pl_module):
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics

        def value(key):
            tensor = metrics.get(key)
            return "" if tensor is None else f"{float(tensor):.6f}"

        lr = trainer.optimizers[0].param_groups[-1]["lr"] if trainer.optimizers else ""
        row = {
            "epoch": trainer.current_epoch,
            "train_loss": value("train/loss"),
            "train_acc": value("train/acc"),
            "val_loss": value("val/loss"),
            "val_acc": value("val/acc"),
            "lr": f"{lr:.3g}" if lr != "" else "",
            "seconds": f"{time.perf_counter() - self._started:.1f}",
        }
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerow(row)
            handle.flush()


class EpochReseed(L.Callback):
    """Reseeds the global RNG at each epoch start from (seed, epoch): dropout etc. repeat after a resume."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module):
        torch.manual_seed(self.seed * 7_919 + trainer.current_epoch * 104_729 + trainer.global_rank)
