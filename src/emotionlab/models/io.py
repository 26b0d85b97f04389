"""Model files: safetensors weights + JSON metadata in the same file. Loading never unpickles.

The metadata (labels in order, architecture, input size, normalisation, face-crop settings, training summary,
package version) travels with the weights, so nothing is ever guessed from a file name.

Integrity (format ``emotionlab-model/2``): ``weights_sha256`` is the SHA-256 of the tensors, and ``sha256`` is the
SHA-256 of the canonical JSON of the whole metadata except ``sha256`` itself (so it covers the labels, the
preprocessing and ``weights_sha256``, hence the weights). A file whose metadata or weights were changed, or whose
checksum is missing, is refused. Before any weight is read, the metadata is validated (labels, input size,
normalisation, architecture and its arguments) and the tensor shapes in the file header are compared with the
network the metadata describes, built on PyTorch's ``meta`` device (no memory allocated).

Files of the previous format (``emotionlab-model/1``, checksum over the weights only) are refused too: their labels
and settings could have been edited unnoticed. ``python -m emotionlab.models.io upgrade FILE`` re-saves a trusted
one in the current format after checking its old weight checksum and its metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from emotionlab import __version__
from emotionlab.errors import EmotionlabError
from emotionlab.models import factory

FORMAT = "emotionlab-model/2"
LEGACY_FORMAT = "emotionlab-model/1"  # weights checksum only: refused, upgrade with `upgrade_model_file`
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
UPGRADE_HINT = "python -m emotionlab.models.io upgrade FILE"


class ModelFileError(EmotionlabError):
    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")


def _digest(state: dict[str, torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        hasher.update(key.encode())
        hasher.update(str(tensor.dtype).encode())
        hasher.update(str(tuple(tensor.shape)).encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return hasher.hexdigest()


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


def validate_metadata(meta: dict) -> str | None:
    """The first reason ``meta`` cannot describe a usable model (None when it can); no weight is needed."""
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
    reason = next((check for check in checks if check), None)
    if reason:
        return reason
    try:
        factory.model_spec(meta["architecture"])
    except EmotionlabError:
        return f"unknown architecture {meta['architecture']!r}"
    return None


def _expected_shapes(path: Path, meta: dict) -> tuple[dict[str, tuple[int, ...]], str | None]:
    """Tensor shapes of the network ``meta`` describes (built on the meta device: nothing allocated) and the key
    of its classifier's output weight."""
    try:
        with torch.device("meta"):
            model = build_model_from_metadata(meta)
    except (EmotionlabError, ValueError, TypeError, RuntimeError) as error:
        raise ModelFileError(
            path, f"cannot build {meta['architecture']} from the metadata: {error}"
        ) from error
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    try:
        head_path, head = factory.classifier_of(model, meta["architecture"])
    except EmotionlabError:
        return shapes, None
    linears = [name for name, module in head.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        return shapes, None
    return shapes, ".".join(part for part in (head_path, linears[-1], "weight") if part)


def _check_shapes(path: Path, meta: dict, file_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a file whose tensors are not exactly the network the metadata describes, labels included."""
    expected, head_key = _expected_shapes(path, meta)
    if head_key and head_key in file_shapes and len(file_shapes[head_key]) == 2:
        rows = file_shapes[head_key][0]
        if rows != len(meta["labels"]):
            raise ModelFileError(
                path,
                f"metadata lists {len(meta['labels'])} labels but the classifier in the weights has {rows} outputs",
            )
    missing, unexpected = sorted(set(expected) - set(file_shapes)), sorted(set(file_shapes) - set(expected))
    if missing or unexpected:
        example = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ModelFileError(
            path,
            f"metadata (architecture {meta['architecture']}, {len(meta['labels'])} labels) does not match the weights: "
            f"{len(missing)} tensor(s) missing, {len(unexpected)} unexpected ({example})",
        )
    for key, shape in expected.items():
        if tuple(file_shapes[key]) != shape:
            raise ModelFileError(
                path,
                f"metadata (architecture {meta['architecture']}, input {meta['input_size']} px, "
                f"{len(meta['labels'])} labels) does not match the weights: {key} is {list(file_shapes[key])}, "
                f"the architecture needs {list(shape)}",
            )


# ---- reading ----------------------------------------------------------------------------------------------


def _read_raw(path: Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """The metadata JSON and the tensor shapes of a safetensors file, unchecked; no weight is read."""
    if not path.is_file():
        raise ModelFileError(path, "model file not found")
    with path.open("rb") as handle:
        head = handle.read(9)
    # A safetensors file is an 8-byte header length then "{"; torch.save writes a zip ("PK\x03\x04") or a pickle.
    if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):
        raise ModelFileError(
            path, "this is a pickle/zip (torch.save) file; emotionlab loads only safetensors model files"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
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


def _check_format(path: Path, meta: dict) -> None:
    found = meta.get("format")
    if found == LEGACY_FORMAT:
        raise ModelFileError(
            path,
            f"written by an older emotionlab ({LEGACY_FORMAT}) whose checksum does not cover the labels and settings; "
            f"if you trust this file, upgrade it once: {UPGRADE_HINT}",
        )
    if found != FORMAT:
        raise ModelFileError(
            path, f"unknown model file format {found!r} (this emotionlab reads {FORMAT}); a newer emotionlab?"
        )


def _check_checksum(path: Path, meta: dict) -> None:
    stored = meta.get(CHECKSUM_KEY)
    if not isinstance(stored, str) or not isinstance(meta.get("weights_sha256"), str):
        raise ModelFileError(
            path, "no checksum in the metadata (file altered or not written by emotionlab); refused"
        )
    if metadata_checksum(meta) != stored:
        raise ModelFileError(path, "metadata does not match its checksum (file altered or damaged)")


def is_model_file(path: str | Path) -> bool:
    """True for a safetensors file carrying emotionlab metadata (valid or not: loading checks the rest)."""
    try:
        _read_raw(Path(path))
        return True
    except EmotionlabError:
        return False


def read_metadata(path: str | Path) -> dict:
    """The checked metadata of a model file: checksum, sane values, and tensor shapes that fit; no weight is read."""
    path = Path(path)
    meta, shapes = _read_raw(path)
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ModelFileError(path, f"metadata lacks {', '.join(missing)}")
    _check_format(path, meta)
    _check_checksum(path, meta)
    reason = validate_metadata(meta)
    if reason:
        raise ModelFileError(path, reason)
    _check_shapes(path, meta, shapes)
    return meta


def read_weights(path: str | Path, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a model file, checked against the SHA-256 stored in its (checked) metadata."""
    path = Path(path)
    meta = meta or read_metadata(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(path, f"cannot read weights (truncated or corrupt?): {error}") from error
    if _digest(state) != meta["weights_sha256"]:
        raise ModelFileError(
            path, "weights do not match the checksum in the metadata (file altered or damaged)"
        )
    return state


def build_model_from_metadata(meta: dict) -> nn.Module:
    return factory.create_model(
        meta["architecture"],
        num_classes=len(meta["labels"]),
        image_size=meta["input_size"],
        **meta.get("architecture_kwargs", {}),
    )


def load_model_file(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the network from metadata and load its weights strictly; returns ``(model.eval(), metadata)``."""
    meta = read_metadata(path)  # everything checked before a weight is read or a layer allocated
    state = read_weights(path, meta)
    model = build_model_from_metadata(meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0] if str(error) else "shape or key mismatch"
        raise ModelFileError(
            path,
            f"metadata (architecture {meta['architecture']}, {len(meta['labels'])} labels) does not match the weights: {first}",
        ) from error
    return model.eval(), meta


def load_backbone_weights(model: nn.Module, path: Path, *, head: str | None) -> None:
    """Load a model file's weights into ``model``, except a classifier whose shape differs (a new head).

    ``head`` is the attribute path of ``model``'s classifier (``factory.classifier_of``): only its tensors may be
    missing from the file or differ in shape; None when the model has no single classifier."""
    state = read_weights(path)
    own = model.state_dict()
    usable = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    skipped = sorted(set(state) - set(usable))
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise ModelFileError(path, "no weight in this file fits the chosen architecture")
    model.load_state_dict(usable, strict=False)
    unexpected_missing = [key for key in missing if head is None or not key.startswith(head + ".")]
    if unexpected_missing:
        raise ModelFileError(
            path,
            f"weights do not fit the architecture: {len(unexpected_missing)} tensors missing, "
            f"e.g. {unexpected_missing[0]} ({len(skipped)} unused)",
        )


# ---- writing ----------------------------------------------------------------------------------------------


def _write(path: Path, state: dict[str, torch.Tensor], meta: dict) -> Path:
    """Check ``meta`` against ``state``, seal it with its checksum and write the file atomically."""
    meta = {**meta, "format": FORMAT, "weights_sha256": _digest(state)}
    meta.pop(CHECKSUM_KEY, None)
    reason = validate_metadata(meta)
    if reason:
        raise ModelFileError(path, f"refusing to write: {reason}")
    _check_shapes(path, meta, {key: tuple(value.shape) for key, value in state.items()})
    meta[CHECKSUM_KEY] = metadata_checksum(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    save_file(state, str(temporary), metadata={METADATA_KEY: json.dumps(meta, allow_nan=False)})
    temporary.replace(path)  # never leave a half-written model under the final name
    return path


def save_model_file(path: str | Path, model: nn.Module, metadata: dict) -> Path:
    """Write ``model``'s weights and ``metadata`` (must hold at least ``REQUIRED_KEYS`` but ``format``)."""
    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **metadata,
        "num_classes": len(metadata["labels"]),
    }
    return _write(Path(path), state, meta)


def resave_model_file(path: str | Path, out: str | Path, change=None) -> Path:
    """Re-save a checked model file (current format) with ``change(metadata)`` applied; weights unchanged."""
    meta = read_metadata(path)
    state = read_weights(path, meta)
    meta = json.loads(json.dumps(meta))
    if change is not None:
        change(meta)
    return _write(Path(out), state, meta)


def upgrade_model_file(path: str | Path, out: str | Path | None = None) -> Path:
    """Re-save an ``emotionlab-model/1`` file in the current format, once its weights match their old checksum
    and its metadata is valid. Only for files you trust: the old format could not tell whether the labels or
    settings were edited."""
    path = Path(path)
    out = Path(out) if out is not None else path
    meta, shapes = _read_raw(path)
    if meta.get("format") != LEGACY_FORMAT:
        _check_format(path, meta)
        raise ModelFileError(path, f"already in the current format {FORMAT}; nothing to upgrade")
    reason = validate_metadata(meta)
    if reason:
        raise ModelFileError(path, reason)
    _check_shapes(path, meta, shapes)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(path, f"cannot read weights (truncated or corrupt?): {error}") from error
    if not isinstance(meta.get("weights_sha256"), str) or _digest(state) != meta["weights_sha256"]:
        raise ModelFileError(path, "weights do not match the old checksum (or it is missing); not upgraded")
    meta["upgraded"] = {"from": LEGACY_FORMAT, "package_version": __version__}
    return _write(out, state, meta)


def main(argv: list[str] | None = None) -> None:
    """``python -m emotionlab.models.io upgrade FILE [OUT]``: upgrade a trusted model file of the old format."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "upgrade":
        print(f"usage: {UPGRADE_HINT} [OUT]", file=sys.stderr)
        sys.exit(2)
    try:
        written = upgrade_model_file(args[1], args[2] if len(args) == 3 else None)
    except EmotionlabError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"upgraded: {written} ({FORMAT})")


if __name__ == "__main__":
    main()
