"""Likely label errors: ``emotionlab data audit --suspects`` (and ``emotionlab data suspects``).

Every labelled photo gets an out-of-fold prediction: a logistic-regression head on a model's frozen features
(``emotionlab.inference.features``, computed once and cached), fitted on the other folds of a stratified group
k-fold (near-duplicates kept in one fold, as ``experiment cv`` does), scores the photo it never saw. Confident
learning (the ``cleanlab`` package: per-class thresholds on those probabilities, "pruned by noise rate") then
flags the photos whose given label the model confidently disagrees with, ranked by self-confidence (the
probability of the given label, lowest first).

The default model is the shipped ``ferplus8``: trained on FER+ only, it has never seen the study's photos, so it
cannot have memorised their labels (the default model was fine-tuned on them: wrong labels included).

Nothing in the dataset is changed: the suspects are written as ``suspects.csv`` (reopen it with
``emotionlab label DATA --review suspects.csv`` to confirm or relabel each one, journalled), ``suspects.json``
and ``suspects.html`` (a table and a gallery).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError

log = logging.getLogger("emotionlab")

SUSPECTS_MODEL = "ferplus8"
DEFAULT_FOLDS = 5
PROBABILITY_PREFIX = "p_"  # the labeller reads these columns back (emotionlab.labeling.ordering.read_review)
THUMBNAIL_SIDE = 128


@dataclass(frozen=True)
class Suspect:
    rank: int
    path: str  # relative to the dataset folder
    split: str | None
    given: str
    suggested: str
    quality: float  # cleanlab's self-confidence: the out-of-fold probability of the given label
    probabilities: dict[str, float]


@dataclass
class SuspectReport:
    root: str
    model: str
    folds: int
    seed: int
    images: int
    labels: list[str]
    out_of_fold_accuracy: float
    suspects: list[Suspect] = field(default_factory=list)

    def summary(self) -> dict:
        pairs = Counter(f"{suspect.given} -> {suspect.suggested}" for suspect in self.suspects)
        return {
            "root": self.root,
            "model": self.model,
            "folds": self.folds,
            "seed": self.seed,
            "images": self.images,
            "labels": self.labels,
            "out_of_fold_accuracy": round(self.out_of_fold_accuracy, 4),
            "suspects": len(self.suspects),
            "given_to_suggested": dict(pairs.most_common()),
        }


def out_of_fold_probabilities(
    features: np.ndarray, labels: list[str], groups: list[str], classes: list[str], *, folds: int, seed: int
) -> np.ndarray:
    """Probabilities for every row from a head that never saw it (stratified group k-fold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from emotionlab.heads import fit_head

    smallest = min(Counter(labels).values())
    if folds < 2 or smallest < folds:
        raise EmotionlabError(
            f"{folds}-fold out-of-fold predictions need at least {max(folds, 2)} images of every class "
            f"(the smallest class has {smallest}); pass --folds with a smaller number"
        )
    out = np.zeros((len(labels), len(classes)), dtype=np.float64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held_out in splitter.split(features, labels, groups):
        predict = fit_head(features[train], [labels[i] for i in train], classes=classes, seed=seed)
        out[held_out] = predict(features[held_out])
    return out


def rank_suspects(
    probabilities: np.ndarray, labels: list[str], classes: list[str]
) -> tuple[list[int], np.ndarray]:
    """Confident learning (cleanlab): indices of likely label errors, most suspicious first, and every row's
    label quality (self-confidence)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    given = np.array([classes.index(label) for label in labels])
    # n_jobs=1: cleanlab's default forks a multiprocessing pool (one process per core) from this process, and a
    # fork of a process with other threads running (ONNX Runtime's, torch's, Ray's) can hang forever on a lock
    # one of them held (seen in the test suite after the Ray tests). A thousand rows take milliseconds anyway.
    ranked = find_label_issues(
        labels=given, pred_probs=probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    quality = get_label_quality_scores(given, probabilities, method="self_confidence")
    return [int(index) for index in ranked], quality


def find_suspects(
    data: str | Path,
    *,
    model: str | Path | None = SUSPECTS_MODEL,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    threshold: int | None = None,
    progress=None,
) -> SuspectReport:
    """Out-of-fold predictions over every labelled photo under ``data`` and the likely label errors among them."""
    from emotionlab.data.dataset import load_samples
    from emotionlab.data.duplicates import DEFAULT_THRESHOLD, group_ids, perceptual_hash
    from emotionlab.data.images import read_image
    from emotionlab.inference.features import FeatureExtractor

    sample_set = load_samples(data)
    samples = sample_set.samples
    if not samples:
        raise EmotionlabError(f"{data}: no labelled images found")
    classes = list(sample_set.labels)
    labels = [sample.label for sample in samples]
    relpaths = [
        sample.relpath or Path(sample.path).relative_to(sample_set.root).as_posix() for sample in samples
    ]
    hashes = [perceptual_hash(read_image(sample.path)) for sample in samples]
    groups = group_ids(relpaths, hashes, DEFAULT_THRESHOLD if threshold is None else threshold)
    extractor = FeatureExtractor(model)
    features = extractor([sample.path for sample in samples], progress=progress).features
    probabilities = out_of_fold_probabilities(features, labels, groups, classes, folds=folds, seed=seed)
    ranked, quality = rank_suspects(probabilities, labels, classes)
    accuracy = float(
        np.mean(
            [classes[int(row.argmax())] == label for row, label in zip(probabilities, labels, strict=False)]
        )
    )
    report = SuspectReport(
        root=str(sample_set.root),
        model=extractor.path.name,
        folds=folds,
        seed=seed,
        images=len(samples),
        labels=classes,
        out_of_fold_accuracy=accuracy,
    )
    for rank, index in enumerate(ranked, start=1):
        report.suspects.append(
            Suspect(
                rank=rank,
                path=relpaths[index],
                split=samples[index].split,
                given=labels[index],
                suggested=classes[int(probabilities[index].argmax())],
                quality=round(float(quality[index]), 4),
                probabilities={
                    name: round(float(p), 4) for name, p in zip(classes, probabilities[index], strict=False)
                },
            )
        )
    return report


def write_suspects(report: SuspectReport, out_dir: str | Path) -> dict[str, Path]:
    """``suspects.csv`` (for ``label --review``), ``suspects.json`` and ``suspects.html`` in ``out_dir``."""
    from emotionlab.fileio import ensure_outside_root

    out_dir = Path(out_dir)
    ensure_outside_root(report.root, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "suspects.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["rank", "path", "split", "given", "suggested", "quality"]
            + [PROBABILITY_PREFIX + name for name in report.labels]
        )
        for suspect in report.suspects:
            writer.writerow(
                [
                    suspect.rank,
                    suspect.path,
                    suspect.split or "",
                    suspect.given,
                    suspect.suggested,
                    suspect.quality,
                ]
                + [suspect.probabilities[name] for name in report.labels]
            )
    json_path = out_dir / "suspects.json"
    json_path.write_text(
        json.dumps(
            {"summary": report.summary(), "suspects": [asdict(suspect) for suspect in report.suspects]},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    html_path = out_dir / "suspects.html"
    html_path.write_text(render_suspects_html(report), encoding="utf-8")
    return {"csv": csv_path, "json": json_path, "html": html_path}


def _thumbnail(path: Path) -> str:
    from emotionlab.data.images import ImageReadError, read_image

    try:
        image = read_image(path)
    except ImageReadError:
        return ""
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_suspects_html(report: SuspectReport) -> str:
    """One self-contained page: what was run, the table, and a gallery of every suspect (given vs suggested)."""
    escape = html.escape
    summary = report.summary()
    pairs = "".join(
        f"<li>{escape(pair)}: {count}</li>" for pair, count in summary["given_to_suggested"].items()
    )
    rows = "".join(
        f"<tr><td>{s.rank}</td><td>{escape(s.path)}</td><td>{escape(s.given)}</td>"
        f"<td>{escape(s.suggested)}</td><td>{s.quality:.3f}</td><td>{s.probabilities[s.suggested]:.2f}</td></tr>"
        for s in report.suspects
    )
    cards = "".join(
        f'<figure><img src="{_thumbnail(Path(report.root) / s.path)}" alt="{escape(s.path)}">'
        f"<figcaption>#{s.rank} {escape(s.path)}<br>filed as <b>{escape(s.given)}</b> "
        f"({s.quality:.2f}); model: <b>{escape(s.suggested)}</b> ({s.probabilities[s.suggested]:.2f})"
        "</figcaption></figure>"
        for s in report.suspects
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Likely label errors: {escape(Path(report.root).name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ width: 180px; margin: 0; font-size: 12px; }} figure img {{ max-width: 170px; max-height: 170px; }}
</style></head><body>
<h1>Likely label errors in {escape(report.root)}</h1>
<p>{report.images} labelled photos; out-of-fold predictions of a logistic-regression head on the frozen features of
<code>{escape(report.model)}</code> ({report.folds}-fold stratified group k-fold, seed {report.seed}; out-of-fold
accuracy {report.out_of_fold_accuracy:.1%}), ranked by confident learning (cleanlab, self-confidence).
<b>{len(report.suspects)}</b> photos are flagged. A flag is a request for a second look, not a verdict; nothing
in the dataset was changed.</p>
<p>Review them in the labeller (journalled; the photos are never touched):
<code>emotionlab label {escape(report.root)} --review suspects.csv</code></p>
<h2>Given label &rarr; model's label</h2><ul>{pairs}</ul>
<h2>Table</h2>
<table><tr><th>rank</th><th>path</th><th>given</th><th>model</th><th>p(given)</th><th>p(model)</th></tr>
{rows}</table>
<h2>Gallery</h2><div class="gallery">{cards}</div>
</body></html>
"""
