"""Person-aware grouping: face embeddings (cached by content), person ids, `data audit --people`,
`data split --group-by person`, and cross-validation folds that keep people whole."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import seed_data_or_skip
from PIL import Image
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data import people
from emotionlab.data.manifest import read_manifest_rows
from emotionlab.data.people import (
    DEFAULT_PERSON_THRESHOLD,
    FaceEmbedder,
    FaceEmbedding,
    merged_group_ids,
    person_ids,
)
from emotionlab.experiments.crossval import assign_folds
from emotionlab.faces import FaceBox, FaceCropper


def noise_png(seed: int, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.NEAREST).save(buffer, "PNG")
    return buffer.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def person_vector(person: int) -> np.ndarray:
    vector = np.random.default_rng(1000 + person).normal(size=128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)  # strangers ~1.4 apart


@pytest.fixture
def fake_faces(monkeypatch):
    """Embeddings from file names: ``pK_...`` is person K (tiny per-photo noise), ``noface_...`` has no face."""

    def embed_files(paths, **kwargs):
        results = []
        for path in paths:
            match = re.match(r"p(\d+)_(\d+)", Path(path).name)
            if match is None:
                results.append(FaceEmbedding("", None, reason="no face found"))
                continue
            person, photo = int(match[1]), int(match[2])
            noise = np.random.default_rng(photo).normal(scale=0.005, size=128).astype(np.float32)
            results.append(FaceEmbedding("", person_vector(person) + noise))
        return results

    monkeypatch.setattr(people, "embed_files", embed_files)


def test_person_ids_join_close_faces_transitively_and_leave_others_alone():
    base = person_vector(1)
    step = np.zeros(128, np.float32)
    step[0] = 0.3
    embeddings = [base, base + step, base + 2 * step, person_vector(2), None, person_vector(2) + step / 10]
    ids = person_ids(["a", "b", "c", "d", "e", "f"], embeddings, threshold=0.4)
    # a-b and b-c are 0.3 apart (a-c 0.6): one person through b; d and f one person; e (no face) alone.
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] == ids[5] != ids[0]
    assert len(set(ids)) == 3 and ids[4] not in (ids[0], ids[3])
    assert person_ids(["a", "b", "c"], embeddings[:3], threshold=0.2) == ["p0001", "p0002", "p0003"]


def test_merged_groups_join_duplicates_and_people():
    paths = ["a", "b", "c", "d", "e"]
    duplicates = ["g1", "g1", "g2", "g3", "g4"]  # a and b are copies of one picture
    persons = ["p1", "p2", "p2", "p3", "p3"]  # b and c one person, d and e another
    merged = merged_group_ids(paths, duplicates, persons)
    assert merged[0] == merged[1] == merged[2] and merged[3] == merged[4] and merged[0] != merged[3]


def test_embeddings_are_cached_by_content_outside_the_dataset(tmp_path, monkeypatch):
    dataset = tmp_path / "data" / "happy"
    dataset.mkdir(parents=True)
    (dataset / "one.png").write_bytes(noise_png(1))
    (dataset / "same-bytes.png").write_bytes(noise_png(1))
    (dataset / "other.png").write_bytes(noise_png(2))
    before = tree(tmp_path / "data")
    # Any box will do for the cache's sake: dlib's landmarks and network run on whatever pixels they get.
    monkeypatch.setattr(FaceCropper, "detect_file", lambda self, path: FaceBox(8, 8, 48, 48, detector="test"))
    calls = []
    real_embed = people.embed_chip
    monkeypatch.setattr(people, "embed_chip", lambda chip: calls.append(1) or real_embed(chip))
    cache = tmp_path / "cache"
    embedder = FaceEmbedder(cache_dir=cache)
    first = embedder(dataset / "one.png")
    assert first.embedding is not None and first.embedding.shape == (128,) and len(calls) == 1
    again = FaceEmbedder(cache_dir=cache)(dataset / "same-bytes.png")  # a new process would see the same
    assert len(calls) == 1 and np.allclose(again.embedding, first.embedding, atol=1e-6)
    FaceEmbedder(cache_dir=cache)(dataset / "other.png")
    assert len(calls) == 2
    assert len(list(cache.rglob("*.face128.json"))) == 2
    assert tree(tmp_path / "data") == before


def test_an_image_with_no_face_has_no_embedding_and_is_a_person_of_its_own(tmp_path, monkeypatch):
    (tmp_path / "blank.png").write_bytes(noise_png(3))
    monkeypatch.setattr(FaceCropper, "detect_file", lambda self, path: None)
    result = FaceEmbedder(cache_dir=tmp_path / "cache")(tmp_path / "blank.png")
    assert result.embedding is None and result.reason == "no face found"
    assert person_ids(["x", "y"], [None, None]) == ["p0001", "p0002"]


def test_same_person_photos_are_close_and_strangers_are_not(tmp_path):
    """Real dlib on the seed photos (pairs looked at by eye in benchmarks/people.py)."""
    root = seed_data_or_skip()
    pairs = {
        ("test/surprised/test_surprised_9.png", "train/surprised/train_surprised_103.png"): True,
        ("test/angry/test_angry_2.png", "train/angry/train_angry_36.png"): True,
        ("train/sad/train_sad_42.jpg", "train/sad/train_sad_86.png"): False,
    }
    embedder = FaceEmbedder(cache_dir=tmp_path / "cache")
    for (first, second), same in pairs.items():
        if not (root / first).is_file() or not (root / second).is_file():
            pytest.skip(f"{first} or {second} not in {root}")
        a, b = embedder(root / first).embedding, embedder(root / second).embedding
        distance = float(np.linalg.norm(a - b))
        assert (distance < DEFAULT_PERSON_THRESHOLD) == same, (first, second, distance)


def make_people_dataset(root: Path) -> None:
    """train/validation/test folders; person 1 sits in train and test, person 2 in train and validation (and a
    copy of one of its photos in test), person 3 only in train; the rest are single photos or faceless."""
    seed = 0

    def put(relpath: str, data: bytes | None = None) -> None:
        nonlocal seed
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        seed += 1
        path.write_bytes(data if data is not None else noise_png(seed))

    put("train/happy/p1_1.png")
    put("test/sad/p1_2.png")
    put("train/sad/p2_3.png")
    put("validation/happy/p2_4.png")
    put("test/happy/p2_5.png", (root / "train/sad/p2_3.png").read_bytes())
    put("train/happy/p3_6.png")
    put("train/sad/p3_7.png")
    for split, count in (("train", 12), ("validation", 3), ("test", 3)):
        for label in ("happy", "sad"):
            for _ in range(count):
                put(f"{split}/{label}/p{100 + seed}_{seed}.png")
    put("train/happy/noface_1.png")
    put("test/happy/noface_copy.png", (root / "train/happy/noface_1.png").read_bytes())


def test_audit_people_reports_the_same_person_across_splits(tmp_path, fake_faces):
    root = tmp_path / "data"
    make_people_dataset(root)
    result = CliRunner().invoke(
        app, ["data", "audit", "--data", str(root), "--out", str(tmp_path / "audit"), "--people"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    summary = report["people"]["summary"]
    assert summary["people_spanning_splits"] == 2
    assert summary["test_sharing_person_with_train"] == 2  # p1_2 (another photo) and p2_5 (a copy)
    assert summary["test_beyond_duplicates"] == 1  # only p1_2: the copy is caught by the duplicate check
    assert summary["validation_sharing_person_with_train"] == 1 and summary["no_face"] == 2
    assert sorted(report["people"]["test_sharing_person_with_train"]) == [
        "test/happy/p2_5.png",
        "test/sad/p1_2.png",
    ]
    assert "same person across splits" in result.output and "test/sad/p1_2.png (test)" in result.output
    plain = CliRunner().invoke(app, ["data", "audit", "--data", str(root), "--out", str(tmp_path / "audit2")])
    assert "not checked (add --people)" in plain.output


def test_split_by_person_keeps_every_person_and_duplicate_group_in_one_split(tmp_path, fake_faces):
    root = tmp_path / "data"
    make_people_dataset(root)
    out = tmp_path / "people.csv"
    for seed in range(4):
        result = CliRunner().invoke(
            app,
            [
                "data",
                "split",
                "--data",
                str(root),
                "--output",
                str(out),
                "--group-by",
                "person",
                "--seed",
                str(seed),
            ],
        )
        assert result.exit_code == 0, (result.output, result.exception)
        rows = read_manifest_rows(out)
        splits_of = defaultdict(set)
        for row in rows:
            splits_of[("person", row["person"])].add(row["split"])
            splits_of[("group", row["group"])].add(row["split"])
        assert all(len(splits) == 1 for splits in splits_of.values())
        by_path = {row["path"]: row for row in rows}
        # p2's copy and p2's other photos share one merged group; the faceless copies stay together.
        assert by_path["test/happy/p2_5.png"]["group"] == by_path["validation/happy/p2_4.png"]["group"]
        assert by_path["train/happy/noface_1.png"]["group"] == by_path["test/happy/noface_copy.png"]["group"]
        assert (
            by_path["train/happy/noface_1.png"]["person"] != by_path["test/happy/noface_copy.png"]["person"]
        )
    assert "people: face distance < 0.4" in out.read_text().splitlines()[1]
    assert "people with several photos: 3" in result.output
    plain = tmp_path / "plain.csv"
    CliRunner().invoke(app, ["data", "split", "--data", str(root), "--output", str(plain)])
    assert "person" not in read_manifest_rows(plain)[0]


def test_cross_validation_folds_keep_people_whole(tmp_path):
    rows = []
    for person in range(40):
        for photo in range(1 + person % 3):
            rows.append(
                {
                    "path": f"{person}_{photo}.png",
                    "label": ("happy", "sad")[(person + photo) % 2],
                    "group": f"g{person:04d}",
                }
            )
    folds = assign_folds(rows, 5, seed=0)
    fold_of_group = defaultdict(set)
    for row, fold in zip(rows, folds, strict=True):
        fold_of_group[row["group"]].add(fold)
    assert all(len(found) == 1 for found in fold_of_group.values())


def test_committed_person_disjoint_seed_split_keeps_people_whole():
    """benchmarks/splits/seed-emotions-people.csv: each person and each duplicate group within one split."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "splits" / "seed-emotions-people.csv"
    if not path.is_file():
        pytest.skip("no person-disjoint seed split yet")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    splits_of = defaultdict(set)
    for row in rows:
        splits_of[row["person"]].add(row["split"])
        splits_of[row["group"]].add(row["split"])
    assert len(rows) == 1100 and all(len(splits) == 1 for splits in splits_of.values())


def test_a_failure_inside_dlib_costs_only_that_image(tmp_path, monkeypatch):
    (tmp_path / "odd.png").write_bytes(noise_png(4))
    monkeypatch.setattr(FaceCropper, "detect_file", lambda self, path: FaceBox(8, 8, 48, 48, detector="test"))

    def broken(image, box):
        raise RuntimeError("Unsupported image type\n  (dlib)")

    monkeypatch.setattr(people, "face_chip", broken)
    result = FaceEmbedder(cache_dir=tmp_path / "cache")(tmp_path / "odd.png")
    assert result.embedding is None and result.reason == "RuntimeError: Unsupported image type (dlib)"
    assert not list((tmp_path / "cache").rglob("*.face128.json"))  # not cached: a fixed dlib may do better
