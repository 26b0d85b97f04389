"""The report's sections as data for the template: one evaluation (headline figures with 95% intervals,
per-class scores, confusion, training curves, calibration, the misclassified gallery), several evaluations side
by side (paired accuracy differences on the images they share), and experiments (ablation.json, cv.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotionlab.evaluation.calibration import calibration_summary, plot_reliability
from emotionlab.evaluation.metrics import bootstrap_mean_ci
from emotionlab.evaluation.report.figures import confusion_table, data_uri, figure_uri, plot_intervals
from emotionlab.evaluation.report.gallery import build_gallery
from emotionlab.evaluation.report.inputs import EvaluationRun, model_file

RESAMPLES = 2000  # bootstrap draws for the intervals computed here (as metrics.py)


# ---- one evaluation ----------------------------------------------------------------------------------------


def _training_curves(run: EvaluationRun, model: str | Path | None) -> str | None:
    saved = run.folder / "training_curves.png"
    if saved.is_file():
        return data_uri(saved.read_bytes(), "image/png")
    path = model_file(run, model)
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
        "per_class": [{"label": label, **metrics["per_class"][label]} for label in run.data_labels],
        "confusion": confusion_table(metrics["confusion_matrix"], labels, run.data_labels),
        # answers of a class the data lacks (neutral on photos of the five), each a miss
        "outside": {
            label: count for label, count in (metrics.get("answers_outside_data") or {}).items() if count
        },
        "restricted_from": metrics.get("restricted_from"),
        "training_curves": _training_curves(run, model),
        "calibration": {**calibration, "figure": figure_uri(plot_reliability, calibration)},
        "gallery": items,
        "gallery_enabled": gallery,
        "gallery_notes": notes,
        "no_face": metrics.get("no_face"),
        "overlap": overlap,
        "skipped": metrics.get("skipped") or [],
    }


# ---- several evaluations -----------------------------------------------------------------------------------


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
                "recall": [
                    run.metrics["per_class"][label]["recall"] if label in run.metrics["per_class"] else None
                    for label in reference.data_labels
                ],
            }
        )
    paired = []
    position = {path: index for index, path in enumerate(reference.paths)}
    for run in runs[1:]:
        common = [(position[path], index) for index, path in enumerate(run.paths) if path in position]
        entry = {"name": run.name, "reference": reference.name, "note": None}
        if not common:
            entry["note"] = "no image in common: not paired"
        else:
            # Compared by label name: a six-class model and its --five answers are paired on the same photos.
            first, second = (np.array(side) for side in zip(*common, strict=True))
            truth = np.array(reference.labels)[reference.truth[first]]
            if (truth != np.array(run.labels)[run.truth[second]]).any():
                entry["note"] = "the same files carry different true labels in the two evaluations"
            else:
                entry.update(
                    paired_accuracy_difference(
                        truth,
                        np.array(reference.labels)[reference.predicted[first]],
                        np.array(run.labels)[run.predicted[second]],
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
    return {"labels": reference.data_labels, "table": table, "paired": paired, "figure": figure}


# ---- experiments: ablation.json, cv.json -------------------------------------------------------------------


def ablation_context(results: dict) -> dict:
    """The ablation table: one row per setting, seed means with 95% intervals and the change from the row above."""
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
    """Cross-validation: out-of-fold figures per recipe, their confusion matrices and paired differences."""
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
                "confusion": confusion_table(row["confusion_matrix"], row.get("labels") or labels, labels)
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
