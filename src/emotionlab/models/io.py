"""Model files: safetensors weights + JSON metadata in the same file. Loading never unpickles.

The metadata (labels in order, architecture, input size, normalisation, face-crop settings, training summary,
package version) travels with the weights, so nothing is ever guessed from a file name. A SHA-256 of the tensors
is stored too, so a tampered file is refused rather than silently mispredicting.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from emotionlab import __version__
from emotionlab.errors import EmotionlabError

FORMAT = "emotionlab-model/1"
METADATA_KEY = "emotionlab"
REQUIRED_KEYS = ("format", "architecture", "labels", "input_size", "normalization")


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


def save_model_file(path: str | Path, model: nn.Module, metadata: dict) -> Path:
    """Write ``model``'s weights and ``metadata`` (must hold at least ``REQUIRED_KEYS`` but ``format``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **metadata,
        "num_classes": len(metadata["labels"]),
        "weights_sha256": _digest(state),
    }
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ValueError(f"model metadata lacks {missing}")
    temporary = path.with_name(path.name + ".partial")
    save_file(state, str(temporary), metadata={METADATA_KEY: json.dumps(meta)})
    temporary.replace(path)  # never leave a half-written model under the final name
    return path


def is_model_file(path: str | Path) -> bool:
    try:
        read_metadata(path)
        return True
    except EmotionlabError:
        return False


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata of a model file, without reading the weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "model file not found")
    with path.open("rb") as handle:
        head = handle.read(9)
    # A safetensors file is an 8-byte header length then "{"; torch.save writes a zip ("PK\x03\x04") or a pickle.
    if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):
        raise ModelFileError(path, "this is a pickle/zip (torch.save) file; emotionlab loads only safetensors model files")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(path, f"not a readable safetensors model file (truncated or corrupt?): {error}") from error
    if raw is None:
        raise ModelFileError(path, "safetensors file without emotionlab metadata (not an emotionlab model)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ModelFileError(path, f"metadata is not valid JSON: {error}") from error
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ModelFileError(path, f"metadata lacks {', '.join(missing)}")
    if not str(meta["format"]).startswith("emotionlab-model/"):
        raise ModelFileError(path, f"unknown format {meta['format']!r}")
    return meta


def read_weights(path: str | Path, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a model file, checked against the SHA-256 stored in its metadata."""
    meta = meta or read_metadata(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(path, f"cannot read weights (truncated or corrupt?): {error}") from error
    expected = meta.get("weights_sha256")
    if expected and _digest(state) != expected:
        raise ModelFileError(path, "weights do not match the checksum in the metadata (file altered or damaged)")
    return state


def build_model_from_metadata(meta: dict) -> nn.Module:
    from emotionlab.models.registry import create_model

    return create_model(
        meta["architecture"],
        num_classes=len(meta["labels"]),
        image_size=meta["input_size"],
        **meta.get("architecture_kwargs", {}),
    )


def load_model_file(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the network from metadata and load its weights strictly; returns ``(model.eval(), metadata)``."""
    meta = read_metadata(path)
    state = read_weights(path, meta)
    model = build_model_from_metadata(meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0] if str(error) else "shape or key mismatch"
        raise ModelFileError(
            path, f"metadata (architecture {meta['architecture']}, {len(meta['labels'])} labels) does not match the weights: {first}"
        ) from error
    return model.eval(), meta


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a model file's weights into ``model``, except a classifier whose shape differs (a new head)."""
    state = read_weights(path)
    own = model.state_dict()
    usable = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    skipped = sorted(set(state) - set(usable))
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise ModelFileError(path, "no weight in this file fits the chosen architecture")
    model.load_state_dict(usable, strict=False)
    unexpected_missing = [key for key in missing if "classifier" not in key and "head" not in key and "fc." not in key]
    if unexpected_missing:
        raise ModelFileError(path, f"weights do not fit the architecture: {len(unexpected_missing)} tensors missing, "
                                   f"e.g. {unexpected_missing[0]} ({len(skipped)} unused)")
