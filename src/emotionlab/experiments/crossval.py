"""Cross-validation that can tell candidate recipes apart: ``emotionlab experiment cv``.

With ~110 images per split, one validation or test split cannot separate two recipes a few points apart (one
standard error is ~4 points). Cross-validation scores every train + validation image once, out of fold:

- the test split is never touched (its rows are dropped before anything else);
- stratified group k-fold (scikit-learn's ``StratifiedGroupKFold``) over the rest, with the manifest's duplicate
  groups as groups, so near-duplicates never sit on both sides of a fold; a manifest from
  ``emotionlab data split --group-by person`` merges people into those groups, so folds are person-disjoint too;
- each fold's training images get their own inner, group-aware validation part (1/8, more for tiny classes) for checkpoint choice and
  early stopping, so the held-out fold plays no part in training;
- every recipe sees the same folds, so two recipes are compared image by image: the paired difference and its
  95% bootstrap interval (the same resampled images for both) say whether a gap is real.

Runs are ordinary training runs under ``OUT/RECIPE/foldK``: a finished fold is reused, an interrupted one
resumes from its last checkpoint, and its out-of-fold probabilities are cached in ``oof.json``, so a killed
cross-validation costs only the run in progress and a re-run gives the same table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emotionlab.config import RunConfig, to_dict
from emotionlab.errors import EmotionlabError
from emotionlab.experiments.runs import check_same_settings, run_or_reuse
from emotionlab.fileio import write_atomic
from emotionlab.labels import EMOTIONS, order_labels

log = logging.getLogger("emotionlab")

INNER_VALIDATION_PARTS = 8  # an eighth of each fold's training images validates it
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class CvSettings:
    data: str | None
    manifest: str
    out: str = "runs/cv"
    folds: int = 5
    seed: int = 0
    resamples: int = BOOTSTRAP_RESAMPLES
    tta: bool = False  # also score each fold model with test-time flips: rows "NAME+flip"
    # rows averaging recipes' out-of-fold probabilities, as `emotionlab ensemble` of their models would
    ensembles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # pair every row with this recipe's row of the same kind only (else: every pair)
    baseline: str | None = None


def _group_ids(rows: list[dict]) -> list[str]:
    """One id per row: its group when the manifest has one (duplicates, and people with --group-by person)."""
    return [row.get("group") or f"single:{row['path']}" for row in rows]


def assign_folds(rows: list[dict], folds: int, seed: int) -> list[int]:
    """Fold index per row: stratified by label, duplicate groups kept whole (``StratifiedGroupKFold``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = [row["label"] for row in rows]
    smallest = min(labels.count(label) for label in set(labels))
    if folds < 2 or smallest < folds:
        raise EmotionlabError(
            f"{folds}-fold cross-validation needs at least {max(folds, 2)} images of every class "
            f"(the smallest class has {smallest}) and at least 2 folds"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = [0] * len(rows)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(rows)), labels, _group_ids(rows))):
        for index in held_out:
            fold_of[index] = fold
    return fold_of


def fold_rows(rows: list[dict], fold_of: list[int], fold: int, seed: int) -> list[dict]:
    """Rows of one fold's manifest: the fold is ``test``, an inner eighth of the rest ``validation``."""
    from sklearn.model_selection import StratifiedGroupKFold

    rest = [row for row, k in zip(rows, fold_of, strict=True) if k != fold]
    labels = [row["label"] for row in rest]
    parts = min(INNER_VALIDATION_PARTS, min(labels.count(label) for label in set(labels)))
    if parts < 2:
        raise EmotionlabError(f"fold {fold}: a class has fewer than 2 training images left to validate on")
    inner = StratifiedGroupKFold(n_splits=parts, shuffle=True, random_state=seed + fold)
    _, validation = next(inner.split(np.zeros(len(rest)), labels, _group_ids(rest)))
    validation_paths = {rest[index]["path"] for index in validation}
    out = []
    for row, k in zip(rows, fold_of, strict=True):
        split = "test" if k == fold else "validation" if row["path"] in validation_paths else "train"
        out.append({**row, "split": split})
    return out


def cv_rows(manifest: str | Path) -> list[dict]:
    """The manifest's train + validation rows (the test split is dropped here and never seen again)."""
    from emotionlab.data.manifest import read_manifest_rows

    rows = [row for row in read_manifest_rows(manifest) if row.get("split") != "test"]
    if not rows:
        raise EmotionlabError(f"{manifest}: no train or validation rows to cross-validate")
    return rows


