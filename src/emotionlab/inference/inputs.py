"""Inputs of a prediction run: files, folders and glob patterns -> one sorted, de-duplicated file list."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.data.images import is_image_name
from emotionlab.errors import EmotionlabError

# Video files predict reads frame by frame (emotionlab.inference.video, the [video] extra).
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


def is_video_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# Files a photo folder holds that are nobody's photo: skipped without a line each, counted in the summary.
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}


@dataclass
class InputListing:
    """What the inputs name: ``files`` to score, and what folders hold that is not scored."""

    files: list[Path] = field(default_factory=list)
    # In a folder, not named as an image or video (notes.txt, photo.heic, a file without extension): named in
    # the summary, since a user may expect it scored.
    not_images: list[Path] = field(default_factory=list)
    # Hidden files and folders (dot-files: .DS_Store, macOS ._ copies, .git), Thumbs.db, desktop.ini: counted.
    junk: int = 0

    def summary(self, limit: int = 10) -> list[str]:
        """One line per kind of file a folder run did not score (none when every file was listed)."""
        lines = []
        if self.not_images:
            names = ", ".join(str(path) for path in self.not_images[:limit])
            more = f" and {len(self.not_images) - limit} more" if len(self.not_images) > limit else ""
            lines.append(
                f"not scored: {len(self.not_images)} file(s) not named as an image or video: {names}{more}"
            )
        if self.junk:
            lines.append(f"skipped {self.junk} hidden or system file(s) (.DS_Store, Thumbs.db, dot-files)")
        return lines


def _is_junk(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts) or relative.name.lower() in JUNK_NAMES


def list_inputs(items: Iterable[str | Path]) -> InputListing:
    """Files, folders (recursive: images and videos) and glob patterns -> a de-duplicated file list, sorted
    within each argument, arguments in the order given. Entries with an image or video name that are not
    regular files (a broken link, a link loop, a FIFO) are listed too: each gets its error record. What a folder
    holds besides is accounted for: other names in ``not_images``, hidden and system files in ``junk``."""

    listing = InputListing()
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            for entry in sorted(path.rglob("*")):
                if entry.is_dir():
                    continue
                if _is_junk(entry.relative_to(path)):
                    listing.junk += 1
                elif is_image_name(entry) or is_video_name(entry):
                    found.append(entry)
                else:
                    listing.not_images.append(entry)
        elif path.is_file() or os.path.lexists(path):
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise EmotionlabError(f"{item}: no such file, folder or matching pattern")
            found += matches
    listing.files = list(dict.fromkeys(found))
    return listing


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """The files ``list_inputs`` lists to score."""
    return list_inputs(items).files
