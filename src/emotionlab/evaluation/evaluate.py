"""Evaluate a model file on a dataset split: metrics.json, predictions.csv and figures.

Honest by default: a model file records its training and validation images by content (SHA-256 of the bytes) and
its held-out test split. ``evaluate`` refuses images the model was trained on (``allow_overlap`` scores them
anyway, flagged), and ``held_out_samples`` gives the split the model never saw.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotionlab.data.samples import Sample
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.evaluation.plots import plot_confusion, plot_gallery, plot_training_curves
from emotionlab.fileio import content_digest
from emotionlab.inference import BaseClassifier, FacePreparer, PreparedImage, Recognizer, load_classifier
from emotionlab.inference.classifier import restrict_labels
from emotionlab.isolation import isolated_map
from emotionlab.progress import progress as progress_bar

log = logging.getLogger("emotionlab")


@dataclass(frozen=True)
class Overlap:
    """How many evaluated images the model was trained on (train) or selected with (validation), by content."""

    checked: int
    train: int
    validation: int
    examples: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.train + self.validation

    def describe(self) -> str:
        return (
            f"{self.count} of the {self.checked} images to evaluate are images the model was trained on "
            f"({self.train} train, {self.validation} validation; same SHA-256 of the file bytes, e.g. {self.examples[0]})"
        )


def training_overlap(metadata: dict, samples: list[Sample]) -> Overlap | None:
    """The evaluated images that are in the model's recorded training or validation images (None: none recorded)."""
    record = metadata.get("dataset")
    if not isinstance(record, dict) or not record.get("train"):
        return None
    train, validation = set(record["train"]), set(record.get("validation") or ())
    in_train = in_validation = 0
    examples = []
    for sample in samples:
        try:
            digest = content_digest(sample.path)
        except OSError:
            continue  # unreadable: evaluation reports it as it reads the image
        if digest in train:
            in_train += 1
        elif digest in validation:
            in_validation += 1
        else:
            continue
        if len(examples) < 3:
            examples.append(sample.relpath or str(sample.path))
    return Overlap(len(samples), in_train, in_validation, examples)


def held_out_samples(metadata: dict, root: str | Path) -> list[Sample]:
    """The model's recorded test split under ``root``: every file must be there with the recorded content."""
    rows = (metadata.get("dataset") or {}).get("test") or []
    if not rows:
        raise EmotionlabError("the model file records no held-out test split; pass --data and --manifest")
    root = Path(root).resolve()
    samples, missing, changed = [], [], []
    for relpath, label, digest in rows:
        path = (root / relpath).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            missing.append(relpath)
        elif content_digest(path) != digest:
            changed.append(relpath)
        else:
            samples.append(Sample(path=path, label=label, split="test", relpath=relpath))
    if missing or changed:
        first = (missing or changed)[0]
        raise EmotionlabError(
            f"{root}: of the {len(rows)} held-out test images recorded in the model file, {len(missing)} are missing "
            f"and {len(changed)} have other content (first: {first}); pass --data with the dataset the model was "
            "trained on, or --data and --manifest to choose the images"
        )
    return samples


class _PrepareSample:
    """``prepare(sample)``: the sample's image as ``predict`` prepares it, its manifest ``face_box`` (if any)
    instead of detection. A class, so it pickles into worker processes."""

    def __init__(self, preparer: FacePreparer):
        self.preparer = preparer

    def __call__(self, sample: Sample) -> PreparedImage:
        return self.preparer(sample.path, name=str(sample.path), box=sample.face_box)


def prepare_samples(
    recognizer: Recognizer, samples: list[Sample], *, workers: int = 0, show_progress: bool = False
) -> list[PreparedImage]:
    """Each sample through the one preparation ``predict`` uses (``Recognizer.preparer``: the same decoding,
    faces and crops), crops kept. With ``workers``, in worker processes: an image that raises, or kills its
    worker in native code (a detector), becomes an item with ``error`` instead of stopping the run."""
    prepare = _PrepareSample(recognizer.preparer(keep_crops=True))
    if workers:
        items = isolated_map(
            prepare,
            samples,
            workers=workers,
            on_error=lambda sample, reason: PreparedImage(str(sample.path), error=reason),
            preload=["emotionlab.inference", "emotionlab.faces"],
        )
    else:
        items = map(prepare, samples)
    what = "finding and cropping faces" if recognizer.detect else "reading images"
    return list(progress_bar(items, total=len(samples), description=what, enabled=show_progress))


def _inputs(items: list[PreparedImage]) -> tuple[list, list[bool]]:
    """The images the model sees (the largest face's crop, else the whole image), and whether no face was found:
    exactly the crop whose probabilities ``predict`` reports for the image."""
    failed = next((item for item in items if item.error is not None), None)
    if failed is not None:
        raise EmotionlabError(f"{failed.name}: {failed.error}")
    return [item.crops[0] for item in items], [item.no_face for item in items]


