"""One self-contained HTML report of an evaluation, of several evaluations side by side, or of an experiment.

    emotionlab evaluate --report                     # report.html beside metrics.json
    emotionlab report runs/evaluation                # the same, from an evaluation folder
    emotionlab report runs/eval-a runs/eval-b --out compare.html     # paired differences on the same images
    emotionlab report benchmarks/results/ablation.json --out ablation.html
    emotionlab report runs/cv/cv.json --out cv.html

An evaluation's report holds the headline figures with 95% intervals, per-class precision/recall/F1, the
confusion matrix (counts and row %), training curves, calibration (reliability diagram, expected calibration
error) and every misclassified image with its file name, labels, confidence and a Grad-CAM overlay, sortable.
The page is one file: figures are inlined as ``data:`` URIs, style and the few lines of sorting script are in
it, and its Content-Security-Policy forbids any fetch, so it opens from disk, offline, and sends nothing.
File names are user data: the template is rendered with autoescaping.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.calibration import calibration_summary, plot_reliability
from emotionlab.evaluation.metrics import bootstrap_mean_ci, row_percentages
from emotionlab.isolation import printable

THUMBNAIL = 128  # px, the longer side of a gallery tile
RESAMPLES = 2000  # bootstrap draws for the intervals computed here (as metrics.py)
GRADCAM_BATCH = 32


# ---- reading an evaluation folder -----------------------------------------------------------------------


@dataclass
class EvaluationRun:
    """What ``emotionlab evaluate`` wrote: metrics.json and predictions.csv (one row per image)."""

    folder: Path
    metrics: dict
    paths: list[str]
    truth: np.ndarray  # label index per image
    predicted: np.ndarray  # label index per image (predictions.csv's ``pred``)
    confidence: np.ndarray  # top-class probability per image
    probabilities: np.ndarray  # images x labels
    name: str = ""

    @property
    def labels(self) -> list[str]:
        return list(self.metrics["labels"])

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.truth


def load_evaluation(folder: str | Path) -> EvaluationRun:
    """Read an evaluation folder; a clear error when it is not one."""
    folder = Path(folder)
    for name in ("metrics.json", "predictions.csv"):
        if not (folder / name).is_file():
            raise EmotionlabError(f"{folder}: no {name}; give a folder written by `emotionlab evaluate`")
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        labels = list(metrics["labels"])
    except (ValueError, KeyError, TypeError) as error:
        raise EmotionlabError(f"{folder / 'metrics.json'}: not an evaluation's metrics ({error})") from error
    # File names need not be UTF-8: evaluate writes undecodable bytes as surrogates, read back the same way.
    with (folder / "predictions.csv").open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        missing = [
            column
            for column in ("path", "true", "pred", "confidence", *labels)
            if column not in (reader.fieldnames or [])
        ]
        if missing:
            raise EmotionlabError(f"{folder / 'predictions.csv'}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    unknown = sorted({row[key] for row in rows for key in ("true", "pred")} - set(labels))
    if unknown:
        raise EmotionlabError(
            f"{folder / 'predictions.csv'}: labels not in metrics.json: {', '.join(unknown)}"
        )
    return EvaluationRun(
        folder=folder,
        metrics=metrics,
        paths=[row["path"] for row in rows],
        truth=np.array([labels.index(row["true"]) for row in rows], dtype=int),
        predicted=np.array([labels.index(row["pred"]) for row in rows], dtype=int),
        confidence=np.array([float(row["confidence"]) for row in rows]),
        probabilities=np.array([[float(row[label]) for label in labels] for row in rows]).reshape(
            len(rows), len(labels)
        ),
        name=folder.resolve().name,
    )


# ---- statistics the report adds -----------------------------------------------------------------------------


def paired_accuracy_difference(
    truth: np.ndarray, first: np.ndarray, second: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> dict:
    """Accuracy of ``second`` minus ``first`` on the same images, with a 95% paired bootstrap interval (each
    draw resamples images once for both runs, so what the two runs share cancels out)."""
    hits = (second == truth).astype(float) - (first == truth).astype(float)
    return {
        "images": len(truth),
        "difference": float(hits.mean()) if len(hits) else float("nan"),
        "ci95": bootstrap_mean_ci(hits, resamples=resamples, seed=seed),
        "only_first": int(((first == truth) & (second != truth)).sum()),
        "only_second": int(((second == truth) & (first != truth)).sum()),
    }


# ---- figures and images as data: URIs ---------------------------------------------------------------------


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_uri(image: Image.Image, *, size: int | None = THUMBNAIL, fmt: str = "JPEG") -> str:
    image = image.convert("RGB")
    if size is not None:
        image = image.copy()
        scale = size / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR
        )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return data_uri(buffer.getvalue(), f"image/{fmt.lower()}")


def figure_uri(plot: Callable[..., Path | None], *args, **kwargs) -> str | None:
    """Run a plotting function that writes a PNG to the path it is given; the PNG as a data: URI (None: none)."""
    with tempfile.TemporaryDirectory() as folder:
        path = plot(*args, Path(folder) / "figure.png", **kwargs)
        return data_uri(Path(path).read_bytes(), "image/png") if path is not None else None


def plot_intervals(names: list[str], means: list[float], intervals: list, path: Path, *, xlabel: str) -> Path:
    """One row per run: the figure and its 95% interval, on a shared axis (percent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    rows = np.arange(len(names))[::-1]
    for row, mean, interval in zip(rows, means, intervals, strict=True):
        if interval:
            axes.plot([100 * interval[0], 100 * interval[1]], [row, row], color="#4c72b0", linewidth=2)
        axes.plot(100 * mean, row, "o", color="#dd8452")
    axes.set_yticks(rows, names)
    axes.set_xlabel(xlabel)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def confusion_table(matrix, labels: list[str]) -> dict:
    """Counts and row percentages per cell, with a shade in [0, 1] (the row share) for the template."""
    matrix = np.asarray(matrix)
    percent = row_percentages(matrix)
    return {
        "labels": labels,
        "rows": [
            {
                "label": label,
                "total": int(matrix[row].sum()),
                "cells": [
                    {
                        "count": int(matrix[row, column]),
                        "percent": float(percent[row, column]),
                        "shade": float(percent[row, column] / 100),
                        "diagonal": row == column,
                    }
                    for column in range(len(labels))
                ],
            }
            for row, label in enumerate(labels)
        ],
    }


# ---- the misclassified gallery ---------------------------------------------------------------------------------


@dataclass
class GalleryItem:
    name: str
    true: str
    pred: str
    confidence: float
    image: str | None = None  # data: URI of the face as the model saw it (before resizing)
    heat: str | None = None  # data: URI of the Grad-CAM overlay for the predicted class
    duplicates: list[str] = field(default_factory=list)  # near-duplicates shown by this tile


def _resolve(path: str, roots: list[Path]) -> Path | None:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for root in roots:
        if (root / candidate).is_file():
            return root / candidate
    return None


def _data_roots(data_root: str | Path | None) -> list[Path]:
    roots = [Path(data_root)] if data_root is not None else []
    from emotionlab.data.dataset import default_data_root

    found = default_data_root()
    return roots + ([found] if found is not None else [])


def _model_path(run: EvaluationRun, model: str | Path | None) -> Path | None:
    path = (
        Path(model) if model is not None else Path(run.metrics["model"]) if run.metrics.get("model") else None
    )
    return path if path is not None and path.is_file() else None


def build_gallery(
    run: EvaluationRun,
    *,
    crops: dict | None = None,
    data_root: str | Path | None = None,
    model: str | Path | None = None,
    gradcam: bool = True,
    limit: int | None = None,
) -> tuple[list[GalleryItem], list[str]]:
    """The misclassified images, most confident first, near-duplicates folded into one tile; and notes.

    ``crops`` maps predictions.csv paths to the face crops evaluation classified (``evaluate --report`` has
    them); otherwise the images are read under ``data_root`` (or $EMOTIONLAB_DATA) and cropped again with the
    model's own crop settings, from the crop cache when it has them.
    """
    from emotionlab.data.duplicates import DEFAULT_THRESHOLD, group_ids, perceptual_hash
    from emotionlab.data.images import read_image

    labels, notes = run.labels, []
    wrong = [int(i) for i in np.argsort(-run.confidence, kind="stable") if not run.correct[i]]
    model_path = _model_path(run, model)
    recognizer = None
    if model_path is not None and (gradcam or crops is None):
        from emotionlab.inference import Classifier, Recognizer

        recognizer = Recognizer(Classifier.from_file(model_path))
    elif model_path is None and (gradcam or crops is None):
        notes.append(
            f"model file {run.metrics.get('model')} not found: no Grad-CAM overlays "
            "(and whole images rather than face crops); pass --model"
        )
    images: dict[int, Image.Image] = {}
    roots, unreadable = _data_roots(data_root), 0
    for index in wrong:
        path = run.paths[index]
        if crops is not None and path in crops:
            images[index] = crops[path]
            continue
        found = _resolve(path, roots)
        try:
            if found is None:
                raise FileNotFoundError(path)
            if recognizer is not None and recognizer.cropper is not None:
                images[index] = recognizer.cropper(found)[0]
            else:
                images[index] = read_image(found)
        except Exception:  # noqa: BLE001 - a missing or unreadable image is a tile without a picture
            unreadable += 1
    if unreadable:
        notes.append(
            f"{unreadable} misclassified image(s) not found or unreadable: pass --data with the dataset root"
        )
    # Near-duplicates (perceptual hash within the audit's threshold) with the same mistake: one tile.
    shown = [index for index in wrong if index in images]
    hashes = [perceptual_hash(images[i]) for i in shown]
    groups = (
        dict(zip(shown, group_ids([run.paths[i] for i in shown], hashes, DEFAULT_THRESHOLD), strict=True))
        if shown
        else {}
    )
    items: list[GalleryItem] = []
    first_of: dict[tuple, GalleryItem] = {}
    kept: list[int] = []
    for index in wrong:
        key = (groups.get(index, f"alone:{index}"), run.truth[index], run.predicted[index])
        if key in first_of:
            first_of[key].duplicates.append(printable(run.paths[index]))
            continue
        item = GalleryItem(
            printable(run.paths[index]),
            labels[run.truth[index]],
            labels[run.predicted[index]],
            float(run.confidence[index]),
        )
        first_of[key] = item
        items.append(item)
        kept.append(index)
    if limit is not None and len(items) > limit:
        notes.append(
            f"showing the {limit} most confident of {len(items)} misclassified tiles (--gallery-limit)"
        )
        items, kept = items[:limit], kept[:limit]
    folded = sum(len(item.duplicates) for item in items)
    if folded:
        notes.append(
            f"{folded} near-duplicate image(s) with the same mistake are folded into the tile they resemble"
        )
    heat = {}
    if gradcam and recognizer is not None:
        from emotionlab.evaluation.explain import Explainer, overlay_heatmap

        explainer = Explainer(recognizer)
        with_image = [index for index in kept if index in images]
        for start in range(0, len(with_image), GRADCAM_BATCH):
            batch = with_image[start : start + GRADCAM_BATCH]
            inputs = recognizer.classifier.preprocess([images[i] for i in batch])
            maps = explainer.cam(inputs, [int(run.predicted[i]) for i in batch])
            heat.update(
                {i: overlay_heatmap(images[i], heatmap) for i, heatmap in zip(batch, maps, strict=True)}
            )
    for item, index in zip(items, kept, strict=True):
        if index in images:
            item.image = image_uri(images[index])
        if index in heat:
            item.heat = image_uri(heat[index])
    return items, notes


# ---- one evaluation -------------------------------------------------------------------------------------------------


def _training_curves(run: EvaluationRun, model: str | Path | None) -> str | None:
    saved = run.folder / "training_curves.png"
    if saved.is_file():
        return data_uri(saved.read_bytes(), "image/png")
    path = _model_path(run, model)
    if path is None:
        return None
    from emotionlab.evaluation.plots import plot_training_curves
    from emotionlab.models.io import read_metadata

    history = (read_metadata(path).get("training") or {}).get("history") or []
    return figure_uri(plot_training_curves, history) if history else None


def evaluation_context(
    run: EvaluationRun,
    *,
    crops: dict | None = None,
    data_root=None,
    model=None,
    gradcam: bool = True,
    gallery_limit: int | None = None,
    gallery: bool = True,
) -> dict:
    """Everything the template shows for one evaluation."""
    metrics, labels = run.metrics, run.labels
    eps = 1e-12
    log_loss = -np.log(run.probabilities[np.arange(len(run.truth)), run.truth] + eps)
    calibration = calibration_summary(run.confidence, run.correct)
    headline = [
        {
            "name": "accuracy",
            "value": metrics["accuracy"],
            "ci": metrics.get("accuracy_ci95"),
            "percent": True,
            "note": "share of images whose top class is the true label",
        },
        {
            "name": "macro-F1",
            "value": metrics["macro_f1"],
            "ci": metrics.get("macro_f1_ci95"),
            "percent": True,
            "note": "mean of the per-class F1: every emotion counts the same",
        },
        {
            "name": "expected calibration error",
            "value": calibration["ece"],
            "ci": calibration["ece_ci95"],
            "percent": True,
            "note": "mean gap between confidence and accuracy (lower is better)",
        },
        {
            "name": "log loss",
            "value": metrics["loss"],
            "ci": bootstrap_mean_ci(log_loss),
            "percent": False,
            "note": "mean negative log probability of the true label",
        },
    ]
    items, notes = (
        build_gallery(
            run, crops=crops, data_root=data_root, model=model, gradcam=gradcam, limit=gallery_limit
        )
        if gallery
        else ([], [])
    )
    overlap = metrics.get("overlap_with_training")
    return {
        "id": f"run-{run.name}",
        "name": run.name,
        "folder": str(run.folder),
        "model": metrics.get("model"),
        "architecture": metrics.get("architecture"),
        "split": metrics.get("split"),
        "num_images": len(run.truth),
        "num_wrong": int((~run.correct).sum()),
        "headline": headline,
        "per_class": [{"label": label, **metrics["per_class"][label]} for label in labels],
        "confusion": confusion_table(metrics["confusion_matrix"], labels),
        "training_curves": _training_curves(run, model),
        "calibration": {**calibration, "figure": figure_uri(plot_reliability, calibration)},
        "gallery": items,
        "gallery_enabled": gallery,
        "gallery_notes": notes,
        "no_face": metrics.get("no_face"),
        "overlap": overlap,
        "skipped": metrics.get("skipped") or [],
    }


# ---- several evaluations -----------------------------------------------------------------------------------------------


def comparison_context(runs: list[EvaluationRun]) -> dict:
    """Side-by-side figures and, against the first run, paired accuracy differences on the images both scored."""
    reference = runs[0]
    table = []
    for run in runs:
        calibration = calibration_summary(run.confidence, run.correct)
        table.append(
            {
                "name": run.name,
                "model": run.metrics.get("model"),
                "split": run.metrics.get("split"),
                "images": len(run.truth),
                "accuracy": run.metrics["accuracy"],
                "accuracy_ci": run.metrics.get("accuracy_ci95"),
                "macro_f1": run.metrics["macro_f1"],
                "macro_f1_ci": run.metrics.get("macro_f1_ci95"),
                "ece": calibration["ece"],
                "recall": [run.metrics["per_class"][label]["recall"] for label in reference.labels],
            }
        )
    paired = []
    position = {path: index for index, path in enumerate(reference.paths)}
    for run in runs[1:]:
        common = [(position[path], index) for index, path in enumerate(run.paths) if path in position]
        entry = {"name": run.name, "reference": reference.name, "note": None}
        if run.labels != reference.labels:
            entry["note"] = "different labels: not comparable image by image"
        elif not common:
            entry["note"] = "no image in common: not paired"
        else:
            first, second = (np.array(side) for side in zip(*common, strict=True))
            if (reference.truth[first] != run.truth[second]).any():
                entry["note"] = "the same files carry different true labels in the two evaluations"
            else:
                entry.update(
                    paired_accuracy_difference(
                        reference.truth[first], reference.predicted[first], run.predicted[second]
                    )
                )
                if len(common) < max(len(run.paths), len(reference.paths)):
                    entry["note"] = f"paired on the {len(common)} images both evaluations scored"
        paired.append(entry)
    figure = figure_uri(
        plot_intervals,
        [row["name"] for row in table],
        [row["accuracy"] for row in table],
        [row["accuracy_ci"] for row in table],
        xlabel="accuracy (%) with 95% interval",
    )
    return {"labels": reference.labels, "table": table, "paired": paired, "figure": figure}


# ---- experiments: ablation.json, cv.json ------------------------------------------------------------------------------------


def experiment_kind(results: dict) -> str:
    if isinstance(results.get("recipes"), dict) and "paired" in results:
        return "cv"
    if isinstance(results.get("rows"), dict) and "settings" in results:
        return "ablation"
    raise EmotionlabError(
        "not an experiment's results: expected ablation.json (experiment ablation) or cv.json (experiment cv)"
    )


def ablation_context(results: dict) -> dict:
    labels = results["dataset"]["labels"]
    rows, previous = [], None
    for key, row in results["rows"].items():
        recall = [float(np.mean([run["per_class_recall"][label] for run in row["runs"]])) for label in labels]
        rows.append(
            {
                "key": key,
                "title": row["title"],
                "study": row.get("study_accuracy"),
                "accuracy": row["accuracy_mean"],
                "accuracy_std": row["accuracy_std"],
                "accuracy_ci": row["accuracy_ci95"],
                "macro_f1": row["macro_f1_mean"],
                "macro_f1_std": row["macro_f1_std"],
                "macro_f1_ci": row["macro_f1_ci95"],
                "seeds": [
                    {"seed": run["seed"], "accuracy": run["test_accuracy"], "epochs": run["epochs_run"]}
                    for run in row["runs"]
                ],
                "recall": recall,
                "change": None if previous is None else row["accuracy_mean"] - previous,
            }
        )
        previous = row["accuracy_mean"]
    figure = figure_uri(
        plot_intervals,
        [row["key"] for row in rows],
        [row["accuracy"] for row in rows],
        [row["accuracy_ci"] for row in rows],
        xlabel="test accuracy (%), seed mean with 95% interval",
    )
    return {
        "labels": labels,
        "rows": rows,
        "figure": figure,
        "num_test_images": results.get("num_test_images"),
        "source": results["dataset"].get("source"),
        "seeds": results["settings"].get("seeds"),
        "bootstrap": results.get("bootstrap"),
        "command": results.get("command"),
    }


def cv_context(results: dict) -> dict:
    labels = results["labels"]
    recipes = []
    for name, row in results["recipes"].items():
        recipes.append(
            {
                "name": name,
                "accuracy": row["accuracy"],
                "accuracy_ci": row["accuracy_ci95"],
                "macro_f1": row["macro_f1"],
                "macro_f1_ci": row["macro_f1_ci95"],
                "recall": [row["per_class_recall"][label] for label in labels],
                "train_seconds": row.get("train_seconds"),
                "confusion": confusion_table(row["confusion_matrix"], labels)
                if row.get("confusion_matrix")
                else None,
            }
        )
    paired = [
        {
            "first": pair["first"],
            "second": pair["second"],
            "difference": pair["accuracy_difference"],
            "ci95": pair["ci95"],
        }
        for pair in results.get("paired", [])
    ]
    figure = figure_uri(
        plot_intervals,
        [row["name"] for row in recipes],
        [row["accuracy"] for row in recipes],
        [row["accuracy_ci"] for row in recipes],
        xlabel="out-of-fold accuracy (%) with 95% interval",
    )
    return {
        "labels": labels,
        "recipes": recipes,
        "paired": paired,
        "figure": figure,
        "folds": results["settings"].get("folds"),
        "num_images": results.get("num_images"),
        "command": results.get("command"),
    }


# ---- rendering ----------------------------------------------------------------------------------------------------------------


def _percent(value, digits: int = 1) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else f"{100 * value:.{digits}f}"
    )


