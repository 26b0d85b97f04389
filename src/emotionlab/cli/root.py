"""The `emotionlab` command line: data ... | train | evaluate | predict | export | serve | label."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from emotionlab import __version__
from emotionlab.errors import EmotionlabError
from emotionlab.labels import EMOTIONS

app = typer.Typer(
    help="Recognise emotions on faces: label, audit, train, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: download, audit, split, face crops.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"emotionlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def main() -> None:
    """Console entry point: user errors print one line, no traceback, exit code 2."""
    try:
        app()
    except EmotionlabError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


# ---- commands -------------------------------------------------------------------------------------------
# Each command parses options into the project's dataclasses and calls one library function.


def _faces_option(faces: bool, detector: str | None, margin: float) -> dict | None:
    """The face-crop settings dict stored in configs and model files (None: whole images)."""
    if not faces:
        return None
    from emotionlab.data.faces import PREPARE_DETECTOR, FaceCropConfig

    return FaceCropConfig(detector=detector or PREPARE_DETECTOR, margin=margin).to_dict()


def train_run_config(
    *, data, manifest, model, out, recipe, image_size, epochs, batch_size, learning_rate, optimizer, weight_decay,
    scheduler, warmup_epochs, label_smoothing, augment, seed, early_stopping, weights, pretrained, init_from,
    backbone_lr_scale, mix_ferplus, mix_ratio, ferplus_classes, ferplus_targets, mixup, class_balance, faces,
    detector, margin, workers, accelerator, devices, strategy, **_ignored,
):
    """The RunConfig of ``emotionlab train`` options (also used by ``experiment cv`` for its recipes)."""
    from emotionlab.config import DataConfig, LossOptions, MixOptions, PretrainOptions, RunConfig, TrainConfig

    return RunConfig(
        data=DataConfig(
            root=str(data) if data else None,
            manifest=str(manifest) if manifest else None,
            image_size=image_size,
            augment=augment,
            faces=_faces_option(faces, detector, margin),
            num_workers=workers,
        ),
        train=TrainConfig(
            model=model, recipe=recipe, epochs=50 if epochs is None else epochs, batch_size=batch_size, learning_rate=learning_rate,
            optimizer=optimizer, weight_decay=weight_decay, scheduler=scheduler, warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing, seed=seed, early_stopping_patience=early_stopping,
            weights=str(weights) if weights else None, pretrained=pretrained,
            init_from=str(init_from) if init_from else None,
            backbone_lr_scale=backbone_lr_scale,
            pretrain=PretrainOptions(ferplus_classes=ferplus_classes, ferplus_targets=ferplus_targets),
            loss=LossOptions(mixup=mixup, class_balance=class_balance),
            mix=MixOptions(ferplus=str(mix_ferplus) if mix_ferplus else None, ratio=mix_ratio),
            accelerator=accelerator, devices=devices, strategy=strategy,
        ),
        out=str(out),
    )


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Dataset root (class folders, optionally under train/validation/test). Default: $EMOTIONLAB_DATA.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest CSV (path,label,split,...) with paths under --data.")] = None,
    model: Annotated[str, typer.Option(help="seed_cnn, fer_cnn or any timm model name.")] = "seed_cnn",
    out: Annotated[Path, typer.Option(help="Run folder: config, metrics.csv, checkpoints, model.safetensors.")] = Path("runs/latest"),
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder from its last checkpoint.")] = None,
    recipe: Annotated[Literal["scratch", "transfer", "finetune", "pretrain"], typer.Option(help="What to train: from scratch, a head on a frozen backbone, every weight from --from, or a FER+ backbone.")] = "scratch",
    image_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 128,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default 50); with --resume: the run's new length.")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option("--lr", "--learning-rate")] = 1e-4,
    optimizer: Annotated[Literal["adam", "adamw", "sgd"], typer.Option()] = "adam",
    weight_decay: Annotated[float, typer.Option()] = 0.0,
    scheduler: Annotated[Literal["none", "cosine"], typer.Option()] = "none",
    warmup_epochs: Annotated[int, typer.Option()] = 0,
    label_smoothing: Annotated[float, typer.Option()] = 0.0,
    augment: Annotated[Literal["none", "flip", "seed", "light", "randaugment", "trivialaugment"], typer.Option(help="Augmentation policy (seed = the study's).")] = "none",
    seed: Annotated[int, typer.Option()] = 0,
    early_stopping: Annotated[int | None, typer.Option(help="Stop after this many epochs without a new lowest validation loss.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the backbone (offline pre-training).")] = None,
    pretrained: Annotated[bool, typer.Option(help="Download the backbone's pretrained weights from the hub (online).")] = False,
    init_from: Annotated[Path | None, typer.Option("--from", help="finetune: a run folder or model file to start from.")] = None,
    backbone_lr_scale: Annotated[float, typer.Option(help="finetune: backbone learning rate = --lr x this (head: --lr).")] = 0.1,
    mix_ferplus: Annotated[Path | None, typer.Option(help="finetune: also train on this FER+ folder's faces (keeps FER+ skill).")] = None,
    mix_ratio: Annotated[float, typer.Option(help="finetune --mix-ferplus: FER+ faces per task image, per epoch.")] = 1.0,
    ferplus_classes: Annotated[int, typer.Option(help="pretrain: FER+ classes, 5 (ours) or 8 (with neutral, disgust, contempt).")] = 5,
    ferplus_targets: Annotated[Literal["majority", "soft"], typer.Option(help="pretrain: hard labels or crowd-vote distributions.")] = "majority",
    mixup: Annotated[float, typer.Option(help="Mixup strength alpha (0 = off; 0.2-0.4 is usual).")] = 0.0,
    class_balance: Annotated[Literal["none", "weight", "logit-adjust"], typer.Option(help="weight: inverse-frequency loss weights; logit-adjust: log-prior shift of the training loss.")] = "none",
    faces: Annotated[bool, typer.Option("--faces/--no-faces", help="Train on face crops (cached) instead of whole images.")] = False,
    detector: Annotated[str | None, typer.Option(help="Face detector for --faces.")] = None,
    margin: Annotated[float, typer.Option(help="Face crop margin per side, as a fraction of the box.")] = 0.1,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu, gpu, mps, ...")] = "auto",
    devices: Annotated[str, typer.Option(help="Lightning devices: auto, 1, 2, ...")] = "auto",
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train a model; the run folder gets the best (lowest validation loss) and last checkpoints and a model file."""
    options = dict(locals())
    from emotionlab.config import RunConfig
    from emotionlab.training.train import train as run_training

    if resume is not None:
        result = run_training(RunConfig(out=str(resume)), resume=True, progress=progress, epochs=epochs)
    else:
        result = run_training(train_run_config(**options), progress=progress)
    if result.model_path is not None:
        print(f"model: {result.model_path}")
        best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"  # None: a moved run folder
        print(f"best validation loss: {best} after {result.epochs_run} epoch(s); run folder: {result.run_dir}")


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{metrics.get('split', '')} split: {metrics['num_images']} images")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, row in metrics["per_class"].items():
        table.add_row(label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    low, high = metrics.get("accuracy_ci95", (float("nan"), float("nan")))
    Console().print(table)
    print(f"accuracy {metrics['accuracy']:.3f} (95% CI {low:.3f}-{high:.3f})  macro-F1 {metrics['macro_f1']:.3f}  loss {metrics['loss']:.3f}")


@app.command()
def evaluate(
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped model).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset root. Default: $EMOTIONLAB_DATA.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest CSV whose split column selects images.")] = None,
    split: Annotated[str, typer.Option(help="train | validation | test | all")] = "test",
    out: Annotated[Path, typer.Option(help="Folder for metrics.json, predictions.csv and figures.")] = Path("runs/evaluation"),
    allow_overlap: Annotated[bool, typer.Option("--allow-overlap", help="Score images the model was trained on anyway (flagged).")] = False,
    report: Annotated[bool, typer.Option("--report", help="Also write report.html (one self-contained page, Grad-CAM gallery) beside metrics.json.")] = False,
) -> None:
    """Evaluate a model on a split: metrics.json, confusion matrices, training curves, misclassified gallery.

    With no --data and no --manifest, a model that records its held-out test split (the shipped one does) is scored
    on that split. Images the model was trained on are refused (compared by content) unless --allow-overlap.
    """
    from emotionlab.data.audit import ensure_outside_root
    from emotionlab.data.dataset import load_samples, resolve_data_root
    from emotionlab.evaluation.evaluate import evaluate as run_evaluation
    from emotionlab.evaluation.evaluate import held_out_samples
    from emotionlab.inference import resolve_model_path
    from emotionlab.models.io import read_metadata

    model_path = resolve_model_path(model)
    metadata = read_metadata(model_path)  # a damaged or altered model: one line before any image is read
    if data is None and manifest is None and split == "test" and (metadata.get("dataset") or {}).get("test"):
        root = resolve_data_root(None)
        samples = held_out_samples(metadata, root)
        print(f"the model's held-out test split: {len(samples)} images recorded in {Path(model_path).name}, under {root}")
    else:
        sample_set = load_samples(data, manifest)
        root = sample_set.root
        samples = sample_set.samples if split == "all" else sample_set.split(split)
        if not samples and split != "all" and not sample_set.has_splits:
            raise EmotionlabError(f"{sample_set.root}: the dataset has no split folders; use --split all or a --manifest")
    ensure_outside_root(root, out)
    metrics = run_evaluation(model_path, samples, out, split=split, allow_overlap=allow_overlap, report=report)
    _print_metrics(metrics)
    overlap = metrics.get("overlap_with_training")
    if overlap is None:
        print("note: the model file does not record its training images; overlap with them was not checked")
    elif overlap["images"]:
        console.print(f"[bold red]warning:[/] {overlap['images']} of these {metrics['num_images']} images were in the "
                      f"model's training data ({overlap['train']} train, {overlap['validation']} validation): "
                      "the figures above flatter it", highlight=False, soft_wrap=True)
    print(f"figures and metrics.json in {out}/")
    if report:
        print(f"report: {metrics['report']}")


