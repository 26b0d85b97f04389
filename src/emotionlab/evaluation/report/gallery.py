"""The misclassified gallery: every wrong image, most confident first, as the model saw it (the face crop), with
a Grad-CAM overlay for the predicted class; near-duplicates with the same mistake folded into one tile."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from emotionlab.evaluation.report.figures import image_uri
from emotionlab.evaluation.report.inputs import EvaluationRun, model_file
from emotionlab.isolation import printable

GRADCAM_BATCH = 32


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
    from emotionlab.paths import default_data_root

    found = default_data_root()
    return roots + ([found] if found is not None else [])


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
    model_path = model_file(run, model)
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
            if recognizer is None:
                images[index] = read_image(found)
            else:  # the crop predict and evaluate make (the largest face, else the whole image)
                item = recognizer.preparer(keep_crops=True)(found)
                if item.error is not None:
                    raise ValueError(item.error)
                images[index] = item.crops[0]
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
