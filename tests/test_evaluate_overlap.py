"""Honest evaluation: a model file records its training images by content and its held-out split; evaluating
on images it was trained on is refused (or flagged with --allow-overlap), naming how many."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.dataset import scan_image_folder
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.evaluate import held_out_samples, training_overlap
from emotionlab.fileio import content_digest
from emotionlab.models.io import read_metadata, resave_model_file

runner = CliRunner()


def evaluate(*args, env=None):
    return runner.invoke(app, ["evaluate", *[str(a) for a in args]], env=env)


def test_a_trained_model_records_its_images_by_content(trained_model, tiny_dataset):
    record = read_metadata(trained_model)["dataset"]
    train_files = sorted((tiny_dataset / "train").rglob("*.png"))
    assert record["train"] == sorted({content_digest(path) for path in train_files})
    assert len(record["validation"]) == 15
    assert sorted(row[0] for row in record["test"]) == sorted(
        path.relative_to(tiny_dataset).as_posix() for path in (tiny_dataset / "test").rglob("*.png")
    )


def test_evaluating_on_training_images_is_refused_with_the_count(trained_model, tiny_dataset, tmp_path):
    result = evaluate(
        "--model", trained_model, "--data", tiny_dataset, "--split", "validation", "--out", tmp_path / "e"
    )
    assert result.exit_code != 0
    assert (
        "15 of the 15 images to evaluate are images the model was trained on (0 train, 15 validation"
        in str(result.exception)
    )
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_a_few_training_images_hidden_among_new_ones_are_counted(trained_model, tiny_dataset, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_dataset / "test", mixed)
    for source in sorted((tiny_dataset / "train" / "happy").glob("*.png"))[:2]:
        shutil.copy(source, mixed / "happy" / f"renamed_{source.name}")  # another name, the same bytes
    result = evaluate("--model", trained_model, "--data", mixed, "--split", "all", "--out", tmp_path / "e")
    assert "2 of the 17 images to evaluate are images the model was trained on (2 train, 0 validation" in str(
        result.exception
    )

    result = evaluate(
        "--model",
        trained_model,
        "--data",
        mixed,
        "--split",
        "all",
        "--allow-overlap",
        "--out",
        tmp_path / "e",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["overlap_with_training"]["images"] == 2 and metrics["num_images"] == 17
    assert "were in the model's training data" in result.output


def test_disjoint_images_are_evaluated_without_complaint(trained_model, tiny_dataset, tmp_path):
    result = evaluate(
        "--model", trained_model, "--data", tiny_dataset, "--split", "test", "--out", tmp_path / "e"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["overlap_with_training"] == {"images": 0, "train": 0, "validation": 0, "examples": []}
    assert "warning" not in result.output


def test_with_no_data_the_model_is_scored_on_its_recorded_held_out_split(
    trained_model, tiny_dataset, tmp_path
):
    result = evaluate(
        "--model", trained_model, "--out", tmp_path / "e", env={"EMOTIONLAB_DATA": str(tiny_dataset)}
    )
    assert result.exit_code == 0, result.output
    assert "held-out test split: 15 images" in result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["num_images"] == 15 and metrics["overlap_with_training"]["images"] == 0


def test_a_held_out_split_whose_files_changed_is_refused(trained_model, tiny_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    victim = min((copy / "test" / "sad").glob("*.png"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(
        EmotionlabError, match="15 held-out test images recorded in the model file, 0 are missing and 1 have"
    ):
        held_out_samples(read_metadata(trained_model), copy)


def test_a_model_without_a_record_is_evaluated_with_a_note(trained_model, tiny_dataset, tmp_path):
    bare = resave_model_file(trained_model, tmp_path / "bare.safetensors", lambda meta: meta.pop("dataset"))
    assert training_overlap(read_metadata(bare), scan_image_folder(tiny_dataset).samples) is None
    result = evaluate(
        "--model", bare, "--data", tiny_dataset, "--split", "validation", "--out", tmp_path / "e"
    )
    assert result.exit_code == 0, result.output
    assert "does not record its training images" in result.output


def test_evaluate_out_inside_the_dataset_is_refused(trained_model, tiny_dataset):
    result = evaluate("--model", trained_model, "--data", tiny_dataset, "--out", tiny_dataset / "eval")
    assert "is inside the dataset root" in str(result.exception)
    assert not (tiny_dataset / "eval").exists()


def test_the_shipped_model_records_the_canonical_split():
    from emotionlab.inference import default_model_path

    record = read_metadata(default_model_path())["dataset"]
    assert record["source"] == "manifest:seed-emotions.csv"
    assert len(record["test"]) == 109 and len(record["train"]) == 842 and len(record["validation"]) == 106
    tested = {digest for _, _, digest in record["test"]}
    assert not tested & (set(record["train"]) | set(record["validation"]))
