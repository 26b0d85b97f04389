"""``emotionlab data import``: photos from a URL list, an archive or a folder into a new dataset folder.

SOURCE is one of
- a CSV of ``url,label[,source,licence]`` (a header row naming the columns is optional);
- a zip or tar (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``) archive, or
- a folder,
where archive and folder entries take their label from the folder that holds them (``happy/1.jpg``,
``photos/train/happy/1.jpg``) or, with ``label_from="csv"``, from a CSV of ``path,label[,source,licence]``.

Every photo is checked before it is kept, and every decision is written to ``OUT/provenance.csv``:
- downloads run in a thread pool, with a timeout, retries with exponential back-off for errors that may pass
  (timeouts, broken connections, HTTP 408/429/5xx) and none for those that will not (404, a file too large);
- the body is streamed and dropped as soon as it passes the size limit; the pixel limit is checked from the
  header before decoding;
- the bytes decide what a file is (Pillow identifies it), only ``ALLOWED_FORMATS`` are kept, and the image
  must decode completely;
- archives are read in memory, entry by entry: an entry whose path could leave the archive refuses the whole
  archive, links and devices are never imported, and the total unpacked size is bounded;
- exact (SHA-256) and near (perceptual hash, the audit's threshold) duplicates of a photo already kept, or
  of one in an existing dataset (``against``), are skipped and the provenance says of which;
- labels must be folder-safe names (no ``/``, no ``..``, not a split name);
- kept photos are written atomically as ``OUT/<label>/<sha256[:16]>.<ext>``.

The source is only ever read. Running the same command again resumes: sources already imported or refused
for good are not fetched again, and only failed downloads are retried. With no network at all (every host
unresolvable or refusing connections) the command stops with one line saying so.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import re
import socket
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from emotionlab import __version__
from emotionlab.data.audit import (
    DEFAULT_THRESHOLD,
    _popcount,
    dataset_files,
    ensure_outside_root,
    inspect_file,
    perceptual_hash,
)
from emotionlab.data.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import write_atomic
from emotionlab.isolation import error_reason, printable
from emotionlab.labels import SPLIT_NAMES

# Pillow format -> the extension a kept file gets. MPO is how Pillow names a camera JPEG with a preview image.
ALLOWED_FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
    "TIFF": "tif",
}
DECODERS = [
    "JPEG",
    "PNG",
    "WEBP",
    "BMP",
    "GIF",
    "TIFF",
]  # the decoders Pillow may try (its JPEG one opens MPO)

# 20 MB is far above a real photo (a 24 MP JPEG is ~10 MB) and low enough that eight downloads in memory are harmless.
DEFAULT_MAX_BYTES = 20 * 1024**2
# An archive is refused before anything is read when its entries claim more than this in total.
MAX_ARCHIVE_BYTES = 8 * 1024**3
MAX_ARCHIVE_ENTRIES = 1_000_000

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

RETRY_HTTP_CODES = (408, 425, 429, 500, 502, 503, 504)
# A host whose first URLs all failed to connect is not tried for the rest of the list.
HOST_DOWN_AFTER = 2
# Offline: no server answered and this many different hosts (or all of them) could not be reached.
OFFLINE_HOSTS = 8

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


class OfflineError(EmotionlabError):
    """No URL's host could be reached at all."""


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- labels -----------------------------------------------------------------------------------------------

