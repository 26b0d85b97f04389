"""No single file stops a command: a corpus of awkward files (tests/awkward_corpus.py) through `predict`
(one process and two workers), `data audit`, `data faces`, `evaluate` and the `train --faces` preparation.

Each command runs in a subprocess, so a crash (a segfault in native code) fails the test instead of taking
pytest down. Every command must exit 0, give one error record (or line) per bad file and a result for every
good one, and leave the user's folder exactly as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from awkward_corpus import ANY, ERROR, OK, snapshot, write_corpus
from helpers import assert_same_records, save_tiny_model

from emotionlab.synthetic import make_face

FACES = {"detector": "hog", "margin": 0.1, "align": False, "detector_model": None}
TIMEOUT = 240


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    """`emotionlab ARGS` in a fresh process (one thread each: the machine has two cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "emotionlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("awkward") / "photos"
    return folder, write_corpus(folder)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "hog.safetensors", faces=FACES)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


def listed(kinds: dict) -> dict:
    """The corpus entries a folder scan picks up: everything but the directory named .jpg."""
    return {name: kind for name, kind in kinds.items() if name != "folder.jpg"}


def check_outcomes(outcomes: dict[str, bool], kinds: dict) -> None:
    """``outcomes``: file name -> whether it got an error; each must match its kind's expectation."""
    wrong = {
        name: ("error" if failed else "ok", kinds[name].expect, kinds[name].what)
        for name, failed in outcomes.items()
        if kinds[name].expect != ANY and failed != (kinds[name].expect == ERROR)
    }
    assert not wrong, wrong


def test_the_corpus_has_at_least_50_kinds(corpus):
    _, kinds = corpus
    assert len(kinds) >= 50
    assert {kind.expect for kind in kinds.values()} == {OK, ERROR, ANY}


