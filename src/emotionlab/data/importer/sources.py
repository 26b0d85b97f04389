"""Where the photos of ``data import`` come from: a CSV of URLs, a folder, a zip or tar archive.

Each reader yields ``Item``s; an item that cannot be imported (a bad label, a link, a file over the size limit)
already carries its status and reason, so it is reported without being read. Archives are read in memory,
entry by entry, and refused whole when an entry's path could leave the archive or the total is too large.
"""

from __future__ import annotations

import csv
import os
import re
import stat
import tarfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from emotionlab.data.importer.items import ImportOptions, ImportReport, Item, too_large, utc_now
from emotionlab.errors import EmotionlabError
from emotionlab.isolation import error_reason
from emotionlab.labels import SPLIT_NAMES

# An archive is refused before anything is read when its entries claim more than this in total.
MAX_ARCHIVE_BYTES = 8 * 1024**3
MAX_ARCHIVE_ENTRIES = 1_000_000

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


def _check_label(item: Item) -> Item:
    problem = label_problem(item.label)
    if problem and item.status is None:
        item.status, item.reason = "invalid", problem
    return item


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


def _labels_table(text: str, name: str) -> dict[str, dict]:
    table = {}
    for _, row in _csv_rows(text.splitlines(), ("path", "path")):
        path = PurePosixPath(row.get("path", "").replace("\\", "/")).as_posix().lstrip("./")
        table[path] = row
    if not table:
        raise EmotionlabError(f"{name}: no path,label rows")
    return table


def _read_labels_csv(options: ImportOptions, read_default: Callable[[], str | None], default_name: str):
    """The ``path -> row`` table of the labels CSV with ``label_from="csv"``, else None (labels from folders)."""
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


def _left_out(relpath: PurePosixPath, table: dict[str, dict] | None) -> bool:
    """Hidden files and folders, macOS resource forks, the labels CSV itself: never photos, never reported."""
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in relpath.parts)
    return hidden or (table is not None and relpath.as_posix() == "labels.csv")


# ---- a URL list -------------------------------------------------------------------------------------------


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


# ---- a folder ---------------------------------------------------------------------------------------------


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
            if _left_out(relpath, table):
                report.left_out += 1
                continue
            item = _labelled(relpath, str(path), table)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                item.status, item.reason = "rejected", "symbolic link: not followed"
            elif not stat.S_ISREG(info.st_mode):
                item.status, item.reason = "rejected", "not a regular file"
            elif info.st_size > options.max_bytes:
                item.status, item.reason = "rejected", too_large(info.st_size, options.max_bytes)
            elif item.status is None:
                try:
                    item.data = path.read_bytes()
                except OSError as error:
                    item.status, item.reason = "rejected", f"cannot read file ({error.strerror or error})"
                item.fetched_utc = utc_now()
            yield item
        folders[:] = [folder for folder in folders if not (here / folder).is_symlink()]


# ---- archives ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One file in an archive, whichever the kind of archive."""

    relpath: PurePosixPath
    size: int  # as the archive declares it
    refusal: str | None  # why it is never read (a link, a device), or None for a regular file
    read: Callable[[int], bytes]  # at most that many bytes of its content


def _member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or "\0" in name:
        raise EmotionlabError(f"{archive}: unsafe path in archive ({name!r}); nothing imported from it")
    return path


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


def _archive_items(
    archive: Path,
    entries: list[_Entry],
    read_errors: tuple[type[BaseException], ...],
    options: ImportOptions,
    report: ImportReport,
) -> Iterator[Item]:
    """The items of an archive's entries: refused unread when not regular files or too large, else read."""

    def read_default() -> str | None:
        entry = {entry.relpath.as_posix(): entry for entry in entries}.get("labels.csv")
        if entry is None or entry.refusal is not None or entry.size > options.max_bytes:
            return None
        return entry.read(options.max_bytes).decode("utf-8-sig")

    table = _read_labels_csv(options, read_default, f"{archive.name}!labels.csv")
    for entry in entries:
        if _left_out(entry.relpath, table):
            report.left_out += 1
            continue
        item = _labelled(entry.relpath, f"{archive}!{entry.relpath}", table)
        if entry.refusal is not None:
            item.status, item.reason = "rejected", entry.refusal
        elif entry.size > options.max_bytes:
            item.status, item.reason = "rejected", too_large(entry.size, options.max_bytes)
        elif item.status is None:
            try:
                item.data = entry.read(options.max_bytes + 1)
            except read_errors as error:
                item.status, item.reason = "rejected", f"cannot read archive entry ({error_reason(error)})"
            item.fetched_utc = utc_now()
        yield item


def zip_items(archive: Path, options: ImportOptions, report: ImportReport) -> Iterator[Item]:
    """The files of a zip archive, read one at a time into memory (never extracted to disk)."""
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise EmotionlabError(f"{archive}: not a readable zip file ({error})") from error

    def entry(info: zipfile.ZipInfo) -> _Entry:
        def read(limit: int) -> bytes:
            with bundle.open(info) as stream:
                return stream.read(limit)

        kind = stat.S_IFMT(info.external_attr >> 16)
        refusal = "not a regular file in the archive (a link?): not imported"
        return _Entry(
            _member_path(info.filename, archive),
            info.file_size,
            refusal if kind and kind != stat.S_IFREG else None,
            read,
        )

    with bundle:
        infos = [info for info in bundle.infolist() if not info.is_dir()]
        _check_archive(archive, [(info.filename, info.file_size) for info in infos])
        read_errors = (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError)
        yield from _archive_items(archive, [entry(info) for info in infos], read_errors, options, report)


def tar_items(archive: Path, options: ImportOptions, report: ImportReport) -> Iterator[Item]:
    """The files of a tar archive (any compression), read one at a time into memory."""
    try:
        bundle = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as error:
        raise EmotionlabError(f"{archive}: not a readable tar archive ({error})") from error

    def entry(member: tarfile.TarInfo) -> _Entry:
        refusal = None
        if not member.isreg():
            refusal = f"a {'link' if member.issym() or member.islnk() else 'special file'} in the archive: not imported"
        return _Entry(
            _member_path(member.name, archive),
            member.size,
            refusal,
            lambda limit: bundle.extractfile(member).read(limit),
        )

    with bundle:
        members, total = [], 0
        try:
            # Checked as the headers are read: a bomb is refused before its data is skipped.
            for member in bundle:
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
        read_errors = (tarfile.TarError, OSError, EOFError)
        yield from _archive_items(
            archive, [entry(member) for member in members], read_errors, options, report
        )


# ---- which kind -------------------------------------------------------------------------------------------


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


def read_source(kind: str, source: Path, options: ImportOptions, report: ImportReport) -> Iterator[Item]:
    """The items of a folder, zip or tar SOURCE (a URL list is read whole by ``url_items``)."""
    reader = {"folder": folder_items, "zip": zip_items, "tar": tar_items}[kind]
    return reader(source, options, report)
