"""Apply and export a labelling journal: copy labelled images into ``DEST/<label>/`` or write ``path,label``
rows. The journal is trusted in nothing: every label and path is checked, and one bad entry refuses it all."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from emotionlab.errors import EmotionlabError
from emotionlab.labeling.folder import is_folder_name
from emotionlab.labeling.journal import check_outside, read_journal
from emotionlab.labeling.session import LabelState
from emotionlab.labels import EMOTIONS

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


def checked_labels(
    folder: Path, journal: str | Path, classes: Sequence[str] | None
) -> dict[str, tuple[Path, str]]:
    """``{relpath: (source file, label)}`` for every labelled image, after checking every entry of the journal.

    Any entry whose label is not one of ``classes`` (default: the journal's own classes) or not a folder name, or
    whose image is not inside ``folder``, refuses them all: one line naming each bad entry, nothing done."""
    labels = labelled_images(folder, journal)
    allowed = list(classes) if classes is not None else journal_classes(journal)
    checked: dict[str, tuple[Path, str]] = {}
    problems: list[str] = []
    for relpath, label in labels.items():
        if not is_folder_name(label) or label not in allowed:
            problems.append(
                f"label {label!r} of {relpath!r} is not one of the classes ({', '.join(allowed)})"
            )
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
