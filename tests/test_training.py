"""Training: learns synthetic faces, writes a complete run folder, is deterministic, resumes after SIGKILL, scales out."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emotionlab.config import DataConfig, RunConfig, TrainConfig, load_config
from emotionlab.data.dataset import scan_image_folder
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.evaluate import evaluate_samples
from emotionlab.synthetic import write_dataset
from emotionlab.training.train import train

CLI = [sys.executable, "-m", "emotionlab"]


def test_run_folder_holds_config_metrics_checkpoints_and_model(trained_run):
    assert load_config(trained_run / "config.yaml").train.model == "seed_cnn"
    with (trained_run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(rows[0])
    assert all(0 <= float(r["val_acc"]) <= 1 for r in rows)
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert (trained_run / "model.safetensors").is_file()


def test_refuses_to_overwrite_an_existing_run(trained_run):
    config = RunConfig(data=DataConfig(), train=TrainConfig(), out=str(trained_run))
    with pytest.raises(EmotionlabError, match="--resume"):
        train(config, progress=False)


@pytest.mark.slow
def test_a_few_cpu_epochs_beat_chance_clearly_on_held_out_faces(tmp_path):
    root = write_dataset(
        tmp_path / "faces", per_class=60, splits={"train": 0.7, "validation": 0.15, "test": 0.15}, seed=3
    )
    config = RunConfig(
        data=DataConfig(root=str(root), image_size=48),
        train=TrainConfig(epochs=10, batch_size=16, learning_rate=1e-3, seed=0),
        out=str(tmp_path / "run"),
    )
    result = train(config, progress=False)
    metrics = evaluate_samples(result.model_path, scan_image_folder(root).split("test"))
    # Chance is 20% on five balanced classes; the held-out test split was never seen in training.
    assert metrics["accuracy"] >= 0.6, metrics["accuracy"]


def _small_config(root: Path, out: Path, epochs: int) -> list[str]:
    return [
        "train",
        "--data",
        str(root),
        "--image-size",
        "48",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--seed",
        "5",
        "--no-progress",
        "--out",
        str(out),
    ]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_same_seed_same_result_and_resume_after_sigkill_matches(tiny_dataset, tmp_path):
    epochs = 4
    reference = tmp_path / "reference"
    subprocess.run([*CLI, *_small_config(tiny_dataset, reference, epochs)], capture_output=True, check=True)
    again = tmp_path / "again"
    subprocess.run([*CLI, *_small_config(tiny_dataset, again, epochs)], capture_output=True, check=True)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            _state(reference / "checkpoints/last.ckpt").values(),
            _state(again / "checkpoints/last.ckpt").values(),
            strict=True,
        )
    )

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*CLI, *_small_config(tiny_dataset, killed, epochs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = killed / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # header + two epochs
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()

    subprocess.run([*CLI, "train", "--resume", str(killed), "--no-progress"], capture_output=True, check=True)
    resumed, uninterrupted = (
        _state(killed / "checkpoints/last.ckpt"),
        _state(reference / "checkpoints/last.ckpt"),
    )
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    model_a, model_b = load_file(killed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    epochs_logged = [line.split(",")[0] for line in metrics.read_text().splitlines()[1:]]
    assert epochs_logged == [str(e) for e in range(epochs)]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_completes_with_sane_metrics(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    script = Path(sys.executable).with_name("emotionlab")
    command = [
        str(script),
        *_small_config(tiny_dataset, out, 2),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2
    assert all(0 < float(r["train_loss"]) < 10 and 0 <= float(r["val_acc"]) <= 1 for r in rows)
    assert (out / "model.safetensors").is_file()


def test_num_nodes_and_strategy_reach_the_lightning_trainer(tiny_dataset, tmp_path, monkeypatch):
    """`train --num-nodes 2 --strategy ddp` (one command per machine, e.g. under torchrun) builds Lightning's
    Trainer for two nodes; checked where the Trainer is built, without starting a multi-node run."""
    import lightning
    from typer.testing import CliRunner

    from emotionlab.cli import app

    class Built(Exception):
        pass

    seen = {}

    def trainer(**kwargs):
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr(lightning, "Trainer", trainer)
    options = ["--accelerator", "cpu", "--devices", "1", "--strategy", "ddp", "--num-nodes", "2"]
    result = CliRunner().invoke(app, [*_small_config(tiny_dataset, tmp_path / "run", 1), *options])
    assert isinstance(result.exception, Built), result.output
    assert (seen["num_nodes"], seen["strategy"], seen["devices"]) == (2, "ddp", 1)
    assert load_config(tmp_path / "run" / "config.yaml").train.num_nodes == 2  # a resumed run keeps it


# ---- damaged checkpoints and outputs inside the dataset --------------------------------------------------


def _copy_run(trained_run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _resume(run: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "train", "--resume", str(run), "--no-progress", *options],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_every_checkpoint_has_its_checksum_beside_it(trained_run):
    import hashlib

    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = trained_run / "checkpoints" / name
        listed = (trained_run / "checkpoints" / f"{name}.sha256").read_text().split()
        assert listed == [hashlib.sha256(checkpoint.read_bytes()).hexdigest(), name]


@pytest.mark.slow  # real training (one more epoch)
def test_an_intact_run_resumes_from_its_verified_checkpoint(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    (run / "model.safetensors").unlink()
    result = _resume(run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "model.safetensors").is_file()


@pytest.mark.slow  # a `train --resume` process
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_last_checkpoint_stops_resume_with_one_line(trained_run, tmp_path, damage):
    run = _copy_run(trained_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
    else:
        del data[len(data) // 3 :]
    last.write_bytes(bytes(data))
    result = _resume(run)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(last) in lines[0] and "damaged or truncated" in lines[0] and "delete it" in lines[0]


@pytest.mark.slow  # a `train --resume` process
def test_a_checkpoint_whose_checksum_was_deleted_is_refused_unless_trusted(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "last.ckpt.sha256").unlink()  # deleted, or as an older emotionlab left it
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit: nothing but the checksum could tell
    last.write_bytes(bytes(data))
    result = _resume(run)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no checksum beside it" in errors[0] and "--trust-checkpoint" in errors[0]
    assert not (run / "checkpoints" / "last.ckpt.sha256").exists()  # refusing records nothing


@pytest.mark.slow  # a `train --resume` process
def test_a_truncated_checkpoint_trusted_without_checksum_is_still_one_line(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "last.ckpt.sha256").unlink()
    last.write_bytes(last.read_bytes()[:5000])
    result = _resume(run, "--trust-checkpoint")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot read the checkpoint" in errors[0]


@pytest.mark.parametrize("killed_at_write", [2, 3])  # 2: before the new checkpoint's rename, 3: after it
def test_a_checkpoint_write_killed_midway_still_verifies(tmp_path, monkeypatch, killed_at_write):
    from emotionlab.training import callbacks

    io = callbacks.ChecksummedCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)
    real_write, calls = callbacks.write_atomic, []

    def write_then_die(target, write):
        calls.append(target)
        if len(calls) == killed_at_write:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point happens
        real_write(target, write)

    monkeypatch.setattr(callbacks, "write_atomic", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.setattr(callbacks, "write_atomic", real_write)
    callbacks.verify_checkpoint(path)
    assert callbacks.load_checkpoint(path)["epoch"] == (1 if killed_at_write == 2 else 2)
    io.remove_checkpoint(path)
    assert not path.exists() and not callbacks.checksum_path(path).exists()


def test_train_out_inside_the_dataset_is_refused(tiny_dataset):
    config = RunConfig(
        data=DataConfig(root=str(tiny_dataset), image_size=48),
        train=TrainConfig(epochs=1),
        out=str(tiny_dataset / "run"),
    )
    with pytest.raises(EmotionlabError, match="inside the dataset root"):
        train(config, progress=False)
    assert not (tiny_dataset / "run").exists()


def test_augment_preview_out_inside_the_dataset_is_refused(tiny_dataset):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    result = CliRunner().invoke(
        app, ["augment-preview", "--data", str(tiny_dataset), "--output", str(tiny_dataset / "grid.png")]
    )
    assert "inside the dataset root" in str(result.exception)
    assert not (tiny_dataset / "grid.png").exists()
