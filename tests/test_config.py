"""Typed configuration: every bad value is one line before any data is read; old run configs still load."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.config import ConfigError, RunConfig, TrainConfig, TransferOptions, run_config_from_dict

runner = CliRunner()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--optimizer", "rmsprop"], "'rmsprop' is not one of"),
        (["--augment", "heavy"], "'heavy' is not one of"),
        (["--scheduler", "cosin"], "'cosin' is not one of"),
        (["--recipe", "distill"], "'distill' is not one of"),
        (["--class-balance", "wieght"], "'wieght' is not one of"),
        (["--epochs", "0"], "epochs: 0 must be at least 1"),
        (["--image-size", "0"], "image_size: 0 must be 16-1024 pixels"),
        (["--lr", "-1"], "learning_rate: -1.0 must be greater than 0"),
        (["--ferplus-classes", "7"], "ferplus_classes: 7 is not one of 5, 8"),
        (["--mix-ratio", "0", "--mix-ferplus", "x"], "mix ratio: 0.0 must be greater than 0"),
    ],
)
def test_bad_train_options_fail_in_one_line_before_the_data_is_read(option, message, tmp_path):
    # The dataset does not exist: the option error must come first.
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), *option])
    assert result.exit_code != 0
    text = result.output + str(result.exception or "")
    assert message in " ".join(text.split())
    assert "missing" not in text  # the data was never looked at
    assert "Traceback" not in result.output


def test_python_api_refuses_typos_instead_of_ignoring_them():
    with pytest.raises(ConfigError, match="scheduler: 'cosin' is not one of none, cosine"):
        TrainConfig(scheduler="cosin")
    with pytest.raises(ConfigError, match="unknown option 'head_hiden'"):
        run_config_from_dict({"train": {"extra": {"head_hiden": 64}}})
    with pytest.raises(ConfigError, match="unknown option 'head_hiden'"):
        run_config_from_dict({"train": {"transfer": {"head_hiden": 64}}})


def test_configs_of_older_runs_with_extra_still_load_into_typed_options():
    config = run_config_from_dict(
        {"train": {"recipe": "transfer", "extra": {"head_hidden": 64, "mix_ferplus": "/f", "mix_ratio": 0.5}}}
    )
    assert config.train.transfer == TransferOptions(head_hidden=64)
    assert config.train.mix.ferplus == "/f" and config.train.mix.ratio == 0.5


def test_a_saved_config_round_trips(tmp_path):
    from emotionlab.config import load_config, save_config

    config = RunConfig(train=TrainConfig(recipe="transfer", transfer=TransferOptions(head_hidden=8)))
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.slow  # real training
def test_resume_with_epochs_extends_a_run_from_any_directory(tiny_dataset, tmp_path, monkeypatch):
    from emotionlab.config import load_config

    monkeypatch.chdir(tiny_dataset.parent)  # a relative --data, then resumed from elsewhere
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        tiny_dataset.name,
        "--image-size",
        "48",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert runner.invoke(app, args).exit_code == 0
    saved = load_config(out / "config.yaml")
    assert saved.data.root == str(tiny_dataset.resolve())
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + two epochs: the second was added by the resume
    assert load_config(out / "config.yaml").train.epochs == 2


def test_a_last_training_batch_of_one_image_does_not_stop_training(tmp_path):
    from emotionlab.config import DataConfig
    from emotionlab.synthetic import write_dataset
    from emotionlab.training.train import train

    # 5 classes x 7 training images = 35 = 2 x 17 + 1: the last batch would hold one image.
    data = write_dataset(tmp_path / "d", per_class=10, splits={"train": 0.7, "validation": 0.3}, size=48)
    config = RunConfig(
        data=DataConfig(root=str(data), image_size=48),
        train=TrainConfig(epochs=1, batch_size=17),
        out=str(tmp_path / "run"),
    )
    assert train(config, progress=False).model_path.is_file()
