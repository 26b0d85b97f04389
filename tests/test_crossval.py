"""`emotionlab experiment cv`: folds respect duplicate groups, the test split is never used, re-runs resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.manifest import write_manifest
from emotionlab.experiments.crossval import CvSettings, assign_folds, cv_rows, fold_rows, write_folds
from emotionlab.labels import EMOTIONS
from emotionlab.synthetic import write_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def grouped_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """Synthetic faces (12 per class) with a manifest: pairs of images share a duplicate group, 2 per class test."""
    root = write_dataset(tmp_path_factory.mktemp("cv") / "faces", per_class=12, size=48, seed=3)
    rows = []
    for label in EMOTIONS:
        for index in range(12):
            rows.append(
                {
                    "path": f"{label}/{label}_{index}.png",
                    "label": label,
                    "split": "test" if index >= 10 else "train" if index < 8 else "validation",
                    "group": f"{label}-pair{index // 2}" if index < 6 else "",
                }
            )
    manifest = write_manifest(rows, root.parent / "manifest.csv")
    return root, manifest


def test_folds_never_split_a_duplicate_group_and_never_see_the_test_split(grouped_dataset):
    _, manifest = grouped_dataset
    rows = cv_rows(manifest)
    assert all(row["split"] != "test" for row in rows) and len(rows) == 50
    fold_of = assign_folds(rows, 5, seed=0)
    for group in {row["group"] for row in rows if row["group"]}:
        assert len({k for row, k in zip(rows, fold_of, strict=True) if row["group"] == group}) == 1
    for fold in range(5):
        split = fold_rows(rows, fold_of, fold, seed=0)
        held_out = [row for row in split if row["split"] == "test"]
        assert {row["label"] for row in held_out} == set(EMOTIONS)  # stratified: every class in every fold
        assert any(row["split"] == "validation" for row in split)
        for group in {row["group"] for row in split if row["group"]}:
            assert len({row["split"] for row in split if row["group"] == group}) == 1
    # every image is held out exactly once
    assert sorted(fold_of).count(0) + sum(sorted(fold_of).count(k) for k in range(1, 5)) == 50


def test_fold_assignment_is_reproducible(grouped_dataset, tmp_path):
    _, manifest = grouped_dataset
    first = write_folds(CvSettings(data=None, manifest=str(manifest), out=str(tmp_path / "a")))[1]
    second = write_folds(CvSettings(data=None, manifest=str(manifest), out=str(tmp_path / "b")))[1]
    assert first == second


def test_too_few_images_per_class_is_one_line(grouped_dataset):
    _, manifest = grouped_dataset
    result = runner.invoke(
        app, ["experiment", "cv", "--manifest", str(manifest), "--folds", "20", "--recipe", "a=--epochs 1"]
    )
    assert result.exit_code != 0
    assert "20-fold cross-validation needs at least 20 images of every class" in str(result.exception)


def test_an_ensemble_of_unknown_recipes_is_one_line_before_any_training(grouped_dataset, tmp_path):
    _, manifest = grouped_dataset
    args = ["experiment", "cv", "--manifest", str(manifest), "--out", str(tmp_path / "cv")]
    result = runner.invoke(app, [*args, "--recipe", "a=--epochs 1", "--ensemble", "both=a+b"])
    assert result.exit_code != 0
    assert str(result.exception) == "--ensemble both: needs two or more of the recipes (a), got a+b"
    assert not (tmp_path / "cv").exists()  # refused before any fold was written or trained
    result = runner.invoke(app, [*args, "--recipe", "a=--epochs 1", "--baseline", "b"])
    assert str(result.exception) == "--baseline b: not one of the recipes or ensembles (a)"
    assert not (tmp_path / "cv").exists()
    result = runner.invoke(app, [*args, "--recipe", "a=--epochs 1", "--ensemble", "both:a+b"])
    assert "expected NAME=RECIPE+RECIPE" in str(result.exception)


def test_bad_recipe_options_are_one_line(grouped_dataset):
    _, manifest = grouped_dataset
    result = runner.invoke(app, ["experiment", "cv", "--manifest", str(manifest), "--recipe", "a=--epochs x"])
    assert result.exit_code != 0 and "--recipe a: Invalid value for '--epochs'" in str(result.exception)


@pytest.mark.slow
def test_two_recipes_side_by_side_and_a_resumed_run_gives_the_same_table(grouped_dataset, tmp_path):
    root, manifest = grouped_dataset
    out = tmp_path / "cv"
    common = "--image-size 48 --batch-size 16 --lr 3e-3 --epochs 2 --no-progress"
    args = [
        "experiment",
        "cv",
        "--data",
        str(root),
        "--manifest",
        str(manifest),
        "--folds",
        "3",
        "--out",
        str(out),
        "--recipe",
        f"plain={common}",
        "--recipe",
        f"balanced={common} --class-balance weight",
        "--tta",
        "--ensemble",
        "both=plain+balanced",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = json.loads((out / "cv.json").read_text())
    assert table["num_images"] == 50
    assert set(table["recipes"]) == {
        "plain",
        "plain+flip",
        "balanced",
        "balanced+flip",
        "both",
        "both+flip",
    }  # --tta: flipped rows too; the ensemble's rows with and without flips
    # The ensemble row is the average of the two recipes' out-of-fold probabilities, image by image.
    for suffix, key in (("", "probabilities"), ("+flip", "probabilities_flip")):
        averaged = {}
        for recipe in ("plain", "balanced"):
            for cache in out.glob(f"{recipe}/fold*/oof.json"):
                stored = json.loads(cache.read_text())
                for path, row in zip(stored["paths"], stored[key], strict=True):
                    averaged.setdefault(path, []).append(np.asarray(row))
        labels = table["recipes"]["both" + suffix]["labels"]
        hits = [
            labels[int(np.argmax(np.mean(rows, axis=0)))] == Path(path).parent.name
            for path, rows in averaged.items()
        ]
        assert len(hits) == 50 and all(len(rows) == 2 for rows in averaged.values())
        assert table["recipes"]["both" + suffix]["accuracy"] == pytest.approx(np.mean(hits))
        assert table["recipes"]["both" + suffix]["ensemble_of"] == ["plain", "balanced"]
    for recipe in table["recipes"].values():
        assert sum(map(sum, recipe["confusion_matrix"])) == 50  # every train+validation image scored once
        low, high = recipe["accuracy_ci95"]
        assert low <= recipe["accuracy"] <= high
    pairs = {(pair["first"], pair["second"]) for pair in table["paired"]}
    assert ("plain", "balanced") in pairs and ("plain", "plain+flip") in pairs and ("plain", "both") in pairs
    assert len(pairs) == 15
    assert "| plain |" in (out / "cv.md").read_text()
    # --baseline: each other row against the baseline's row of the same kind only (the folds are reused).
    focused = runner.invoke(app, [*args, "--baseline", "plain"])
    assert focused.exit_code == 0, focused.output
    paired = json.loads((out / "cv.json").read_text())["paired"]
    assert {(pair["first"], pair["second"]) for pair in paired} == {
        ("balanced", "plain"),
        ("balanced+flip", "plain+flip"),
        ("both", "plain"),
        ("both+flip", "plain+flip"),
    }
    runner.invoke(app, args)  # the table with every pair again, for what follows

    # Interrupted: one fold's run lost its model and cached predictions; the re-run retrains only that fold.
    shutil.rmtree(out / "balanced" / "fold1")
    before = {path: path.stat().st_mtime_ns for path in out.glob("plain/fold*/model.safetensors")}
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    again = json.loads((out / "cv.json").read_text())
    assert again["recipes"]["plain"] == table["recipes"]["plain"]
    assert again["recipes"]["plain+flip"] == table["recipes"]["plain+flip"]
    assert (
        again["recipes"]["balanced"]["confusion_matrix"] == table["recipes"]["balanced"]["confusion_matrix"]
    )
    assert {path: path.stat().st_mtime_ns for path in out.glob("plain/fold*/model.safetensors")} == before

    # The same recipe name with other settings: refused in one line, never scored with the old fold models.
    changed = [arg.replace("--epochs 2", "--epochs 3") if arg.startswith("plain=") else arg for arg in args]
    third = runner.invoke(app, changed)
    assert third.exit_code != 0
    message = str(third.exception)
    assert (
        "plain" in message
        and "fold0: holds a run trained with other settings (train.epochs 2 -> 3)" in message
    )
    assert (
        json.loads((out / "cv.json").read_text()) == again
    )  # the table of the old settings is left as it was


def test_a_finished_run_is_not_reused_once_its_start_model_file_holds_other_weights(tmp_path):
    """A recipe that fine-tunes from a file by path (e.g. the shipped ferplus8) must not reuse fold models trained
    from that path's old contents after the file was replaced (re-shipped)."""
    from dataclasses import replace

    import torch
    from helpers import model_metadata, save_tiny_model

    from emotionlab.config import RunConfig, TrainConfig, save_config
    from emotionlab.errors import EmotionlabError
    from emotionlab.experiments.runs import check_same_settings
    from emotionlab.models.factory import create_model
    from emotionlab.models.io import read_metadata, save_model_file

    start = save_tiny_model(tmp_path / "start.safetensors", seed=0)
    run = tmp_path / "cv" / "six" / "fold0"
    run.mkdir(parents=True)
    config = RunConfig(train=replace(TrainConfig(), recipe="finetune", init_from=str(start)), out=str(run))
    save_config(config, run / "config.yaml")
    torch.manual_seed(1)
    trained_from = {"path": str(start), "weights_sha256": read_metadata(start)["weights_sha256"]}
    metadata = {**model_metadata(), "finetuned_from": trained_from}
    save_model_file(run / "model.safetensors", create_model("seed_cnn", 5, image_size=64), metadata)
    check_same_settings(config)  # the same start model: the finished run is reused

    save_tiny_model(start, seed=1)  # same path, new weights
    with pytest.raises(EmotionlabError) as refused:
        check_same_settings(config)
    message = str(refused.value)
    assert message.startswith(f"{run}: holds a run trained with other settings (train.init_from ")
    assert "its weights changed since" in message and "\n" not in message


