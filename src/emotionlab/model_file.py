"""The model file's format without PyTorch: its JSON metadata, format, checksum and sane values.

A model file is a safetensors file whose metadata (labels in order, architecture, input size, normalisation,
face-crop settings, training summary, package version) travels with the weights, so nothing is ever guessed from
a file name; loading never unpickles. Integrity (format ``emotionlab-model/2``): ``weights_sha256`` is the
SHA-256 of the tensors, and ``sha256`` is the SHA-256 of the canonical JSON of the whole metadata except ``sha256``
itself (so it covers the labels, the preprocessing and ``weights_sha256``, hence the weights).

Everything here reads only the file's header (numpy, no weight): the light install checks the shipped models with
it before running their ONNX export. ``emotionlab.models.io`` adds what needs PyTorch (the architecture built on
the meta device to compare tensor shapes, the weights' checksum, saving).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from safetensors import SafetensorError, safe_open

from emotionlab.errors import EmotionlabError

FORMAT = "emotionlab-model/2"
LEGACY_FORMAT = "emotionlab-model/1"  # weights checksum only: refused (see LEGACY_UPGRADE)
METADATA_KEY = "emotionlab"
CHECKSUM_KEY = "sha256"
REQUIRED_KEYS = ("format", "architecture", "labels", "input_size", "normalization")
# Inputs outside this range are no model we train (48-224 px in practice); 4096 px would ask for gigabytes per batch.
INPUT_SIZE_RANGE = (16, 1024)
MAX_LABELS = 1000
# Architecture arguments our recipes and registry builders write, with their sane ranges. Any other argument must
# be a plain value (a short string, a bounded number, a short list of those); the network built from the metadata
# on the meta device then decides whether it exists.
ARCHITECTURE_KWARGS = {
    "head_hidden": (int, 1, 16_384),
    "hidden": (int, 1, 16_384),
    "widths": (list, 1, 4_096),  # a list of channel counts, each in range
    "dropout": (float, 0.0, 1.0),
}
MAX_MEMBERS = (
    64  # an ensemble's networks ("members": [{"architecture": ..., "architecture_kwargs": ...}, ...])
)
# The last emotionlab that can re-save a format-1 file in this format (`python -m emotionlab.models.io upgrade
# FILE`); the upgrader was removed after it, since no format-1 file was ever released.
LEGACY_UPGRADE = "emotionlab 0.1.0 at commit 609b560"


class ModelFileError(EmotionlabError):
    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")


def metadata_checksum(meta: dict) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of ``meta`` without its ``sha256`` field."""
    body = {key: value for key, value in meta.items() if key != CHECKSUM_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---- validation -------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_labels(labels) -> str | None:
    if not isinstance(labels, list):
        return f"labels must be a list of names, got {type(labels).__name__}"
    if not 2 <= len(labels) <= MAX_LABELS:
        return f"labels: need 2 to {MAX_LABELS} names, got {len(labels)}"
    for label in labels:
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            return f"labels must be non-empty names, got {label!r}"
    if len(set(labels)) != len(labels):
        return f"labels repeat a name: {sorted({label for label in labels if labels.count(label) > 1})}"
    return None


def _check_normalization(normalization) -> str | None:
    if not isinstance(normalization, dict):
        return f"normalization must be an object, got {normalization!r}"
    kind = normalization.get("type")
    if kind == "per_image":
        return None
    if kind != "mean_std":
        return f"unknown normalization type {kind!r} (per_image or mean_std)"
    mean, std = normalization.get("mean"), normalization.get("std")
    if not (
        isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) and len(mean) in (1, 3)
    ):
        return "normalization mean and std must be lists of 1 or 3 numbers"
    if not all(_is_number(value) and -10 <= value <= 10 for value in mean):
        return f"normalization mean out of range: {mean}"
    if not all(_is_number(value) and 1e-3 <= value <= 100 for value in std):
        return f"normalization std out of range: {std}"
    return None


def _is_plain(value) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return len(value) <= 100
    if _is_number(value):
        return abs(value) <= 1e6
    return (
        isinstance(value, list)
        and len(value) <= 64
        and all(_is_plain(v) and not isinstance(v, list) for v in value)
    )


