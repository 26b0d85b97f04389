"""Label less, learn more? A simulation of model-in-the-loop labelling on the seed photos.

    .venv/bin/python benchmarks/active_learning.py [--seeds 5] [--step 20] [--model ferplus8]

The pool is the train split of the canonical manifest (benchmarks/splits/seed-emotions.csv); its labels are
revealed one photo at a time, in the order a strategy asks for them, as a user of `emotionlab label` would give
them. Every ``--step`` labels the head is refitted (`--retrain-every`), exactly the labeller's head: logistic
regression on the frozen features of ``--model`` (ferplus8: trained on FER+ only, it never saw these photos; its
features are computed once and cached, so the whole simulation costs seconds of network time). Accuracy is
scored on the canonical validation + test photos after 100, 200, 400 and 800 labels.

Strategies:
- ``path``: natural path order of the folder, what the labeller does without --order (deterministic; the seed
  folder's paths are ``test/angry/...``, ``train/angry/...``: runs of one class at a time, as the study sorted them);
- ``random``: a shuffle per seed (a folder in no particular order);
- ``uncertain``: least confident first (``--order uncertain --retrain``); the first ``--step`` photos are a random
  start (per seed), then each refitted head picks the next ones;
- ``uncertain-model-start``: the labeller's own start: the model's probabilities rank the first ``--step`` photos
  (deterministic).

Intervals: 95% percentile bootstrap over the evaluation photos, of the accuracy averaged over seeds.
Also lists the likely label errors found in the whole seed set (``emotionlab.evaluation.suspects``) with how many of
them a person would relabel, when ``benchmarks/results/seed_suspects_review.json`` holds a by-eye review.
Writes benchmarks/results/active_learning.json and active_learning.png. The dataset is only read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import recorded

from emotionlab.data.dataset import read_manifest
from emotionlab.heads import fit_head
from emotionlab.inference.features import FeatureExtractor
from emotionlab.labeling.ordering import informativeness, restrict_to_classes

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "datasets" / "seed-emotions"
MANIFEST = REPO / "benchmarks" / "splits" / "seed-emotions.csv"
BUDGETS = (100, 200, 400, 800)
STRATEGIES = ("path", "random", "uncertain", "uncertain-model-start")
RESAMPLES = 2000


def simulate(
    strategy: str,
    seed: int,
    *,
    pool_features: np.ndarray,
    pool_labels: list[str],
    model_probabilities: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    classes: list[str],
    step: int,
    checkpoints: list[int],
) -> dict[int, np.ndarray]:
    """Correct/incorrect per evaluation photo after each checkpoint number of labels."""
    count = len(pool_labels)
    rng = np.random.default_rng(seed)
    if strategy == "path":
        order = list(range(count))  # the pool is in natural path order
    elif strategy == "random":
        order = [int(index) for index in rng.permutation(count)]
    elif strategy == "uncertain":
        order = [int(index) for index in rng.permutation(count)[:step]]
    else:
        keys = informativeness(model_probabilities, "uncertain")
        order = [int(index) for index in np.lexsort((np.arange(count), keys))[:step]]
    results = {}
    labelled = order[:step] if strategy.startswith("uncertain") else []
    position = 0
    while True:
        if not strategy.startswith("uncertain"):
            labelled = order[: position + step]
        position = len(labelled)
        labels = [pool_labels[index] for index in labelled]
        predict = None
        # Path and random orders need a head only where they are scored; uncertainty needs one every step.
        needed = strategy.startswith("uncertain") or position in checkpoints or position >= count
        if needed and len(set(labels)) >= 2:
            predict = fit_head(pool_features[labelled], labels, classes=classes, seed=0)
        if position in checkpoints or position >= count:
            if predict is None:  # one class so far: every answer is that class
                guess = np.array([classes.index(labels[0])] * len(eval_labels)) if labels else -1
                results[position] = guess == eval_labels
            else:
                results[position] = predict(eval_features).argmax(axis=1) == eval_labels
        if position >= count or position >= max(checkpoints):
            break
        if strategy.startswith("uncertain"):
            chosen = set(labelled)
            rest = np.array([index for index in range(count) if index not in chosen])
            if predict is None:
                keys = informativeness(model_probabilities[rest], "uncertain")
            else:
                keys = informativeness(predict(pool_features[rest]), "uncertain")
            picked = rest[np.lexsort((rest, keys))[:step]]
            labelled = labelled + [int(index) for index in picked]
    return results


def bootstrap(correct: np.ndarray, *, seed: int = 0) -> tuple[float, float, float]:
    """Mean accuracy over seeds and photos (``correct``: seeds x photos) and a 95% interval over photos."""
    rng = np.random.default_rng(seed)
    per_photo = correct.mean(axis=0)
    draws = rng.integers(0, len(per_photo), size=(RESAMPLES, len(per_photo)))
    means = per_photo[draws].mean(axis=1)
    return float(per_photo.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--step", type=int, default=20, help="labels between refits (--retrain-every)")
    parser.add_argument("--model", default="ferplus8")
    parser.add_argument("--data", type=Path, default=DATA, help="the seed-emotions folder (only read)")
    args = parser.parse_args()

    started = time.perf_counter()
    sample_set = read_manifest(MANIFEST, root=args.data)
    pool = [sample for sample in sample_set.samples if sample.split == "train"]
    evaluation = [sample for sample in sample_set.samples if sample.split in ("validation", "test")]
    from emotionlab.labeling import natural_key

    pool.sort(key=lambda sample: natural_key(sample.relpath))  # the labeller's path order
    classes = list(sample_set.labels)
    extractor = FeatureExtractor(args.model)
    features = extractor([sample.path for sample in pool + evaluation])
    feature_seconds = time.perf_counter() - started
    pool_features, eval_features = features.features[: len(pool)], features.features[len(pool) :]
    model_probabilities, _ = restrict_to_classes(
        features.probabilities[: len(pool)], features.labels, classes
    )
    pool_labels = [sample.label for sample in pool]
    eval_labels = np.array([classes.index(sample.label) for sample in evaluation])
    # The curve: every 100 labels (and the budgets); the head is still refitted every --step labels.
    checkpoints = sorted(set(range(100, max(BUDGETS) + 1, 100)) | set(BUDGETS) | {args.step})
    print(
        f"pool {len(pool)} train photos, evaluation {len(evaluation)} validation + test photos, classes {classes}"
    )
    print(
        f"features of {extractor.path.name}: {features.features.shape[1]} per photo, {feature_seconds:.1f} s"
    )

    curves: dict[str, dict[int, np.ndarray]] = {}
    for strategy in STRATEGIES:
        seeds = [0] if strategy in ("path", "uncertain-model-start") else list(range(args.seeds))
        runs = [
            simulate(
                strategy,
                seed,
                pool_features=pool_features,
                pool_labels=pool_labels,
                model_probabilities=model_probabilities,
                eval_features=eval_features,
                eval_labels=eval_labels,
                classes=classes,
                step=args.step,
                checkpoints=checkpoints,
            )
            for seed in seeds
        ]
        curves[strategy] = {n: np.stack([run[n] for run in runs]) for n in runs[0]}
        print(f"  {strategy}: {len(seeds)} run(s) done ({time.perf_counter() - started:.0f} s)")

    table = {}
    for strategy, curve in curves.items():
        table[strategy] = {}
        for n in sorted(curve):
            mean, low, high = bootstrap(curve[n])
            table[strategy][n] = {"accuracy": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}
    print("\naccuracy on the canonical validation + test photos (95% interval)")
    print(f"{'labels':>8} " + " ".join(f"{name:>28}" for name in STRATEGIES))
    for n in BUDGETS:
        cells = []
        for name in STRATEGIES:
            row = table[name][n]
            cells.append(f"{row['accuracy']:.3f} [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]")
        print(f"{n:>8} " + " ".join(f"{cell:>28}" for cell in cells))

    # The target: uncertainty order reaches path order's 800-label accuracy with at most 400 labels.
    goal = table["path"][800]["accuracy"]
    targets = {}
    for name in ("uncertain", "uncertain-model-start", "random"):
        reached = next((n for n in sorted(table[name]) if table[name][n]["accuracy"] >= goal), None)
        targets[name] = reached
    paired = curves["uncertain"][400].mean(axis=0) - curves["path"][800].mean(axis=0)
    rng = np.random.default_rng(1)
    draws = rng.integers(0, len(paired), size=(RESAMPLES, len(paired)))
    difference = {
        "uncertain@400 - path@800": round(float(paired.mean()), 4),
        "ci95": [round(float(v), 4) for v in np.percentile(paired[draws].mean(axis=1), [2.5, 97.5])],
    }
    met = targets["uncertain"] is not None and targets["uncertain"] <= 400
    print(
        f"\npath order after 800 labels: {goal:.3f}; uncertainty order reaches it after "
        f"{targets['uncertain']} labels (model start: {targets['uncertain-model-start']}, random: {targets['random']})"
    )
    print(
        f"uncertain@400 - path@800: {difference['uncertain@400 - path@800']:+.3f} (95% {difference['ci95']})"
    )
    print(f"target (<= 400 labels): {'met' if met else 'missed'}")

    suspects = suspects_summary()
    if suspects:
        print(f"\nsuspects in the seed photos: {suspects['flagged']} flagged; {suspects.get('verdict', '')}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "active_learning",
        "command": recorded.command_line(),
        "machine": recorded.machine(),
        "pool": len(pool),
        "evaluation": len(evaluation),
        "model": extractor.path.name,
        "step": args.step,
        "seeds": args.seeds,
        "budgets": list(BUDGETS),
        "accuracy": {name: {str(n): table[name][n] for n in sorted(table[name])} for name in table},
        "target": {
            "path_800": goal,
            "labels_to_reach_path_800": targets,
            "paired_difference": difference,
            "met": met,
        },
        "suspects": suspects,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (RESULTS / "active_learning.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(table, RESULTS / "active_learning.png", goal=goal, model=extractor.path.name)
    print(f"wrote {RESULTS / 'active_learning.json'} and active_learning.png")


def suspects_summary() -> dict | None:
    """The seed suspects (``emotionlab data suspects``) and the by-eye review, when they were committed."""
    review_path = RESULTS / "seed_suspects_review.json"
    if not review_path.is_file():
        return None
    review = json.loads(review_path.read_text())
    verdicts = review.get("verdicts", [])
    relabel = [item for item in verdicts if item.get("verdict") == "relabel"]
    return {
        "flagged": review.get("flagged"),
        "looked_at": len(verdicts),
        "would_relabel": len(relabel),
        "relabel": relabel,
        "verdict": f"{len(relabel)} of the {len(verdicts)} looked at would be relabelled by eye",
    }


def plot(table: dict, path: Path, *, goal: float, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in STRATEGIES:
        counts = sorted(table[name])
        means = [table[name][n]["accuracy"] for n in counts]
        low = [table[name][n]["ci95"][0] for n in counts]
        high = [table[name][n]["ci95"][1] for n in counts]
        axis.plot(counts, means, label=name)
        axis.fill_between(counts, low, high, alpha=0.15)
    axis.axhline(goal, color="grey", linestyle=":", label="path order at 800 labels")
    for budget in BUDGETS:
        axis.axvline(budget, color="lightgrey", linewidth=0.5)
    axis.set_xlabel("labels given")
    axis.set_ylabel("accuracy, validation + test photos")
    axis.set_title(f"Which photo to label next (head on frozen {model} features)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
