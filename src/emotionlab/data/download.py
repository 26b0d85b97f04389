"""Known datasets: fetch an archive (or take a local zip or folder), extract only the dataset, check it.

Only ``seed-emotions`` is known so far: the original study's images, in the folder ``emotion_images`` of the
study's GitHub repository. Everything is written into a temporary folder beside ``DEST`` and renamed into
place at the end, so an interrupted download never leaves a half dataset behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from emotionlab.errors import EmotionlabError
from emotionlab.labels import EMOTIONS, SPLITS

# Refuse archives that claim to unpack to more than this (zip-bomb guard); the real one is about 50 MB.
MAX_EXTRACTED_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and what a complete copy looks like."""

    name: str
    url: str
    url_env: str  # environment variable that overrides ``url`` (a mirror, or a file:// URL)
    folder: str  # the folder inside the archive that holds split/label/image
    labels: tuple[str, ...]
    counts: dict[str, int]  # images per split
    note: str = ""


SEED_COMMIT = "c13086fc65fb"
DATASETS = {
    "seed-emotions": DatasetSpec(
        name="seed-emotions",
        url=f"https://github.com/Learza7/deep_learning_project/archive/{SEED_COMMIT}.zip",
        url_env="EMOTIONLAB_SEED_URL",
        folder="emotion_images",
        labels=EMOTIONS,
        counts={"train": 836, "validation": 126, "test": 138},
        note="images from public image sites: research and testing only, do not redistribute",
    )
}


