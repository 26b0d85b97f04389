"""Datasets: labels from folders, split folder aliases, bad files skipped once, clear errors, manifests."""

import logging

import pytest
from PIL import Image

from emotionlab.data.dataset import EpochSampler, load_samples, scan_image_folder
from emotionlab.data.manifest import read_manifest
from emotionlab.errors import EmotionlabError
from emotionlab.paths import resolve_data_root
from emotionlab.synthetic import write_dataset


def test_split_folders_and_val_alias(tmp_path):
    write_dataset(
        tmp_path, per_class=10, splits={"train": 0.6, "val": 0.2, "test": 0.2}, labels=("happy", "sad")
    )
    found = scan_image_folder(tmp_path)
    assert found.labels == ["happy", "sad"]
    assert {s.split for s in found.samples} == {"train", "validation", "test"}
    assert len(found.split("val")) == 4
    assert found.counts()["train"] == {"happy": 6, "sad": 6}


def test_class_order_is_canonical_then_sorted(tmp_path):
    for name in ("zebra", "surprised", "angry"):
        write_dataset(tmp_path, per_class=2, labels=(name,) if name != "zebra" else ("happy",))
    (tmp_path / "happy").rename(tmp_path / "zebra")
    assert scan_image_folder(tmp_path).labels == ["angry", "surprised", "zebra"]


def test_bad_files_are_skipped_and_reported_once(tmp_path, caplog):
    write_dataset(tmp_path, per_class=3, labels=("happy", "sad"))
    (tmp_path / "happy" / "empty.png").write_bytes(b"")
    (tmp_path / "happy" / "notes.txt").write_text("not an image")
    (tmp_path / "sad" / "half.png").write_bytes((tmp_path / "sad" / "sad_0.png").read_bytes()[:200])
    with caplog.at_level(logging.WARNING, logger="emotionlab"):
        found = scan_image_folder(tmp_path)
    assert len(found.samples) == 6
    reasons = dict(found.skipped)
    assert "empty file" in reasons[str(tmp_path / "happy" / "empty.png")]
    assert "not an image" in reasons[str(tmp_path / "happy" / "notes.txt")]
    assert "truncated" in reasons[str(tmp_path / "sad" / "half.png")]
    assert sum("empty.png" in record.message for record in caplog.records) == 1


def test_empty_class_is_a_clear_error(tmp_path):
    write_dataset(tmp_path, per_class=2, labels=("happy", "sad"))
    (tmp_path / "angry").mkdir()
    with pytest.raises(EmotionlabError, match="no usable image: angry"):
        scan_image_folder(tmp_path)


def test_fewer_than_two_classes_is_a_clear_error(tmp_path):
    write_dataset(tmp_path, per_class=2, labels=("happy",))
    with pytest.raises(EmotionlabError, match="at least two class"):
        scan_image_folder(tmp_path)


def test_manifest_rows_point_into_the_root(tmp_path):
    write_dataset(tmp_path / "data", per_class=2, labels=("happy", "sad"))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "# made by a test\npath,label,split,face_box\n"
        "happy/happy_0.png,happy,train,1 2 30 30\nhappy/happy_1.png,happy,test,\n"
        "sad/sad_0.png,sad,train,\nsad/sad_1.png,sad,val,\n"
    )
    found = read_manifest(manifest, root=tmp_path / "data")
    assert [s.split for s in found.samples] == ["train", "test", "train", "validation"]
    assert found.samples[0].face_box == (1, 2, 30, 30)
    assert load_samples(tmp_path / "data", manifest).labels == ["happy", "sad"]
    with pytest.raises(EmotionlabError, match="not found"):
        read_manifest(manifest, root=tmp_path)


def test_explicit_path_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_DATA", str(tmp_path / "from-env"))
    (tmp_path / "from-env").mkdir()
    assert resolve_data_root(None) == tmp_path / "from-env"
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.setenv("EMOTIONLAB_DATA", str(tmp_path / "missing"))
    with pytest.raises(EmotionlabError, match="not found"):
        resolve_data_root(None)


def test_sampler_order_depends_only_on_seed_and_epoch():
    first = EpochSampler(50, seed=3, shuffle=True)
    second = EpochSampler(50, seed=3, shuffle=True)
    first.set_epoch(4)
    second.set_epoch(4)
    assert list(first) == list(second)
    second.set_epoch(5)
    assert list(first) != list(second)
    shards = [list(EpochSampler(51, seed=0, shuffle=True, rank=r, world_size=2)) for r in (0, 1)]
    assert {index for shard in shards for index, _ in shard} == set(range(51))


def test_reading_never_modifies_files(tmp_path):
    write_dataset(tmp_path, per_class=2, labels=("happy", "sad"))
    Image.new("RGBA", (10, 10)).save(tmp_path / "happy" / "rgba.jpg", format="PNG")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
    scan_image_folder(tmp_path)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after