def write_folds(settings: CvSettings) -> tuple[list[dict], list[int], list[Path]]:
    """Write ``OUT/folds/foldK.csv`` (same content on every call); returns rows, fold per row, paths."""
    from emotionlab.data.manifest import write_manifest

    rows = cv_rows(settings.manifest)
    fold_of = assign_folds(rows, settings.folds, settings.seed)
    paths = []
    for fold in range(settings.folds):
        path = Path(settings.out) / "folds" / f"fold{fold}.csv"
        comment = f"cross-validation fold {fold} of {settings.folds} (seed {settings.seed}) from {settings.manifest}"
        write_manifest(fold_rows(rows, fold_of, fold, settings.seed), path, comments=[comment])
        paths.append(path)
    return rows, fold_of, paths


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def _fold_probabilities(
    config: RunConfig, fold_manifest: Path, data: str | None, labels: list[str], tta: bool
):
    """Train (or reuse / resume) one fold's run; its out-of-fold probabilities, cached in ``oof.json``.

    Returns paths, probabilities, probabilities with test-time flips (None unless ``tta``) and the run summary."""
    cache = Path(config.out) / "oof.json"
    if cache.is_file():  # cached predictions: check as run_or_reuse does before training
        check_same_settings(config)
    stored = json.loads(cache.read_text()) if cache.is_file() else _score_fold(config, fold_manifest, data)
    if tta and "probabilities_flip" not in stored:
        stored["probabilities_flip"] = _score_with_flips(Path(config.out), fold_manifest, data)
    _write_text(cache, json.dumps(stored))
    if not set(labels) <= set(stored["labels"]):  # more is fine: a six-class model (neutral) on the five
        raise EmotionlabError(
            f"{cache}: the fold model's labels {stored['labels']} lack some of the data's {labels}"
        )
    flipped = np.asarray(stored["probabilities_flip"], dtype=float) if tta else None
    probabilities = np.asarray(stored["probabilities"], dtype=float)
    return stored["paths"], probabilities, flipped, stored["run"], list(stored["labels"])


def _score_with_flips(run_dir: Path, fold_manifest: Path, data: str | None) -> list:
    """The fold model wrapped with test-time flips (``emotionlab ensemble --tta flip``), on its held-out fold."""
    from emotionlab.data.dataset import load_samples
    from emotionlab.evaluation.evaluate import evaluate_samples
    from emotionlab.models.ensemble import build_ensemble

    flipped = build_ensemble([run_dir / "model.safetensors"], run_dir / "model_flip.safetensors", tta="flip")
    test = load_samples(data, fold_manifest).split("test")
    return np.asarray(evaluate_samples(flipped, test)["_probabilities"], dtype=float).tolist()


def _score_fold(config: RunConfig, fold_manifest: Path, data: str | None) -> dict:
    from emotionlab.data.dataset import load_samples
    from emotionlab.evaluation.evaluate import evaluate_samples

    model_path, summary = run_or_reuse(config)
    test = load_samples(data, fold_manifest).split("test")
    metrics = evaluate_samples(model_path, test)
    probabilities = np.asarray(metrics["_probabilities"], dtype=float)
    return {
        "paths": [sample.relpath for sample in test],
        "labels": metrics["labels"],
        "probabilities": probabilities.tolist(),
        "run": summary,
    }


def recipe_config(
    template: RunConfig, settings: CvSettings, name: str, fold: int, fold_manifest: Path
) -> RunConfig:
    """The template's options on one fold's manifest, in ``OUT/NAME/foldK``."""
    data = replace(template.data, root=settings.data, manifest=str(fold_manifest))
    return replace(template, data=data, out=str(Path(settings.out) / name / f"fold{fold}"))


def recipe_scores(truth: np.ndarray, probabilities: np.ndarray, model_labels: list[str], labels: list[str]):
    """``{suffix: (metrics, predicted label names)}`` of one recipe's out-of-fold probabilities (columns:
    ``model_labels``) against ``truth`` (label names of the data, whose classes are ``labels``). A model that also
    knows a class the data lacks (neutral, on photos of the five) is scored on the data's classes, an answer of
    that class a miss (suffix ""), and again answering among the data's classes only (``"+five"`` for the
    study's five, else ``"+restricted"``: that class dropped, the rest renormalised, as ``--five``)."""
    from emotionlab.evaluation.metrics import compute_metrics

    index = [model_labels.index(label) for label in truth]
    scores = {
        "": (
            compute_metrics(index, probabilities, model_labels, data_labels=labels),
            np.array(model_labels)[probabilities.argmax(axis=1)],
        )
    }
    if list(model_labels) != list(labels):
        kept = probabilities[:, [model_labels.index(label) for label in labels]]
        kept = kept / np.clip(kept.sum(axis=1, keepdims=True), 1e-12, None)
        suffix = "+five" if sorted(labels) == sorted(EMOTIONS) else "+restricted"
        scores[suffix] = (
            compute_metrics([labels.index(label) for label in truth], kept, labels),
            np.array(labels)[kept.argmax(axis=1)],
        )
    return scores


