"""Would a per-class prior shift fix what the six-class model under-calls (issue 15, part 4)? Nested, out of fold.

Reads a cross-validation's cached out-of-fold probabilities (``OUT/RECIPE/foldK/oof.json`` of ``emotionlab
experiment cv``), and for each fold fits one additive bias per class on the log-probabilities of the OTHER four
folds (coordinate search on a grid, maximising the mean recall of the data's classes), then applies it to the held-out
fold: the accuracy and per-class recall a threshold / prior change would really give, paired against no bias.
Two settings: every class's bias free (neutral included), and neutral's fixed at 0 (only the five emotions'
priors move, so neutral answers stay as they are).

    .venv/bin/python benchmarks/class_bias.py --cv runs/cv7 --recipe wide15 --flips
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import recorded

from emotionlab.evaluation.metrics import bootstrap_mean_ci

GRID = np.linspace(-2.0, 2.0, 41)


def load_oof(cv: Path, recipe: str, flips: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    probabilities, truth, fold_of, labels = [], [], [], None
    caches = sorted((cv / recipe).glob("fold*/oof.json"))
    if not caches:
        raise SystemExit(f"{cv / recipe}: no fold*/oof.json (run `emotionlab experiment cv` first)")
    for fold, cache in enumerate(caches):
        stored = json.loads(cache.read_text())
        labels = stored["labels"]
        rows = np.asarray(stored["probabilities_flip" if flips else "probabilities"], dtype=float)
        probabilities.append(rows)
        truth += [labels.index(Path(path).parent.name) for path in stored["paths"]]
        fold_of += [fold] * len(rows)
    return np.vstack(probabilities), np.array(truth), np.array(fold_of), labels


def fit_bias(logp: np.ndarray, truth: np.ndarray, classes: list[int], free: list[int]) -> np.ndarray:
    """Biases (one per model class) maximising the mean recall over ``classes``; only ``free`` ones move."""

    def mean_recall(bias: np.ndarray) -> float:
        predicted = (logp + bias).argmax(axis=1)
        return float(np.mean([(predicted[truth == c] == c).mean() for c in classes]))

    bias = np.zeros(logp.shape[1])
    for _sweep in range(3):
        for c in free:
            scores = []
            for value in GRID:
                trial = bias.copy()
                trial[c] = value
                scores.append(mean_recall(trial))
            bias[c] = GRID[int(np.argmax(scores))]
    return bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, default=Path("runs/cv7"))
    parser.add_argument("--recipe", default="wide15")
    parser.add_argument(
        "--flips", action="store_true", help="Use the fold models' test-time-flip probabilities."
    )
    parser.add_argument("--out", default="benchmarks/results/class_bias.json")
    args = parser.parse_args()

    probabilities, truth, fold_of, labels = load_oof(args.cv, args.recipe, args.flips)
    logp = np.log(np.clip(probabilities, 1e-12, None))
    data_classes = sorted(set(truth.tolist()))
    baseline = logp.argmax(axis=1)
    settings = {
        "every class free": list(range(len(labels))),
        "neutral fixed at 0": [c for c in range(len(labels)) if labels[c] != "neutral"],
    }
    result = {
        "cv": str(args.cv),
        "recipe": args.recipe,
        "flips": args.flips,
        "labels": labels,
        "images": len(truth),
    }
    result["baseline"] = {
        "accuracy": float((baseline == truth).mean()),
        "recall": {labels[c]: float((baseline[truth == c] == c).mean()) for c in data_classes},
    }
    print(
        f"{args.recipe} ({len(truth)} images, out of fold): accuracy {100 * result['baseline']['accuracy']:.1f}%"
    )
    for name, free in settings.items():
        nested = np.zeros_like(baseline)
        biases = []
        for fold in sorted(set(fold_of.tolist())):
            train, held = fold_of != fold, fold_of == fold
            bias = fit_bias(logp[train], truth[train], data_classes, free)
            biases.append(bias.round(2).tolist())
            nested[held] = (logp[held] + bias).argmax(axis=1)
        hits = (nested == truth).astype(float) - (baseline == truth).astype(float)
        row = {
            "accuracy": float((nested == truth).mean()),
            "difference": float(hits.mean()),
            "difference_ci95": bootstrap_mean_ci(hits),
            "recall": {labels[c]: float((nested[truth == c] == c).mean()) for c in data_classes},
            "neutral_answers": int((nested == labels.index("neutral")).sum())
            if "neutral" in labels
            else None,
            "biases_per_fold": biases,
        }
        result[name] = row
        low, high = row["difference_ci95"]
        recalls = ", ".join(f"{label} {value:.2f}" for label, value in row["recall"].items())
        print(
            f"  bias fitted on the other folds, {name}: {100 * row['accuracy']:.1f}% "
            f"({100 * row['difference']:+.1f}, 95% {100 * low:+.1f} to {100 * high:+.1f}); recall {recalls}; "
            f"neutral answers {row['neutral_answers']} (without bias {(baseline == labels.index('neutral')).sum()})"
        )
    result["command"] = recorded.command_line()
    result["machine"] = recorded.machine()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