@pytest.mark.slow  # `predict` processes on 80+ files
def test_predict_gives_one_record_per_file_in_one_process_and_with_workers(corpus, model, tmp_path):
    folder, kinds = corpus
    before = snapshot(folder)
    records = {}
    for workers in (0, 2):
        output = tmp_path / f"records_{workers}.jsonl"
        result = run("predict", folder, "--model", model, "--format", "jsonl", "-o", output,
                     "--workers", workers, cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        lines = output.read_text(encoding="utf-8").splitlines()
        records[workers] = [json.loads(line) for line in lines]
        names = [Path(record["path"]).name for record in records[workers]]
        assert sorted(names) == sorted(listed(kinds)), "one record per file, each file once"
        check_outcomes({Path(r["path"]).name: "error" in r for r in records[workers]}, kinds)
        assert all("\n" not in r.get("error", "") for r in records[workers])  # one line each
    # workers change nothing: the same records, probabilities equal up to float noise (a face is classified in
    # a batch of other images' faces in one process, alone in a worker: the last rounded digit may differ)
    assert_same_records(records[2], records[0])
    assert snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no crash note left


def test_data_audit_lists_every_file_and_says_why_the_bad_ones_are_bad(corpus, tmp_path):
    folder, kinds = corpus
    before = snapshot(folder)
    result = run("data", "audit", "--data", folder, "--out", tmp_path / "audit", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "audit" / "audit.json").read_text(encoding="utf-8"))
    files = {record["path"]: record for record in report["files"]}
    assert sorted(files) == sorted(listed(kinds))
    check_outcomes({name: not record["readable"] for name, record in files.items()}, kinds)
    assert all(record["reason"] for record in files.values() if not record["readable"])
    assert snapshot(folder) == before


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    """A dataset whose `happy` training class is the corpus and whose other folders hold plain faces."""
    root = tmp_path_factory.mktemp("awkward_dataset") / "data"
    kinds = write_corpus(root / "train" / "happy")
    for split in ("train", "validation"):
        for label in ("happy", "sad"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for index in range(3):
                make_face(label, np.random.default_rng(index), 64).save(
                    root / split / label / f"plain_{label}_{index}.png"
                )
    return root, kinds


@pytest.mark.slow  # real detectors on 80+ files
def test_data_faces_writes_a_row_per_image_and_a_line_per_unreadable_one(dataset, tmp_path):
    import csv

    root, kinds = dataset
    before = snapshot(root)
    out = tmp_path / "faces.csv"
    result = run("data", "faces", "--data", root, "--output", out, "--detector", "hog", "--cache-dir", tmp_path / "crops",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with out.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    corpus_rows = {
        row["path"].removeprefix("train/happy/"): row
        for row in rows
        if row["path"].startswith("train/happy/") and "plain_" not in row["path"]
    }
    assert set(corpus_rows) == set(listed(kinds))  # every entry with an image name has its row
    check_outcomes({name: row["face_detector"] == "" for name, row in corpus_rows.items()}, kinds)
    failed = sum(1 for row in corpus_rows.values() if row["face_detector"] == "")
    assert result.stdout.count("  unreadable: ") == failed  # and its line
    assert snapshot(root) == before


@pytest.mark.slow
def test_evaluate_skips_each_bad_image_with_its_reason(dataset, model, tmp_path):
    root, kinds = dataset
    before = snapshot(root)
    out = tmp_path / "evaluation"
    result = run("evaluate", "--model", model, "--data", root, "--split", "all", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    good = sum(1 for kind in listed(kinds).values() if kind.expect == OK)
    assert metrics["num_images"] >= good + 9  # every good corpus image plus the nine faces
    assert all(item["reason"] for item in metrics["skipped"])
    assert snapshot(root) == before


@pytest.mark.slow  # real detectors on 80+ files
def test_face_preparation_for_training_keeps_good_images_and_skips_bad_ones(dataset, tmp_path):
    from emotionlab.data.dataset import load_samples, prepare_face_samples

    root, kinds = dataset
    sample_set = load_samples(root)  # decodes every file: the unreadable ones are skipped here
    prepared = prepare_face_samples(sample_set, FACES, image_size=48, workers=2)
    kept = {sample.path.name for sample in prepared.samples if sample.path.parent == root / "train" / "happy"}
    kept -= {f"plain_happy_{index}.png" for index in range(3)}
    check_outcomes({name: name not in kept for name in listed(kinds)}, kinds)
    assert len(prepared.samples) + len(prepared.skipped) == len(sample_set.samples) + len(sample_set.skipped)


CRASHER = """
import os, signal


def crash_on_three(item):
    if item == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    if item == 5:
        raise ValueError("five\\nis bad")
    return item * 10
"""


def test_isolated_map_survives_a_dying_worker_and_keeps_the_order(tmp_path, monkeypatch):
    import importlib

    from emotionlab.isolation import isolated_map

    (tmp_path / "crasher_module.py").write_text(CRASHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("crasher_module")
    results = list(
        isolated_map(module.crash_on_three, range(12), workers=2, on_error=lambda item, why: f"{item}: {why}")
    )
    assert results[:3] == [0, 10, 20] and results[4] == 40 and results[6:] == [60, 70, 80, 90, 100, 110]
    assert results[3] == "3: worker died (killed by SIGSEGV)"
    assert results[5] == "5: ValueError: five is bad"


@pytest.mark.slow
def test_train_with_faces_on_the_awkward_dataset_finishes(dataset, tmp_path):
    from emotionlab.data.dataset import load_samples, prepare_face_samples

    root, _ = dataset
    train = prepare_face_samples(load_samples(root), {**FACES, "detector": "hog"}, image_size=48).split(
        "train"
    )
    # A last batch of one image stops BatchNorm (a training matter, not an awkward file): avoid it here.
    batch_size = next(size for size in range(8, 16) if len(train) % size != 1)
    result = run("train", "--data", root, "--detect", "--detector", "hog", "--epochs", "1", "--image-size", "48",
                 "--batch-size", batch_size, "--out", tmp_path / "run", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
