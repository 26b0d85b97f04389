"""Dataset audit: unreadable files, real formats, exact and near duplicates, cross-split leakage, label conflicts.

Everything here only reads the dataset: files are opened for reading, and all output goes to a folder that must
lie outside the dataset root. Near duplicates are found by perceptual hash (``emotionlab.data.duplicates``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emotionlab.data.audit_report import print_audit_summary, write_audit
from emotionlab.data.duplicates import DEFAULT_THRESHOLD, group_ids, perceptual_hash, popcount
from emotionlab.data.images import ImageReadError, open_image, read_file_bytes, read_image
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import ensure_outside_root
from emotionlab.isolation import error_reason
from emotionlab.labels import SPLIT_NAMES, SPLITS, order_labels

log = logging.getLogger("emotionlab")


# Extensions that honestly describe each format Pillow can identify.
FORMAT_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "MPO": {".jpg", ".jpeg", ".mpo"},
    "PNG": {".png"},
    "GIF": {".gif"},
    "BMP": {".bmp", ".dib"},
    "WEBP": {".webp"},
    "TIFF": {".tif", ".tiff"},
    "PPM": {".ppm", ".pgm", ".pbm", ".pnm"},
    "ICO": {".ico"},
}


@dataclass
class FileRecord:
    """What the audit learnt about one file. ``path`` is relative to the dataset root (posix)."""

    path: str
    split: str | None
    label: str | None
    readable: bool
    reason: str | None  # why the file cannot be used, when it cannot
    format: str | None  # from the bytes, not the name
    extension: str
    extension_matches: bool | None  # None when the format is unknown
    mode: str | None
    width: int | None
    height: int | None
    bytes: int
    sha256: str
    phash: str | None  # 16 hex digits


# ---- files ------------------------------------------------------------------------------------------------


def dataset_files(root: Path) -> list[tuple[Path, str | None, str | None]]:
    """Every non-hidden file under ``root`` with the split and label its folders give it.

    The layout is ``[split/]label/...``: the same rules as ``scan_image_folder``, except that files outside the
    layout are listed too (with no label), since the audit must see everything: so are entries that are not
    regular files (a broken link, a link loop, a FIFO), which ``inspect_file`` reports without opening them.
    """
    root = Path(root)
    top = [child for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")]
    has_splits = any(child.name.lower() in SPLIT_NAMES for child in top)
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or path.is_dir():
            continue
        parts = relative.parts
        split = label = None
        if has_splits:
            if parts[0].lower() in SPLIT_NAMES:
                split = SPLIT_NAMES[parts[0].lower()]
                label = parts[1] if len(parts) >= 3 else None
        elif len(parts) >= 2:
            label = parts[0]
        found.append((path, split, label))
    return found


def inspect_file(
    path: Path, relpath: str, split: str | None, label: str | None
) -> tuple[FileRecord, int | None]:
    """Read one file (once) and describe it; also return its perceptual hash as an integer (None if unreadable)."""

    extension = path.suffix.lower()
    try:
        data = read_file_bytes(path, relpath)
    except ImageReadError as error:
        record = FileRecord(
            relpath, split, label, False, error.reason, None, extension, None, None, None, None, 0, "", None
        )
        return record, None
    fmt = mode = width = height = None
    try:
        with open_image(data) as header:
            fmt, mode = header.format, header.mode
            width, height = header.size
    except Exception as error:  # noqa: BLE001 - read_image below reports the reason to the user
        log.debug("no header for %s: %s", relpath, error)
    reason = None
    hash_value = None
    try:
        hash_value = perceptual_hash(read_image(data, name=relpath))
    except ImageReadError as error:
        reason = error.reason
    except Exception as error:  # noqa: BLE001 - one odd file is one unreadable entry, the audit goes on
        reason = error_reason(error)
    matches = extension in FORMAT_EXTENSIONS[fmt] if fmt in FORMAT_EXTENSIONS else None
    record = FileRecord(
        path=relpath,
        split=split,
        label=label,
        readable=reason is None,
        reason=reason,
        format=fmt,
        extension=extension,
        extension_matches=matches,
        mode=mode,
        width=width,
        height=height,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        phash=f"{hash_value:016x}" if hash_value is not None else None,
    )
    return record, hash_value


# ---- the audit --------------------------------------------------------------------------------------------


def _split_key(split: str | None) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _member(record: FileRecord) -> dict:
    return {"path": record.path, "split": record.split, "label": record.label, "sha256": record.sha256}


def _describe_group(group_id: str, members: list[FileRecord], hashes: dict[str, int]) -> dict:
    values = np.array([hashes[m.path] for m in members], dtype=np.uint64)
    distances = popcount(values[:, None] ^ values[None, :])
    splits = sorted({m.split for m in members if m.split}, key=_split_key)
    return {
        "group": group_id,
        "size": len(members),
        "exact": len({m.sha256 for m in members}) == 1,
        "max_distance": int(distances.max()),
        "splits": splits,
        "labels": order_labels(m.label for m in members if m.label),
        "members": [_member(m) for m in sorted(members, key=lambda m: (_split_key(m.split), m.path))],
    }


def audit_dataset(
    root: str | Path,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    person_threshold: float | None = None,
    cache_dir: str | Path | None = None,
    console=None,
) -> dict:
    """Audit a dataset folder; returns ``{"summary": {...}, ...details}`` ready for JSON. Reads only.

    With ``person_threshold`` (see ``people.DEFAULT_PERSON_THRESHOLD``) faces are embedded too (cached under
    ``cache_dir``, default the face-crop cache) and ``report["people"]`` lists the same person across splits.
    """
    root = Path(root)
    if not root.is_dir():
        raise EmotionlabError(f"{root}: dataset folder not found")
    if not 0 <= threshold <= 64:
        raise EmotionlabError(f"threshold {threshold}: must be between 0 and 64 bits")
    records: list[FileRecord] = []
    hashes: dict[str, int] = {}
    for path, split, label in dataset_files(root):
        relpath = path.relative_to(root).as_posix()
        record, hash_value = inspect_file(path, relpath, split, label)
        records.append(record)
        if hash_value is not None:
            hashes[relpath] = hash_value
    readable = [record for record in records if record.readable]
    by_path = {record.path: record for record in records}

    # Exact copies: same bytes.
    by_sha: dict[str, list[FileRecord]] = defaultdict(list)
    for record in readable:
        by_sha[record.sha256].append(record)
    exact = [
        {"sha256": sha, "size": len(members), "members": [_member(m) for m in members]}
        for sha, members in sorted(by_sha.items(), key=lambda item: item[1][0].path)
        if len(members) > 1
    ]

    # Near copies: perceptual hash within the threshold, grouped transitively.
    paths = [record.path for record in readable]
    ids = group_ids(paths, [hashes[path] for path in paths], threshold)
    members_of: dict[str, list[FileRecord]] = defaultdict(list)
    for path, group_id in zip(paths, ids, strict=True):
        members_of[group_id].append(by_path[path])
    groups = [
        _describe_group(group_id, members, hashes)
        for group_id, members in sorted(members_of.items())
        if len(members) > 1
    ]

    # Leakage: a group whose members sit in more than one split.
    spanning = [group for group in groups if len(group["splits"]) > 1]
    with_train_twin: dict[str, list[str]] = {"validation": [], "test": []}
    test_with_validation_twin = []
    for group in spanning:
        for member in group["members"]:
            if member["split"] in with_train_twin and "train" in group["splits"]:
                with_train_twin[member["split"]].append(member["path"])
            elif member["split"] == "test" and "validation" in group["splits"]:
                test_with_validation_twin.append(member["path"])
    conflicts = [group for group in groups if len(group["labels"]) > 1]

    people = None
    if person_threshold is not None:
        from emotionlab.data.people import person_groups, person_leakage

        persons, no_face = person_groups(
            [root / path for path in paths],
            paths,
            threshold=person_threshold,
            cache_dir=cache_dir,
            console=console,
        )
        people = person_leakage(
            paths, [by_path[p].split for p in paths], [by_path[p].label for p in paths], persons, ids
        )
        people["summary"] = {"threshold": person_threshold, "no_face": len(no_face), **people["summary"]}
        people["no_face"] = no_face

    labels = order_labels(record.label for record in readable if record.label)
    balance: dict[str, dict[str, int]] = {}
    for record in sorted(readable, key=lambda r: _split_key(r.split)):
        if record.label is None:
            continue
        row = balance.setdefault(record.split or "all", {label: 0 for label in labels})
        row[record.label] += 1

    unreadable = [{"path": r.path, "reason": r.reason} for r in records if not r.readable]
    mismatched = [
        {"path": r.path, "extension": r.extension, "format": r.format}
        for r in records
        if r.extension_matches is False
    ]
    outside = [r.path for r in records if r.label is None]
    sizes = Counter(f"{r.width}x{r.height}" for r in readable)
    summary = {
        "root": str(root),
        "threshold": threshold,
        "num_files": len(records),
        "num_readable": len(readable),
        "num_unreadable": len(unreadable),
        "unreadable_reasons": dict(Counter(r["reason"].split(":")[0] for r in unreadable).most_common()),
        "files_outside_layout": len(outside),
        "formats": dict(Counter(r.format or "unknown" for r in records).most_common()),
        "modes": dict(Counter(r.mode for r in readable).most_common()),
        "extension_mismatches": len(mismatched),
        "extension_mismatch_kinds": dict(
            Counter(f"{m['format']} named {m['extension'] or '(none)'}" for m in mismatched).most_common()
        ),
        "most_common_sizes": dict(sizes.most_common(5)),
        "other_sizes": sum(sizes.values()) - sum(count for _, count in sizes.most_common(5)),
        "exact_duplicate_groups": len(exact),
        "exact_duplicate_files": sum(group["size"] for group in exact),
        "duplicate_groups": len(groups),
        "duplicate_files": sum(group["size"] for group in groups),
        "groups_spanning_splits": len(spanning),
        "validation_images_with_train_twin": len(with_train_twin["validation"]),
        "test_images_with_train_twin": len(with_train_twin["test"]),
        "eval_images_with_train_twin": len(with_train_twin["validation"]) + len(with_train_twin["test"]),
        "test_images_with_validation_twin": len(test_with_validation_twin),
        "label_conflict_groups": len(conflicts),
        "labels": labels,
        "class_balance": balance,
    }
    return {
        "summary": summary,
        "unreadable": unreadable,
        "extension_mismatches": mismatched,
        "files_outside_layout": outside,
        "exact_duplicates": exact,
        "duplicate_groups": groups,
        "leakage": {
            "groups": spanning,
            "validation_with_train_twin": with_train_twin["validation"],
            "test_with_train_twin": with_train_twin["test"],
            "test_with_validation_twin": test_with_validation_twin,
        },
        "label_conflicts": conflicts,
        "class_balance": balance,
        **({"people": people} if people is not None else {}),
        "files": [asdict(record) for record in records],
    }


def run_audit(
    root: str | Path,
    out_dir: str | Path,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    person_threshold: float | None = None,
    console=None,
) -> dict:
    """The ``emotionlab data audit`` command: audit, write outputs, print the summary."""
    ensure_outside_root(root, out_dir)
    report = audit_dataset(root, threshold=threshold, person_threshold=person_threshold, console=console)
    written = write_audit(report, out_dir)
    if console is not None:
        print_audit_summary(report, console)
        console.print(
            "  wrote " + ", ".join(str(path) for path in written.values()), highlight=False, soft_wrap=True
        )
    return report
