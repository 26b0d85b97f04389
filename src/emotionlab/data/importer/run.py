"""The ``data import`` job: read the source, fetch and check in threads, keep or skip each photo in order."""

from __future__ import annotations

import threading
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from emotionlab.data.importer.checks import ALLOWED_FORMATS, check_item
from emotionlab.data.importer.fetch import Network
from emotionlab.data.importer.items import Checked, ImportOptions, ImportReport, Item
from emotionlab.data.importer.known import KnownPhotos, duplicate_reason, existing_hashes
from emotionlab.data.importer.provenance import (
    PROVENANCE_FILE,
    ProvenanceLog,
    previous_imports,
    provenance_row,
)
from emotionlab.data.importer.sources import read_source, source_kind, url_items
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import ensure_outside_root, is_inside, write_atomic
from emotionlab.isolation import printable

# Offline: no server answered and this many different hosts (or all of them) could not be reached.
OFFLINE_HOSTS = 8


class OfflineError(EmotionlabError):
    """No URL's host could be reached at all."""


def import_photos(
    source: str | Path,
    out: str | Path,
    *,
    against: str | Path | None = None,
    options: ImportOptions | None = None,
    progress: Callable[[Checked], None] | None = None,
) -> ImportReport:
    """Import the photos of ``source`` into the dataset folder ``out``; see ``emotionlab.data.importer``."""
    options = options or ImportOptions()
    source, out = Path(source), Path(out)
    kind = source_kind(source)
    if kind == "csv" and options.label_from == "folder":
        raise EmotionlabError("--label-from folder: a URL list has no folders; its labels come from the CSV")
    if kind == "folder":
        ensure_outside_root(source, out)
    if out.exists() and not out.is_dir():
        raise EmotionlabError(f"{out}: exists and is not a folder")
    if is_inside(source, out):
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
    provenance = ProvenanceLog(out / PROVENANCE_FILE)
    new = KnownPhotos(str(out))
    done, imported_shas = previous_imports(out, provenance, new)

    if kind == "csv":
        listed = url_items(source)
        items: Iterable[Item] = [item for item in listed if item.origin not in done]
        report.already_done = len(listed) - len(items)  # type: ignore[arg-type]
    else:
        items = _not_done(read_source(kind, source, options, report), done, report)
    urls = [item for item in items if item.url is not None and item.status is None] if kind == "csv" else []
    hosts = {urllib.parse.urlsplit(item.url).netloc.lower() for item in urls}  # type: ignore[arg-type]

    decide = partial(
        _decide,
        out=out,
        provenance=provenance,
        new=new,
        existing=existing,
        imported_shas=imported_shas,
        options=options,
        report=report,
    )
    network, stop = Network(), threading.Event()
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
            for waiting in [*held, checked]:
                decide(waiting)
            held.clear()
            if progress is not None:
                progress(checked)
        for waiting in held:
            decide(waiting)
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


def _decide(
    checked: Checked,
    *,
    out: Path,
    provenance: ProvenanceLog,
    new: KnownPhotos,
    existing: KnownPhotos | None,
    imported_shas: set[str],
    options: ImportOptions,
    report: ImportReport,
) -> None:
    """Keep or skip one checked photo, write it and its provenance row."""
    status, reason = checked.status, checked.reason
    path = ""
    if status is None:
        sha, phash = checked.sha256, checked.phash
        duplicate = duplicate_reason(
            sha, phash, new=new, existing=existing, imported_shas=imported_shas, threshold=options.threshold
        )
        if duplicate is not None:
            status, reason = duplicate
        else:
            extension = ALLOWED_FORMATS[checked.format]
            relpath = f"{checked.item.label}/{sha[:16]}.{extension}"
            target = out / relpath
            if not target.is_file():
                data = checked.data
                write_atomic(target, lambda name: Path(name).write_bytes(data))
            path, status = relpath, "imported"
            new.add(sha, phash, relpath)
            imported_shas.add(sha)
    provenance.append(provenance_row(checked, status, reason, path))
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
