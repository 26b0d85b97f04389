"""Likely label errors: out-of-fold predictions ranked by confident learning, written for a second look."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import run_cli, save_model, tree_state

from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.suspects import (
    SuspectReport,
    find_suspects,
    out_of_fold_probabilities,
    rank_suspects,
    write_suspects,
)
from emotionlab.labeling.ordering import read_review
from emotionlab.synthetic import write_dataset

CLASSES = ["angry", "happy", "sad"]


def clustered(per_class: int = 40, seed: int = 0):
    """Features in three well-separated clusters, one per class; labels as given (some flipped later)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(len(CLASSES), 8))
    labels = [name for name in CLASSES for _ in range(per_class)]
    features = np.stack([centres[CLASSES.index(name)] + rng.normal(size=8) for name in labels])
    return features, labels


def test_photos_filed_under_the_wrong_class_are_the_top_suspects():
    features, labels = clustered()
    flipped = {3: "happy", 50: "sad", 95: "angry"}  # a laughing face filed as angry, and two more
    for index, wrong in flipped.items():
        labels[index] = wrong
    groups = [f"single:{index}" for index in range(len(labels))]
    probabilities = out_of_fold_probabilities(features, labels, groups, CLASSES, folds=5, seed=0)
    ranked, quality = rank_suspects(probabilities, labels, CLASSES)
    # The three photos whose given label is least likely are exactly the flipped ones ...
    assert set(np.argsort(quality)[:3].tolist()) == set(flipped)
    # ... confident learning flags them first (per-class thresholds may leave a borderline one out) ...
    assert set(ranked[:2]) <= set(flipped) and len(set(ranked) & set(flipped)) >= 2
    assert len(ranked) <= 6  # ... and hardly anything else on clean clusters


def test_ranking_never_forks_this_process(monkeypatch):
    """A fork of a process with other threads running (ONNX Runtime's, torch's, Ray's) can hang on a lock: the
    ranking must run here, never in a forked pool (cleanlab's default; it hung the test suite once)."""
    import multiprocessing

    def no_pool(*args, **kwargs):
        raise AssertionError("the suspects ranking started a multiprocessing pool")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    features, labels = clustered()
    labels[3] = "happy"
    groups = [f"single:{index}" for index in range(len(labels))]
    probabilities = out_of_fold_probabilities(features, labels, groups, CLASSES, folds=5, seed=0)
    ranked, _ = rank_suspects(probabilities, labels, CLASSES)
    assert ranked[0] == 3


def test_too_few_photos_of_a_class_for_the_folds_is_one_clear_error():
    features, labels = clustered(per_class=3)
    with pytest.raises(
        EmotionlabError, match="5-fold out-of-fold predictions need at least 5 images of every class"
    ):
        out_of_fold_probabilities(features, labels, labels, CLASSES, folds=5, seed=0)


@pytest.fixture(scope="module")
def synthetic_suspects(tmp_path_factory):
    root = tmp_path_factory.mktemp("suspects")
    data = write_dataset(root / "data", per_class=12, splits={"train": 0.75, "test": 0.25}, size=48)
    model = save_model("fer_cnn", root / "model")
    return data, model, root


def test_the_report_is_a_table_a_gallery_and_a_csv_the_labeller_reopens(synthetic_suspects, tmp_path):
    data, model, _ = synthetic_suspects
    before = tree_state(data)
    report = find_suspects(data, model=model, folds=3, seed=0)
    assert isinstance(report, SuspectReport) and report.images == 60
    written = write_suspects(report, tmp_path / "audit")
    with open(written["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report.suspects)
    assert [row["rank"] for row in rows] == [str(n) for n in range(1, len(rows) + 1)]
    summary = json.loads(written["json"].read_text())["summary"]
    assert summary["images"] == 60 and summary["suspects"] == len(rows) and summary["folds"] == 3
    page = written["html"].read_text()
    assert "<h2>Gallery</h2>" in page and page.count("<figure>") == len(rows)
    assert "--review suspects.csv" in page
    if rows:
        review = read_review(written["csv"], [row["path"] for row in rows])
        assert [row[0] for row in review.rows] == [row["path"] for row in rows]
        assert review.labels == report.labels
    assert tree_state(data) == before  # the dataset is only read


def test_cli_audit_suspects_writes_next_to_the_audit_and_refuses_an_out_inside_the_data(synthetic_suspects):
    data, model, root = synthetic_suspects
    out = root / "audit"
    printed = run_cli(
        "data", "audit", "--data", data, "--out", out, "--suspects", "--suspects-model", model, "--folds", "3"
    )
    assert (
        (out / "audit.json").is_file()
        and (out / "suspects.csv").is_file()
        and (out / "suspects.html").is_file()
    )
    assert "among 60 photos" in printed and f"--review {out / 'suspects.csv'}" in printed
    with pytest.raises(EmotionlabError, match="inside the dataset root"):
        run_cli(
            "data", "suspects", "--data", data, "--out", data / "suspects", "--model", model, "--folds", "3"
        )
