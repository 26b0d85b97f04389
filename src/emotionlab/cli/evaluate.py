"""`emotionlab evaluate`, `explain` and `report` (library: emotionlab.evaluation, emotionlab.evaluation.explain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from emotionlab.cli.root import Classes, DetectorOverride, DetectOverride, Five, answer_classes, app, console
from emotionlab.errors import EmotionlabError, Interrupted


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{metrics.get('split', '')} split: {metrics['num_images']} images")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, row in metrics["per_class"].items():
        table.add_row(
            label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])
        )
    low, high = metrics.get("accuracy_ci95", (float("nan"), float("nan")))
    Console().print(table)
    print(
        f"accuracy {metrics['accuracy']:.3f} (95% CI {low:.3f}-{high:.3f})  macro-F1 {metrics['macro_f1']:.3f}  loss {metrics['loss']:.3f}"
    )
    outside = {label: count for label, count in (metrics.get("answers_outside_data") or {}).items() if count}
    if outside:
        answers = ", ".join(f"{label} for {count}" for label, count in outside.items())
        print(
            f"the model answered {answers} of the {metrics['num_images']} images, a class the data does not "
            "have: counted as misses (--five answers among the five emotions only)"
        )
    if metrics.get("restricted_from"):
        print(
            f"answers among {', '.join(metrics['labels'])} only, of the model's "
            f"{', '.join(metrics['restricted_from'])} (renormalised)"
        )


@app.command()
def evaluate(
    model: Annotated[
        Path | None,
        typer.Option(help="Model file, or a shipped model: default, ferplus8 (default: default)."),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset root. Default: $EMOTIONLAB_DATA.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest CSV whose split column selects images.")
    ] = None,
    split: Annotated[
        Literal["train", "validation", "test", "all"],
        typer.Option(help="The split to score (all: every image)."),
    ] = "test",
    out: Annotated[Path, typer.Option(help="Folder for metrics.json, predictions.csv and figures.")] = Path(
        "runs/evaluation"
    ),
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="Score images the model was trained on anyway (flagged).")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Also write report.html (one self-contained page, Grad-CAM gallery) beside metrics.json.",
        ),
    ] = False,
    five: Five = False,
    classes: Classes = None,
) -> None:
    """Evaluate a model on a split: metrics.json, confusion matrices, training curves, misclassified gallery.

    With no --data and no --manifest, a model that records its held-out test split (the shipped one does) is scored
    on that split. Images the model was trained on are refused (compared by content) unless --allow-overlap.
    A model with a class the data lacks (neutral, on photos of the five emotions) is scored on the data's
    classes and an answer of that class is a miss; --five scores its answers among the five instead.
    """
    from emotionlab.data.dataset import load_samples
    from emotionlab.evaluation.evaluate import evaluate as run_evaluation
    from emotionlab.evaluation.evaluate import held_out_samples
    from emotionlab.fileio import ensure_outside_root
    from emotionlab.inference import resolve_model_path
    from emotionlab.models.io import read_metadata
    from emotionlab.paths import resolve_data_root

    model_path = resolve_model_path(model)
    metadata = read_metadata(model_path)  # a damaged or altered model: one line before any image is read
    wanted = answer_classes(five, classes)
    missing = [label for label in wanted or () if label not in metadata["labels"]]
    if missing:  # before any image is read
        raise EmotionlabError(
            f"{Path(model_path).name}: the model has no class {', '.join(missing)}: "
            f"its classes are {', '.join(metadata['labels'])}"
        )
    data_labels = None
    if data is None and manifest is None and split == "test" and (metadata.get("dataset") or {}).get("test"):
        root = resolve_data_root(None)
        samples = held_out_samples(metadata, root)
        print(
            f"the model's held-out test split: {len(samples)} images recorded in {Path(model_path).name}, under {root}"
        )
    else:
        sample_set = load_samples(data, manifest)
        root = sample_set.root
        data_labels = sample_set.labels
        samples = sample_set.samples if split == "all" else sample_set.split(split)
        if not samples and split != "all" and not sample_set.has_splits:
            raise EmotionlabError(
                f"{sample_set.root}: the dataset has no split folders; use --split all or a --manifest"
            )
    ensure_outside_root(root, out)
    try:
        metrics = run_evaluation(
            model_path,
            samples,
            out,
            split=split,
            allow_overlap=allow_overlap,
            report=report,
            progress=True,
            classes=wanted,
            data_labels=data_labels,
        )
    except KeyboardInterrupt:
        raise Interrupted(
            f"nothing written to {out}; the face crops made so far are cached, so the same command "
            "goes on faster"
        ) from None
    _print_metrics(metrics)
    overlap = metrics.get("overlap_with_training")
    if overlap is None:
        print("note: the model file does not record its training images; overlap with them was not checked")
    elif overlap["images"]:
        console.print(
            f"[bold red]warning:[/] {overlap['images']} of these {metrics['num_images']} images were in the "
            f"model's training data ({overlap['train']} train, {overlap['validation']} validation): "
            "the figures above flatter it",
            highlight=False,
            soft_wrap=True,
        )
    print(f"figures and metrics.json in {out}/")
    if report:
        print(f"report: {metrics['report']}")


# ---- explain: Grad-CAM (library: emotionlab.evaluation.explain) ------------------------------------------


@app.command("explain")
def explain_command(
    images: Annotated[list[str], typer.Argument(help="Images, folders (recursive) or glob patterns.")],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file (.safetensors), or a shipped model: default, ferplus8 (default: default)."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for NAME.faceK.png (heat over each face) and NAME.overlay.png (over the photo).",
        ),
    ] = Path("runs/explain"),
    target: Annotated[
        str | None, typer.Option("--class", help="Explain this class (default: each face's predicted class).")
    ] = None,
    detect: DetectOverride = None,
    detector: DetectorOverride = None,
    max_faces: Annotated[
        int | None, typer.Option(help="Explain at most this many faces per image (largest first).")
    ] = None,
    output_format: Annotated[
        Literal["text", "jsonl"],
        typer.Option("--format", help="text: one line per face; jsonl: one record per image."),
    ] = "text",
) -> None:
    """Show where the model looked: a Grad-CAM heat map of every face, saved as overlays."""

    from emotionlab.evaluation.explain import explain_files

    def show(record: dict) -> None:
        if output_format == "jsonl":
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"{record['path']}: error: {record['error']}", flush=True)
        else:
            for number, face in enumerate(record["faces"], start=1):
                where = "whole image" if face["box"] is None else "box " + " ".join(map(str, face["box"]))
                print(
                    f"{record['path']} face {number} ({where}): {face['label']} {face['confidence']:.0%}, "
                    f"heat for {face['explained']} -> {face['overlay']}",
                    flush=True,
                )

    records = explain_files(
        images,
        out,
        model=model,
        target=target,
        detect=detect,
        detector=detector,
        max_faces=max_faces,
        on_record=show,
    )
    if output_format == "text":
        failed = sum("error" in record for record in records)
        print(f"{len(records) - failed} image(s) explained, {failed} failed; overlays in {out}/")


# ---- report: one self-contained HTML page (library: emotionlab.evaluation.report) ------------------------


@app.command("report")
def report_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="An evaluation folder (from `evaluate`), several to compare, or an experiment's ablation.json / cv.json."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            help="HTML file to write (default: report.html in the evaluation folder, NAME.html beside a JSON file, else ./report.html)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Dataset root the evaluated paths are relative to (gallery images). Default: $EMOTIONLAB_DATA."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file for Grad-CAM and training curves (default: the one metrics.json names)."
        ),
    ] = None,
    gradcam: Annotated[
        bool, typer.Option("--gradcam/--no-gradcam", help="Grad-CAM overlay beside each misclassified face.")
    ] = True,
    gallery_limit: Annotated[
        int | None,
        typer.Option(
            help="Show at most this many misclassified tiles per evaluation (most confident first)."
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report: metrics with intervals, confusion, calibration, Grad-CAM gallery, comparisons."""
    from emotionlab.evaluation.report import write_report

    path = write_report(
        inputs, output, data_root=data, model=model, gradcam=gradcam, gallery_limit=gallery_limit
    )
    print(f"wrote {path}")