@app.command()
def predict(
    paths: Annotated[list[str] | None, typer.Argument(help="Images, videos, folders (recursive) or glob patterns.")] = None,
    model: Annotated[Path | None, typer.Option(help="Model file: .safetensors, or .onnx with --backend onnx (default: the shipped model).")] = None,
    output_format: Annotated[str, typer.Option("--format", help="table | jsonl | csv")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write jsonl/csv records to this file instead of stdout.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip inputs already in --output and append the rest.")] = False,
    shard: Annotated[str | None, typer.Option(help="i/n: process only the i-th of n disjoint parts of the sorted inputs.")] = None,
    batch_size: Annotated[int, typer.Option(help="Faces per network call.")] = 32,
    workers: Annotated[int, typer.Option(help="Processes that decode, detect and crop images (0: in this process).")] = 0,
    detect: Annotated[bool | None, typer.Option("--detect/--no-detect", help="Force face detection / use whole images (they are faces already). Default: as the model was trained.")] = None,
    detector: Annotated[str | None, typer.Option(help="Face detector instead of the model's (haar, hog, mmod, yunet, cascade).")] = None,
    max_faces: Annotated[int | None, typer.Option(help="Classify at most this many faces per image (largest first).")] = None,
    backend: Annotated[str, typer.Option(help="torch | onnx (ONNX Runtime; exports a .safetensors model once to the cache).")] = "torch",
    int8: Annotated[bool, typer.Option("--int8", help="With --backend onnx: an int8-quantised export.")] = False,
    fps: Annotated[float | None, typer.Option(help="Videos and camera: frames per second to classify (default: every frame).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for each video's emotion-over-time CSV and PNG plot.")] = None,
    annotate: Annotated[Path | None, typer.Option(help="Folder for copies of images and videos with boxes, labels and confidences drawn.")] = None,
    camera: Annotated[int | None, typer.Option(help="Read this camera (0: the first) instead of files.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Camera: stop after this many frames.")] = None,
    window: Annotated[bool | None, typer.Option("--window/--no-window", help="Camera: show a live window (default: when a display exists).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar on stderr (default: on a terminal).")] = None,
) -> None:
    """Predict the emotion of every face in images, videos or a camera; jsonl/csv give one record per image or frame.

    A file that cannot be used (unreadable, not an image, a video that does not open, an image that kills a
    worker process) gets a record with an "error" reason in its place and the run goes on: the exit code is 0
    when every input has its record. Records are written as they come, so a run that dies keeps them, and
    --resume continues after them (an image the run died on is retried alone, in a separate process).
    """
    import os

    # Before torch loads: OpenMP threads that sleep rather than spin while they wait keep PyTorch fast when other
    # processes share the CPU (batch-1 faces/s 128 -> 354 on a loaded 2-core machine, benchmarks/speed.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from emotionlab.inference import PredictOptions, run_predict

    run_predict(
        PredictOptions(
            inputs=list(paths or []), model=model, output_format=output_format, output=output, resume=resume,
            shard=shard, batch_size=batch_size, workers=workers, detect=detect, detector=detector,
            max_faces=max_faces, backend=backend, int8=int8, fps=fps, out_dir=out, annotate=annotate,
            camera=camera, max_frames=max_frames, window=window, progress=progress,
        )
    )


@app.command("models")
def list_models_command() -> None:
    """List the project's own architectures (every timm model name works too)."""
    from emotionlab.models.registry import list_models

    for name in list_models():
        print(name)


# ---- data: audit, split, download (library: emotionlab.data.audit / manifest / download) -----------------


@data_app.command("audit")
def data_audit(
    root: Annotated[Path, typer.Argument(help="Dataset folder ([split/]label/image). Only read, never changed.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for audit.json and class_balance.png (outside ROOT).")],
    threshold: Annotated[
        int | None, typer.Option(help="Near-duplicate threshold: max perceptual-hash distance, bits of 64.")
    ] = None,
    people: Annotated[
        bool, typer.Option("--people", help="Also find the same person across splits (face embeddings, cached).")
    ] = False,
    person_threshold: Annotated[
        float | None, typer.Option(help="With --people: max face-embedding distance of one person (default 0.4).")
    ] = None,
) -> None:
    """Check a dataset: unreadable files, real formats, duplicates, cross-split leakage, label conflicts."""
    from emotionlab.data.audit import DEFAULT_THRESHOLD, run_audit

    if people:
        from emotionlab.data.people import DEFAULT_PERSON_THRESHOLD

        person_threshold = DEFAULT_PERSON_THRESHOLD if person_threshold is None else person_threshold
    run_audit(root, out, threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
              person_threshold=person_threshold if people else None, console=Console())


@data_app.command("split")
def data_split(
    root: Annotated[Path, typer.Argument(help="Dataset folder ([split/]label/image). Only read, never changed.")],
    out: Annotated[Path, typer.Option("--out", help="Manifest CSV to write (outside ROOT).")],
    ratios: Annotated[str, typer.Option(help="train,validation,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    threshold: Annotated[
        int | None, typer.Option(help="Near-duplicate threshold: max perceptual-hash distance, bits of 64.")
    ] = None,
    keep_splits: Annotated[
        bool, typer.Option("--keep-splits", help="Keep the folder splits; move only duplicate groups that leak.")
    ] = False,
    group_by: Annotated[
        Literal["duplicates", "person"],
        typer.Option(help="Keep whole: duplicate groups, or people too (face embeddings; group = merged id)."),
    ] = "duplicates",
    person_threshold: Annotated[
        float | None, typer.Option(help="With --group-by person: max face-embedding distance of one person (default 0.4).")
    ] = None,
) -> None:
    """Write a manifest with a stratified split in which no duplicate group (or person) straddles splits."""
    from emotionlab.data.audit import DEFAULT_THRESHOLD
    from emotionlab.data.manifest import run_split

    run_split(
        root,
        out,
        ratios=ratios,
        seed=seed,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        keep_splits=keep_splits,
        group_by=group_by,
        person_threshold=person_threshold,
        console=Console(),
    )


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Dataset name: seed-emotions.")],
    dest: Annotated[Path, typer.Argument(help="New or empty folder to put the dataset in.")],
    url: Annotated[str | None, typer.Option(help="Archive URL (default: $EMOTIONLAB_SEED_URL, else GitHub).")] = None,
    source: Annotated[
        Path | None, typer.Option("--from", help="Use a local zip or an already extracted folder instead.")
    ] = None,
) -> None:
    """Fetch a known dataset (zip from its repository, or --from a local copy) and check its layout and counts."""
    from emotionlab.data.download import download_dataset

    download_dataset(name, dest, url=url, source=source, console=Console(stderr=True))


@data_app.command("import")
def data_import(
    source: Annotated[Path, typer.Argument(help="A CSV of url,label[,source,licence], a zip or tar archive, or a folder of label folders. Only read.")],
    out: Annotated[Path, typer.Option("--out", help="The new dataset folder: OUT/label/<sha256[:16]>.<ext> and OUT/provenance.csv. Re-running resumes.")],
    against: Annotated[Path | None, typer.Option(help="An existing dataset (folder, or manifest with sha256/phash): its exact and near duplicates are skipped.")] = None,
    label_from: Annotated[Literal["folder", "csv"] | None, typer.Option(help="Archive/folder labels: the folder holding each file, or a CSV of path,label (--labels, else labels.csv in SOURCE).")] = None,
    labels: Annotated[Path | None, typer.Option(help="With --label-from csv: the path,label[,source,licence] CSV (paths inside SOURCE).")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent downloads.")] = 8,
    retries: Annotated[int, typer.Option(help="Extra attempts after a timeout, broken connection or HTTP 5xx/429 (back-off 0.5 s, 1 s, 2 s, ...).")] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds without data before an attempt gives up.")] = 20.0,
    max_mb: Annotated[float, typer.Option(help="Largest file accepted, in MB (downloads stop past it).")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image accepted, in pixels (checked before decoding).")] = 50_000_000,
    threshold: Annotated[int | None, typer.Option(help="Near-duplicate threshold: max perceptual-hash distance, bits of 64 (the audit's).")] = None,
) -> None:
    """Import photos into a new dataset folder: checked by their bytes, duplicates skipped, provenance kept."""
    from emotionlab.data.audit import DEFAULT_THRESHOLD
    from emotionlab.data.importer import ImportOptions, import_photos, print_import_summary

    options = ImportOptions(
        workers=workers, retries=retries, timeout=timeout, max_bytes=int(max_mb * 1024**2), max_pixels=max_pixels,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold, label_from=label_from,
        labels_csv=str(labels) if labels else None,
    )
    report = import_photos(source, out, against=against, options=options)
    print_import_summary(report, Console())


@app.command("label")
def label_photos(
    folder: Annotated[Path, typer.Argument(help="Folder of photos to label (searched recursively; only read).")],
    classes: Annotated[
        str | None,
        typer.Option(help="Comma-separated class names; keys 1..9 follow this order. Default: the five emotions "
                     "(with --apply/--export: the classes the journal was labelled with)."),
    ] = None,
    journal: Annotated[
        Path | None, typer.Option(help="Journal of every action (default: ./<folder name>.labels.jsonl).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port for the page (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the page on this machine.")] = "127.0.0.1",
    model: Annotated[Path | None, typer.Option(help="Show this model's suggestion and confidence per image.")] = None,
    apply: Annotated[
        Path | None, typer.Option("--apply", help="No server: copy labelled images into DEST/<label>/ and exit.")
    ] = None,
    export: Annotated[Path | None, typer.Option("--export", help="No server: write path,label rows to this CSV.")] = None,
) -> None:
    """Label photos one at a time in a local web page (keys, skip, undo); every action is saved at once."""
    from emotionlab.labeling import apply_and_export, default_journal_path, parse_classes

    class_names = parse_classes(classes or ",".join(EMOTIONS))
    if apply is not None or export is not None:
        apply_and_export(folder, journal or default_journal_path(folder), dest=apply, csv_path=export,
                         classes=class_names if classes else None)
        return
    from emotionlab.serving.label_app import serve_labels

    serve_labels(folder, class_names, journal=journal, host=host, port=port, model=model)


# ---- data: face detection and crops (library: emotionlab.data.faces) ------------------------------------


@data_app.command("faces")
def data_faces(
    root: Annotated[Path, typer.Argument(help="Dataset folder. Only read, never changed.")],
    out: Annotated[
        Path, typer.Option("--out", help="Manifest CSV to write (outside ROOT), with face_box filled.")
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(help="Input manifest (paths under ROOT); its columns are kept. Default: scan ROOT."),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(help="haar | hog | mmod | yunet | cascade (default: cascade = hog, then mmod)."),
    ] = None,
    detector_model: Annotated[
        Path | None, typer.Option(help="YuNet ONNX file (for --detector yunet).")
    ] = None,
    margin: Annotated[float, typer.Option(help="Crop margin per side, as a fraction of the box.")] = 0.1,
    align: Annotated[bool, typer.Option("--align", help="Rotate crops so the eyes are level.")] = False,
    workers: Annotated[int, typer.Option(help="Detection processes.")] = 1,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Crop cache (default: $EMOTIONLAB_CACHE/faces or ~/.cache/emotionlab/faces)."),
    ] = None,
) -> None:
    """Detect a face on every image, fill the crop cache, and write a manifest with face_box (x y w h)."""
    from emotionlab.data.faces import PREPARE_DETECTOR, FaceCropConfig, prepare_face_manifest

    config = FaceCropConfig(
        detector=detector or PREPARE_DETECTOR,
        margin=margin,
        align=align,
        detector_model=str(detector_model) if detector_model else None,
    )
    report = prepare_face_manifest(
        root, out, manifest=manifest, config=config, cache_dir=cache_dir, workers=workers
    )
    found_by = ", ".join(f"{name} {count}" for name, count in sorted(report.by_detector.items()))
    print(
        f"{report.total} images: face found in {report.with_face} ({found_by}), no face in {len(report.no_face)}"
    )
    from emotionlab.isolation import printable  # file names need not be UTF-8

    for path in report.no_face:
        print(f"  no face: {printable(path)}")
    for path, reason in report.unreadable:
        print(f"  unreadable: {printable(path)}: {printable(reason)}")
    print(f"wrote {report.out}")


@data_app.command("download-yunet")
def data_download_yunet(
    dest: Annotated[
        Path, typer.Argument(help="File to write, or a folder for face_detection_yunet_2023mar.onnx.")
    ],
    url: Annotated[
        str | None, typer.Option(help="Download URL (default: the OpenCV model zoo on GitHub).")
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--from", help="Copy this local file instead of downloading.")
    ] = None,
) -> None:
    """Fetch OpenCV's YuNet face-detector model (ONNX) for --detector yunet, or copy a local file --from."""
    from emotionlab.data.faces import YUNET_URL, download_yunet

    path = download_yunet(dest, url=url or YUNET_URL, source_file=source)
    print(f"wrote {path}; use it with --detector yunet --detector-model {path}")


@app.command("export")
def export_command(
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (metadata embedded).")],
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped model).")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Quantise to int8 (dynamic; static with --calibration).")] = False,
    calibration: Annotated[list[str] | None, typer.Option(help="Images/folders for static int8 calibration (not the test set).")] = None,
) -> None:
    """Export a model to ONNX for ONNX Runtime (and any other ONNX tool)."""
    from emotionlab.onnx_export import export_onnx_command

    print(export_onnx_command(model, onnx, int8=int8, calibration=calibration))