def _signed_percent(value, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:+.{digits}f}"


def render(context: dict) -> str:
    """The report page for ``context`` (``kind``: evaluation, comparison, ablation or cv)."""
    import jinja2

    from emotionlab import __version__

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("emotionlab.evaluation", "templates"),
        autoescape=True,  # file names and labels are user data; the template's name ends in .j2, so say it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = _percent
    environment.filters["signed_pct"] = _signed_percent
    template = environment.get_template("report.html.j2")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return template.render(version=__version__, generated=generated, **context)


def _classify_input(path: Path) -> str:
    if path.is_dir():
        if (path / "metrics.json").is_file():
            return "evaluation"
        for name in ("cv.json", "ablation.json"):
            if (path / name).is_file():
                return "experiment"
        raise EmotionlabError(
            f"{path}: neither an evaluation folder (metrics.json) nor an experiment (cv.json, ablation.json)"
        )
    if path.is_file() and path.suffix.lower() == ".json":
        return "experiment"
    raise EmotionlabError(f"{path}: no such evaluation folder or experiment JSON file")


def _experiment_file(path: Path) -> Path:
    if path.is_dir():
        return next(path / name for name in ("cv.json", "ablation.json") if (path / name).is_file())
    return path


def _unique_names(runs: list[EvaluationRun]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        if run.name in seen:  # two folders called "evaluation": tell them apart by their parent
            run.name = f"{run.folder.resolve().parent.name}/{run.name}"
        seen[run.name] = seen.get(run.name, 0) + 1


def write_report(
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    model: str | Path | None = None,
    gradcam: bool = True,
    gallery_limit: int | None = None,
    crops: dict | None = None,
    title: str | None = None,
) -> Path:
    """Write the report of one evaluation folder, several (compared), or one experiment JSON; returns its path.

    Default ``out``: ``report.html`` in the evaluation folder, else ``<experiment>.html`` beside the JSON file,
    else ``report.html`` here. ``crops``: the face crops evaluation classified, by predictions.csv path.
    """
    paths = [Path(item) for item in inputs]
    if not paths:
        raise EmotionlabError("report: give an evaluation folder, several, or an experiment JSON file")
    kinds = {_classify_input(path) for path in paths}
    if kinds == {"experiment"} and len(paths) == 1:
        source = _experiment_file(paths[0])
        try:
            results = json.loads(source.read_text(encoding="utf-8"))
        except ValueError as error:
            raise EmotionlabError(f"{source}: not JSON ({error})") from error
        kind = experiment_kind(results if isinstance(results, dict) else {})
        section = cv_context(results) if kind == "cv" else ablation_context(results)
        context = {
            "kind": kind,
            "title": title or f"{'Cross-validation' if kind == 'cv' else 'Ablation'}: {source.name}",
            "inputs": [str(source)],
            kind: section,
        }
        default_out = source.with_suffix(".html")
    elif kinds == {"evaluation"}:
        runs = [load_evaluation(path) for path in paths]
        _unique_names(runs)
        if len(runs) == 1:
            run = runs[0]
            context = {
                "kind": "evaluation",
                "title": title or f"Evaluation: {run.name} ({run.metrics.get('split')} split)",
                "inputs": [str(run.folder)],
                "runs": [
                    evaluation_context(
                        run,
                        crops=crops,
                        data_root=data_root,
                        model=model,
                        gradcam=gradcam,
                        gallery_limit=gallery_limit,
                    )
                ],
            }
            default_out = run.folder / "report.html"
        else:
            context = {
                "kind": "comparison",
                "title": title or f"Comparison of {len(runs)} evaluations",
                "inputs": [str(run.folder) for run in runs],
                "comparison": comparison_context(runs),
                "runs": [
                    evaluation_context(
                        run, data_root=data_root, model=model, gradcam=gradcam, gallery_limit=gallery_limit
                    )
                    for run in runs
                ],
            }
            default_out = Path("report.html")
    else:
        raise EmotionlabError(
            "report: give evaluation folders (to compare) or one experiment JSON file, not a mix"
        )
    target = Path(out) if out is not None else default_out
    target.parent.mkdir(parents=True, exist_ok=True)
    from emotionlab.fileio import write_atomic

    html = printable(render(context))  # a surrogate left in a file name would make the page invalid UTF-8

    def write(temporary: str) -> None:
        Path(temporary).write_text(html, encoding="utf-8")
        os.chmod(temporary, 0o644)  # a page to share, not the private 0600 of a temporary file

    write_atomic(target, write)
    return target