@pytest.mark.slow  # real fine-tuning, one epoch
def test_an_interrupted_run_does_not_resume_once_its_start_model_file_holds_other_weights(tmp_path):
    """The same for a fold that was interrupted: it has checkpoints but no model file yet. Resuming it would
    continue epochs that began from the old weights, and its model file would record the new ones."""
    from helpers import save_tiny_model

    from emotionlab.config import DataConfig, RunConfig, TrainConfig
    from emotionlab.errors import EmotionlabError
    from emotionlab.experiments.runs import check_same_settings
    from emotionlab.training.train import train

    data = write_dataset(tmp_path / "faces", per_class=8, size=64, seed=5)
    start = save_tiny_model(tmp_path / "start.safetensors", seed=0)
    run = tmp_path / "cv" / "six" / "fold0"
    config = RunConfig(
        data=DataConfig(root=str(data), image_size=64),
        train=TrainConfig(recipe="finetune", init_from=str(start), epochs=1, batch_size=8),
        out=str(run),
    )
    train(config, progress=False)
    (run / "model.safetensors").unlink()  # as if stopped after the checkpoint, before the model file
    assert (run / "checkpoints" / "last.ckpt").is_file()
    check_same_settings(config)  # the same start model: the run may resume

    save_tiny_model(start, seed=1)  # same path, new weights
    with pytest.raises(EmotionlabError) as refused:
        check_same_settings(config)
    assert "its weights changed since" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(EmotionlabError) as resumed:  # `emotionlab train --resume` by hand: refused too
        train(config, resume=True, progress=False)
    assert str(resumed.value).startswith(f"{run}: was started from other weights than {start} holds now")