def _check_architecture_kwargs(kwargs, depth: int = 0) -> str | None:
    if not isinstance(kwargs, dict):
        return f"architecture_kwargs must be an object, got {kwargs!r}"
    for key, value in kwargs.items():
        if key == "members" and depth == 0:
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_MEMBERS:
                return f"architecture argument members must list 1 to {MAX_MEMBERS} networks"
            for member in value:
                if not isinstance(member, dict) or not isinstance(member.get("architecture"), str):
                    return f"architecture argument members: {member!r} is not {{architecture, architecture_kwargs}}"
                reason = _check_architecture_kwargs(member.get("architecture_kwargs", {}), depth + 1)
                if reason:
                    return f"member {member['architecture']}: {reason}"
            continue
        if key not in ARCHITECTURE_KWARGS:
            if not _is_plain(value):
                return f"architecture argument {key}={value!r} is not a plain value"
            continue
        kind, low, high = ARCHITECTURE_KWARGS[key]
        if kind is list:
            ok = (
                isinstance(value, list)
                and 1 <= len(value) <= 8
                and all(_is_int(v) and low <= v <= high for v in value)
            )
        elif kind is int:
            ok = _is_int(value) and low <= value <= high
        else:
            ok = _is_number(value) and low <= value <= high
        if not ok:
            return f"architecture argument {key}={value!r} out of range"
    return None


def check_values(meta: dict) -> str | None:
    """The first reason ``meta``'s values cannot describe a usable model (None when they can). The architecture's
    name is checked against the registry by ``emotionlab.models.io.validate_metadata``."""
    if not isinstance(meta, dict):
        return "metadata is not a JSON object"
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        return f"metadata lacks {', '.join(missing)}"
    checks = (
        _check_labels(meta["labels"]),
        None
        if _is_int(meta["input_size"]) and INPUT_SIZE_RANGE[0] <= meta["input_size"] <= INPUT_SIZE_RANGE[1]
        else f"input_size must be a whole number of pixels in {INPUT_SIZE_RANGE[0]}..{INPUT_SIZE_RANGE[1]}, "
        f"got {meta['input_size']!r}",
        _check_normalization(meta["normalization"]),
        _check_architecture_kwargs(meta.get("architecture_kwargs", {})),
        None
        if isinstance(meta["architecture"], str) and meta["architecture"]
        else "architecture must be a name",
        None if isinstance(meta.get("grayscale", False), bool) else "grayscale must be true or false",
        None
        if meta.get("faces") is None or isinstance(meta["faces"], dict)
        else "faces must be an object or null",
        None
        if "num_classes" not in meta or meta["num_classes"] == len(meta["labels"])
        else f"num_classes {meta['num_classes']!r} differs from the {len(meta['labels'])} labels",
    )
    return next((check for check in checks if check), None)


# ---- reading ----------------------------------------------------------------------------------------------


def read_raw(path: Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """The metadata JSON and the tensor shapes of a safetensors file, unchecked; no weight is read."""
    if not path.is_file():
        raise ModelFileError(path, "model file not found")
    with path.open("rb") as handle:
        head = handle.read(9)
    # A safetensors file is an 8-byte header length then "{"; torch.save writes a zip ("PK\x03\x04") or a pickle
    # (protocol 2-5: 0x80 then the protocol). A file cut short is said to be so: its first byte may be anything.
    if len(head) < 9:
        raise ModelFileError(path, f"only {len(head)} bytes: not a model file (truncated or corrupt?)")
    pickle = head[:1] == b"\x80" and 2 <= head[1] <= 5
    if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or pickle):
        raise ModelFileError(
            path, "this is a pickle/zip (torch.save) file; emotionlab loads only safetensors model files"
        )
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(
            path, f"not a readable safetensors model file (truncated or corrupt?): {error}"
        ) from error
    if raw is None:
        raise ModelFileError(path, "safetensors file without emotionlab metadata (not an emotionlab model)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ModelFileError(path, f"metadata is not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise ModelFileError(path, "metadata is not a JSON object")
    return meta, shapes


def check_format(path: Path, meta: dict) -> None:
    found = meta.get("format")
    if found == LEGACY_FORMAT:
        raise ModelFileError(
            path,
            f"written by an older emotionlab ({LEGACY_FORMAT}) whose checksum does not cover the labels and settings; "
            f"refused. If you trust it, upgrade it with {LEGACY_UPGRADE} (python -m emotionlab.models.io upgrade FILE)",
        )
    if found != FORMAT:
        raise ModelFileError(
            path, f"unknown model file format {found!r} (this emotionlab reads {FORMAT}); a newer emotionlab?"
        )


def check_checksum(path: Path, meta: dict) -> None:
    stored = meta.get(CHECKSUM_KEY)
    if not isinstance(stored, str) or not isinstance(meta.get("weights_sha256"), str):
        raise ModelFileError(
            path, "no checksum in the metadata (file altered or not written by emotionlab); refused"
        )
    if metadata_checksum(meta) != stored:
        raise ModelFileError(path, "metadata does not match its checksum (file altered or damaged)")


def read_header(path: str | Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """A model file's metadata, checked (format, checksum, sane values), and its tensor shapes; no weight read."""
    path = Path(path)
    meta, shapes = read_raw(path)
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ModelFileError(path, f"metadata lacks {', '.join(missing)}")
    check_format(path, meta)
    check_checksum(path, meta)
    reason = check_values(meta)
    if reason:
        raise ModelFileError(path, reason)
    return meta, shapes
