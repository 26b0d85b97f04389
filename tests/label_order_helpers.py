"""Helpers for tests/test_label_order.py that a killed labeller script and the refit worker import too: only
numpy and emotionlab.labeling (importing the test module would pull in the whole CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotionlab.heads import fit_head
from emotionlab.labeling import LabelSession, scan_images
from emotionlab.labeling.ordering import FolderScores, Ordering

CLASSES = ["calm", "happy"]


def folder_scores(images, seed: int = 0) -> FolderScores:
    """Two clusters in feature space (even photos 'happy', odd 'calm') and made-up model probabilities."""
    rng = np.random.default_rng(seed)
    count = len(images.relpaths)
    truth = np.array([int(name.split(".")[0][3:]) % 2 == 0 for name in images.relpaths], dtype=float)
    features = (rng.normal(size=(count, 6)) + 2.0 * truth[:, None]).astype(np.float32)
    happy = rng.uniform(0.05, 0.95, size=count)
    probabilities = np.stack([1 - happy, happy], axis=1).astype(np.float32)
    return FolderScores(images.relpaths, features, probabilities, CLASSES, "tiny.safetensors", "d1g3st")


def truth_of(name: str) -> str:
    return "happy" if int(name.split(".")[0][3:]) % 2 == 0 else "calm"


def open_ordered(folder: Path, order: str = "uncertain", *, retrain_every=None, fit=None) -> LabelSession:
    images = scan_images(folder)
    ordering = Ordering(
        order, classes=CLASSES, scores=folder_scores(images), retrain_every=retrain_every, fit=fit
    )
    return LabelSession(
        folder, CLASSES, folder.parent / "photos.labels.jsonl", images=images, ordering=ordering
    )


def label_current(session: LabelSession) -> str:
    current = session.snapshot()["current"]
    session.label(current["id"], truth_of(current["name"]))
    return current["name"]


def queue(session: LabelSession) -> list[str]:
    return session.state.queue(session.images.relpaths)


def busy_fit(features, labels, *, classes, seed, signals: Path):
    """Runs in the refit worker: the real head, fitted again and again until the test says stop."""
    (signals / "started").touch()
    fits = 0
    while not (signals / "release").exists():
        predict = fit_head(np.tile(features, (40, 1)), list(labels) * 40, classes=classes, seed=seed)
        fits += 1
        (signals / "fits").write_text(str(fits))
    return predict
