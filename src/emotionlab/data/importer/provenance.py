"""``OUT/provenance.csv``: one row per decision, appended as it is made, and read back so a re-run resumes."""

from __future__ import annotations

import csv
from pathlib import Path

from emotionlab.data.audit import dataset_files, inspect_file
from emotionlab.data.importer.items import Checked
from emotionlab.data.importer.known import KnownPhotos

PROVENANCE_FILE = "provenance.csv"
PROVENANCE_COLUMNS = (
    "origin",
    "status",
    "reason",
    "label",
    "path",
    "sha256",
    "phash",
    "source",
    "licence",
    "fetched_utc",
    "format",
    "width",
    "height",
    "bytes",
)
# Statuses that a re-run does not try again (a failed download is tried again).
FINAL_STATUSES = ("imported", "duplicate", "near-duplicate", "rejected", "invalid")


class ProvenanceLog:
    """``OUT/provenance.csv``: one row per decision, appended and flushed as it is made (a crash loses none)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                self.rows = [row for row in csv.DictReader(handle) if row.get("origin")]
        self._handle = None

    def append(self, row: dict) -> None:
        if self._handle is None:
            new = not self.path.is_file() or self.path.stat().st_size == 0
            self._handle = self.path.open("a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(
                self._handle, fieldnames=PROVENANCE_COLUMNS, extrasaction="ignore", lineterminator="\n"
            )
            if new:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._handle.flush()
        self.rows.append(row)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def provenance_row(checked: Checked, status: str, reason: str = "", path: str = "") -> dict:
    item = checked.item
    return {
        "origin": item.origin,
        "status": status,
        "reason": reason,
        "label": item.label,
        "path": path,
        "sha256": checked.sha256,
        "phash": f"{checked.phash:016x}" if checked.phash is not None else "",
        "source": item.source,
        "licence": item.licence,
        "fetched_utc": item.fetched_utc,
        "format": checked.format,
        "width": checked.width or "",
        "height": checked.height or "",
        "bytes": len(checked.data) if checked.data is not None else "",
    }


def previous_imports(out: Path, provenance: ProvenanceLog, known: KnownPhotos) -> tuple[set[str], set[str]]:
    """(origins finished by earlier runs, their SHA-256s); photos in OUT join the near-duplicate check."""
    done, shas = set(), set()
    recorded = {}
    for row in provenance.rows:
        if row["status"] in FINAL_STATUSES:
            done.add(row["origin"])
        if row["status"] == "imported":
            shas.add(row["sha256"])
            recorded[row["path"]] = row
    for path, _, _ in dataset_files(out) if out.is_dir() else []:
        relpath = path.relative_to(out).as_posix()
        if "/" not in relpath:
            continue  # provenance.csv and other top-level files
        row = recorded.get(relpath)
        if row is not None and row.get("phash"):
            known.add(row["sha256"], int(row["phash"], 16), relpath)
            continue
        record, hash_value = inspect_file(path, relpath, None, None)  # a photo without a row: hash it again
        if record.readable:
            shas.add(record.sha256)
            known.add(record.sha256, hash_value, relpath)
    return done, shas
