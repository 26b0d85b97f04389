"""Labelling photos one at a time: the image list, an append-only journal, the queue, undo, apply and export.

No web code here; ``emotionlab.serving.label_app`` puts a page in front of ``LabelSession``.

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
  3. skipped images, in the order they were skipped (skipping again sends an image to the end again).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from emotionlab.data.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.labels import EMOTIONS

log = logging.getLogger("emotionlab")

JOURNAL_SUFFIX = ".labels.jsonl"
ACTIONS = ("label", "skip", "undo")
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


# ---- journal ---------------------------------------------------------------------------------------------


def default_journal_path(folder: str | Path) -> Path:
    """``./<folder name>.labels.jsonl`` in the current directory: next to where the user is, not in the data."""
    name = Path(folder).resolve().name or "labels"
    return Path.cwd() / f"{name}{JOURNAL_SUFFIX}"


def _is_inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_outside(path: str | Path, folder: str | Path, what: str) -> None:
    """Refuse to write ``path`` inside the folder being labelled (a dataset root is never modified)."""
    if _is_inside(Path(path), Path(folder)):
        raise EmotionlabError(
            f"{path}: the {what} would be written inside the folder being labelled ({Path(folder).resolve()}); "
            + (
                "pass --journal FILE outside it, or run the command from another directory"
                if what == "labelling journal"
                else "choose a place outside it"
            )
        )


@dataclass(frozen=True)
class JournalEntry:
    action: str  # label | skip | undo | start
    image: str | None = None
    label: str | None = None
    time: str = ""
    extra: dict = field(default_factory=dict)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def read_journal(path: str | Path) -> list[JournalEntry]:
    """Read a journal. A last line cut short (the process was killed while writing it) is ignored; any other
    unreadable line is an error naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EmotionlabError(f"{path}: cannot read the labelling journal ({error})") from error
    lines = text.split("\n")
    entries: list[JournalEntry] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            action = record["action"]
            if not isinstance(record, dict) or action not in (*ACTIONS, "start"):
                raise ValueError(f"unknown action {action!r}")
            if action in ("label", "skip") and not isinstance(record.get("image"), str):
                raise ValueError(f"a {action} entry needs an image path")
            if action == "label" and not isinstance(record.get("label"), str):
                raise ValueError("a label entry needs a label")
        except (ValueError, KeyError, TypeError) as error:
            # Our writer starts every line with {"time": so a cut-short last line is recognisable; anything
            # else means this file is not a journal, and it must not be touched.
            if number == len(lines) and not text.endswith("\n") and line.startswith('{"time": "'):
                log.warning(
                    "%s: ignoring an incomplete last line (the labeller was stopped while writing)", path
                )
                break
            raise EmotionlabError(
                f"{path}: line {number} is not a labelling journal entry ({error}); "
                "is this the right --journal file?"
            ) from error
        extra = {k: v for k, v in record.items() if k not in ("action", "image", "label", "time")}
        entries.append(
            JournalEntry(
                record["action"], record.get("image"), record.get("label"), record.get("time", ""), extra
            )
        )
    return entries


class Journal:
    """An append-only JSON-lines file. ``append`` returns only once the line is on disk (flush + fsync)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle = None
        self._lock = threading.Lock()

    def open(self) -> None:
        if self._handle is not None:
            return
        if self.path.is_dir():
            raise EmotionlabError(f"{self.path}: is a folder; --journal must be a file")
        if not self.path.parent.is_dir():
            raise EmotionlabError(f"{self.path}: the journal's folder does not exist")
        created = not self.path.exists()
        try:
            handle = open(self.path, "a+b")  # noqa: SIM115 (kept open for the whole session)
        except OSError as error:
            raise EmotionlabError(
                f"{self.path}: cannot write the labelling journal ({error.strerror})"
            ) from error
        _lock_exclusive(handle, self.path)
        # The next entry must start on a fresh line. A complete last line without its newline (an edited
        # file) is kept; a line cut short by a kill was never acknowledged and is dropped.
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.seek(0)
                data = handle.read()
                keep = data.rfind(b"\n") + 1
                try:
                    json.loads(data[keep:])
                    handle.write(b"\n")
                except ValueError:
                    handle.truncate(keep)
                os.fsync(handle.fileno())
        self._handle = handle
        if created:  # make the new file's directory entry durable too
            _fsync_dir(self.path.parent)

    def append(self, entry: JournalEntry) -> None:
        record = {
            "time": entry.time or _now(),
            "action": entry.action,
            "image": entry.image,
            "label": entry.label,
        }
        record.update(entry.extra)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._handle is None:
                self.open()
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _lock_exclusive(handle, path: Path) -> None:
    """One labeller per journal: a second one would interleave its actions with the first's."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock, carry on
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise EmotionlabError(
            f"{path}: the journal is in use by another `emotionlab label`; stop that one first"
        ) from error


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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