_LABEL_PATTERN = re.compile(r"[^\W_][\w .\-]{0,63}")
_RESERVED_NAMES = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a class folder name, or None when it can."""
    if not label:
        return "no label"
    if not _LABEL_PATTERN.fullmatch(label) or label.endswith((" ", ".")):
        return (
            f"label {label!r} is not a folder-safe name (letters, digits, space, '_', '-', '.'; "
            "starting with a letter or digit; at most 64 characters)"
        )
    if label.lower() in SPLIT_NAMES:
        return f"label {label!r} is a split folder name (train, validation, test, ...)"
    if label.lower() in _RESERVED_NAMES:
        return f"label {label!r} is a reserved file name on Windows"
    return None


# ---- sources ----------------------------------------------------------------------------------------------


def _csv_rows(lines: Iterable[str], first_columns: tuple[str, str]) -> Iterator[tuple[int, dict]]:
    """``(line number, {first, label, source, licence})`` of a CSV with or without a header row."""
    reader = csv.reader(line for line in lines if not line.lstrip().startswith("#"))
    names = [first_columns[0], "label", "source", "licence"]
    for number, row in enumerate(reader, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in first_columns:
            aliases = {
                "license": "licence",
                "url": first_columns[0],
                "path": first_columns[0],
                "file": first_columns[0],
            }
            names = [aliases.get(cell.lower(), cell.lower()) for cell in cells]
            continue
        yield number, dict(zip(names, cells, strict=False))


def _check_label(item: Item) -> Item:
    problem = label_problem(item.label)
    if problem and item.status is None:
        item.status, item.reason = "invalid", problem
    return item


def url_items(csv_path: Path) -> list[Item]:
    """The rows of a ``url,label[,source,licence]`` CSV as items (bad rows become ``invalid`` items)."""
    try:
        lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EmotionlabError(f"{csv_path}: cannot read the CSV ({error})") from error
    items = []
    for number, row in _csv_rows(lines, ("url", "url")):
        url = row.get("url", "")
        item = Item(
            origin=url or f"{csv_path.name}:{number}",
            label=row.get("label", ""),
            source=row.get("source", ""),
            licence=row.get("licence", ""),
            url=url,
        )
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            item.status, item.reason = "invalid", f"line {number}: {url!r} is not an http(s) URL"
        items.append(_check_label(item))
    if not items:
        raise EmotionlabError(f"{csv_path}: no url,label rows")
    return items


def _labels_table(text: str, name: str) -> dict[str, dict]:
    table = {}
    for _, row in _csv_rows(text.splitlines(), ("path", "path")):
        path = PurePosixPath(row.get("path", "").replace("\\", "/")).as_posix().lstrip("./")
        table[path] = row
    if not table:
        raise EmotionlabError(f"{name}: no path,label rows")
    return table


def _labelled(relpath: PurePosixPath, origin: str, table: dict[str, dict] | None) -> Item:
    """The item for a file at ``relpath`` in a folder or archive: label from its folder or from the table."""
    if table is not None:
        row = table.get(relpath.as_posix())
        if row is None:
            return Item(origin, "", status="invalid", reason="not listed in the labels CSV")
        return _check_label(Item(origin, row.get("label", ""), row.get("source", ""), row.get("licence", "")))
    if len(relpath.parts) < 2:
        return Item(origin, "", status="invalid", reason="not in a label folder (expected LABEL/file)")
    return _check_label(Item(origin, relpath.parts[-2]))


def _skipped_name(parts: tuple[str, ...]) -> bool:
    """Hidden files and folders, macOS resource forks: never photos, never reported."""
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def folder_items(root: Path, options: ImportOptions, report: ImportReport) -> Iterator[Item]:
    """Every file under ``root`` (links and special files refused, never followed or opened)."""
    table = _read_labels_csv(
        options,
        lambda: (
            (root / "labels.csv").read_text(encoding="utf-8-sig") if (root / "labels.csv").is_file() else None
        ),
        str(root / "labels.csv"),
    )
    for directory, folders, files in os.walk(root, followlinks=False):
        folders.sort()
        here = Path(directory)
        for name in sorted(files) + [folder for folder in folders if (here / folder).is_symlink()]:
            path = here / name
            relpath = PurePosixPath(path.relative_to(root).as_posix())
            if _skipped_name(relpath.parts) or (table is not None and relpath.as_posix() == "labels.csv"):
                report.left_out += 1
                continue
            item = _labelled(relpath, str(path), table)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                item.status, item.reason = "rejected", "symbolic link: not followed"
            elif not stat.S_ISREG(info.st_mode):
                item.status, item.reason = "rejected", "not a regular file"
            elif info.st_size > options.max_bytes:
                item.status, item.reason = "rejected", _too_large(info.st_size, options.max_bytes)
            elif item.status is None:
                try:
                    item.data = path.read_bytes()
                except OSError as error:
                    item.status, item.reason = "rejected", f"cannot read file ({error.strerror or error})"
                item.fetched_utc = _utc_now()
            yield item
        folders[:] = [folder for folder in folders if not (here / folder).is_symlink()]


def _read_labels_csv(options: ImportOptions, read_default: Callable[[], str | None], default_name: str):
    if options.label_from != "csv":
        return None
    if options.labels_csv:
        try:
            return _labels_table(Path(options.labels_csv).read_text(encoding="utf-8-sig"), options.labels_csv)
        except OSError as error:
            raise EmotionlabError(f"{options.labels_csv}: cannot read the labels CSV ({error})") from error
    text = read_default()
    if text is None:
        raise EmotionlabError(
            f"--label-from csv: no {default_name}; pass --labels FILE with path,label[,source,licence] rows"
        )
    return _labels_table(text, default_name)


def _too_large(size: int, limit: int) -> str:
    return f"file too large ({size:,} bytes, limit {limit:,})"


def _member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or "\0" in name:
        raise EmotionlabError(f"{archive}: unsafe path in archive ({name!r}); nothing imported from it")
    return path


def zip_items(archive: Path, options: ImportOptions, report: ImportReport) -> Iterator[Item]:
    """The files of a zip archive, read one at a time into memory (never extracted to disk)."""
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise EmotionlabError(f"{archive}: not a readable zip file ({error})") from error
    with bundle:
        infos = [info for info in bundle.infolist() if not info.is_dir()]
        _check_archive(archive, [(info.filename, info.file_size) for info in infos])
        names = {_member_path(info.filename, archive).as_posix(): info for info in infos}

        def read_default():
            info = names.get("labels.csv")
            return (
                bundle.read(info).decode("utf-8-sig") if info and info.file_size < options.max_bytes else None
            )

        table = _read_labels_csv(options, read_default, f"{archive.name}!labels.csv")
        for info in infos:
            relpath = _member_path(info.filename, archive)
            if _skipped_name(relpath.parts) or (table is not None and relpath.as_posix() == "labels.csv"):
                report.left_out += 1
                continue
            item = _labelled(relpath, f"{archive}!{relpath}", table)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind and kind != stat.S_IFREG:
                item.status, item.reason = (
                    "rejected",
                    "not a regular file in the archive (a link?): not imported",
                )
            elif info.file_size > options.max_bytes:
                item.status, item.reason = "rejected", _too_large(info.file_size, options.max_bytes)
            elif item.status is None:
                try:
                    with bundle.open(info) as stream:
                        item.data = stream.read(options.max_bytes + 1)
                except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as error:
                    item.status, item.reason = (
                        "rejected",
                        f"cannot read archive entry ({error_reason(error)})",
                    )
                item.fetched_utc = _utc_now()
            yield item


def tar_items(archive: Path, options: ImportOptions, report: ImportReport) -> Iterator[Item]:
    """The files of a tar archive (any compression), read one at a time into memory."""
    try:
        bundle = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as error:
        raise EmotionlabError(f"{archive}: not a readable tar archive ({error})") from error
    with bundle:
        members, total = [], 0
        try:
            for (
                member
            ) in bundle:  # checked as the headers are read: a bomb is refused before its data is skipped
                _member_path(member.name, archive)
                total += member.size if member.isreg() else 0
                if total > MAX_ARCHIVE_BYTES or len(members) >= MAX_ARCHIVE_ENTRIES:
                    raise EmotionlabError(
                        f"{archive}: more than {MAX_ARCHIVE_BYTES:,} bytes or {MAX_ARCHIVE_ENTRIES:,} entries; refused"
                    )
                if not member.isdir():
                    members.append(member)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise EmotionlabError(f"{archive}: damaged tar archive ({error}); nothing imported") from error
        by_name = {_member_path(member.name, archive).as_posix(): member for member in members}

        def read_default():
            member = by_name.get("labels.csv")
            if member is None or not member.isreg() or member.size > options.max_bytes:
                return None
            return bundle.extractfile(member).read().decode("utf-8-sig")

        table = _read_labels_csv(options, read_default, f"{archive.name}!labels.csv")
        for member in members:
            relpath = _member_path(member.name, archive)
            if _skipped_name(relpath.parts) or (table is not None and relpath.as_posix() == "labels.csv"):
                report.left_out += 1
                continue
            item = _labelled(relpath, f"{archive}!{relpath}", table)
            if not member.isreg():
                kind = "link" if member.issym() or member.islnk() else "special file"
                item.status, item.reason = "rejected", f"a {kind} in the archive: not imported"
            elif member.size > options.max_bytes:
                item.status, item.reason = "rejected", _too_large(member.size, options.max_bytes)
            elif item.status is None:
                try:
                    item.data = bundle.extractfile(member).read(options.max_bytes + 1)
                except (tarfile.TarError, OSError, EOFError) as error:
                    item.status, item.reason = (
                        "rejected",
                        f"cannot read archive entry ({error_reason(error)})",
                    )
                item.fetched_utc = _utc_now()
            yield item


def _check_archive(archive: Path, entries: list[tuple[str, int]]) -> None:
    """Refuse, before reading anything, an archive with an unsafe path or too much to unpack."""
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise EmotionlabError(
            f"{archive}: {len(entries):,} entries, more than {MAX_ARCHIVE_ENTRIES:,}; refused"
        )
    for name, _ in entries:
        _member_path(name, archive)
    total = sum(size for _, size in entries)
    if total > MAX_ARCHIVE_BYTES:
        raise EmotionlabError(
            f"{archive}: would unpack to {total:,} bytes, more than {MAX_ARCHIVE_BYTES:,}; refused"
        )


def source_kind(source: Path) -> Literal["csv", "zip", "tar", "folder"]:
    """What SOURCE is, from the file itself (a folder, a zip or tar by its bytes, else a CSV by its name)."""
    if source.is_dir():
        return "folder"
    if not source.is_file():
        raise EmotionlabError(
            f"{source}: not found (SOURCE is a CSV of URLs, a zip or tar archive, or a folder)"
        )
    if source.suffix.lower() == ".csv":
        return "csv"
    if zipfile.is_zipfile(source):
        return "zip"
    try:
        if tarfile.is_tarfile(source):
            return "tar"
    except OSError:
        pass
    if source.suffix.lower() == ".txt":
        return "csv"
    raise EmotionlabError(f"{source}: not a CSV (.csv), zip or tar archive, nor a folder")


# ---- downloads --------------------------------------------------------------------------------------------


class FetchError(Exception):
    def __init__(self, reason: str, *, retry: bool, unreachable: bool = False, status: Status = "failed"):
        super().__init__(reason)
        self.reason, self.retry, self.unreachable, self.status = reason, retry, unreachable, status


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow one to ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise FetchError(f"redirected to a non-http URL ({newurl})", retry=False)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


class _Network:
    """Which hosts answered and which could not be reached (shared by the download threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.answered: set[str] = set()
        self.unreachable: Counter = Counter()
        self.first_unreachable = ""

    def mark_answered(self, host: str) -> None:
        with self._lock:
            self.answered.add(host)

    def mark_unreachable(self, host: str, reason: str) -> None:
        with self._lock:
            self.unreachable[host] += 1
            self.first_unreachable = self.first_unreachable or f"{host}: {reason}"

    def host_down(self, host: str) -> bool:
        with self._lock:
            return host not in self.answered and self.unreachable[host] >= HOST_DOWN_AFTER


def _classify(error: BaseException) -> FetchError:
    """A download exception as a reason, whether another attempt may help, and whether it means 'no network'."""
    if isinstance(error, FetchError):
        return error
    if isinstance(error, urllib.error.HTTPError):
        return FetchError(f"HTTP {error.code} {error.reason}", retry=error.code in RETRY_HTTP_CODES)
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        return FetchError("host name not found (DNS)", retry=True, unreachable=True)
    if isinstance(reason, ConnectionRefusedError):
        return FetchError("connection refused", retry=True, unreachable=True)
    if isinstance(reason, TimeoutError | socket.timeout):
        return FetchError("timed out", retry=True)
    if isinstance(reason, http.client.IncompleteRead | http.client.RemoteDisconnected | ConnectionError):
        return FetchError(f"connection broken ({type(reason).__name__})", retry=True)
    if isinstance(reason, OSError) and "CERTIFICATE" in str(reason).upper():
        return FetchError(f"TLS certificate not accepted ({reason})", retry=False)
    if isinstance(reason, OSError | http.client.HTTPException):
        return FetchError(f"download failed ({error_reason(reason)})", retry=True)
    return FetchError(f"download failed ({error_reason(error)})", retry=False)


def _fetch_once(url: str, options: ImportOptions, network: _Network, host: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"emotionlab/{__version__}"})
    deadline = (
        time.monotonic() + 6 * options.timeout
    )  # a server that trickles bytes cannot hold a thread for ever
    try:
        with _OPENER.open(request, timeout=options.timeout) as response:
            network.mark_answered(host)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > options.max_bytes:
                raise FetchError(_too_large(int(declared), options.max_bytes), retry=False, status="rejected")
            chunks, size = [], 0
            while chunk := response.read1(1 << 16):  # what has arrived: a trickle cannot block a read
                size += len(chunk)
                if size > options.max_bytes:
                    raise FetchError(
                        f"file too large (more than {options.max_bytes:,} bytes); download stopped",
                        retry=False,
                        status="rejected",
                    )
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"timed out (still downloading after {6 * options.timeout:g} s)", retry=True
                    )
                chunks.append(chunk)
            if declared and declared.isdigit() and size != int(declared):  # http.client does not check this
                raise FetchError(f"connection broken (got {size:,} of {int(declared):,} bytes)", retry=True)
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        network.mark_answered(host)
        raise _classify(error) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        raise _classify(error) from error


