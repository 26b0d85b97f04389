"""What flows through an import: the options, one photo to import, the photo after checking, and the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from emotionlab.data.duplicates import DEFAULT_THRESHOLD
from emotionlab.data.images import DEFAULT_MAX_PIXELS
from emotionlab.errors import EmotionlabError

# 20 MB is far above a real photo (a 24 MP JPEG is ~10 MB) and low enough that eight downloads in memory are harmless.
DEFAULT_MAX_BYTES = 20 * 1024**2

Status = Literal["imported", "duplicate", "near-duplicate", "rejected", "invalid", "failed"]


@dataclass(frozen=True)
class ImportOptions:
    """How ``import_photos`` fetches and checks; every default is the CLI's."""

    workers: int = 8  # concurrent downloads (and decodes): I/O bound, so more threads than cores
    retries: int = 3  # extra attempts after a failure that may pass; back-off doubles: 0.5 s, 1 s, 2 s
    backoff: float = 0.5
    timeout: float = 20.0  # seconds without a byte before an attempt gives up (each attempt: 6x this in all)
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    threshold: int = DEFAULT_THRESHOLD  # near-duplicate: perceptual-hash distance, bits of 64 (as the audit)
    label_from: Literal["folder", "csv"] | None = None  # None: csv for a URL list, folder otherwise
    labels_csv: str | None = None  # label_from="csv" with an archive or folder: path,label[,source,licence]

    def __post_init__(self):
        if self.workers < 1 or self.retries < 0 or self.backoff < 0 or self.timeout <= 0:
            raise EmotionlabError("--workers must be 1 or more, --retries 0 or more and --timeout above 0")
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise EmotionlabError("--max-mb and --max-pixels must be above 0")
        if not 0 <= self.threshold <= 64:
            raise EmotionlabError(f"threshold {self.threshold}: must be between 0 and 64 bits")
        if self.label_from not in (None, "folder", "csv"):
            raise EmotionlabError(f"--label-from {self.label_from!r}: choose folder or csv")


@dataclass
class Item:
    """One photo to import: where it comes from, its label, and its bytes when they are local."""

    origin: str  # the URL, the path in the folder, or ARCHIVE!member
    label: str
    source: str = ""
    licence: str = ""
    url: str | None = None
    data: bytes | None = None
    status: Status | None = None  # decided before any bytes are read (invalid label, link in an archive)
    reason: str = ""
    fetched_utc: str = ""


@dataclass
class Checked:
    """An item after fetching and checking: the image's facts, or why it is not kept."""

    item: Item
    data: bytes | None = None
    sha256: str = ""
    phash: int | None = None
    format: str = ""
    width: int = 0
    height: int = 0
    status: Status | None = None
    reason: str = ""
    unreachable: bool = False  # DNS failure or connection refused: evidence of being offline


@dataclass
class ImportReport:
    """What ``import_photos`` did; ``counts`` is per status of this run."""

    out: Path
    counts: Counter = field(default_factory=Counter)
    already_done: int = 0  # sources a previous run finished with (not fetched again)
    left_out: int = 0  # hidden files, __MACOSX, the labels CSV itself
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (origin, status, reason)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def too_large(size: int, limit: int) -> str:
    return f"file too large ({size:,} bytes, limit {limit:,})"
