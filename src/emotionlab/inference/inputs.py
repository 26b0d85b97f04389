"""Inputs of a prediction run: files, folders and glob patterns -> one sorted, de-duplicated file list."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from emotionlab.data.images import is_image_name
from emotionlab.errors import EmotionlabError

# Video files predict reads frame by frame (emotionlab.inference.video, the [video] extra).
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


def is_video_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files, folders (recursive: images and videos) and glob patterns -> a de-duplicated file list, sorted
    within each argument, arguments in the order given. Entries with an image or video name that are not
    regular files (a broken link, a link loop, a FIFO) are listed too: each gets its error record."""
    import glob

    def wanted(entry: Path) -> bool:
        return (is_image_name(entry) or is_video_name(entry)) and not entry.is_dir()

    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if wanted(p))
        elif path.is_file() or os.path.lexists(path):
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise EmotionlabError(f"{item}: no such file, folder or matching pattern")
            found += matches
    return list(dict.fromkeys(found))
