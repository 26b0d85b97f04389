"""Duplicate-aware stratified splits, --keep-splits, and the manifest written by `emotionlab data split`."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from test_audit import make_planted_dataset
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.manifest import MANIFEST_COLUMNS, read_manifest, read_manifest_rows, write_manifest
from emotionlab.data.samples import Sample
from emotionlab.data.split import keep_splits_without_leakage, parse_ratios, split_samples
from emotionlab.errors import EmotionlabError

RATIOS = (0.8, 0.1, 0.1)


def make_samples(counts: dict[str, int], *, seed: int = 0, group_share: float = 0.2):
    """Fake samples (no files needed) plus duplicate groups of 2-4 members covering ``group_share`` of them."""
    rng = random.Random(seed)
    samples = [
        Sample(path=Path(f"/nowhere/{label}/{index}.png"), label=label, relpath=f"{label}/{index}.png")
        for label, count in counts.items()
        for index in range(count)
    ]
    groups: dict[str, str] = {}
    pool = [sample.relpath for sample in samples]
    rng.shuffle(pool)
    number = 0
    while len(groups) < group_share * len(samples):
        size = rng.randint(2, 4)
        number += 1
        for relpath in pool[:size]:
            groups[relpath] = f"dup{number}"
        pool = pool[size:]
    return samples, groups


def _by_group(samples, groups):
    splits = defaultdict(set)
    for sample in samples:
        splits[groups.get(sample.relpath, sample.relpath)].add(sample.split)
    return splits


def test_split_never_puts_a_group_across_splits():
    samples, groups = make_samples({"angry": 120, "happy": 90, "sad": 40})
    for seed in range(5):
        placed = split_samples(samples, ratios=RATIOS, seed=seed, groups=groups)
        assert all(len(splits) == 1 for splits in _by_group(placed, groups).values())


def test_split_keeps_ratios_per_label_within_a_group_size():
    counts = {"angry": 277, "fearful": 217, "happy": 216, "sad": 166, "surprised": 224}
    samples, groups = make_samples(counts, group_share=0.15)
    placed = split_samples(samples, ratios=RATIOS, seed=0, groups=groups)
    table = Counter((sample.label, sample.split) for sample in placed)
    for label, count in counts.items():
        for split, ratio in zip(("train", "validation", "test"), RATIOS, strict=True):
            assert abs(table[(label, split)] - ratio * count) <= 4, (label, split, table[(label, split)])


def test_split_without_groups_hits_the_rounded_targets_exactly():
    samples, _ = make_samples({"angry": 277, "sad": 17}, group_share=0)
    placed = split_samples(samples, ratios=RATIOS, seed=3)
    table = Counter((sample.label, sample.split) for sample in placed)
    assert [table[("angry", split)] for split in ("train", "validation", "test")] == [221, 28, 28]
    assert [table[("sad", split)] for split in ("train", "validation", "test")] == [
        13,
        2,
        2,
    ]  # 13.6, 1.7, 1.7 by largest remainder


def test_small_classes_still_get_an_image_in_every_split():
    samples, _ = make_samples({"angry": 5, "sad": 3, "happy": 2}, group_share=0)
    placed = split_samples(samples, ratios=RATIOS, seed=0)
    table = Counter((sample.label, sample.split) for sample in placed)
    assert [table[("angry", split)] for split in ("train", "validation", "test")] == [3, 1, 1]
    assert [table[("sad", split)] for split in ("train", "validation", "test")] == [1, 1, 1]
    assert table[("happy", "train")] == 2  # too few to spread: train first


def test_split_is_deterministic_per_seed_and_keeps_input_order():
    samples, groups = make_samples({"angry": 60, "happy": 60})
    first = split_samples(samples, seed=7, groups=groups)
    again = split_samples(list(samples), seed=7, groups=dict(groups))
    other = split_samples(samples, seed=8, groups=groups)
    assert [s.split for s in first] == [s.split for s in again]
    assert [s.split for s in first] != [s.split for s in other]
    assert [s.relpath for s in first] == [s.relpath for s in samples]


def test_split_keeps_a_group_with_two_labels_together():
    samples, _ = make_samples({"angry": 30, "sad": 30}, group_share=0)
    groups = {"angry/0.png": "g", "sad/0.png": "g", "sad/1.png": "g"}
    placed = {s.relpath: s.split for s in split_samples(samples, seed=1, groups=groups)}
    assert placed["angry/0.png"] == placed["sad/0.png"] == placed["sad/1.png"]


def test_keep_splits_moves_only_leaking_groups_to_their_earliest_split():
    def sample(relpath, split, label="angry"):
        return Sample(path=Path("/nowhere") / relpath, label=label, split=split, relpath=relpath)

    samples = [
        sample("a", "train"),
        sample("a2", "test"),  # train/test twins -> test copy moves to train
        sample("b", "validation"),
        sample("b2", "test"),  # validation/test -> test copy moves to validation
        sample("c", "test"),
        sample("c2", "test"),  # twins inside one split: stay
        sample("d", "validation"),
        sample("e", "train"),  # singletons: stay
    ]
    groups = {"a": "g1", "a2": "g1", "b": "g2", "b2": "g2", "c": "g3", "c2": "g3"}
    placed, moves = keep_splits_without_leakage(samples, groups)
    assert [(m.path, m.from_split, m.to_split) for m in moves] == [
        ("a2", "test", "train"),
        ("b2", "test", "validation"),
    ]
    assert [s.split for s in placed] == [
        "train",
        "train",
        "validation",
        "validation",
        "test",
        "test",
        "validation",
        "train",
    ]
    with pytest.raises(EmotionlabError, match="--keep-splits"):
        keep_splits_without_leakage([sample("x", None)], {})


def test_parse_ratios_accepts_fractions_or_percentages_and_rejects_nonsense():
    assert parse_ratios("80,10,10") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_ratios("0.7,0.15,0.15") == pytest.approx((0.7, 0.15, 0.15))
    for bad in ("0.8,0.2", "a,b,c", "0,0.5,0.5", "-1,1,1"):
        with pytest.raises(EmotionlabError, match="ratios"):
            parse_ratios(bad)


def test_manifest_round_trip_with_comments(tmp_path):
    rows = [
        {
            "path": "train/a/1.png",
            "label": "a",
            "split": "train",
            "sha256": "0" * 64,
            "phash": "f" * 16,
            "group": "g0001",
            "face_box": "",
        },
        {
            "path": "train/b/2.png",
            "label": "b",
            "split": "test",
            "sha256": "1" * 64,
            "phash": "e" * 16,
            "group": "g0002",
            "face_box": "1 2 3 4",
        },
    ]
    path = write_manifest(rows, tmp_path / "m.csv", comments=["made by a test"])
    assert path.read_text().startswith("# made by a test\npath,label,split,sha256,phash,group,face_box\n")
    assert read_manifest_rows(path) == rows
    assert not list(tmp_path.glob(".*tmp"))


# ---- through the CLI, on real (synthetic) files ------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "data"
    return root, make_planted_dataset(root)


def _run_split(root: Path, out: Path, *extra: str):
    result = CliRunner().invoke(app, ["data", "split", "--data", str(root), "--output", str(out), *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return result, read_manifest_rows(out)


def test_split_cli_writes_a_manifest_read_manifest_can_use(planted, tmp_path):
    root, expected = planted
    result, rows = _run_split(root, tmp_path / "manifest.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    paths = {row["path"] for row in rows}
    assert not paths & set(expected["unreadable"])  # unusable files are left out
    assert len(rows) == expected["num_files"] - len(expected["unreadable"])
    assert all(row["face_box"] == "" and len(row["sha256"]) == 64 and len(row["phash"]) == 16 for row in rows)
    groups = defaultdict(set)
    for row in rows:
        groups[row["group"]].add(row["path"])
    assert sorted((g for g in groups.values() if len(g) > 1), key=sorted) == sorted(
        expected["groups"], key=sorted
    )
    split_of = defaultdict(set)
    for row in rows:
        split_of[row["group"]].add(row["split"])
    assert all(len(splits) == 1 for splits in split_of.values())
    sample_set = read_manifest(tmp_path / "manifest.csv", root)
    assert len(sample_set.samples) == len(rows) and sample_set.labels == ["angry", "happy", "sad"]
    assert "duplicate groups" in result.output


def test_split_cli_is_deterministic_and_seed_dependent(planted, tmp_path):
    root, _ = planted
    _run_split(root, tmp_path / "a.csv", "--seed", "3")
    _run_split(root, tmp_path / "b.csv", "--seed", "3")
    _run_split(root, tmp_path / "c.csv", "--seed", "4")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_keep_splits_cli_moves_only_the_leaking_images(planted, tmp_path):
    root, _ = planted
    result, rows = _run_split(root, tmp_path / "keep.csv", "--keep-splits")
    moved = {row["path"]: row["split"] for row in rows if row["split"] != row["path"].split("/")[0]}
    assert moved == {"validation/happy/happy_q40.jpg": "train", "test/sad/sad_crop.png": "train"}
    assert "moved 2 image(s)" in result.output
    assert "validation/happy/happy_q40.jpg" in result.output and "validation -> train" in result.output


def test_split_cli_refuses_to_write_the_manifest_into_the_dataset(planted):
    root, _ = planted
    result = CliRunner().invoke(
        app, ["data", "split", "--data", str(root), "--output", str(root / "manifest.csv")]
    )
    assert isinstance(result.exception, EmotionlabError)
    assert not (root / "manifest.csv").exists()
