"""Run a training job: dataset -> recipe -> Lightning fit with checkpoints -> exported model file.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.csv`` (one row per epoch),
``checkpoints/best.ckpt`` (lowest validation loss, as the study kept), ``checkpoints/last.ckpt`` (for resume),
each with a ``.sha256`` beside it (checked before a resume), and ``model.safetensors`` (the best weights with their
metadata, which records the training and validation images by content hash and the held-out test split).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from torch.utils.data import DataLoader

from emotionlab.config import RunConfig, load_config, save_config, to_dict
from emotionlab.data.dataset import EpochSampler, load_samples, prepare_face_samples
from emotionlab.data.samples import Sample, SampleSet
from emotionlab.data.split import split_samples
from emotionlab.errors import EmotionlabError, Interrupted
from emotionlab.fileio import CONTENT_DIGEST_HEX, content_digest, ensure_outside_root, write_atomic
from emotionlab.models.io import save_model_file
from emotionlab.training.callbacks import (
    ChecksummedCheckpointIO,
    EpochMetricsCSV,
    EpochReseed,
    load_checkpoint,
    read_history,
    verify_checkpoint,
)
from emotionlab.training.module import EmotionClassifier
from emotionlab.training.recipes import Prepared, create_recipe

log = logging.getLogger("emotionlab")

CONFIG_NAME = "config.yaml"
MODEL_NAME = "model.safetensors"
# A fine-tuned run's start model (path, weights digest), written before its first epoch.
STARTED_FROM_NAME = "started_from.json"


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path | None  # None on non-zero ranks of a multi-process run
    best_val_loss: float | None
    epochs_run: int


class _DataModule(L.LightningDataModule):
    """Builds loaders once the trainer knows this process's rank, so each process reads its own shard."""

    def __init__(self, prepared: Prepared, config: RunConfig):
        super().__init__()
        self.prepared, self.config = prepared, config

    def _loader(self, dataset, *, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochSampler(
            len(dataset), seed=self.config.train.seed, shuffle=shuffle, rank=rank, world_size=world
        )
        workers = self.config.data.num_workers
        size = self.config.train.batch_size
        return DataLoader(
            dataset,
            batch_size=size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            # A last training batch of ONE image breaks BatchNorm in train mode: drop just that one image.
            drop_last=shuffle and len(sampler) % size == 1,
        )

    def train_dataloader(self):
        return self._loader(self.prepared.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.prepared.val_set, shuffle=False)


def class_counts(samples, labels: list[str]) -> list[int]:
    """Training images per class, in the model's label order (for class-balanced losses)."""
    counts = Counter(sample.label for sample in samples)
    return [counts.get(label, 0) for label in labels]


def split_all(config: RunConfig, sample_set: SampleSet) -> list[Sample]:
    """Every sample with its split: folder/manifest splits when present, else a seeded stratified split."""
    if sample_set.has_splits:
        return sample_set.samples
    log.info(
        "no split folders or manifest: made a stratified 80/10/10 split with seed %d", config.data.split_seed
    )
    return split_samples(sample_set.samples, seed=config.data.split_seed)


def resolve_splits(config: RunConfig, sample_set: SampleSet, samples: list[Sample] | None = None):
    """Train and validation samples: folder/manifest splits when present, else a seeded stratified split."""
    samples = split_all(config, sample_set) if samples is None else samples
    train = [s for s in samples if s.split == "train"]
    validation = [s for s in samples if s.split == "validation"]
    if not train:
        raise EmotionlabError(f"{sample_set.root}: no training images (no train split)")
    if not validation:
        raise EmotionlabError(
            f"{sample_set.root}: no validation images (add a validation/ folder or use a manifest)"
        )
    return train, validation


def _data_summary(sample_set: SampleSet, train, validation) -> dict:
    summary = sample_set.summary()
    summary["num_train"], summary["num_validation"] = len(train), len(validation)
    return summary


def dataset_record(sample_set: SampleSet, samples: list[Sample]) -> dict:
    """What the model file records of its data, by content: the training and validation images as sorted digests
    (evaluation refuses images the model has seen), and the held-out test split as (path, label, digest) rows
    (what ``emotionlab evaluate`` scores by default)."""

    def digests(split: str) -> list[str]:
        return sorted({content_digest(sample.path) for sample in samples if sample.split == split})

    return {
        "digest": f"sha256 of the file bytes, first {CONTENT_DIGEST_HEX} hex digits",
        "source": sample_set.source,
        "train": digests("train"),
        "validation": digests("validation"),
        "test": [
            [sample.relpath or sample.path.name, sample.label, content_digest(sample.path)]
            for sample in samples
            if sample.split == "test"
        ],
    }


def _interrupted_note(run_dir: Path, last: Path) -> str:
    if not last.is_file():
        return f"no checkpoint written yet in {run_dir}; start again with the same command"
    try:
        finished = f"{int(load_checkpoint(last, map_location='cpu')['epoch']) + 1} epoch(s) kept in "
    except (EmotionlabError, KeyError, TypeError, ValueError):  # cut while being written: say so on resume
        finished = ""
    return f"{finished}{last}; continue with: emotionlab train --resume {run_dir}"


def _quiet_lightning() -> None:
    """Lightning's INFO lines (devices, tips, "fit stopped") come twice, through its handler and the root one."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _check_or_record_start(run_dir: Path, started_from: dict | None, *, resuming: bool) -> None:
    """A fine-tuned run's start model, recorded before its first epoch; a resumed run refuses a start file that
    now holds other weights (a re-shipped model under the same path): its epochs so far began from the old ones,
    and its model file would record the new ones."""
    if not started_from:
        return
    record = run_dir / STARTED_FROM_NAME
    wanted = {"path": started_from["path"], "weights_sha256": started_from.get("weights_sha256")}
    if resuming and record.is_file():
        before = json.loads(record.read_text())
        if before.get("weights_sha256") != wanted["weights_sha256"]:
            raise EmotionlabError(
                f"{run_dir}: was started from other weights than {wanted['path']} holds now (its weights changed "
                "since); resuming would mix the two: start a new run with another --out"
            )
        return
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        text = json.dumps(wanted, indent=2)
        write_atomic(record, lambda temporary: Path(temporary).write_text(text))


def train(
    config: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    epochs: int | None = None,
    trust_checkpoint: bool = False,
) -> TrainResult:
    """Train per ``config``; with ``resume`` continue the run in ``config.out`` from its last checkpoint.

    ``epochs`` with ``resume`` changes the run's length (extends it, or ends it sooner; the cosine schedule
    follows the new length from the current epoch on)."""
    run_dir = Path(config.out)
    checkpoints = run_dir / "checkpoints"
    last = checkpoints / "last.ckpt"
    if resume:
        if not (run_dir / CONFIG_NAME).is_file():
            raise EmotionlabError(f"{run_dir}: not a run folder (no {CONFIG_NAME}); nothing to resume")
        config = replace(load_config(run_dir / CONFIG_NAME), out=str(run_dir))
        if epochs is not None:
            config = replace(config, train=replace(config.train, epochs=epochs))
        if last.is_file():
            # One line now, rather than a traceback after the data has loaded. --trust-checkpoint: the user
            # vouches for checkpoints without a checksum (each gets one now, so later loads check it).
            for checkpoint in sorted(checkpoints.glob("*.ckpt")) if trust_checkpoint else ():
                verify_checkpoint(checkpoint, trust_unchecked=True)
            verify_checkpoint(last)
        else:
            log.warning("%s: no checkpoint yet, starting the run from the beginning", run_dir)
    elif last.is_file() and os.environ.get("LOCAL_RANK") is None:
        raise EmotionlabError(
            f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out"
        )
    sample_set = load_samples(config.data.root, config.data.manifest)
    # --detect: every crop made (and cached) first in worker processes; an image that fails is skipped, not fatal.
    sample_set = prepare_face_samples(
        sample_set,
        config.data.faces,
        image_size=config.data.image_size,
        workers=max(1, config.data.num_workers),
        show_progress=progress,
    )
    ensure_outside_root(sample_set.root, run_dir)  # a dataset is never written to, as every `data` command
    # Absolute dataset paths in the saved config: `--resume` works from any directory.
    manifest = str(Path(config.data.manifest).resolve()) if config.data.manifest else None
    config = replace(
        config, data=replace(config.data, root=str(sample_set.root.resolve()), manifest=manifest)
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        save_config(config, run_dir / CONFIG_NAME)

    L.seed_everything(config.train.seed, workers=True, verbose=False)
    for path, reason in sample_set.skipped:
        log.warning("skipped %s: %s", path, reason)
    all_samples = split_all(config, sample_set)
    train_samples, val_samples = resolve_splits(config, sample_set, all_samples)
    prepared = create_recipe(config.train.recipe)(config, sample_set, train_samples, val_samples)
    _check_or_record_start(
        run_dir, prepared.metadata.get("finetuned_from"), resuming=resume and last.is_file()
    )

    module = EmotionClassifier(
        prepared.net,
        config.train,
        backbone_lr_scale=prepared.backbone_lr_scale,
        head_parameters=prepared.head_parameters,
        soft_targets=prepared.soft_targets,
        class_counts=class_counts(train_samples, prepared.metadata.get("labels") or sample_set.labels),
    )
    best = ModelCheckpoint(
        dirpath=checkpoints, filename="best", monitor="val/loss", mode="min", enable_version_counter=False
    )
    # Lightning's save_last only writes when the monitored value improves; resume needs every epoch.
    latest = ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, enable_version_counter=False)
    # Progress: rich draws a live bar on a terminal; in logs and CI one line per epoch (a bar is control codes).
    live_bar = progress and os.isatty(2)
    epoch_log = EpochMetricsCSV(run_dir / "metrics.csv", lines=progress and not live_bar)
    callbacks: list = [best, latest, epoch_log, EpochReseed(config.train.seed)]
    if config.train.early_stopping_patience:
        callbacks.append(
            EarlyStopping(monitor="val/loss", mode="min", patience=config.train.early_stopping_patience)
        )
    if live_bar:
        callbacks.append(RichProgressBar(leave=True))
    devices = config.train.devices
    _quiet_lightning()
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=int(devices) if str(devices).isdigit() else devices,
        strategy=config.train.strategy,
        num_nodes=config.train.num_nodes,
        precision=config.train.precision,
        deterministic=True,
        callbacks=callbacks,
        plugins=[ChecksummedCheckpointIO()],
        logger=False,
        default_root_dir=run_dir,
        use_distributed_sampler=False,
        enable_progress_bar=live_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*LeafSpec.*")  # an upstream deprecation inside Lightning
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
        try:
            trainer.fit(
                module,
                datamodule=_DataModule(prepared, config),
                ckpt_path=str(last) if resume and last.is_file() else None,
                weights_only=True,  # our checkpoint IO loads with weights_only anyway; say so to Lightning too
            )
        except SystemExit:  # Lightning's answer to Ctrl+C: a graceful stop, then exit(1)
            if not trainer.interrupted:
                raise
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning set it to ignore
            raise Interrupted(_interrupted_note(run_dir, last)) from None

    if trainer.global_rank != 0:
        return TrainResult(run_dir, None, None, trainer.current_epoch)
    best_path = Path(best.best_model_path) if best.best_model_path else last
    # Our own checkpoint, checked against its checksum; weights_only keeps it to tensors and primitives.
    state = load_checkpoint(best_path, map_location="cpu")["state_dict"]
    module.load_state_dict(state)
    history = read_history(run_dir / "metrics.csv")
    metadata = {
        **prepared.metadata,
        "labels": list(
            prepared.metadata.get("labels") or sample_set.labels
        ),  # a recipe may choose its classes
        "training": {
            "config": to_dict(config),
            "data": _data_summary(sample_set, train_samples, val_samples),
            "history": history,
            "best_checkpoint": best_path.name,
            "best_val_loss": float(best.best_model_score) if best.best_model_score is not None else None,
        },
        "dataset": dataset_record(sample_set, all_samples),
    }
    model_path = save_model_file(run_dir / MODEL_NAME, prepared.export(module.net).cpu(), metadata)
    return TrainResult(run_dir, model_path, metadata["training"]["best_val_loss"], len(history))