def fetch_url(url: str, options: ImportOptions, network: _Network, stop: threading.Event) -> bytes:
    """The body of ``url``, with retries; raises ``FetchError`` with the last reason."""
    host = urllib.parse.urlsplit(url).netloc.lower()
    for attempt in range(options.retries + 1):
        if network.host_down(host):
            raise FetchError(
                f"host not reachable (earlier downloads from {host} failed to connect)",
                retry=False,
                unreachable=True,
            )
        try:
            return _fetch_once(url, options, network, host)
        except FetchError as error:
            if not error.retry or attempt == options.retries:
                if error.unreachable:
                    network.mark_unreachable(host, error.reason)
                raise
            if stop.wait(options.backoff * 2**attempt):
                raise FetchError("stopped", retry=False) from error
    raise AssertionError("unreachable")


# ---- checking one item ------------------------------------------------------------------------------------


def check_item(item: Item, options: ImportOptions, network: _Network, stop: threading.Event) -> Checked:
    """Fetch (URLs) and check the bytes of one item; runs in the download threads."""
    if item.status is not None:
        return Checked(item, status=item.status, reason=item.reason)
    data = item.data
    item.data = None  # the Checked carries the bytes from here
    if item.url is not None:
        try:
            data = fetch_url(item.url, options, network, stop)
        except FetchError as error:
            return Checked(item, status=error.status, reason=error.reason, unreachable=error.unreachable)
        finally:
            item.fetched_utc = _utc_now()
    assert data is not None
    if len(data) > options.max_bytes:
        return Checked(
            item, status="rejected", reason=f"file too large (more than {options.max_bytes:,} bytes)"
        )
    return inspect_bytes(item, data, options)