@dataclass
class DownloadReport:
    dest: Path
    source: str
    counts: dict[str, dict[str, int]]
    problems: list[str] = field(default_factory=list)
    skipped: int = 0  # archive entries under the folder but outside split/label/file (e.g. .DS_Store)


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise EmotionlabError(f"unknown dataset {name!r}: known datasets are {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# ---- fetching ---------------------------------------------------------------------------------------------


def fetch(url: str, target: Path, *, console=None) -> Path:
    """Download ``url`` into the file ``target`` with a progress bar; one clear error line when it fails."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    request = urllib.request.Request(url, headers={"User-Agent": "emotionlab"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response, open(target, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = (TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, console=console, disable=console is None, transient=True) as progress:
                task = progress.add_task("download", total=total)
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    handle.write(chunk)
                    progress.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or error
        raise EmotionlabError(
            f"download failed: {url} ({reason}); fetch the zip on a machine with internet and pass it with "
            "--from FILE.zip (or an extracted folder with --from DIR)"
        ) from error
    return target


def _safe_relative(name: str) -> PurePosixPath | None:
    """An archive entry name as a relative path, or None when it could escape the target folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def _inside_folder(parts: tuple[str, ...], folder: str) -> tuple[str, ...] | None:
    """The path below the first ``folder`` component (``repo-sha/emotion_images/train/x`` -> ``train/x``)."""
    if folder in parts[:-1]:
        return parts[parts.index(folder) + 1 :]
    return None


def _wanted(parts: tuple[str, ...]) -> bool:
    """Only split/label/file, no hidden files (.DS_Store) or macOS resource forks (__MACOSX)."""
    return (
        len(parts) == 3
        and parts[0] in SPLITS
        and not any(part.startswith(".") or part == "__MACOSX" for part in parts)
    )


def extract_zip(archive: Path, target: Path, folder: str) -> int:
    """Extract the entries under ``folder`` (at any depth) into ``target`` as split/label/file.

    Returns how many entries under ``folder`` were left out. Raises on entries that could escape ``target``
    (absolute paths, ``..``, symbolic links) and on archives that would unpack to more than 2 GB.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            for info in infos:
                if _safe_relative(info.filename) is None:
                    raise EmotionlabError(
                        f"{archive}: unsafe path in archive ({info.filename!r}); nothing extracted"
                    )
            chosen, skipped = [], 0
            for info in infos:
                inner = _inside_folder(_safe_relative(info.filename).parts, folder)  # type: ignore[union-attr]
                if inner is None or info.is_dir():
                    continue
                if stat.S_ISLNK(info.external_attr >> 16) or not _wanted(inner):
                    skipped += 1
                    continue
                chosen.append((info, inner))
            if not chosen:
                raise EmotionlabError(f"{archive}: no {folder}/<split>/<label>/<image> files in this archive")
            if sum(info.file_size for info, _ in chosen) > MAX_EXTRACTED_BYTES:
                raise EmotionlabError(
                    f"{archive}: would unpack to more than {MAX_EXTRACTED_BYTES:,} bytes; refused"
                )
            base = target.resolve()
            for info, inner in chosen:
                destination = target.joinpath(*inner)
                if base not in destination.resolve().parents:
                    raise EmotionlabError(f"{archive}: unsafe path in archive ({info.filename!r})")
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as stream, open(destination, "wb") as handle:
                    shutil.copyfileobj(stream, handle)
    except zipfile.BadZipFile as error:
        raise EmotionlabError(f"{archive}: not a valid zip file ({error})") from error
    return skipped


def copy_folder(source: Path, target: Path, folder: str) -> int:
    """Copy split/label/file from an extracted folder (the dataset itself, ``folder`` or a repo checkout)."""
    candidates = [source, source / folder, *sorted(source.glob(f"*/{folder}"))]
    base = next((c for c in candidates if any((c / split).is_dir() for split in SPLITS)), None)
    if base is None:
        raise EmotionlabError(f"{source}: no train/validation/test folders here or in {folder}/")
    skipped = 0
    for path in sorted(base.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(base).parts
        if not _wanted(parts) or path.is_symlink():
            skipped += 1
            continue
        destination = target.joinpath(*parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return skipped


# ---- checking ---------------------------------------------------------------------------------------------


def count_images(root: Path) -> dict[str, dict[str, int]]:
    """Files per split and label folder (hidden files ignored)."""
    counts: dict[str, dict[str, int]] = {}
    order = {name: index for index, name in enumerate(SPLITS)}
    for split_dir in sorted(
        (p for p in root.iterdir() if p.is_dir()), key=lambda p: (order.get(p.name, 9), p.name)
    ):
        for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = [p for p in label_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
            counts.setdefault(split_dir.name, {})[label_dir.name] = len(files)
    return counts


def check_layout(counts: dict[str, dict[str, int]], spec: DatasetSpec) -> list[str]:
    """What differs from a complete copy of ``spec`` (labels, splits, images per split); empty when all match."""
    problems = []
    splits = set(counts)
    if splits != set(spec.counts):
        problems.append(
            f"splits: expected {', '.join(spec.counts)}, found {', '.join(sorted(splits)) or 'none'}"
        )
    for split in spec.counts:
        labels = set(counts.get(split, {}))
        if split in counts and labels != set(spec.labels):
            missing, extra = set(spec.labels) - labels, labels - set(spec.labels)
            detail = "; ".join(
                part
                for part in (
                    f"missing {', '.join(sorted(missing))}" if missing else "",
                    f"unexpected {', '.join(sorted(extra))}" if extra else "",
                )
                if part
            )
            problems.append(f"{split}: labels differ ({detail})")
    for split, expected in spec.counts.items():
        found = sum(counts.get(split, {}).values())
        if found != expected:
            problems.append(f"{split}: {found} images, expected {expected}")
    return problems


# ---- the command ------------------------------------------------------------------------------------------


def download_dataset(
    name: str,
    dest: str | Path,
    *,
    url: str | None = None,
    source: str | Path | None = None,
    console=None,
    spec: DatasetSpec | None = None,
) -> DownloadReport:
    """Put dataset ``name`` into the new or empty folder ``dest`` and check it against what is expected.

    The archive comes from ``source`` (a local zip or extracted folder) when given, else from ``url``, else
    from the spec's environment variable, else from the spec's URL. A mismatch with the expected labels,
    splits or counts is reported as a warning (and in the returned report), never silently accepted.
    """
    spec = spec or dataset_spec(name)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise EmotionlabError(f"{dest}: already exists and is not an empty folder; choose a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        target = staging / "dataset"
        target.mkdir()
        if source is not None:
            source = Path(source)
            origin = str(source)
            if source.is_dir():
                skipped = copy_folder(source, target, spec.folder)
            elif source.is_file():
                skipped = extract_zip(source, target, spec.folder)
            else:
                raise EmotionlabError(
                    f"{source}: --from must be a zip file or a folder, and it does not exist"
                )
        else:
            origin = url or os.environ.get(spec.url_env) or spec.url
            if console is not None:
                console.print(f"fetching {spec.name} from {origin}", highlight=False, soft_wrap=True)
            archive = fetch(origin, staging / "archive.zip", console=console)
            skipped = extract_zip(archive, target, spec.folder)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(target, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = count_images(dest)
    report = DownloadReport(
        dest=dest, source=origin, counts=counts, problems=check_layout(counts, spec), skipped=skipped
    )
    if console is not None:
        _print_report(report, spec, console)
    return report


def _print_report(report: DownloadReport, spec: DatasetSpec, console) -> None:
    totals = Counter({split: sum(labels.values()) for split, labels in report.counts.items()})
    listing = ", ".join(f"{split} {totals[split]}" for split in report.counts)
    console.print(
        f"{spec.name} -> {report.dest}: {sum(totals.values())} images ({listing})",
        highlight=False,
        soft_wrap=True,
    )
    if report.skipped:
        console.print(
            f"  left out {report.skipped} file(s) outside split/label/ (hidden or stray files)",
            soft_wrap=True,
        )
    if report.problems:
        console.print(
            f"[yellow]warning:[/] {report.dest} differs from the expected {spec.name}:",
            highlight=False,
            soft_wrap=True,
        )
        for problem in report.problems:
            console.print(f"  - {problem}", highlight=False, soft_wrap=True)
    else:
        console.print("  checked: labels, splits and counts match the expected dataset", soft_wrap=True)
    if spec.note:
        console.print(f"  note: {spec.note}", soft_wrap=True)
