"""FER+ reader: majority and soft labels, dropped rows, eight classes, the in-memory dataset, load_samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotionlab.data import ferplus
from emotionlab.data.dataset import load_samples
from emotionlab.errors import EmotionlabError

#            neutral happy surprise sad anger disgust fear contempt unknown NF
ROWS = {
    "happy.png": (1, 7, 1, 0, 0, 0, 0, 0, 1, 0),  # happy
    "tie.png": (0, 4, 4, 0, 0, 0, 0, 0, 2, 0),  # happy/surprise tie: dropped (majority), kept (soft)
    "neutral.png": (6, 2, 0, 2, 0, 0, 0, 0, 0, 0),  # neutral: dropped with five classes, kept with eight
    "notface.png": (0, 1, 0, 0, 0, 0, 0, 0, 0, 9),  # NF wins: always dropped
    "unknown.png": (0, 2, 0, 1, 0, 0, 0, 0, 7, 0),  # unknown wins: always dropped
    "angry.png": (0, 0, 0, 2, 6, 2, 0, 0, 0, 0),  # angry
    "fear.png": (0, 0, 3, 0, 0, 0, 5, 0, 2, 0),  # fearful
    "contempt.png": (2, 0, 0, 0, 0, 0, 0, 8, 0, 0),  # contempt: eight classes only
}


def write_fake_ferplus(root: Path, rows: dict = ROWS, *, copies: int = 1) -> Path:
    """A FER+ folder: every split gets ``copies`` x ``rows`` (48x48 grey PNGs) and a header-less label.csv."""
    rng = np.random.default_rng(0)
    for folder in ferplus.SPLIT_FOLDERS.values():
        directory = root / folder
        directory.mkdir(parents=True)
        lines = []
        for copy in range(copies):
            for name, votes in rows.items():
                file = f"c{copy}_{name}"
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), mode="L").save(
                    directory / file
                )
                lines.append(f'{file},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
        (directory / "label.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def fake_ferplus(tmp_path) -> Path:
    return write_fake_ferplus(tmp_path / "ferplus")


def _by_name(items):
    return {item.path.name.split("_", 1)[1]: item for item in items}


def test_majority_labels_drop_ties_unknown_not_a_face_and_other_emotions(fake_ferplus):
    items = _by_name(ferplus.read_split(fake_ferplus, "train"))
    assert {name: item.label for name, item in items.items()} == {
        "happy.png": "happy",
        "angry.png": "angry",
        "fear.png": "fearful",
    }
    assert items["happy.png"].distribution == (0.0, 0.0, 1.0, 0.0, 0.0)  # one-hot in the label order


def test_soft_targets_are_vote_distributions_that_sum_to_one(fake_ferplus):
    items = _by_name(ferplus.read_split(fake_ferplus, "train", targets="soft"))
    assert "tie.png" in items and "notface.png" not in items and "unknown.png" not in items
    for item in items.values():
        assert sum(item.distribution) == pytest.approx(1.0)
    labels = ferplus.class_names(5)
    # happy: 7 happy + 1 surprise votes over the five emotions (neutral and unknown votes are not classes here)
    assert items["happy.png"].distribution[labels.index("happy")] == pytest.approx(7 / 8)
    assert items["tie.png"].distribution[labels.index("surprised")] == pytest.approx(0.5)


def test_eight_class_mode_keeps_neutral_and_contempt(fake_ferplus):
    labels = ferplus.class_names(8)
    assert labels[:5] == ["angry", "fearful", "happy", "sad", "surprised"]
    assert set(labels[5:]) == {"contempt", "disgusted", "neutral"}
    items = _by_name(ferplus.read_split(fake_ferplus, "test", classes=8))
    assert items["neutral.png"].label == "neutral" and items["contempt.png"].label == "contempt"
    assert "tie.png" not in items and "notface.png" not in items
    assert all(len(item.distribution) == 8 for item in items.values())


def test_load_samples_reads_a_ferplus_folder_with_its_splits(fake_ferplus):
    sample_set = load_samples(fake_ferplus)
    assert sample_set.labels == ["angry", "fearful", "happy", "sad", "surprised"]
    assert {split: len(sample_set.split(split)) for split in ("train", "validation", "test")} == {
        "train": 3,
        "validation": 3,
        "test": 3,
    }


def test_malformed_label_csv_names_the_file_and_line(tmp_path):
    folder = tmp_path / "FER2013Train"
    folder.mkdir()
    (folder / "label.csv").write_text('a.png,"(0, 0, 48, 48)",1,2,3\n')
    with pytest.raises(EmotionlabError, match=r"label\.csv: line 1 has 5 fields"):
        ferplus.read_label_csv(folder / "label.csv")


def test_missing_image_is_reported_with_its_path(fake_ferplus):
    (fake_ferplus / "FER2013Valid" / "c0_happy.png").unlink()
    with pytest.raises(EmotionlabError, match="c0_happy.png"):
        load_samples(fake_ferplus)


def test_tensor_dataset_is_standardised_deterministic_and_augments(fake_ferplus):
    items = ferplus.read_split(fake_ferplus, "train")
    plain = ferplus.FerPlusTensors.from_items(items, image_size=64)
    image, target = plain[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert abs(float(image.mean())) < 1e-4 and float(image.std()) == pytest.approx(1.0, abs=0.02)
    assert int(target) == ferplus.class_names(5).index(items[0].label)
    augmented = ferplus.FerPlusTensors.from_items(
        items, image_size=48, augment=ferplus.TensorAugment(), seed=3
    )
    first, again, next_epoch = augmented[(0, 1)][0], augmented[(0, 1)][0], augmented[(0, 2)][0]
    assert torch.equal(first, again)  # (seed, epoch, index) fixes the augmentation
    assert not torch.equal(first, next_epoch)
    soft = ferplus.FerPlusTensors.from_items(
        ferplus.read_split(fake_ferplus, "train", targets="soft"), soft=True
    )
    assert soft[0][1].shape == (5,) and float(soft[0][1].sum()) == pytest.approx(1.0)