def inspect_bytes(item: Item, data: bytes, options: ImportOptions) -> Checked:
    """Identify the format from the bytes, decode fully (pixel limit first) and hash."""
    from PIL import Image

    checked = Checked(item, sha256=hashlib.sha256(data).hexdigest())
    try:
        # read_image checks the pixel limit from the header before decoding, then decodes every pixel.
        image = read_image(data, max_pixels=options.max_pixels, name=item.origin, formats=DECODERS)
        checked.phash = perceptual_hash(image)
        with Image.open(io.BytesIO(data), formats=DECODERS) as header:
            checked.format = header.format
            checked.width, checked.height = header.size
    except ImageReadError as error:
        checked.status, checked.reason = "rejected", error.reason
        return checked
    except Exception as error:  # noqa: BLE001 - any decoder failure on one file is that file's reason
        checked.status, checked.reason = "rejected", f"corrupt image: {error_reason(error)}"
        return checked
    checked.data = data
    return checked


def _ordered_map(
    function: Callable[[Item], Checked], items: Iterable[Item], workers: int, stop: threading.Event
) -> Iterator[Checked]:
    """``function`` over ``items`` in threads, results in input order.

    At most ``2 * workers`` items are in flight, so at most that many files of up to ``max_bytes`` are in memory.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emotionlab-import")
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            while len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


# ---- the dataset being built ------------------------------------------------------------------------------


class _Known:
    """Hashes already in a dataset: exact by SHA-256, near by perceptual hash, with where each one is."""

    def __init__(self, name: str):
        self.name = name
        self.by_sha: dict[str, str] = {}
        self.hashes: list[int] = []
        self.places: list[str] = []
        self._array: np.ndarray | None = None

    def add(self, sha256: str, phash: int | None, place: str) -> None:
        self.by_sha.setdefault(sha256, place)
        if phash is not None:
            self.hashes.append(phash)
            self.places.append(place)
            self._array = None

    def nearest(self, phash: int) -> tuple[int, str] | None:
        if not self.hashes:
            return None
        if self._array is None:
            self._array = np.array(self.hashes, dtype=np.uint64)
        distances = _popcount(self._array ^ np.uint64(phash))
        index = int(distances.argmin())
        return int(distances[index]), self.places[index]


def existing_hashes(against: Path) -> _Known:
    """The hashes of an existing dataset: a folder (read and hashed) or a manifest CSV with sha256 and phash."""
    from emotionlab.data.manifest import read_manifest_rows

    known = _Known(str(against))
    if against.is_file():
        rows = read_manifest_rows(against)
        if not rows or not {"sha256", "phash", "path"} <= set(rows[0]):
            raise EmotionlabError(
                f"{against}: --against takes a dataset folder or a manifest with sha256 and phash columns"
            )
        for row in rows:
            known.add(row["sha256"], int(row["phash"], 16) if row["phash"] else None, row["path"])
        return known
    if not against.is_dir():
        raise EmotionlabError(f"{against}: --against must be a dataset folder or a manifest CSV")
    for path, split, label in dataset_files(against):
        relpath = path.relative_to(against).as_posix()
        record, hash_value = inspect_file(path, relpath, split, label)
        if record.readable:
            known.add(record.sha256, hash_value, relpath)
    return known


class _Provenance:
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


def _row(checked: Checked, status: str, reason: str = "", path: str = "") -> dict:
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


def _previous_imports(out: Path, provenance: _Provenance, known: _Known) -> tuple[set[str], set[str]]:
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


# ---- the command ------------------------------------------------------------------------------------------


def import_photos(
    source: str | Path,
    out: str | Path,
    *,
    against: str | Path | None = None,
    options: ImportOptions | None = None,
    progress: Callable[[Checked], None] | None = None,
) -> ImportReport:
    """Import the photos of ``source`` into the dataset folder ``out``; see the module docstring."""
    options = options or ImportOptions()
    source, out = Path(source), Path(out)
    kind = source_kind(source)
    if kind == "csv" and options.label_from == "folder":
        raise EmotionlabError("--label-from folder: a URL list has no folders; its labels come from the CSV")
    if kind == "folder":
        ensure_outside_root(source, out)
    if out.exists() and not out.is_dir():
        raise EmotionlabError(f"{out}: exists and is not a folder")
    if out.resolve() in source.resolve().parents or out.resolve() == source.resolve():
        raise EmotionlabError(f"{source}: is inside --out {out}; import from elsewhere")
    existing = None
    if against is not None:
        against = Path(against)
        if against.is_dir():
            ensure_outside_root(against, out)
        existing = existing_hashes(against)

    report = ImportReport(out=out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    provenance = _Provenance(out / PROVENANCE_FILE)
    new = _Known(str(out))
    done, imported_shas = _previous_imports(out, provenance, new)

    if kind == "csv":
        listed = url_items(source)
        items: Iterable[Item] = [item for item in listed if item.origin not in done]
        report.already_done = len(listed) - len(items)  # type: ignore[arg-type]
    else:
        reader = {"folder": folder_items, "zip": zip_items, "tar": tar_items}[kind]
        items = _not_done(reader(source, options, report), done, report)
    urls = [item for item in items if item.url is not None and item.status is None] if kind == "csv" else []
    hosts = {urllib.parse.urlsplit(item.url).netloc.lower() for item in urls}  # type: ignore[arg-type]

    network, stop = _Network(), threading.Event()
    held: list[Checked] = []  # unreachable failures, written once some server has answered (else: offline)
    results = _ordered_map(
        lambda item: check_item(item, options, network, stop), items, options.workers, stop
    )
    try:
        for checked in results:
            if checked.unreachable and not network.answered:
                held.append(checked)
                if len({urllib.parse.urlsplit(c.item.url).netloc.lower() for c in held}) >= min(
                    len(hosts), OFFLINE_HOSTS
                ):
                    raise OfflineError(
                        f"offline: no server could be reached for {len(urls)} URL(s) ({network.first_unreachable}); "
                        "connect to the network (or set a proxy) and run the same command again"
                    )
                continue
            for waiting in held:
                _decide(waiting, out, provenance, new, existing, imported_shas, options, report)
            held.clear()
            _decide(checked, out, provenance, new, existing, imported_shas, options, report)
            if progress is not None:
                progress(checked)
        for waiting in held:
            _decide(waiting, out, provenance, new, existing, imported_shas, options, report)
    finally:
        results.close()  # stops the download threads at once when anything went wrong
        provenance.close()
        if created and not any(out.iterdir()):
            out.rmdir()
    return report


def _not_done(items: Iterable[Item], done: set[str], report: ImportReport) -> Iterator[Item]:
    for item in items:
        if item.origin in done:
            report.already_done += 1
            continue
        yield item


def _decide(
    checked: Checked,
    out: Path,
    provenance: _Provenance,
    new: _Known,
    existing: _Known | None,
    imported_shas: set[str],
    options: ImportOptions,
    report: ImportReport,
) -> None:
    """Keep or skip one checked photo, write it and its provenance row."""
    status, reason = checked.status, checked.reason
    path = ""
    if status is None:
        sha, phash = checked.sha256, checked.phash
        if sha in imported_shas and sha not in new.by_sha:
            status, reason = (
                "duplicate",
                "same bytes as a photo an earlier run imported (no longer in the folder)",
            )
        elif existing is not None and sha in existing.by_sha:
            status, reason = "duplicate", f"same bytes as {existing.by_sha[sha]} in {existing.name}"
        elif sha in new.by_sha:
            status, reason = "duplicate", f"same bytes as {new.by_sha[sha]}"
        else:
            for known in (existing, new):
                near = known.nearest(phash) if known is not None and phash is not None else None
                if near is not None and near[0] <= options.threshold:
                    where = f"{near[1]} in {known.name}" if known is existing else near[1]
                    status, reason = "near-duplicate", f"perceptual hash {near[0]} bits from {where}"
                    break
        if status is None:
            extension = ALLOWED_FORMATS[checked.format]
            relpath = f"{checked.item.label}/{sha[:16]}.{extension}"
            target = out / relpath
            if not target.is_file():
                data = checked.data
                write_atomic(target, lambda name: Path(name).write_bytes(data))
            path, status = relpath, "imported"
            new.add(sha, phash, relpath)
            imported_shas.add(sha)
    provenance.append(_row(checked, status, reason, path))
    report.counts[status] += 1
    if status != "imported":
        report.problems.append((checked.item.origin, status, reason))
    checked.data = None


def print_import_summary(report: ImportReport, console, *, limit: int = 10) -> None:
    """Counts per status and the first skipped photos with their reasons."""
    from rich.markup import escape

    order = ("imported", "duplicate", "near-duplicate", "rejected", "invalid", "failed")
    counts = ", ".join(f"{report.counts[status]} {status}" for status in order if report.counts[status])
    console.print(f"{report.out}: {counts or 'nothing new'}", highlight=False, soft_wrap=True)
    if report.already_done:
        console.print(
            f"  {report.already_done} already handled by an earlier run (not fetched again)", soft_wrap=True
        )
    if report.left_out:
        console.print(f"  left out {report.left_out} hidden or system file(s)", soft_wrap=True)
    for origin, status, reason in report.problems[:limit]:
        console.print(
            f"  {status}: {escape(printable(origin))}: {escape(printable(reason))}",
            highlight=False,
            soft_wrap=True,
        )
    if len(report.problems) > limit:
        console.print(
            f"  ... and {len(report.problems) - limit} more (all in {PROVENANCE_FILE})", soft_wrap=True
        )
    if report.counts["failed"]:
        console.print("  failed downloads are tried again when the same command runs again", soft_wrap=True)
    if sum(report.counts.values()):
        console.print(f"  wrote {report.out / PROVENANCE_FILE}", highlight=False, soft_wrap=True)
