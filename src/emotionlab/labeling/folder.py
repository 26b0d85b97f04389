"""The folder being labelled and the classes: its images in natural path order (each decoded once, the bad ones
named), the images as the page shows them, class names checked as folder names, and a key for each class."""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emotionlab.data.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from emotionlab.errors import EmotionlabError

# Keys the page keeps for itself, so no class may take them as its letter.
RESERVED_KEYS = {"z"}
# The page gets images at most this big (longest side): faster to send, and the screen shows no more anyway.
DISPLAY_MAX_SIDE = 1280
_DIGITS = re.compile(r"(\d+)")


# ---- classes ---------------------------------------------------------------------------------------------


def parse_classes(text: str | Sequence[str]) -> list[str]:
    """Parse ``"angry,happy,sad"`` into class names; each must be usable as a folder name (for ``apply``)."""
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    if len(names) < 2:
        raise EmotionlabError(
            f"--classes: need at least two class names, got {len(names)} ({','.join(names)})"
        )
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise EmotionlabError(f"--classes: class name given twice: {', '.join(duplicates)}")
    for name in names:
        if not is_folder_name(name):
            raise EmotionlabError(f"--classes: {name!r} cannot be a folder name; use letters, digits, - or _")
    return names


def is_folder_name(name: object) -> bool:
    """A class name usable as one folder level: no separators, no ``..``, no hidden or control characters."""
    return (
        isinstance(name, str)
        and bool(name.strip())
        and name == name.strip()
        and not name.startswith(".")
        and not any(char in name for char in '/\\:*?"<>|')
        and all(char.isprintable() for char in name)
    )


def assign_keys(classes: Sequence[str]) -> dict[str, list[str]]:
    """Keyboard keys per class: digits 1..9 in order, plus the first letter when no other class shares it."""
    first_letters = Counter(name[0].lower() for name in classes)
    keys: dict[str, list[str]] = {}
    for index, name in enumerate(classes):
        own = [str(index + 1)] if index < 9 else []
        letter = name[0].lower()
        if letter.isalpha() and first_letters[letter] == 1 and letter not in RESERVED_KEYS:
            own.append(letter)
        keys[name] = own
    return keys


# ---- images ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderImages:
    """The readable images under a folder (sorted relative POSIX paths) and the files that were skipped."""

    root: Path
    relpaths: list[str]
    unreadable: list[tuple[str, str]]

    def path(self, index: int) -> Path:
        return self.root / self.relpaths[index]


def natural_key(relpath: str) -> tuple:
    """Sort ``img2`` before ``img10``, as a file browser does."""
    parts = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(relpath)
    )
    return (
        parts,
        relpath,
    )  # the exact path breaks ties (A.png / a.png), so the order never depends on the disk


def scan_images(folder: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> FolderImages:
    """Find every image under ``folder`` (recursively; hidden files and folders ignored).

    The bytes decide, not the extension: each file is decoded once with ``read_image``, and the ones that
    cannot be used are returned with the reason instead of being shown later as a broken picture.
    """
    root = Path(folder)
    if not root.is_dir():
        raise EmotionlabError(f"{root}: folder not found")
    root = root.resolve()
    relpaths: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            relpath = path.relative_to(root).as_posix()
            try:
                read_image(path, max_pixels=max_pixels)
            except ImageReadError as error:
                unreadable.append((relpath, error.reason))
                continue
            relpaths.append(relpath)
    relpaths.sort(key=natural_key)
    unreadable.sort(key=lambda item: natural_key(item[0]))
    return FolderImages(root=root, relpaths=relpaths, unreadable=unreadable)


def display_bytes(path: str | Path, *, max_side: int = DISPLAY_MAX_SIDE) -> tuple[bytes, str]:
    """The image as a browser can show it: upright RGB, at most ``max_side`` pixels, PNG (small) or JPEG.

    Re-encoding also means TIFF, PPM or a PNG named ``.jpg`` display the same as any other file.
    """
    image = read_image(path)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    if image.width * image.height <= 256 * 256:  # tiny faces: lossless, JPEG artefacts show when enlarged
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), "image/jpeg"
