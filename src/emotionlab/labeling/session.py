"""Labelling photos one at a time: the image list, an append-only journal, the queue, undo, apply and export.

No web code here; ``emotionlab.labeling.app`` puts a page in front of ``LabelSession``. The journal is
``journal.py``; apply and export (``export.py``) read it back.

The journal is the single source of truth. Every action (label, skip, undo) is one JSON line, flushed and
fsync'd before the action is acknowledged, so killing the process loses nothing and replaying the journal
rebuilds the exact state. The folder being labelled is only ever read: the journal, copies (``apply_labels``)
and exports are refused inside it.

The journal is a text file anyone can edit, so ``apply`` and ``export`` trust none of it: every label must be one of
the classes and a plain folder name, every image a path that stays inside the folder (no ``..``, no absolute path,
no symlink leading out). One bad entry refuses the whole apply or export, each bad entry named, and nothing is
copied or written: a half-applied journal that someone tampered with would be harder to clean up than none.

Queue order, as the user sees it:
  1. images brought back by undo, the most recently undone first (undo shows the image again at once),
  2. images never seen, in path order,
  3. skipped images, in the order they were skipped (skipping again sends an image to the end again)."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.data.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.labeling.journal import ACTIONS, Journal, JournalEntry, _now, check_outside, read_journal

log = logging.getLogger("emotionlab")

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


# ---- state -----------------------------------------------------------------------------------------------


@dataclass
class LabelState:
    """What the journal says: labels per image, skip order, images brought back by undo, the undo stack."""

    labels: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # oldest skip first
    undone: list[str] = field(default_factory=list)  # most recently undone last
    history: list[JournalEntry] = field(default_factory=list)  # label/skip actions that undo can pop
    folders: list[str] = field(default_factory=list)  # folders named by `start` entries

    def apply(self, entry: JournalEntry) -> JournalEntry | None:
        """Apply one journal entry; for an undo, return the action it undid (None if there was none)."""
        if entry.action == "start":
            folder = entry.extra.get("folder")
            if folder and folder not in self.folders:
                self.folders.append(folder)
            return None
        if entry.action == "undo":
            if not self.history:
                return None
            undone = self.history.pop()
            self._release(undone.image)
            self.undone.append(undone.image)
            return undone
        image = entry.image
        self._release(image)
        if entry.action == "label":
            self.labels[image] = entry.label
        else:
            self.skipped.append(image)
        self.history.append(entry)
        return None

    def _release(self, image: str) -> None:
        self.labels.pop(image, None)
        if image in self.skipped:
            self.skipped.remove(image)
        if image in self.undone:
            self.undone.remove(image)

    @classmethod
    def replay(cls, entries: Iterable[JournalEntry]) -> LabelState:
        state = cls()
        for entry in entries:
            state.apply(entry)
        return state

    def queue(self, relpaths: Sequence[str]) -> list[str]:
        """Unlabelled images in the order they will be shown (see the module docstring)."""
        present = set(relpaths)
        front = [image for image in reversed(self.undone) if image in present and image not in self.labels]
        in_front = set(front)
        held = in_front | set(self.skipped)
        fresh = [image for image in relpaths if image not in self.labels and image not in held]
        back = [image for image in self.skipped if image in present and image not in in_front]
        return front + fresh + back


class StaleImageError(EmotionlabError):
    """The client acted on an image that is no longer the current one (another tab, a double press)."""


class LabelSession:
    """A folder, its classes and its journal: the state the labelling page shows and changes.

    Thread-safe: the web server calls it from several threads.
    """

    def __init__(
        self,
        folder: str | Path,
        classes: Sequence[str],
        journal: str | Path,
        *,
        images: FolderImages | None = None,
    ):
        self.images = images if images is not None else scan_images(folder)
        self.folder = self.images.root
        self.classes = list(classes)
        self.keys = assign_keys(self.classes)
        check_outside(journal, self.folder, "labelling journal")
        self.journal = Journal(journal)
        self.journal_path = self.journal.path.resolve()
        self.index = {relpath: index for index, relpath in enumerate(self.images.relpaths)}
        self._lock = threading.Lock()
        entries = read_journal(self.journal.path)
        self.state = LabelState.replay(entries)
        self.resumed_actions = sum(entry.action in ACTIONS for entry in entries)
        self.journal.open()
        self.journal.append(
            JournalEntry("start", extra={"folder": str(self.folder), "classes": self.classes})
        )
        self.last_action: dict | None = None

    # -- reading -------------------------------------------------------------------------------------------

    def warnings(self) -> list[str]:
        """Things the user should know when resuming: another folder, labels outside --classes, lost files."""
        messages = []
        others = [folder for folder in self.state.folders if folder != str(self.folder)]
        if others:
            messages.append(
                f"{self.journal_path} was also used for {', '.join(others)}; paths are matched by name"
            )
        foreign = Counter(label for label in self.state.labels.values() if label not in self.classes)
        if foreign:
            listed = ", ".join(f"{label} ({count})" for label, count in sorted(foreign.items()))
            messages.append(f"journal has labels not in --classes, kept as they are: {listed}")
        missing = [image for image in self.state.labels if image not in self.index]
        if missing:
            messages.append(
                f"{len(missing)} labelled image(s) are no longer in the folder (first: {missing[0]})"
            )
        return messages

    def snapshot(self) -> dict:
        """Everything the page needs: the current and next image ids, counts, classes and keys."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict:
        relpaths = self.images.relpaths
        queue = self.state.queue(relpaths)
        labelled = [image for image in relpaths if image in self.state.labels]
        per_class = Counter(self.state.labels[image] for image in labelled)
        skipped = set(self.state.skipped)

        def describe(relpath: str | None) -> dict | None:
            if relpath is None:
                return None
            return {"id": self.index[relpath], "name": relpath, "skipped": relpath in skipped}

        return {
            "folder": str(self.folder),
            "journal": str(self.journal_path),
            "classes": [
                {"name": name, "keys": self.keys[name], "count": per_class.get(name, 0)}
                for name in self.classes
            ],
            "total": len(relpaths),
            "done": len(labelled),
            "left": len(relpaths) - len(labelled),
            "skipped": sum(1 for image in queue if image in skipped),
            "unreadable": len(self.images.unreadable),
            "current": describe(queue[0] if queue else None),
            "next": describe(queue[1] if len(queue) > 1 else None),
            "can_undo": bool(self.state.history),
            "last": self.last_action,
        }

    def image_path(self, image_id: int) -> Path:
        """The file behind an id from ``snapshot``; KeyError for an id the server never gave out."""
        if not 0 <= image_id < len(self.images.relpaths):
            raise KeyError(image_id)
        return self.images.path(image_id)

    # -- actions -------------------------------------------------------------------------------------------

    def _current(self, image_id: int) -> str:
        self.image_path(image_id)  # KeyError for ids never given out
        relpath = self.images.relpaths[image_id]
        queue = self.state.queue(self.images.relpaths)
        if not queue or queue[0] != relpath:
            raise StaleImageError(f"image {relpath} is not the one waiting for a label; reload the page")
        return relpath

    def label(self, image_id: int, label: str) -> dict:
        """Label the current image (``image_id`` must be it, so a stale page cannot label the wrong one)."""
        if label not in self.classes:
            raise EmotionlabError(f"unknown class {label!r}; classes are {', '.join(self.classes)}")
        with self._lock:
            relpath = self._current(image_id)
            self._record(JournalEntry("label", relpath, label))
            self.last_action = {"action": "label", "image": relpath, "label": label}
            return self._snapshot()

    def skip(self, image_id: int) -> dict:
        """Send the current image to the end of the queue."""
        with self._lock:
            relpath = self._current(image_id)
            self._record(JournalEntry("skip", relpath))
            self.last_action = {"action": "skip", "image": relpath, "label": None}
            return self._snapshot()

    def undo(self) -> dict:
        """Take back the last label or skip (from this run or an earlier one); its image is shown again."""
        with self._lock:
            if not self.state.history:
                self.last_action = {"action": "undo", "image": None, "label": None}
                return self._snapshot()
            target = self.state.history[-1]
            self._record(JournalEntry("undo", target.image, target.label))
            self.last_action = {
                "action": "undo",
                "image": target.image,
                "label": target.label,
                "undid": target.action,
            }
            return self._snapshot()

    def _record(self, entry: JournalEntry) -> None:
        entry = JournalEntry(entry.action, entry.image, entry.label, _now())
        self.journal.append(entry)  # on disk first: if this fails, the state has not changed
        self.state.apply(entry)

    def close(self) -> None:
        self.journal.close()
