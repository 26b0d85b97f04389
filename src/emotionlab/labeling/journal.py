"""The labelling journal: one JSON line per action (label, skip, undo), flushed and fsync'd before the action
is acknowledged, one writer at a time (an exclusive lock), and never inside the folder being labelled."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.errors import EmotionlabError
from emotionlab.fileio import is_inside

log = logging.getLogger("emotionlab")

JOURNAL_SUFFIX = ".labels.jsonl"
ACTIONS = ("label", "skip", "undo")


def default_journal_path(folder: str | Path) -> Path:
    """``./<folder name>.labels.jsonl`` in the current directory: next to where the user is, not in the data."""
    name = Path(folder).resolve().name or "labels"
    return Path.cwd() / f"{name}{JOURNAL_SUFFIX}"


def check_outside(path: str | Path, folder: str | Path, what: str) -> None:
    """Refuse to write ``path`` inside the folder being labelled (a dataset root is never modified)."""
    if is_inside(path, folder):
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
    action: str  # label | skip | undo | start | order (a ranking of the photos, see ordering.py)
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
            if not isinstance(record, dict) or action not in (*ACTIONS, "start", "order"):
                raise ValueError(f"unknown action {action!r}")
            if action in ("label", "skip") and not isinstance(record.get("image"), str):
                raise ValueError(f"a {action} entry needs an image path")
            if action == "label" and not isinstance(record.get("label"), str):
                raise ValueError("a label entry needs a label")
            ranking = record.get("ranking")
            if action == "order" and not (
                isinstance(ranking, list)
                and all(isinstance(row, list) and row and isinstance(row[0], str) for row in ranking)
            ):
                raise ValueError("an order entry needs a ranking of [image, probabilities...] rows")
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
