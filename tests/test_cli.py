"""The command line end to end on a tiny dataset: train, evaluate, predict, models, and one-line errors."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.labels import EMOTIONS

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.mark.slow  # real training
def test_train_evaluate_predict_end_to_end(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    result = invoke(
        "train",
        "--data",
        tiny_dataset,
        "--image-size",
        "48",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
        "--out",
        run,
    )
    assert result.exit_code == 0, result.output
    assert "model:" in result.output and (run / "model.safetensors").is_file()

    out = tmp_path / "eval"
    result = invoke(
        "evaluate",
        "--model",
        run / "model.safetensors",
        "--data",
        tiny_dataset,
        "--split",
        "test",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "loss", "macro_f1", "per_class", "confusion_matrix", "labels"} <= set(metrics)
    assert metrics["labels"] == list(EMOTIONS)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == metrics["num_images"] == 15
    assert [metrics["per_class"][label]["support"] for label in EMOTIONS] == list(matrix.sum(axis=1))
    for name in ("confusion_counts", "confusion_percent", "training_curves", "misclassified"):
        if name == "misclassified" and metrics["accuracy"] == 1.0:
            continue
        assert Image.open(out / f"{name}.png").size[0] > 200

    result = invoke(
        "predict", tiny_dataset / "test", "--model", run / "model.safetensors", "--format", "jsonl"
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 15
    assert all(
        set(r["probabilities"]) == set(EMOTIONS) and abs(sum(r["probabilities"].values()) - 1) < 1e-4
        for r in records
    )
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get) for r in records)


def test_predict_globs_csv_and_python_api_agree(trained_model, tiny_dataset):
    import emotionlab

    result = invoke(
        "predict",
        str(tiny_dataset / "test" / "*" / "happy_*.png"),
        "--model",
        trained_model,
        "--format",
        "csv",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3 and all(row["path"].endswith(".png") for row in rows)
    model = emotionlab.load_model(trained_model)
    record = model.predict(rows[0]["path"])
    assert record["label"] == rows[0]["label"]
    assert abs(record["probabilities"]["happy"] - float(rows[0]["happy"])) < 1e-3
    assert model.predict(Image.open(rows[0]["path"]))["label"] == record["label"]


def test_evaluation_percentages_rows_sum_to_100(trained_model, tiny_dataset, tmp_path):
    from emotionlab.evaluation.metrics import row_percentages

    invoke("evaluate", "--model", trained_model, "--data", tiny_dataset, "--split", "test", "--out", tmp_path)
    matrix = json.loads((tmp_path / "metrics.json").read_text())["confusion_matrix"]
    assert np.allclose(row_percentages(matrix).sum(axis=1), 100)


@pytest.mark.slow  # two `emotionlab` processes
def test_user_errors_are_one_line_without_traceback(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emotionlab",
            "train",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "nope" in result.stderr and "not found" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emotionlab",
            "predict",
            str(tmp_path / "missing.jpg"),
            "--model",
            str(tmp_path / "m.safetensors"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_models_lists_the_registry():
    result = invoke("models")
    assert result.exit_code == 0 and "seed_cnn" in result.stdout and "fer_cnn" in result.stdout
