"""Long commands show their progress (a bar on a terminal, lines in a log) and Ctrl+C says what was kept and
how to go on, exits 130, and the run continues from there."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emotionlab.progress import progress
from emotionlab.synthetic import make_face


@pytest.fixture(autouse=True)
def _ctrl_c_reaches_children():
    """Ctrl+C as in a terminal. A test run started in the background (`cmd &`, nohup) ignores SIGINT and its
    children would inherit that; with a handler here, the children start with the default (Python's
    KeyboardInterrupt)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emotionlab", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the command never got that far"
        time.sleep(0.2)


def test_progress_in_a_log_is_a_line_per_tenth_not_a_bar():
    log = io.StringIO()
    assert list(progress(range(50), description="cropping", stream=log)) == list(range(50))
    lines = log.getvalue().splitlines()
    counts = [line.split(":")[1].split()[0] for line in lines]
    assert counts == ["0/50", *(f"{n}/50" for n in range(5, 50, 5)), "50/50"]
    assert "\x1b" not in log.getvalue()  # no terminal control codes in a log file


@pytest.fixture
def many_faces(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(400):
        make_face("happy", rng, size=48).save(folder / f"face_{index:03d}.png")
    return folder


@pytest.mark.slow  # `emotionlab predict` processes interrupted and resumed
def test_ctrl_c_in_predict_keeps_the_records_and_resume_finishes_the_rest(many_faces, tmp_path):
    output = tmp_path / "records.jsonl"
    command = ["predict", str(many_faces), "--no-detect", "--batch-size", "8", "--output", str(output)]
    process = _start(*command, cwd=tmp_path)
    _wait_for(lambda: output.is_file() and output.stat().st_size > 0, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    written = output.read_text().splitlines()
    last = stderr.strip().splitlines()[-1]
    assert last == (
        f"interrupted: {len(written)} record(s) written to {output}; the same command with --resume "
        "goes on from there"
    )
    assert "predicting: 0/400" in stderr  # progress lines, since stderr is not a terminal here
    assert 0 < len(written) < 400

    finished = subprocess.run(
        [sys.executable, "-m", "emotionlab", *command, "--resume"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    paths = [json.loads(line)["path"] for line in output.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in many_faces.iterdir())  # each image once, none lost


@pytest.mark.slow
def test_ctrl_c_in_training_says_how_to_resume_and_the_resumed_run_finishes(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    process = _start(
        "train",
        "--data",
        str(tiny_dataset),
        "--image-size",
        "48",
        "--epochs",
        "40",
        "--out",
        str(run),
        cwd=tmp_path,
    )
    metrics, checksum = run / "metrics.csv", run / "checkpoints" / "last.ckpt.sha256"
    _wait_for(checksum.is_file, process)  # the first epoch's checkpoint (its checksum comes last)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "epoch 1/40: train/loss" in stderr  # one line per epoch in a log
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and last.endswith(
        f"continue with: emotionlab train --resume {run}"
    )
    finished = int(last.split("interrupted: ")[1].split(" epoch(s) kept in ")[0])
    assert finished >= 1

    resumed = subprocess.run(
        [sys.executable, "-m", "emotionlab", "train", "--resume", str(run), "--epochs", str(finished + 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"epoch {finished + 1}/{finished + 1}:" in resumed.stderr
    assert [int(line.split(",")[0]) for line in metrics.read_text().splitlines()[1:]] == list(
        range(finished + 1)
    )
    assert (run / "model.safetensors").is_file()