def _scores(metrics: dict) -> dict:
    return {
        "labels": metrics["labels"],  # the model's classes: the confusion matrix's columns
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": list(metrics["accuracy_ci95"]),
        "macro_f1": metrics["macro_f1"],
        "macro_f1_ci95": list(metrics["macro_f1_ci95"]),
        "per_class_recall": {label: value["recall"] for label, value in metrics["per_class"].items()},
        "confusion_matrix": metrics["confusion_matrix"],
    }


def paired_difference(
    truth: np.ndarray, first: np.ndarray, second: np.ndarray, *, resamples: int, seed: int = 0
) -> dict:
    """Accuracy of ``first`` minus ``second`` on the same images, with a 95% paired bootstrap interval."""
    from emotionlab.evaluation.metrics import bootstrap_mean_ci

    hits = (first == truth).astype(float) - (second == truth).astype(float)
    return {
        "accuracy_difference": float(hits.mean()),
        "ci95": bootstrap_mean_ci(hits, resamples=resamples, seed=seed),
    }


def _check_ensembles(settings: CvSettings, recipes: dict[str, RunConfig]) -> None:
    for name, members in settings.ensembles:
        if name in recipes:
            raise EmotionlabError(f"--ensemble {name}: a recipe has that name too")
        unknown = [member for member in members if member not in recipes]
        if unknown or len(members) < 2:
            raise EmotionlabError(
                f"--ensemble {name}: needs two or more of the recipes ({', '.join(recipes)}), "
                f"got {'+'.join(members)}"
            )


