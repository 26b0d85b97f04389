"""One meaning per option name: the new spellings work, the old ones still work for one release with a
one-line note, `--help` shows only the new ones, and docs/cli.md is what the program prints."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.cli.renamed import POSITIONAL_DATA, RENAMED

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


@pytest.mark.parametrize("path", sorted(set(RENAMED) | POSITIONAL_DATA))
def test_help_lists_only_the_new_spellings(path):
    command = _command(path)
    names = {name for param in command.params for name in [*param.opts, *param.secondary_opts]}
    for old, new in RENAMED.get(path, {}).items():
        assert old not in names and new in names, (path, old, new)
    if path in POSITIONAL_DATA:
        assert "--data" in names
        assert not [p for p in command.params if p.param_type_name == "argument"]


@pytest.mark.slow  # `emotionlab` processes
def test_old_split_spelling_writes_the_same_manifest_as_the_new_one_and_says_what_changed(
    tiny_dataset, tmp_path
):
    new = _run("data", "split", "--data", str(tiny_dataset), "--output", str(tmp_path / "new.csv"))
    old = _run("data", "split", str(tiny_dataset), "--out", str(tmp_path / "old.csv"))
    assert new.returncode == 0 and old.returncode == 0, old.stderr
    assert (tmp_path / "new.csv").read_text() == (tmp_path / "old.csv").read_text()
    assert "note:" not in new.stderr
    notes = [line for line in old.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and "--output" in notes[1] and "--data" in notes[0]


@pytest.mark.slow  # `emotionlab` processes
def test_the_dataset_can_follow_other_options_in_the_old_positional_form(tiny_dataset, tmp_path):
    result = _run("data", "audit", "--out", str(tmp_path / "audit"), str(tiny_dataset))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "audit" / "audit.json").read_text())["summary"]
    assert summary["root"] == str(tiny_dataset) and summary["num_files"] == 100


def test_train_model_option_still_names_the_architecture(tmp_path):
    # Both spellings reach the architecture check (before any data is read): same one-line error.
    new = CliRunner().invoke(app, ["train", "--arch", "no_such_net", "--out", str(tmp_path / "a")])
    old = CliRunner().invoke(app, ["train", "--model", "no_such_net", "--out", str(tmp_path / "b")])
    assert new.exit_code != 0 and old.exit_code != 0
    assert "no_such_net" in str(new.exception) and str(new.exception) == str(old.exception)


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


def test_an_explicit_data_option_wins_and_a_separator_is_respected():
    split = _command("data split")
    from emotionlab.cli.renamed import rewrite_args

    # --data=DS given: a stray positional is left for the parser to refuse, not taken as the dataset
    assert rewrite_args("data split", split, ["--data=ds", "extra", "--output", "z.csv"], notes=False) == [
        "--data=ds", "extra", "--output", "z.csv",
    ]  # fmt: skip
    assert rewrite_args("data split", split, ["--output", "z.csv", "--", "ds"], notes=False) == [
        "--output", "z.csv", "--data", "ds",
    ]  # fmt: skip
    train = _command("train")
    assert rewrite_args("train", train, ["--model", "x", "--", "--model"], notes=False)[-2:] == [
        "--",
        "--model",
    ]
