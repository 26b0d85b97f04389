"""One meaning per option name (`--model` is a model file, `--arch` an architecture, `--output` a file), and
docs/cli.md is what the program prints."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emotionlab.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _command(path: str):
    command = typer.main.get_command(app)
    for word in path.split():
        command = command.commands[word]
    return command


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotionlab", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_train_refuses_model_since_model_means_a_model_file(tmp_path):
    # --model names a model file in every command; train builds an architecture (--arch) and starts from a model
    # file with --init-from, so `train --model` is refused rather than silently read as one or the other.
    names = {name for param in _command("train").params for name in param.opts}
    assert "--model" not in names and {"--arch", "--init-from"} <= names
    result = CliRunner().invoke(app, ["train", "--model", "seed_cnn", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--model" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("path", ["data split", "data faces", "data audit", "augment-preview"])
def test_dataset_commands_take_the_dataset_as_data_not_as_an_argument(path):
    command = _command(path)
    assert "--data" in {name for param in command.params for name in param.opts}
    assert not [param for param in command.params if param.param_type_name == "argument"]


@pytest.mark.slow  # `emotionlab` processes
def test_predict_takes_the_record_format_from_the_output_extension(tiny_dataset, tmp_path):
    image = next((tiny_dataset / "test" / "happy").iterdir())
    output = tmp_path / "records.csv"
    result = _run("predict", str(image), "--no-detect", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert output.read_text().splitlines()[0].startswith("path,")
    refused = _run("predict", str(image), "--no-detect", "--output", str(tmp_path / "records.txt"))
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "records.txt" in refused.stderr


def test_docs_cli_page_is_what_the_program_prints():
    script = runpy.run_path(str(ROOT / "scripts" / "cli_reference.py"))
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == script["render"](), (
        "docs/cli.md is out of date: run python scripts/cli_reference.py"
    )
