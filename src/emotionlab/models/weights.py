"""Reading a model file's weights: the tensors checked against their SHA-256, and a file's weights loaded into a
network as its backbone (a new classifier may differ). Imported by ``factory`` (``--weights FILE``) and ``io``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from emotionlab.errors import EmotionlabError
from emotionlab.model_file import ModelFileError, read_header, read_raw


def digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors (name, dtype, shape and bytes of each, by name): the ``weights_sha256`` of a file."""
    hasher = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        hasher.update(key.encode())
        hasher.update(str(tensor.dtype).encode())
        hasher.update(str(tuple(tensor.shape)).encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return hasher.hexdigest()


def is_model_file(path: str | Path) -> bool:
    """True for a safetensors file carrying emotionlab metadata (valid or not: loading checks the rest)."""
    try:
        read_raw(Path(path))
        return True
    except EmotionlabError:
        return False


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, unchecked (``read_weights`` checks them)."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(path, f"cannot read weights (truncated or corrupt?): {error}") from error


def read_weights(path: str | Path, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a model file, checked against the SHA-256 stored in its (checked) metadata."""
    path = Path(path)
    meta = meta or read_header(path)[0]
    state = load_tensors(path)
    if digest(state) != meta["weights_sha256"]:
        raise ModelFileError(
            path, "weights do not match the checksum in the metadata (file altered or damaged)"
        )
    return state


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