def run_cv(settings: CvSettings, recipes: dict[str, RunConfig]) -> dict:
    """Train every recipe on every fold; out-of-fold metrics per recipe and paired differences between them.

    An ensemble row averages its members' out-of-fold probabilities (and, with flips, their flipped ones): the
    mean of softmax probabilities that ``emotionlab ensemble`` of the members' fold models computes. Each fold's
    members were trained on the same images, so the row is out of fold too."""
    if not recipes:
        raise EmotionlabError("cross-validation needs at least one recipe")
    _check_ensembles(settings, recipes)
    known = [*recipes, *(name for name, _ in settings.ensembles)]
    if settings.baseline is not None and settings.baseline not in known:
        raise EmotionlabError(
            f"--baseline {settings.baseline}: not one of the recipes or ensembles ({', '.join(known)})"
        )
    rows, fold_of, fold_paths = write_folds(settings)
    labels = order_labels(row["label"] for row in rows)
    truth_by_path = {row["path"]: labels.index(row["label"]) for row in rows}
    order = [row["path"] for row in rows]
    results: dict = {
        "settings": {**settings.__dict__},
        "num_images": len(rows),
        "labels": labels,
        "folds": [int(np.sum(np.asarray(fold_of) == k)) for k in range(settings.folds)],
        "recipes": {},
    }
    predictions: dict[str, np.ndarray] = {}  # label names
    outputs: dict[str, tuple] = {}  # variant -> (probability matrix, model labels, training runs)
    truth = np.array([labels[truth_by_path[path]] for path in order])

    # row -> (its recipe or ensemble, the kind of row: "", "+flip", "+flip+five" ...)
    kinds: dict[str, tuple[str, str]] = {}

    def add_rows(
        source: str, variant: str, matrix: np.ndarray, model_labels, runs: list, about: dict
    ) -> None:
        for suffix, (metrics, predicted) in recipe_scores(truth, matrix, model_labels, labels).items():
            predictions[variant + suffix] = predicted
            kinds[variant + suffix] = (source, variant[len(source) :] + suffix)
            results["recipes"][variant + suffix] = {
                **about,
                **_scores(metrics),
                "train_seconds": round(sum(run.get("train_seconds") or 0.0 for run in runs), 1),
                "runs": runs,
            }

    for name, template in recipes.items():
        probabilities: dict[str, np.ndarray] = {}
        flipped: dict[str, np.ndarray] = {}
        runs = []
        model_labels = None
        for fold, fold_manifest in enumerate(fold_paths):
            config = recipe_config(template, settings, name, fold, fold_manifest)
            log.warning("cv: %s fold %d/%d -> %s", name, fold + 1, settings.folds, config.out)
            paths, plain, flips, summary, fold_labels = _fold_probabilities(
                config, fold_manifest, settings.data, labels, settings.tta
            )
            if model_labels is not None and fold_labels != model_labels:
                raise EmotionlabError(
                    f"{config.out}: this fold's model has the labels {fold_labels}, another fold's {model_labels}"
                )
            model_labels = fold_labels
            probabilities.update(zip(paths, plain, strict=True))
            if flips is not None:
                flipped.update(zip(paths, flips, strict=True))
            runs.append({"fold": fold, **summary})
        variants = {name: probabilities, **({f"{name}+flip": flipped} if settings.tta else {})}
        for variant, by_path in variants.items():
            matrix = np.stack([by_path[path] for path in order])
            outputs[variant] = (matrix, model_labels, runs)
            about = {"config": to_dict(replace(template, out="")), "test_time_flips": variant != name}
            add_rows(name, variant, matrix, model_labels, runs, about)
    for name, members in settings.ensembles:
        member_labels = {member: outputs[member][1] for member in members}
        if len({tuple(value) for value in member_labels.values()}) > 1:
            raise EmotionlabError(
                f"--ensemble {name}: its members' models have different labels {member_labels}"
            )
        for suffix in ("", "+flip") if settings.tta else ("",):
            matrix = np.mean([outputs[member + suffix][0] for member in members], axis=0)
            runs = [run for member in members for run in outputs[member + suffix][2]]
            about = {"ensemble_of": list(members), "test_time_flips": bool(suffix)}
            add_rows(name, name + suffix, matrix, outputs[members[0]][1], runs, about)
    names = list(predictions)
    if settings.baseline is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    else:  # each other row against the baseline's row of the same kind (with flips against with flips ...)
        base = {kind: row for row, (source, kind) in kinds.items() if source == settings.baseline}
        pairs = [
            (row, base[kind])
            for row, (source, kind) in kinds.items()
            if source != settings.baseline and kind in base
        ]
    results["paired"] = [
        {
            "first": a,
            "second": b,
            **paired_difference(truth, predictions[a], predictions[b], resamples=settings.resamples),
        }
        for a, b in pairs
    ]
    return results


def render_markdown(results: dict, *, command: str = "") -> str:
    """The side-by-side table of recipes and the paired differences."""

    def pct(value: float) -> str:
        return f"{100 * value:.1f}"

    labels = results["labels"]
    folds, count = results["settings"]["folds"], results["num_images"]
    lines = [
        f"# Cross-validation: {folds} folds over {count} train + validation images (test split untouched)",
        "",
    ]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        "| recipe | accuracy (95% CI) | macro-F1 (95% CI) | "
        + " | ".join(f"{label} recall" for label in labels)
        + " | training CPU-s |",
        "|---|---|---|" + "---|" * len(labels) + "---|",
    ]
    for name, row in results["recipes"].items():
        low, high = row["accuracy_ci95"]
        f_low, f_high = row["macro_f1_ci95"]
        recalls = " | ".join(f"{row['per_class_recall'][label]:.2f}" for label in labels)
        lines.append(
            f"| {name} | {pct(row['accuracy'])} ({pct(low)}-{pct(high)}) | {row['macro_f1']:.3f} "
            f"({f_low:.3f}-{f_high:.3f}) | {recalls} | {row['train_seconds']:.0f} |"
        )
    if results["paired"]:
        lines += ["", "Paired differences (same images; 95% bootstrap interval):", ""]
        lines += ["| first - second | accuracy difference (95% CI) |", "|---|---|"]
        for pair in results["paired"]:
            low, high = pair["ci95"]
            lines.append(
                f"| {pair['first']} - {pair['second']} | {pct(pair['accuracy_difference'])} "
                f"({pct(low)} to {pct(high)}) |"
            )
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: str | Path, *, command: str = "") -> tuple[Path, Path]:
    out = Path(out)
    json_path, md_path = out / "cv.json", out / "cv.md"
    _write_text(json_path, json.dumps({**results, "command": command}, indent=2))
    _write_text(md_path, render_markdown(results, command=command))
    return json_path, md_path
