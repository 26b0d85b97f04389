"""Where emotionlab finds and keeps files: the shipped assets, the cache, and the default dataset.

One environment variable per kind of place:

- ``EMOTIONLAB_CACHE``: the cache root (default ``~/.cache/emotionlab``). Under it: ``faces/`` (face boxes and
  crops by file content), ``features/`` (backbone features of the transfer recipe), ``onnx/`` (ONNX exports).
  Everything there can be deleted; it is made again when needed.
- ``EMOTIONLAB_DATA``: the dataset when a command is given none (default: ``../shared/datasets/seed-emotions``
  from the current folder, a checkout's place in the project's workspace; never relative to the installed code).

``ASSETS`` is the folder of files shipped inside the package (the models, BlazeFace).
"""

from __future__ import annotations

import os
from pathlib import Path

from emotionlab.errors import EmotionlabError

ASSETS = Path(__file__).resolve().parent / "assets"  # inside the installed package, not the repository

CACHE_ENV = "EMOTIONLAB_CACHE"
DATA_ENV = "EMOTIONLAB_DATA"
SEED_DOWNLOAD_HINT = "get it with `emotionlab data download seed-emotions DEST` and pass --data DEST"


def cache_dir(kind: str) -> Path:
    """``$EMOTIONLAB_CACHE/<kind>`` when set, else ``~/.cache/emotionlab/<kind>`` (``kind``: faces, features,
    onnx)."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "emotionlab") / kind


def default_data_root() -> Path | None:
    """Where the seed dataset is when no path is given: $EMOTIONLAB_DATA, else ../shared/datasets/seed-emotions
    from the current folder (a checkout's root in the project's workspace); never relative to the installed code."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    candidate = Path.cwd().parent / "shared/datasets/seed-emotions"
    return candidate if candidate.is_dir() else None


def resolve_data_root(explicit: str | Path | None) -> Path:
    """An explicit path wins, then $EMOTIONLAB_DATA, then the workspace copy; otherwise a clear error."""
    if explicit is not None:
        root = Path(explicit)
    else:
        found = default_data_root()
        if found is None:
            raise EmotionlabError(f"no dataset given and none found: set {DATA_ENV} or {SEED_DOWNLOAD_HINT}")
        root = found
    if not root.is_dir():
        raise EmotionlabError(f"{root}: dataset folder not found")
    return root
