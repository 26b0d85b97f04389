"""`emotionlab data audit` on a synthetic dataset with planted defects: duplicates, leakage, conflicts, bad files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data import audit, duplicates
from emotionlab.data.audit import audit_dataset
from emotionlab.data.duplicates import DEFAULT_THRESHOLD, near_pairs, nearest_distances, perceptual_hash
from emotionlab.errors import EmotionlabError

SIZE = 160


def shapes_image(seed: int, size: int = SIZE) -> Image.Image:
    """A visually distinct image per seed: a smooth random colour field with random ellipses and boxes.

    Drawn faces from emotionlab.synthetic all share one layout and can sit 4 bits apart in phash, so they
    would make "distinct" images that are near-duplicates; these sit at least 16 bits apart (checked below).
    """
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)).resize(
        (size, size), Image.BICUBIC
    )
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, size, 2)
        width, height = rng.integers(size // 6, size // 2, 2)
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + width, y0 + height], fill=colour)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def crop_fraction(image: Image.Image, fraction: float) -> Image.Image:
    """Cut ``fraction`` of the width and height, half on each side."""
    width, height = image.size
    dx, dy = round(width * fraction / 2), round(height * fraction / 2)
    return image.crop((dx, dy, width - dx, height - dy))


LABELS = ("angry", "happy", "sad")
DISTINCT_PER_SPLIT = {"train": 6, "validation": 2, "test": 2}


def make_planted_dataset(root: Path) -> dict:
    """Write ``root/{train,validation,test}/{angry,happy,sad}/`` with distinct images and planted defects.

    Returns what a correct audit must find: the duplicate groups (sets of paths), which of them span splits,
    the label conflict, the unreadable files and the lying extension.
    """
    seed = 0
    originals: dict[str, Image.Image] = {}
    for split, count in DISTINCT_PER_SPLIT.items():
        for label in LABELS:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                name = f"{split}/{label}/{label}_{index}.png"
                originals[name] = shapes_image(seed)
                (root / name).write_bytes(png_bytes(originals[name]))
                seed += 1

    def put(name: str, data: bytes) -> str:
        (root / name).write_bytes(data)
        return name

    exact = put("train/angry/angry_0_copy.png", (root / "train/angry/angry_0.png").read_bytes())
    resized = put(
        "train/happy/happy_0_small.png", png_bytes(originals["train/happy/happy_0.png"].resize((96, 96)))
    )
    reencoded = put("validation/happy/happy_q40.jpg", jpeg_bytes(originals["train/happy/happy_1.png"], 40))
    cropped = put("test/sad/sad_crop.png", png_bytes(crop_fraction(originals["train/sad/sad_0.png"], 0.03)))
    relabelled = put("train/sad/angry_1_as_sad.png", (root / "train/angry/angry_1.png").read_bytes())
    # A PNG named .jpg (a distinct image: a lying extension is not a duplicate).
    lying = put("train/happy/happy_lying.jpg", png_bytes(shapes_image(1000)))
    # Unusable files.
    broken = put("train/angry/broken.png", png_bytes(shapes_image(1001))[:400])
    empty = put("train/sad/empty.jpg", b"")
    text = put("test/angry/notes.jpg", b"not an image at all\n")
    return {
        "groups": [
            {"train/angry/angry_0.png", exact},
            {"train/happy/happy_0.png", resized},
            {"train/happy/happy_1.png", reencoded},
            {"train/sad/sad_0.png", cropped},
            {"train/angry/angry_1.png", relabelled},
        ],
        "exact_groups": [{"train/angry/angry_0.png", exact}, {"train/angry/angry_1.png", relabelled}],
        "leaking_groups": [{"train/happy/happy_1.png", reencoded}, {"train/sad/sad_0.png", cropped}],
        "conflict_groups": [{"train/angry/angry_1.png", relabelled}],
        "unreadable": {broken: "truncated", empty: "empty file", text: "not an image"},
        "lying": {lying: "PNG"},
        "distinct": sorted(originals) + [lying],
        "num_files": len(originals) + 9,
    }


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("planted") / "data"
    return root, make_planted_dataset(root)


@pytest.fixture(scope="module")
def report(planted) -> dict:
    root, _ = planted
    return audit_dataset(root)


def _member_sets(groups: list[dict]) -> list[set[str]]:
    return sorted(({m["path"] for m in group["members"]} for group in groups), key=sorted)


def test_distinct_test_images_are_far_apart_in_phash(planted):
    # Guards the test itself: "no group among distinct images" only means something if they are far apart.
    root, expected = planted
    hashes = np.array(
        [perceptual_hash(Image.open(root / name).convert("RGB")) for name in expected["distinct"]]
    )
    assert nearest_distances(hashes.astype(np.uint64)).min() > 2 * DEFAULT_THRESHOLD


def test_audit_finds_every_planted_duplicate_and_nothing_else(report, planted):
    _, expected = planted
    assert _member_sets(report["duplicate_groups"]) == sorted(expected["groups"], key=sorted)
    assert _member_sets(report["exact_duplicates"]) == sorted(expected["exact_groups"], key=sorted)
    summary = report["summary"]
    assert summary["duplicate_groups"] == 5 and summary["duplicate_files"] == 10
    assert summary["exact_duplicate_groups"] == 2


def test_audit_flags_cross_split_leakage(report, planted):
    _, expected = planted
    assert _member_sets(report["leakage"]["groups"]) == sorted(expected["leaking_groups"], key=sorted)
    assert report["leakage"]["validation_with_train_twin"] == ["validation/happy/happy_q40.jpg"]
    assert report["leakage"]["test_with_train_twin"] == ["test/sad/sad_crop.png"]
    summary = report["summary"]
    assert summary["groups_spanning_splits"] == 2
    assert summary["eval_images_with_train_twin"] == 2


def test_audit_flags_label_conflict(report, planted):
    _, expected = planted
    assert _member_sets(report["label_conflicts"]) == expected["conflict_groups"]
    assert report["label_conflicts"][0]["labels"] == ["angry", "sad"]


def test_audit_reports_unreadable_files_with_reasons(report, planted):
    _, expected = planted
    reasons = {item["path"]: item["reason"] for item in report["unreadable"]}
    assert set(reasons) == set(expected["unreadable"])
    for path, words in expected["unreadable"].items():
        assert words in reasons[path], (path, reasons[path])
    assert report["summary"]["num_files"] == expected["num_files"]
    assert report["summary"]["num_unreadable"] == 3


def test_audit_reports_real_format_and_lying_extensions(report, planted):
    _, expected = planted
    mismatched = {item["path"]: item["format"] for item in report["extension_mismatches"]}
    assert mismatched == expected["lying"]
    files = {record["path"]: record for record in report["files"]}
    jpeg = files["validation/happy/happy_q40.jpg"]
    assert (jpeg["format"], jpeg["extension_matches"], jpeg["mode"]) == ("JPEG", True, "RGB")
    assert (jpeg["width"], jpeg["height"]) == (SIZE, SIZE) and jpeg["bytes"] > 0 and len(jpeg["sha256"]) == 64
    assert len(jpeg["phash"]) == 16


def test_class_balance_counts_readable_images_per_split_and_label(report):
    balance = report["class_balance"]
    assert list(balance) == ["train", "validation", "test"]
    assert balance["train"] == {
        "angry": 7,
        "happy": 8,
        "sad": 7,
    }  # 6 distinct + planted copies, minus bad files
    assert balance["validation"] == {"angry": 2, "happy": 3, "sad": 2}
    assert balance["test"] == {"angry": 2, "happy": 2, "sad": 3}


def test_audit_cli_writes_json_and_chart_and_prints_summary(planted, tmp_path):
    root, _ = planted
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["data", "audit", "--data", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "leakage" in result.output and "label conflicts" in result.output
    saved = json.loads((out / "audit.json").read_text())
    assert saved["summary"]["groups_spanning_splits"] == 2
    assert saved["summary"]["threshold"] == DEFAULT_THRESHOLD
    with Image.open(out / "class_balance.png") as chart:
        assert chart.format == "PNG" and chart.width > 300


def test_audit_threshold_option_changes_what_counts_as_a_twin(planted, tmp_path):
    root, _ = planted
    result = CliRunner().invoke(
        app, ["data", "audit", "--data", str(root), "--out", str(tmp_path), "--threshold", "0"]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["summary"]["threshold"] == 0
    assert all(group["max_distance"] == 0 for group in saved["duplicate_groups"])
    assert saved["summary"]["duplicate_groups"] < 5  # the cropped copy is a few bits away


def test_audit_refuses_to_write_inside_the_dataset(planted):
    root, _ = planted
    result = CliRunner().invoke(app, ["data", "audit", "--data", str(root), "--out", str(root / "audit")])
    assert isinstance(result.exception, EmotionlabError)
    assert "inside the dataset root" in str(result.exception)
    assert not (root / "audit").exists()


def test_blocked_pair_search_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=300, dtype=np.uint64)
    hashes[10] = hashes[250] ^ np.uint64(0b101)  # a planted pair two bits apart, across a block boundary
    brute = np.array([[(int(a) ^ int(b)).bit_count() for b in hashes] for a in hashes])
    np.fill_diagonal(brute, 64)
    first, second, distance = near_pairs(hashes, 20)
    expected = {(i, j) for i, j in zip(*np.nonzero(brute <= 20), strict=True) if i < j}
    assert set(zip(first.tolist(), second.tolist(), strict=True)) == expected
    assert all(brute[i, j] == d for i, j, d in zip(first, second, distance, strict=True))
    assert (nearest_distances(hashes) == brute.min(axis=1)).all()
    original = duplicates.hamming_blocks
    monkeypatch.setattr(
        duplicates, "hamming_blocks", lambda values, block=64: original(values, block)
    )  # many blocks
    assert (nearest_distances(hashes) == brute.min(axis=1)).all()
    first, second, _ = near_pairs(hashes, 20)
    assert set(zip(first.tolist(), second.tolist(), strict=True)) == expected


def test_audit_of_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EmotionlabError, match="not found"):
        audit_dataset(tmp_path / "nowhere")


def test_links_fifos_and_failing_files_are_unreadable_entries_not_a_stopped_audit(tmp_path, monkeypatch):
    import os

    root = tmp_path / "data"
    for seed, label in enumerate(("angry", "happy")):
        (root / label).mkdir(parents=True)
        shapes_image(seed).save(root / label / "face.png")
    os.mkfifo(root / "angry" / "fifo.jpg")  # reading it would block for ever
    os.symlink("loop.jpg", root / "angry" / "loop.jpg")
    os.symlink("missing.jpg", root / "happy" / "dangling.jpg")
    shapes_image(7).save(root / "happy" / "explodes.png")
    real_hash = audit.perceptual_hash

    def failing_hash(image):
        if image.size == (SIZE, SIZE) and image.getpixel((0, 0)) == explodes_pixel:
            raise MemoryError("out of memory")
        return real_hash(image)

    with Image.open(root / "happy" / "explodes.png") as image:
        explodes_pixel = image.convert("RGB").getpixel((0, 0))
    monkeypatch.setattr(audit, "perceptual_hash", failing_hash)
    report = audit_dataset(root)
    reasons = {item["path"]: item["reason"] for item in report["unreadable"]}
    assert reasons == {
        "angry/fifo.jpg": "not a regular file (FIFO)",
        "angry/loop.jpg": "symbolic link loop",
        "happy/dangling.jpg": "broken symbolic link (its target does not exist)",
        "happy/explodes.png": "MemoryError: out of memory",
    }
    assert report["summary"]["num_readable"] == 2
