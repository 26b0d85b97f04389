"""Model files refuse tampering: the checksum covers metadata and weights, and the metadata is validated
against the weights and sane ranges before any layer is built. Every refusal is one line naming the file."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emotionlab.model_file import LEGACY_FORMAT, LEGACY_UPGRADE
from emotionlab.models import factory
from emotionlab.models.factory import create_model
from emotionlab.models.io import (
    ModelFileError,
    _digest,
    load_model_file,
    metadata_checksum,
    read_metadata,
    save_model_file,
)

LABELS = ["angry", "fearful", "happy", "sad", "surprised"]
METADATA = {
    "architecture": "seed_cnn",
    "labels": LABELS,
    "input_size": 48,
    "normalization": {"type": "mean_std", "mean": [0, 0, 0], "std": [1, 1, 1]},
}


@pytest.fixture()
def model_file(tmp_path):
    torch.manual_seed(0)
    return save_model_file(
        tmp_path / "good.safetensors", create_model("seed_cnn", 5, image_size=48).eval(), METADATA
    )


def _split(path):
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _join(target, header, body):
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)
    return target


def tamper(path, name, change=None, *, reseal=False, flip_weight=False):
    """Copy of ``path`` with ``change(metadata)`` applied (``reseal``: checksum recomputed, as a careful attacker
    or a buggy writer would) and optionally one weight byte flipped."""
    header, body = _split(path)
    meta = json.loads(header["__metadata__"]["emotionlab"])
    if change is not None:
        change(meta)
    if reseal:
        meta["sha256"] = metadata_checksum(meta)
    header["__metadata__"]["emotionlab"] = json.dumps(meta)
    if flip_weight:
        body = bytearray(body)
        body[len(body) // 2] ^= 0x01
        body = bytes(body)
    return _join(path.with_name(name), header, body)


def refusal(path) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_model_file(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_an_intact_file_loads_and_its_checksum_covers_the_metadata(model_file):
    meta = read_metadata(model_file)
    assert meta["format"] == "emotionlab-model/2" and meta["sha256"] == metadata_checksum(meta)
    assert load_model_file(model_file)[1]["labels"] == LABELS


def test_reordered_labels_are_refused(model_file):
    reordered = tamper(model_file, "reordered.safetensors", lambda m: m.update(labels=list(reversed(LABELS))))
    assert "metadata does not match its checksum" in refusal(reordered)


def test_integer_labels_are_refused_even_with_a_recomputed_checksum(model_file):
    plain = tamper(model_file, "ints.safetensors", lambda m: m.update(labels=[0, 1, 2, 3, 4]))
    assert "checksum" in refusal(plain)
    resealed = tamper(
        model_file, "ints2.safetensors", lambda m: m.update(labels=[0, 1, 2, 3, 4]), reseal=True
    )
    assert "labels must be non-empty names" in refusal(resealed)


def test_duplicate_or_empty_labels_are_refused(model_file):
    twice = tamper(
        model_file, "twice.safetensors", lambda m: m.update(labels=["a", "a", "b", "c", "d"]), reseal=True
    )
    assert "repeat" in refusal(twice)
    empty = tamper(
        model_file, "empty.safetensors", lambda m: m.update(labels=["a", " ", "b", "c", "d"]), reseal=True
    )
    assert "non-empty" in refusal(empty)


def test_a_deleted_checksum_with_altered_weights_is_refused(model_file):
    stripped = tamper(model_file, "stripped.safetensors", lambda m: m.pop("sha256"), flip_weight=True)
    assert "no checksum" in refusal(stripped)
    both = tamper(
        model_file, "both.safetensors", lambda m: (m.pop("sha256"), m.pop("weights_sha256")), flip_weight=True
    )
    assert "no checksum" in refusal(both)


def test_altered_weights_with_intact_metadata_are_refused(model_file):
    flipped = tamper(model_file, "flipped.safetensors", flip_weight=True)
    assert "weights do not match the checksum" in refusal(flipped)


def test_input_size_4096_is_refused_before_any_layer_is_built(model_file, monkeypatch):
    assert "checksum" in refusal(tamper(model_file, "huge.safetensors", lambda m: m.update(input_size=4096)))
    resealed = tamper(model_file, "huge2.safetensors", lambda m: m.update(input_size=4096), reseal=True)

    def never(*args, **kwargs):
        raise AssertionError("a model was built from metadata that should have been refused")

    monkeypatch.setattr(factory, "create_model", never)
    assert "input_size must be a whole number of pixels in 16..1024, got 4096" in refusal(resealed)
    as_text = tamper(model_file, "text.safetensors", lambda m: m.update(input_size="48"), reseal=True)
    assert "input_size" in refusal(as_text)


def test_a_truncated_file_is_refused(model_file):
    for keep in (4, 100, model_file.stat().st_size // 2, model_file.stat().st_size - 1):
        cut = model_file.with_name(f"cut{keep}.safetensors")
        cut.write_bytes(model_file.read_bytes()[:keep])
        assert "truncated or corrupt" in refusal(cut)


def test_a_model_file_cut_to_8_bytes_is_refused_as_cut_short_not_as_a_pickle(tmp_path):
    import emotionlab

    # The shipped model's header length starts with the byte 0x80, as a pickle does: the reason was wrong.
    cut = tmp_path / "cut.safetensors"
    shipped = Path(emotionlab.__file__).parent / "assets" / "default_model.safetensors"
    cut.write_bytes(shipped.read_bytes()[:8])
    reason = refusal(cut)
    assert "only 8 bytes" in reason and "truncated" in reason and "pickle" not in reason


def test_a_wrong_architecture_is_refused(model_file):
    unknown = tamper(
        model_file, "unknown.safetensors", lambda m: m.update(architecture="not_a_net"), reseal=True
    )
    assert "unknown architecture 'not_a_net'" in refusal(unknown)
    other = tamper(model_file, "other.safetensors", lambda m: m.update(architecture="fer_cnn"), reseal=True)
    assert "does not match the weights" in refusal(other)
    size = tamper(model_file, "size.safetensors", lambda m: m.update(input_size=64), reseal=True)
    assert "does not match the weights" in refusal(size)


def test_labels_must_match_the_classifier_outputs(model_file):
    fewer = tamper(
        model_file, "fewer.safetensors", lambda m: m.update(labels=LABELS[:3], num_classes=3), reseal=True
    )
    assert "3 labels but the classifier in the weights has 5 outputs" in refusal(fewer)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"normalization": {"type": "zscore"}}, "unknown normalization type"),
        ({"normalization": {"type": "mean_std", "mean": [0, 0, 0], "std": [0, 1, 1]}}, "std out of range"),
        ({"normalization": {"type": "mean_std", "mean": [0, 0], "std": [1, 1]}}, "lists of 1 or 3 numbers"),
        ({"architecture_kwargs": {"hidden": 10**9}}, "hidden=1000000000 out of range"),
        ({"architecture_kwargs": {"widths": [32, -1]}}, "out of range"),
        ({"architecture_kwargs": {"anything": {"nested": "object"}}}, "not a plain value"),
        ({"grayscale": "yes"}, "grayscale"),
    ],
)
def test_insane_settings_are_refused(model_file, change, reason):
    bad = tamper(model_file, "bad.safetensors", lambda m: m.update(change), reseal=True)
    assert reason in refusal(bad)


def test_saving_refuses_metadata_that_could_not_be_loaded(tmp_path):
    model = create_model("seed_cnn", 5, image_size=48)
    with pytest.raises(ModelFileError, match="refusing to write: input_size"):
        save_model_file(tmp_path / "x.safetensors", model, {**METADATA, "input_size": 4096})
    with pytest.raises(ModelFileError, match="3 labels but the classifier"):
        save_model_file(tmp_path / "x.safetensors", model, {**METADATA, "labels": ["a", "b", "c"]})
    assert not (tmp_path / "x.safetensors").exists()


def _legacy_file(path, model, meta):
    """A file as emotionlab-model/1 wrote it: a checksum of the weights only."""
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    meta = {
        "format": LEGACY_FORMAT,
        **meta,
        "num_classes": len(meta["labels"]),
        "weights_sha256": _digest(state),
    }
    save_file(state, str(path), metadata={"emotionlab": json.dumps(meta)})
    return path


def test_old_format_files_are_refused_in_one_line_naming_the_version_that_upgrades_them(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed_cnn", 5, image_size=48).eval()
    old = _legacy_file(tmp_path / "old.safetensors", model, METADATA)
    message = refusal(old)
    assert LEGACY_FORMAT in message and LEGACY_UPGRADE in message and "upgrade" in message


def test_a_downgraded_file_cannot_slip_through_as_the_old_format(model_file):
    downgraded = tamper(
        model_file,
        "down.safetensors",
        lambda m: (m.update(format=LEGACY_FORMAT, labels=LABELS[::-1]), m.pop("sha256")),
    )
    assert LEGACY_FORMAT in refusal(downgraded)


def test_the_shipped_files_are_in_the_current_format():
    from emotionlab.inference import default_model_path

    meta = read_metadata(default_model_path())
    assert meta["format"] == "emotionlab-model/2"
    assert len(meta["dataset"]["train"]) > 500 and len(meta["dataset"]["test"]) > 50


@pytest.mark.slow  # an `evaluate` process
def test_the_command_line_prints_one_line_for_a_tampered_model(model_file, tiny_dataset, tmp_path):
    reordered = tamper(model_file, "reordered.safetensors", lambda m: m.update(labels=list(reversed(LABELS))))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emotionlab",
            "evaluate",
            "--model",
            str(reordered),
            "--data",
            str(tiny_dataset),
            "--out",
            str(tmp_path / "eval"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "reordered.safetensors" in lines[0] and "checksum" in lines[0]
