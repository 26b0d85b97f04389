"""Labelling photos one at a time: the image list, an append-only journal, the queue, undo, apply and export.

No web code here; ``emotionlab.labeling.app`` puts a page in front of ``LabelSession``. The folder's images and
the classes are ``folder.py``; the journal is ``journal.py``; apply and export (``export.py``) read it back.

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
  2. images never seen, in path order, or in the order of the journal's last ranking (``--order``, see
     ``ordering.py``; photos the ranking does not know come after the ranked ones, in path order),
  3. skipped images, in the order they were skipped (skipping again sends an image to the end again).

With ``--retrain`` a head is refitted in a background thread every N new labels; its ranking is journalled as
one `order` line and takes effect at once, except that the photo on screen stays the one on screen."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.errors import EmotionlabError
from emotionlab.labeling.folder import FolderImages, assign_keys, scan_images
from emotionlab.labeling.journal import ACTIONS, Journal, JournalEntry, _now, check_outside, read_journal
from emotionlab.labeling.ordering import Ordering

log = logging.getLogger("emotionlab")

# ---- state -----------------------------------------------------------------------------------------------


@dataclass
class LabelState:
    """What the journal says: labels per image, skip order, images brought back by undo, the undo stack."""

    labels: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # oldest skip first
    undone: list[str] = field(default_factory=list)  # most recently undone last
    history: list[JournalEntry] = field(default_factory=list)  # label/skip actions that undo can pop
    folders: list[str] = field(default_factory=list)  # folders named by `start` entries
    # The last `order` entry: rank per image, its probabilities (columns: its labels), where it came from.
    ranking: dict[str, int] = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)
    order: dict = field(default_factory=dict)

    def apply(self, entry: JournalEntry) -> JournalEntry | None:
        """Apply one journal entry; for an undo, return the action it undid (None if there was none)."""
        if entry.action == "start":
            folder = entry.extra.get("folder")
            if folder and folder not in self.folders:
                self.folders.append(folder)
            return None
        if entry.action == "order":
            rows = entry.extra.get("ranking") or []
            self.ranking = {row[0]: position for position, row in enumerate(rows)}
            self.scores = {row[0]: row[1:] for row in rows if len(row) > 1}
            self.order = {key: value for key, value in entry.extra.items() if key != "ranking"}
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
        if self.ranking:
            unranked = len(self.ranking)
            fresh.sort(key=lambda image: self.ranking.get(image, unranked))  # stable: the rest in path order
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
        ordering: Ordering | None = None,
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
        self.ordering = ordering
        described = ordering.describe() if ordering else {"order": "path", "model": None}
        self.journal.append(
            JournalEntry(
                "start",
                extra={"folder": str(self.folder), "classes": self.classes, **described},
            )
        )
        self.last_action: dict | None = None
        self.refitting = threading.Event()  # set while a head is being refitted in the background
        self.refits = 0  # refits finished in this run
        self._refit_thread: threading.Thread | None = None
        self._closed = False
        if ordering is None:  # started without --order this time: path order, as without a model
            self.state.ranking, self.state.scores, self.state.order = {}, {}, {}
        elif not self._resumes(ordering):
            self._record_order(ordering.initial(self.images.relpaths))

    def _resumes(self, ordering: Ordering) -> bool:
        """The journal's last ranking came from this order and model: keep it, so the order is the same."""
        last = self.state.order
        return bool(last) and all(last.get(key) == value for key, value in ordering.describe().items())

    def _record_order(self, extra: dict) -> None:
        entry = JournalEntry("order", time=_now(), extra=extra)
        self.journal.append(entry)
        self.state.apply(entry)

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
            shown = {"id": self.index[relpath], "name": relpath, "skipped": relpath in skipped}
            given = (self.state.order.get("given") or {}).get(relpath)
            if given is not None:  # reviewing suspects: the label the dataset gives this photo
                shown["given"] = given
            return shown

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
            "order": {
                "order": self.state.order.get("order", "path"),
                "model": self.state.order.get("model"),
                "round": self.state.order.get("round"),
                "refitting": self.refitting.is_set(),
            },
        }

    def suggestion(self, relpath: str) -> dict | None:
        """The journalled ranking's suggestion for a photo: label, confidence, top three, and its source."""
        with self._lock:
            return self._suggestion(relpath)

    def _suggestion(self, relpath: str) -> dict | None:
        probabilities = self.state.scores.get(relpath)
        labels = self.state.order.get("labels")
        if not probabilities or not labels or len(labels) != len(probabilities):
            return None
        top = sorted(zip(labels, probabilities, strict=True), key=lambda item: -item[1])[:3]
        return {
            "label": top[0][0],
            "confidence": top[0][1],
            "top": [list(item) for item in top],
            "in_classes": top[0][0] in self.classes,
            "model": self.state.order.get("model"),
            "order": self.state.order.get("order"),
            "round": self.state.order.get("round"),
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

    def label(self, image_id: int, label: str, *, suggestion: dict | None = None) -> dict:
        """Label the current image (``image_id`` must be it, so a stale page cannot label the wrong one).

        The journal line also says what was suggested for this photo and by what (model, order, refit round):
        the journalled ranking's suggestion, else ``suggestion`` (what the page showed from ``--model``)."""
        if label not in self.classes:
            raise EmotionlabError(f"unknown class {label!r}; classes are {', '.join(self.classes)}")
        with self._lock:
            relpath = self._current(image_id)
            shown = self._suggestion(relpath) or suggestion
            extra = {}
            if shown and shown.get("label") is not None:
                extra["suggestion"] = {
                    key: shown.get(key) for key in ("label", "confidence", "model", "order", "round")
                }
            self._record(JournalEntry("label", relpath, label, extra=extra))
            self.last_action = {"action": "label", "image": relpath, "label": label}
            self._maybe_refit()
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
        entry = JournalEntry(entry.action, entry.image, entry.label, _now(), entry.extra)
        self.journal.append(entry)  # on disk first: if this fails, the state has not changed
        self.state.apply(entry)

    # -- background refit (--retrain) ----------------------------------------------------------------------

    def _maybe_refit(self) -> None:
        """Start a refit when N labels came in since the last one (called with the lock held; never waits)."""
        ordering = self.ordering
        if ordering is None or not ordering.retrain_every or self._closed:
            return
        if self._refit_thread is not None and self._refit_thread.is_alive():
            return
        if len(self.state.labels) - int(self.state.order.get("trained_on") or 0) < ordering.retrain_every:
            return
        labels = dict(self.state.labels)
        round_number = int(self.state.order.get("round") or 0) + 1
        self.refitting.set()
        self._refit_thread = threading.Thread(
            target=self._refit, args=(labels, round_number), name="emotionlab-refit", daemon=True
        )
        self._refit_thread.start()

    def _refit(self, labels: dict[str, str], round_number: int) -> None:
        try:
            # The slow part runs without the lock: key presses are answered meanwhile.
            extra = self.ordering.refit(self.images.relpaths, labels, round_number)
            if extra is None:
                return
            with self._lock:
                if self._closed:
                    return
                queue = self.state.queue(self.images.relpaths)
                if queue and queue[0] not in self.state.undone and queue[0] not in self.state.skipped:
                    # The photo on screen stays on screen: a key pressed for it must not meet a new photo.
                    front = [row for row in extra["ranking"] if row[0] == queue[0]]
                    extra["ranking"] = front + [row for row in extra["ranking"] if row[0] != queue[0]]
                self._record_order(extra)
                self.refits += 1
        except Exception as error:  # noqa: BLE001 (a failed refit keeps the last ranking; labelling goes on)
            log.warning("refitting the head failed, keeping the last ranking: %s", error)
        finally:
            self.refitting.clear()

    def wait_for_refit(self, timeout: float | None = None) -> bool:
        """Wait until no refit is running (tests, benchmarks, shutdown); False on timeout."""
        thread = self._refit_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self.ordering is not None and hasattr(self.ordering, "close"):
            self.ordering.close()
        self.journal.close()
