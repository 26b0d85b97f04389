"""Model files with PyTorch: build the network a file describes, load its weights strictly, save and re-save.

The format itself (metadata, checksums, sane values) is ``emotionlab.model_file``, readable without PyTorch;
weights are read by ``emotionlab.models.weights``. Before any weight is read, the metadata is validated (labels,
input size, normalisation, architecture and its arguments) and the tensor shapes in the file header are compared
with the network the metadata describes, built on PyTorch's ``meta`` device (no memory allocated).

Files of the previous format (``emotionlab-model/1``, checksum over the weights only) are refused too: their labels
and settings could have been edited unnoticed (``model_file.LEGACY_UPGRADE`` names the version that can upgrade one).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from emotionlab.errors import EmotionlabError
from emotionlab.model_file import (  # noqa: F401  (FORMAT ... metadata_checksum: public here too)
    CHECKSUM_KEY,
    FORMAT,
    METADATA_KEY,
    REQUIRED_KEYS,
    ModelFileError,
    check_values,
    metadata_checksum,
    read_header,
    read_raw,
)
from emotionlab.models import factory
from emotionlab.models.weights import digest as _digest
from emotionlab.models.weights import (  # noqa: F401  (public here too)
    is_model_file,
    load_backbone_weights,
    load_tensors,
    read_weights,
)
from emotionlab.version import __version__


def validate_metadata(meta: dict) -> str | None:
    """The first reason ``meta`` cannot describe a usable model (None when it can); no weight is needed."""
    reason = check_values(meta)
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


def read_metadata(path: str | Path) -> dict:
    """The checked metadata of a model file: checksum, sane values, and tensor shapes that fit; no weight is read."""
    path = Path(path)
    meta, shapes = read_header(path)
    reason = validate_metadata(meta)
    if reason:
        raise ModelFileError(path, reason)
    _check_shapes(path, meta, shapes)
    return meta


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
