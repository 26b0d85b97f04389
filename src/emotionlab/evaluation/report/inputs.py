"""What a report reads: evaluation folders (metrics.json + predictions.csv) and experiment results (ablation.json,
cv.json), each checked with a one-line error naming the file when it is not what the report needs."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError


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
        """The model's classes: its answers, the probability columns."""
        return list(self.metrics["labels"])

    @property
    def data_labels(self) -> list[str]:
        """The data's classes (the confusion matrix's rows): the model's, unless it knows one the data lacks."""
        return list(self.metrics.get("data_labels") or self.labels)

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


def unique_names(runs: list[EvaluationRun]) -> None:
    """Rename runs in place so that no two share a name (a page compares them by name)."""
    seen: dict[str, int] = {}
    for run in runs:
        if run.name in seen:  # two folders called "evaluation": tell them apart by their parent
            run.name = f"{run.folder.resolve().parent.name}/{run.name}"
        seen[run.name] = seen.get(run.name, 0) + 1


def model_file(run: EvaluationRun, model: str | Path | None) -> Path | None:
    """The model file to read (``model``, else the one metrics.json names), or None when it is not on disk."""
    path = (
        Path(model) if model is not None else Path(run.metrics["model"]) if run.metrics.get("model") else None
    )
    return path if path is not None and path.is_file() else None


# ---- experiments: ablation.json, cv.json ------------------------------------------------------------------------


def classify_input(path: Path) -> str:
    """``evaluation`` (a folder with metrics.json) or ``experiment`` (a JSON file, or a folder holding one)."""
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


def experiment_file(path: Path) -> Path:
    """The experiment's JSON file: ``path`` itself, or the cv.json / ablation.json inside a folder."""
    if path.is_dir():
        return next(path / name for name in ("cv.json", "ablation.json") if (path / name).is_file())
    return path


def read_experiment(source: Path) -> object:
    """The parsed JSON of an experiment's results; a clear error when the file is not JSON."""
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except ValueError as error:
        raise EmotionlabError(f"{source}: not JSON ({error})") from error


def experiment_kind(results: dict) -> str:
    """``cv`` or ``ablation``, from the shape of the results."""
    if isinstance(results.get("recipes"), dict) and "paired" in results:
        return "cv"
    if isinstance(results.get("rows"), dict) and "settings" in results:
        return "ablation"
    raise EmotionlabError(
        "not an experiment's results: expected ablation.json (experiment ablation) or cv.json (experiment cv)"
    )