# ---- apply and export -----------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    copied: Counter = field(default_factory=Counter)  # label -> files copied now
    already: Counter = field(default_factory=Counter)  # label -> identical file already in DEST
    missing: list[str] = field(default_factory=list)  # labelled, but no longer in the folder
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source relpath, DEST-relative name)

    @property
    def total(self) -> int:
        return sum(self.copied.values()) + sum(self.already.values())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def labelled_images(folder: str | Path, journal: str | Path) -> dict[str, str]:
    """``{relpath: label}`` from a journal, in path order, unchecked; an error when there is no journal to read."""
    journal = Path(journal)
    if not journal.is_file():
        raise EmotionlabError(f"{journal}: no labelling journal here; label first, or pass --journal")
    labels = LabelState.replay(read_journal(journal)).labels
    return dict(sorted(labels.items()))


def journal_classes(journal: str | Path) -> list[str]:
    """The classes the journal's sessions were started with (in first-seen order); EMOTIONS when none say."""
    classes: list[str] = []
    for entry in read_journal(journal):
        listed = entry.extra.get("classes") if entry.action == "start" else None
        for name in listed if isinstance(listed, list) else []:
            if isinstance(name, str) and name not in classes:
                classes.append(name)
    return classes or list(EMOTIONS)


def source_path(folder: Path, relpath: str) -> Path:
    """The file a journal entry names, resolved; an error unless it stays inside ``folder`` (resolved)."""
    if not relpath or PurePosixPath(relpath).is_absolute() or PureWindowsPath(relpath).is_absolute():
        raise ValueError("not a path relative to the folder")
    if ".." in PurePosixPath(relpath).parts or ".." in PureWindowsPath(relpath).parts:
        raise ValueError("leaves the folder (..)")
    resolved = (folder / relpath).resolve()
    if not resolved.is_relative_to(folder):
        raise ValueError("leads outside the folder (a symbolic link)")
    return resolved


def checked_labels(folder: Path, journal: str | Path, classes: Sequence[str] | None) -> dict[str, tuple[Path, str]]:
    """``{relpath: (source file, label)}`` for every labelled image, after checking every entry of the journal.

    Any entry whose label is not one of ``classes`` (default: the journal's own classes) or not a folder name, or
    whose image is not inside ``folder``, refuses them all: one line naming each bad entry, nothing done."""
    labels = labelled_images(folder, journal)
    allowed = list(classes) if classes is not None else journal_classes(journal)
    checked: dict[str, tuple[Path, str]] = {}
    problems: list[str] = []
    for relpath, label in labels.items():
        if not is_folder_name(label) or label not in allowed:
            problems.append(f"label {label!r} of {relpath!r} is not one of the classes ({', '.join(allowed)})")
            continue
        try:
            checked[relpath] = (source_path(folder, relpath), label)
        except ValueError as reason:
            problems.append(f"image {relpath!r} {reason}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise EmotionlabError(
            f"{journal}: refused, nothing copied or written: {len(problems)} journal entr"
            f"{'y is' if len(problems) == 1 else 'ies are'} not safe to use: {shown}. Fix or remove those lines "
            "(was the journal edited by hand?), or pass the --classes you labelled with"
        )
    return checked