# ---- experiments: the study's ablation, augmentation preview ----------------------------------------------

experiment_app = typer.Typer(help="Experiments: the study's ablation with seeds and confidence intervals.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("ablation")
def experiment_ablation(
    data: Annotated[Path | None, typer.Option(help="Dataset root (manifest paths are relative to it). Default: $EMOTIONLAB_DATA.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="The split to use, e.g. benchmarks/splits/seed-emotions.csv.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the runs and ablation.json / ablation.md.")] = Path("runs/ablation"),
    seeds: Annotated[int, typer.Option(help="Seeds per row (0..N-1).")] = 3,
    rows: Annotated[list[str] | None, typer.Option("--row", help="Rows to run (repeat): baseline, augmentation, transfer, finetune, faces. Default: all.")] = None,
    backbone_model: Annotated[str, typer.Option(help="Transfer backbone: fer_cnn (FER+ file) or a timm name such as vgg16.")] = "fer_cnn",
    backbone_weights: Annotated[Path | None, typer.Option(help="Backbone weights file (default: models/ferplus_backbone.safetensors).")] = None,
    pretrained: Annotated[bool, typer.Option(help="Transfer backbone weights from the hub (online).")] = False,
    scratch_epochs: Annotated[int, typer.Option(help="Max epochs of the scratch rows (early stopping on).")] = 25,
    finetune_epochs: Annotated[int, typer.Option(help="Max epochs of the fine-tuning rows.")] = 20,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = 8,
) -> None:
    """Baseline -> +augmentation -> +transfer -> +fine-tuning -> face crops, several seeds, bootstrap CIs."""
    import shlex

    from emotionlab.experiments import ROWS, AblationSettings, render_markdown, run_ablation, write_report

    settings = AblationSettings(
        out=str(out), data=str(data) if data else None, manifest=str(manifest) if manifest else None,
        seeds=tuple(range(seeds)), rows=tuple(rows or ROWS), backbone_model=backbone_model,
        backbone_weights=str(backbone_weights) if backbone_weights else None, pretrained=pretrained,
        scratch_epochs=scratch_epochs, finetune_epochs=finetune_epochs, patience=patience,
    )
    command = "emotionlab " + shlex.join(sys.argv[1:])
    results = run_ablation(settings)
    json_path, md_path = write_report(results, out, command=command)
    print(render_markdown(results, command=command))
    print(f"wrote {json_path} and {md_path}")


def _cv_recipe(text: str):
    """``NAME=TRAIN OPTIONS`` -> (name, RunConfig): the options are parsed exactly as ``emotionlab train`` would."""
    import shlex

    name, sep, options = text.partition("=")
    if not sep or not name.strip():
        raise EmotionlabError(f"--recipe {text!r}: expected NAME='train options', e.g. base='--recipe finetune --from M'")
    command = typer.main.get_command(app).commands["train"]
    try:
        context = command.make_context("train", shlex.split(options), resilient_parsing=False)
    except Exception as error:  # Typer's (vendored) click usage errors all have format_message()
        if not hasattr(error, "format_message"):
            raise
        raise EmotionlabError(f"--recipe {name}: {error.format_message()}") from error
    if context.params.get("resume"):
        raise EmotionlabError(f"--recipe {name}: --resume has no meaning here (cross-validation resumes by itself)")
    return name.strip(), train_run_config(**context.params)


@experiment_app.command("cv")
def experiment_cv(
    recipes: Annotated[list[str], typer.Option("--recipe", help="NAME='train options' (repeat to compare recipes on the same folds).")],
    data: Annotated[Path | None, typer.Option(help="Dataset root (manifest paths are relative to it). Default: $EMOTIONLAB_DATA.")] = None,
    manifest: Annotated[Path, typer.Option(help="The split whose train + validation rows are cross-validated (test rows are never used).")] = Path("benchmarks/splits/seed-emotions.csv"),
    folds: Annotated[int, typer.Option(help="Number of folds (stratified, duplicate groups kept whole).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for folds, runs, cv.json and cv.md (re-running resumes).")] = Path("runs/cv"),
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Also score each fold model with test-time flips (rows NAME+flip).")] = False,
) -> None:
    """Out-of-fold accuracy, macro-F1 and per-class recall of each recipe, with paired differences between them."""
    import shlex

    from emotionlab.crossval import CvSettings, render_markdown, run_cv, write_report

    parsed = dict(_cv_recipe(text) for text in recipes)
    if len(parsed) != len(recipes):
        raise EmotionlabError("--recipe: every recipe needs its own NAME")
    settings = CvSettings(data=str(data) if data else None, manifest=str(manifest), out=str(out), folds=folds, seed=seed, tta=tta)
    command = "emotionlab " + shlex.join(sys.argv[1:])
    results = run_cv(settings, parsed)
    json_path, md_path = write_report(results, out, command=command)
    print(render_markdown(results, command=command))
    print(f"wrote {json_path} and {md_path}")


@app.command("ensemble")
def ensemble_command(
    models: Annotated[list[Path], typer.Argument(help="Model files to average (same labels and input format).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The ensemble model file to write (.safetensors).")],
    tta: Annotated[str, typer.Option(help="Test-time augmentation inside the model: flip (face and mirror averaged) or none.")] = "flip",
) -> None:
    """Average several models (seeds, folds, backbones) into ONE model file, optionally with test-time flips."""
    from emotionlab.models.ensemble import build_ensemble

    path = build_ensemble(models, output, tta=tta)
    print(f"wrote {path} ({len(models)} model file(s), test-time augmentation: {tta})")


@app.command("augment-preview")
def augment_preview_command(
    root: Annotated[Path, typer.Argument(help="Dataset root (class folders, optionally under train/...).")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("augment-preview.png"),
    policy: Annotated[str, typer.Option("--augment", help="none | flip | seed | light | randaugment | trivialaugment")] = "seed",
    image_size: Annotated[int, typer.Option(help="Square size of each tile.")] = 128,
    rows: Annotated[int, typer.Option(help="Images (one per row, spread over the classes).")] = 6,
    views: Annotated[int, typer.Option(help="Augmented views per image.")] = 7,
    seed: Annotated[int, typer.Option()] = 0,
    faces: Annotated[bool, typer.Option("--faces/--no-faces", help="Augment face crops, as training with --faces does.")] = False,
) -> None:
    """Write a grid: each row an original image followed by augmented views, to check a policy by eye."""
    from emotionlab.data.audit import ensure_outside_root
    from emotionlab.experiments import augment_preview

    ensure_outside_root(root, out)  # a dataset is never written to, as every `data` command

    path = augment_preview(root, out, policy=policy, image_size=image_size, rows=rows, views=views, seed=seed,
                           faces=_faces_option(faces, None, 0.1))
    print(f"wrote {path}")


@app.command()
def serve(
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped model).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the service on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    detector: Annotated[str | None, typer.Option(help="Face detector instead of the model's.")] = None,
    backend: Annotated[str, typer.Option(help="torch | onnx")] = "torch",
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload per image, in MB.")] = 10.0,
    workers: Annotated[
        int, typer.Option(help="Worker processes, each with its own model and detector; 0: one in-process slot.")
    ] = 2,
    queue_size: Annotated[
        int, typer.Option(help="Requests that may wait for a worker; one more is answered 503 + Retry-After.")
    ] = 32,
) -> None:
    """Serve the model over HTTP: POST /predict with images, a page at / to try it, API docs at /docs."""
    from emotionlab.serving.app import serve as run_server

    if workers < 0 or queue_size < 0:
        raise EmotionlabError("--workers and --queue-size must be 0 or more")
    run_server(str(model) if model else None, host=host, port=port, detector=detector, backend=backend,
               max_upload_mb=max_upload_mb, workers=workers, queue_size=queue_size)


# ---- explain: Grad-CAM (library: emotionlab.explain) -----------------------------------------------------


@app.command("explain")
def explain_command(
    images: Annotated[list[str], typer.Argument(help="Images, folders (recursive) or glob patterns.")],
    model: Annotated[Path | None, typer.Option(help="Model file (.safetensors; default: the shipped model).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for NAME.faceK.png (heat over each face) and NAME.overlay.png (over the photo).")] = Path("runs/explain"),
    target: Annotated[str | None, typer.Option("--class", help="Explain this class (default: each face's predicted class).")] = None,
    detect: Annotated[bool | None, typer.Option("--detect/--no-detect", help="Force face detection / use whole images. Default: as the model was trained.")] = None,
    detector: Annotated[str | None, typer.Option(help="Face detector instead of the model's.")] = None,
    max_faces: Annotated[int | None, typer.Option(help="Explain at most this many faces per image (largest first).")] = None,
    output_format: Annotated[Literal["text", "jsonl"], typer.Option("--format", help="text: one line per face; jsonl: one record per image.")] = "text",
) -> None:
    """Show where the model looked: a Grad-CAM heat map of every face, saved as overlays."""
    import json

    from emotionlab.explain import explain_files

    def show(record: dict) -> None:
        if output_format == "jsonl":
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"{record['path']}: error: {record['error']}", flush=True)
        else:
            for number, face in enumerate(record["faces"], start=1):
                where = "whole image" if face["box"] is None else "box " + " ".join(map(str, face["box"]))
                print(f"{record['path']} face {number} ({where}): {face['label']} {face['confidence']:.0%}, "
                      f"heat for {face['explained']} -> {face['overlay']}", flush=True)

    records = explain_files(images, out, model=model, target=target, detect=detect, detector=detector,
                            max_faces=max_faces, on_record=show)
    if output_format == "text":
        failed = sum("error" in record for record in records)
        print(f"{len(records) - failed} image(s) explained, {failed} failed; overlays in {out}/")


# ---- report: one self-contained HTML page (library: emotionlab.evaluation.report) ------------------------


@app.command("report")
def report_command(
    inputs: Annotated[list[Path], typer.Argument(help="An evaluation folder (from `evaluate`), several to compare, or an experiment's ablation.json / cv.json.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write (default: report.html in the evaluation folder, NAME.html beside a JSON file, else ./report.html).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset root the evaluated paths are relative to (gallery images). Default: $EMOTIONLAB_DATA.")] = None,
    model: Annotated[Path | None, typer.Option(help="Model file for Grad-CAM and training curves (default: the one metrics.json names).")] = None,
    gradcam: Annotated[bool, typer.Option("--gradcam/--no-gradcam", help="Grad-CAM overlay beside each misclassified face.")] = True,
    gallery_limit: Annotated[int | None, typer.Option(help="Show at most this many misclassified tiles per evaluation (most confident first).")] = None,
) -> None:
    """Write one self-contained HTML report: metrics with intervals, confusion, calibration, Grad-CAM gallery, comparisons."""
    from emotionlab.evaluation.report import write_report

    path = write_report(inputs, out, data_root=data, model=model, gradcam=gradcam, gallery_limit=gallery_limit)
    print(f"wrote {path}")
