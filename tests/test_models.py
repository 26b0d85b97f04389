"""Models by name, and model files: identical outputs after reload, clear errors for damaged files."""

import json
import struct

import pytest
import torch

from emotionlab.errors import EmotionlabError
from emotionlab.models.factory import create_model
from emotionlab.models.io import load_model_file, metadata_checksum, read_metadata, save_model_file
from emotionlab.models.registry import list_models
from emotionlab.models.seed_cnn import SeedCNN

METADATA = {
    "architecture": "seed_cnn",
    "labels": ["angry", "fearful", "happy", "sad", "surprised"],
    "input_size": 48,
    "normalization": {"type": "mean_std", "mean": [0, 0, 0], "std": [1, 1, 1]},
}


@pytest.mark.parametrize("name", [*list_models(), "resnet18", "mobilenetv3_small_050"])
def test_every_registered_model_and_timm_backbones_build_by_name(name):
    model = create_model(name, num_classes=5, image_size=64).eval()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    model.reset_classifier(3)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_seed_cnn_is_the_studys_architecture():
    model = SeedCNN(5, image_size=128)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.hidden[1].out_features == 128 and model.classifier.out_features == 5


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(EmotionlabError, match="unknown model 'not_a_net'"):
        create_model("not_a_net", num_classes=5)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed_cnn", 5, image_size=48).eval()
    path = save_model_file(tmp_path / "m.safetensors", model, METADATA)
    return model, path


def test_save_then_load_gives_identical_outputs(saved):
    model, path = saved
    loaded, meta = load_model_file(path)
    batch = torch.rand(3, 3, 48, 48)
    assert torch.equal(model(batch), loaded(batch))
    assert meta["labels"] == METADATA["labels"] and meta["package_version"]


def test_truncated_file_is_refused(saved, tmp_path):
    _, path = saved
    broken = tmp_path / "cut.safetensors"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EmotionlabError, match="cut.safetensors"):
        load_model_file(broken)


def test_tampered_weights_are_refused(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(EmotionlabError, match="checksum"):
        load_model_file(tampered)


def _rewrite_metadata(path, target, change, *, reseal=False):
    """Edit a model file's metadata in place of an attacker; ``reseal`` also recomputes its checksum."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["emotionlab"])
    change(meta)
    if reseal:
        meta["sha256"] = metadata_checksum(meta)
    header["__metadata__"]["emotionlab"] = json.dumps(meta)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + size :])
    return target


def test_metadata_that_does_not_match_weights_is_refused(saved, tmp_path):
    _, path = saved
    wrong = _rewrite_metadata(
        path,
        tmp_path / "wrong.safetensors",
        lambda m: m.update(labels=["a", "b", "c"], num_classes=3),
        reseal=True,
    )
    with pytest.raises(EmotionlabError, match="3 labels but the classifier in the weights has 5 outputs"):
        load_model_file(wrong)


def test_pickle_files_are_never_loaded(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(EmotionlabError, match="only safetensors"):
        read_metadata(path)


@pytest.mark.slow  # writes up to 300 model files
def test_a_header_length_that_looks_like_zip_magic_still_loads(tmp_path):
    # A metadata block of 0x4B50 bytes makes the file start with "PK", like a zip: it must still load.
    model = create_model("seed_cnn", 5, image_size=48)
    for padding in range(16_100, 16_400):
        path = save_model_file(tmp_path / "m.safetensors", model, {**METADATA, "note": "x" * padding})
        if path.read_bytes()[:2] == b"PK":
            break
    else:
        pytest.skip("could not hit the zip-like header length")
    assert load_model_file(path)[1]["labels"] == METADATA["labels"]
