"""Compound readings ("surprised + happy") of a model on FER+: the ratio chosen on validation, measured on test.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compound.py            # the shipped model
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compound.py --model runs/x/model.safetensors --out /tmp/c.json

Faces: FER+ five-class majority rows (ties, unknown, not-a-face, neutral/disgust/contempt winners dropped), each
48x48 face classified as it is, as benchmarks/default_model.py does. The crowd splits a face when its second
emotion has at least half the votes of its first (``emotionlab.inference.compound.CROWD_RATIO``). On FER+
*validation* the ratio whose compound rate is closest to the crowd's split rate is kept; FER+ test is scored once
with it. The probabilities are cached in ``--cache`` (a re-run with another rule costs seconds, not a pass over
4,000 faces).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import recorded

from emotionlab.data import ferplus
from emotionlab.data.images import read_image
from emotionlab.evaluation.metrics import bootstrap_mean_ci
from emotionlab.inference import Classifier, default_model_path
from emotionlab.inference.compound import choose_ratio, crowd_split, measure, model_split

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [round(value, 2) for value in np.arange(0.10, 0.91, 0.05)]


def split_data(classifier: Classifier, root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, true label index, crowd votes over the model's labels) of one FER+ split."""
    folder = root / ferplus.SPLIT_FOLDERS[split]
    column_of = {label: column for column, label in ferplus.FIVE_CLASSES.items()}
    images, truth, votes = [], [], []
    for row in ferplus.read_label_csv(folder / "label.csv"):
        chosen = ferplus.select_row(row, classes=5, targets="majority")
        if chosen is None:
            continue
        counts = dict(zip(ferplus.VOTE_COLUMNS, row.votes, strict=True))
        images.append(read_image(folder / row.file))
        truth.append(classifier.labels.index(chosen[0]))
        votes.append([counts[column_of[label]] for label in classifier.labels])
    probabilities = classifier.predict_proba(images, batch_size=256)
    return probabilities, np.array(truth), np.array(votes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--ferplus", default=str(REPO.parent / "shared/datasets/ferplus"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/compound.json"))
    parser.add_argument("--cache", default=None, help="NPZ of the probabilities (written once, then reused)")
    args = parser.parse_args()
    classifier = Classifier.from_file(args.model)
    root = Path(args.ferplus)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        validation = tuple(stored[f"validation_{key}"] for key in ("probabilities", "truth", "votes"))
        test_data = tuple(stored[f"test_{key}"] for key in ("probabilities", "truth", "votes"))
    else:
        validation = split_data(classifier, root, "validation")
        test_data = split_data(classifier, root, "test")
        if cache is not None:
            np.savez(
                cache,
                **{
                    f"{split}_{key}": value
                    for split, data in (("validation", validation), ("test", test_data))
                    for key, value in zip(("probabilities", "truth", "votes"), data, strict=True)
                },
            )
    ratio, sweep = choose_ratio(*validation, CANDIDATES)
    probabilities, truth, votes = test_data
    test = measure(probabilities, truth, votes, ratio)
    given = model_split(probabilities, ratio)
    top = np.argsort(-probabilities, axis=1)
    in_reading = (top[:, 0] == truth) | (given & (top[:, 1] == truth))
    test["intervals"] = {
        "compound_rate": bootstrap_mean_ci(given.astype(float)),
        "true_label_in_reading": bootstrap_mean_ci(in_reading.astype(float)),
        "top1_accuracy": bootstrap_mean_ci((top[:, 0] == truth).astype(float)),
    }
    pairs: dict[str, int] = {}
    for first, second in top[given][:, :2]:
        name = " + ".join(sorted((classifier.labels[first], classifier.labels[second])))
        pairs[name] = pairs.get(name, 0) + 1
    result = {
        "model": os.path.relpath(args.model, REPO),
        "crowd_rule": "second emotion >= 0.5 x the first's votes (five emotions, FER+ majority rows)",
        "chosen_on": "FER+ validation: compound rate closest to the crowd's split rate",
        "ratio": ratio,
        "validation_sweep": sweep,
        "validation": next(row for row in sweep if row["ratio"] == ratio),
        "test": test,
        "test_pairs": dict(sorted(pairs.items(), key=lambda item: -item[1])),
        "test_crowd_split_faces": int(crowd_split(votes).sum()),
        "command": recorded.command_line(),
        "machine": recorded.machine(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"ratio {ratio} (FER+ validation, F1 {result['validation']['against_crowd']['f1']:.3f} against the crowd)"
    )
    for name, block in (("validation", result["validation"]), ("test", test)):
        crowd = block["against_crowd"]
        print(
            f"{name}: {block['faces']} faces; compound given on {block['compound_rate']:.1%} (crowd splits "
            f"{block['crowd_split_rate']:.1%}); true label in the reading {block['true_label_in_reading']:.1%} vs "
            f"top-1 {block['top1_accuracy']:.1%}; on compound faces top-1 "
            f"{block['on_compound_faces']['top1_accuracy']:.1%}, pair {block['on_compound_faces']['true_label_in_pair']:.1%}; "
            f"vs crowd precision {crowd['precision']:.2f} recall {crowd['recall']:.2f} F1 {crowd['f1']:.3f}, "
            f"same pair {crowd['same_pair_share']:.1%}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
