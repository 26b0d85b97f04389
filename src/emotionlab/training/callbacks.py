"""Callbacks: a per-epoch metrics.csv that survives resumes, per-epoch reseeding for exact resumes, and
checkpoints with a SHA-256 written beside them (checked before a resume, loaded with ``weights_only``)."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from emotionlab.errors import EmotionlabError
from emotionlab.fileio import write_atomic

log = logging.getLogger("emotionlab")

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
METRIC_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")


def read_history(path: str | Path) -> list[dict]:
    """Rows of a run's metrics.csv as dicts of floats (epoch as int)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {key: (int(value) if key == "epoch" else float(value)) for key, value in row.items() if value != ""}
        for row in rows
    ]


class EpochMetricsCSV(L.Callback):
    """Writes one row per finished epoch (train and validation loss and accuracy) to ``metrics.csv``; with
    ``lines`` also prints it as one line on ``stream`` (stderr), for logs and CI where a live bar would be
    control codes. Lines count epochs from 1, as a reader does: "epoch 3/50" is the third of fifty.

    On resume, rows of epochs that will be re-run are dropped first, so the file never holds duplicates.
    """

    def __init__(self, path: str | Path, *, lines: bool = False, stream=None):
        self.path = Path(path)
        self.lines, self.stream = lines, stream
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
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        seconds = time.perf_counter() - self._started
        lr = trainer.optimizers[0].param_groups[-1]["lr"] if trainer.optimizers else ""
        row = {
            "epoch": trainer.current_epoch,
            "lr": f"{lr:.3g}" if lr != "" else "",
            "seconds": f"{seconds:.1f}",
        }
        for key in METRIC_KEYS:
            row[key.replace("/", "_")] = f"{metrics[key]:.6f}" if key in metrics else ""
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerow(row)
            handle.flush()
        if self.lines:
            parts = ", ".join(f"{key} {metrics[key]:.4f}" for key in METRIC_KEYS if key in metrics)
            line = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {parts} ({seconds:.0f} s)"
            print(line, file=self.stream or sys.stderr, flush=True)


class EpochReseed(L.Callback):
    """Reseeds the global RNG at each epoch start from (seed, epoch): dropout etc. repeat after a resume."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module):
        torch.manual_seed(self.seed * 7_919 + trainer.current_epoch * 104_729 + trainer.global_rank)


# ---- checkpoints with a checksum beside them -------------------------------------------------------------


def checksum_path(checkpoint: str | Path) -> Path:
    """``last.ckpt`` -> ``last.ckpt.sha256`` (``sha256sum -c`` reads it)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".sha256")


def _read_checksums(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _write_checksums(path: Path, digests: list[str], name: str) -> None:
    text = "".join(f"{digest}  {name}\n" for digest in digests)
    write_atomic(path, lambda temporary: Path(temporary).write_text(text))


def _damaged(path: Path, what: str) -> EmotionlabError:
    return EmotionlabError(
        f"{path}: {what}; delete it and {checksum_path(path).name} to restart the run from its first epoch "
        "(or put back an intact copy)"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checkpoint(path: str | Path, *, trust_unchecked: bool = False) -> None:
    """Refuse a checkpoint whose bytes differ from the SHA-256 written beside it when it was saved, or that has
    no checksum beside it (deleted, or an older emotionlab's run): a flipped byte could not be told apart.
    ``trust_unchecked`` (``train --resume --trust-checkpoint``): the user vouches for a checkpoint without a
    checksum; its SHA-256 is recorded beside it now, so from here on it is checked like any other."""
    path = Path(path)
    if not path.is_file():
        raise EmotionlabError(f"{path}: checkpoint not found")
    sidecar = checksum_path(path)
    expected = _read_checksums(sidecar)
    if not expected:
        if not trust_unchecked:
            raise EmotionlabError(
                f"{path}: no checksum beside it ({sidecar.name} is missing), so a damaged or edited checkpoint "
                "cannot be told from an intact one; if you know it is intact, resume with --trust-checkpoint"
            )
        _write_checksums(sidecar, [_file_sha256(path)], path.name)
        log.warning(
            "%s: no checksum beside it; trusted as asked, its SHA-256 now recorded in %s", path, sidecar.name
        )
        return
    if _file_sha256(path) not in expected:
        raise _damaged(
            path, f"checkpoint damaged or truncated (its SHA-256 differs from {checksum_path(path).name})"
        )


def load_checkpoint(path: str | Path, map_location=None) -> dict:
    """A verified checkpoint, unpickled with ``weights_only=True`` (tensors and plain values only, never code)."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (
        Exception
    ) as error:  # torch raises many types for a bad file (RuntimeError, UnpicklingError, EOFError...)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise _damaged(path, f"cannot read the checkpoint (truncated or damaged?): {first}") from error


class ChecksummedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer and reader, plus ``<checkpoint>.sha256`` written atomically beside each file.

    While a checkpoint is replaced the checksum file lists the new and the old digest, so a run killed between the
    two renames still resumes; a flipped bit or a cut file matches neither and is refused with one line.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        sidecar = checksum_path(path)
        _write_checksums(sidecar, [digest, *_read_checksums(sidecar)][:3], path.name)
        write_atomic(path, lambda temporary: Path(temporary).write_bytes(data))
        _write_checksums(sidecar, [digest], path.name)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint(path, map_location=map_location)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        checksum_path(path).unlink(missing_ok=True)