def evaluate_samples(
    model: str | Path | BaseClassifier,
    samples: list[Sample],
    *,
    batch_size: int = 64,
    data_labels: list[str] | None = None,
    prepared: list[PreparedImage] | None = None,
) -> dict:
    """Metrics of a model on labelled samples (no files written); adds ``predictions`` for callers.
    ``prepared``: the samples already through ``prepare_samples`` (default: prepared here).

    ``data_labels``: the dataset's classes, the confusion matrix's rows and what per-class scores and macro-F1
    are over (default: the model's classes the samples have). A model with a class the data lacks (neutral on
    the study's photos) is scored on the data's classes, and an answer of that class is a miss."""
    classifier = model if isinstance(model, BaseClassifier) else load_classifier(model)
    recognizer = Recognizer(classifier)
    unknown = sorted({s.label for s in samples} - set(classifier.labels))
    if unknown:
        raise EmotionlabError(
            f"the dataset has labels the model does not know: {', '.join(unknown)} "
            f"(its classes: {', '.join(classifier.labels)})"
        )
    present = {s.label for s in samples} | set(data_labels or ())
    data_labels = [label for label in classifier.labels if label in present]
    images, no_face = _inputs(prepared if prepared is not None else prepare_samples(recognizer, samples))
    probabilities = classifier.predict_proba(images, batch_size=batch_size)
    truth = np.array([classifier.labels.index(s.label) for s in samples])
    metrics = compute_metrics(truth, probabilities, classifier.labels, data_labels=data_labels)
    if recognizer.detect:
        flags = np.array(no_face)
        correct = probabilities.argmax(1) == truth
        metrics["no_face"] = {
            "count": int(flags.sum()),
            "accuracy_no_face": float(correct[flags].mean()) if flags.any() else None,
            "accuracy_face": float(correct[~flags].mean()) if (~flags).any() else None,
        }
    metrics["_probabilities"] = probabilities
    metrics["_images"] = images
    return metrics


def evaluate(
    model_path: str | Path,
    samples: list[Sample],
    out_dir: str | Path,
    *,
    split: str,
    allow_overlap: bool = False,
    report: bool = False,
    progress: bool = False,
    classes: list[str] | None = None,
    data_labels: list[str] | None = None,
) -> dict:
    """Write metrics.json, predictions.csv and the PNG figures of ``model_path`` on ``samples`` to ``out_dir``.

    Refuses images the model was trained on (recorded in its file, compared by content) unless ``allow_overlap``;
    ``metrics["overlap_with_training"]`` says how many there were (None: the model records no training images).
    ``classes``: the model answers among these of its classes only (``labels.EMOTIONS``: `evaluate --five`);
    ``data_labels``: the dataset's classes (see ``evaluate_samples``).
    """
    if not samples:
        raise EmotionlabError(f"no images in split {split!r}")
    # the backend predict uses (auto), so the figures are its figures
    classifier = restrict_labels(load_classifier(model_path), classes)
    overlap = training_overlap(classifier.metadata, samples)
    if overlap is not None and overlap.count and not allow_overlap:
        raise EmotionlabError(
            f"{overlap.describe()}: a score on them would flatter the model. Evaluate its held-out split (no --data "
            "and no --manifest, for a model that records one; or --manifest with its training split), or pass "
            "--allow-overlap to score them anyway"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Each image prepared in a worker process, as predict prepares it: one that fails is left out and listed.
    items = prepare_samples(Recognizer(classifier), samples, workers=1, show_progress=progress)
    skipped = [
        (str(s.path), item.error) for s, item in zip(samples, items, strict=True) if item.error is not None
    ]
    samples = [s for s, item in zip(samples, items, strict=True) if item.error is None]
    items = [item for item in items if item.error is None]
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if not samples:
        raise EmotionlabError(f"no usable images in split {split!r} ({len(skipped)} skipped)")
    metrics = evaluate_samples(classifier, samples, data_labels=data_labels, prepared=items)
    metrics["skipped"] = [{"path": path, "reason": reason} for path, reason in skipped]
    probabilities, images = metrics.pop("_probabilities"), metrics.pop("_images")
    labels = classifier.labels
    metrics.update(
        {"split": split, "model": str(model_path), "architecture": classifier.metadata["architecture"]}
    )
    # `--five`: the model's own classes, of which it answered among ``labels`` only
    metrics["restricted_from"] = classifier.metadata.get("restricted_from")
    metrics["overlap_with_training"] = (
        None
        if overlap is None
        else {
            "images": overlap.count,
            "train": overlap.train,
            "validation": overlap.validation,
            "examples": overlap.examples,
        }
    )
    predicted = probabilities.argmax(1)
    with (out / "predictions.csv").open(
        "w", newline="", encoding="utf-8", errors="surrogateescape"
    ) as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "pred", "confidence", *labels])
        for sample, row in zip(samples, probabilities, strict=True):
            writer.writerow(
                [
                    sample.relpath or sample.path,
                    sample.label,
                    labels[int(row.argmax())],
                    f"{row.max():.4f}",
                    *(f"{p:.4f}" for p in row),
                ]
            )
    figures = {
        "confusion_counts": plot_confusion(
            metrics["confusion_matrix"], labels, out / "confusion_counts.png", rows=metrics["data_labels"]
        ),
        "confusion_percent": plot_confusion(
            metrics["confusion_matrix"],
            labels,
            out / "confusion_percent.png",
            percent=True,
            rows=metrics["data_labels"],
        ),
        "training_curves": plot_training_curves(
            classifier.metadata.get("training", {}).get("history", []), out / "training_curves.png"
        ),
    }
    wrong = [
        {
            "image": images[i],
            "true": samples[i].label,
            "pred": labels[predicted[i]],
            "confidence": float(probabilities[i].max()),
        }
        for i in np.argsort(-probabilities.max(1))
        if labels[predicted[i]] != samples[i].label
    ]
    figures["misclassified"] = plot_gallery(wrong, out / "misclassified.png")
    metrics["figures"] = {name: str(path) for name, path in figures.items() if path is not None}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if report:  # report.html beside metrics.json, from the crops just classified (nothing read twice)
        from emotionlab.evaluation.report import write_report

        crops = {
            str(sample.relpath or sample.path): image for sample, image in zip(samples, images, strict=True)
        }
        metrics["report"] = str(write_report([out], out / "report.html", model=model_path, crops=crops))
    return metrics
