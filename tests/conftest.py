"""Shared fixtures: synthetic datasets made on the fly and one small trained model for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emotionlab.synthetic import write_dataset

SPLITS = {"train": 0.7, "validation": 0.15, "test": 0.15}
SHARED_SEED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "seed-emotions"


def pytest_configure(config):
    # Keep tests on one thread per process: stable and fast on a 2-core CI machine.
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """5 classes x 20 synthetic faces under train/validation/test (14/3/3 per class)."""
    return write_dataset(
        tmp_path_factory.mktemp("tiny") / "faces", per_class=20, splits=SPLITS, size=64, seed=1
    )


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory) -> Path:
    """A seed_cnn run folder trained for two epochs on ``tiny_dataset`` (48 px): enough to exercise the tools."""
    from emotionlab.config import DataConfig, RunConfig, TrainConfig
    from emotionlab.training.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = RunConfig(
        data=DataConfig(root=str(tiny_dataset), image_size=48),
        train=TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3),
        out=str(out),
    )
    train(config, progress=False)
    return out


@pytest.fixture(scope="session")
def trained_model(trained_run) -> Path:
    return trained_run / "model.safetensors"


def seed_data_or_skip() -> Path:
    root = Path(os.environ.get("EMOTIONLAB_DATA", SHARED_SEED))
    if not root.is_dir():
        pytest.skip(f"seed-emotions dataset not found at {root} (set EMOTIONLAB_DATA)")
    return root
