"""Small file helpers shared across modules (no heavy imports)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` then rename over ``path``: readers and parallel workers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# Model files record their training images by content: the first 16 hex digits (64 bits) of each file's SHA-256.
# 17 bytes per image in the JSON instead of 67, and a chance collision among a million images is about 3e-8.
CONTENT_DIGEST_HEX = 16


def content_digest(path: str | Path) -> str:
    """The first ``CONTENT_DIGEST_HEX`` hex digits of the SHA-256 of the file's bytes (what it is, not its name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:CONTENT_DIGEST_HEX]


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, links and ``..`` resolved on both sides."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def ensure_outside_root(root: str | Path, target: str | Path) -> None:
    """Refuse to write ``target`` inside the dataset ``root``: tools never add files to a dataset."""
    from emotionlab.errors import EmotionlabError

    if is_inside(target, root):
        raise EmotionlabError(f"{target}: is inside the dataset root {root}; write outputs elsewhere")