def apply_labels(
    folder: str | Path, journal: str | Path, dest: str | Path, *, classes: Sequence[str] | None = None
) -> ApplyReport:
    """Copy (never move) each labelled image to ``DEST/<label>/<file name>``; source files are only read.

    Every journal entry is checked first (``checked_labels``): one label outside ``classes`` or one image outside
    the folder refuses the whole apply, and nothing is copied.

    A name already taken in ``DEST/<label>`` by a different file gets ``-2``, ``-3``, ... before its suffix
    (images are handled in path order, so the result is the same every run). A file already there with the
    same bytes counts as done, so running apply again after labelling more adds only the new images.
    """
    folder, dest = Path(folder).resolve(), Path(dest)
    if not folder.is_dir():
        raise EmotionlabError(f"{folder}: folder not found")
    check_outside(dest, folder, "--apply destination")
    if dest.exists() and not dest.is_dir():
        raise EmotionlabError(f"{dest}: --apply destination exists and is not a folder")
    report = ApplyReport()
    for relpath, (source, label) in checked_labels(folder, journal, classes).items():
        if not source.is_file():
            report.missing.append(relpath)
            continue
        target_dir = dest / label
        target_dir.mkdir(parents=True, exist_ok=True)
        source_hash = None
        source_name = PurePosixPath(relpath).name  # the name the user saw, also for a symbolic link
        stem, suffix = os.path.splitext(source_name)
        for attempt in range(1, 10_000):
            name = source_name if attempt == 1 else f"{stem}-{attempt}{suffix}"
            target = target_dir / name
            if not target.exists():
                _copy_atomic(source, target)
                report.copied[label] += 1
                if attempt > 1:
                    report.renamed.append((relpath, f"{label}/{name}"))
                break
            source_hash = source_hash or _sha256(source)
            if target.is_file() and _sha256(target) == source_hash:
                report.already[label] += 1
                break
        else:
            raise EmotionlabError(f"{target_dir}: too many files named like {source_name}")
    return report


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy through a temporary name, so a copy cut short never looks like a finished file."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    os.replace(partial, target)


def export_csv(
    folder: str | Path, journal: str | Path, csv_path: str | Path, *, classes: Sequence[str] | None = None
) -> int:
    """Write ``path,label`` rows (paths relative to the folder, like a manifest); returns the row count.

    Checked as ``apply_labels`` is: a manifest row pointing outside the folder would be read as training data."""
    folder, csv_path = Path(folder).resolve(), Path(csv_path)
    check_outside(csv_path, folder, "--export file")
    labels = {relpath: label for relpath, (_, label) in checked_labels(folder, journal, classes).items()}
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for relpath, label in labels.items():
            writer.writerow([relpath, label])
    return len(labels)


def apply_and_export(
    folder: str | Path,
    journal: str | Path,
    *,
    dest: str | Path | None = None,
    csv_path: str | Path | None = None,
    classes: Sequence[str] | None = None,
    out=print,
) -> ApplyReport | None:
    """The `emotionlab label FOLDER --apply DEST [--export CSV]` command: no server, a summary printed.

    ``classes``: the labels allowed in the journal (default: the classes its sessions were started with)."""
    journal = Path(journal)
    report = None
    if dest is not None:
        report = apply_labels(folder, journal, dest, classes=classes)
        copied = ", ".join(f"{label} {count}" for label, count in sorted(report.copied.items())) or "none"
        out(f"copied {sum(report.copied.values())} image(s) into {dest}: {copied}")
        if report.already:
            out(f"already there with the same bytes: {sum(report.already.values())} image(s)")
        for relpath, name in report.renamed:
            out(f"name taken, copied as {name}: {relpath}")
        if report.missing:
            out(f"not found any more, not copied: {len(report.missing)} (first: {report.missing[0]})")
        out(f"the files in {Path(folder)} were copied, not moved; journal: {journal}")
    if csv_path is not None:
        rows = export_csv(folder, journal, csv_path, classes=classes)
        out(f"wrote {rows} row(s) (path,label; paths relative to {Path(folder)}) to {csv_path}")
    return report
