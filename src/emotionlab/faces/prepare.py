"""`emotionlab data faces`: detect a face on every image of a dataset, fill the crop cache, and write the
manifest with ``face_box`` (``x y w h``). Detection runs in worker processes, so one crash costs one image."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from emotionlab.data.images import ImageReadError
from emotionlab.errors import EmotionlabError
from emotionlab.faces.boxes import FaceBox
from emotionlab.faces.crop import FaceCropConfig
from emotionlab.faces.cropper import FaceCropper
from emotionlab.faces.detectors import create_detector
from emotionlab.fileio import is_inside, write_atomic


@dataclass
class FaceReport:
    """What ``prepare_face_manifest`` did: counts, the images without a face, the unreadable ones."""

    out: Path
    total: int = 0
    with_face: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    by_detector: dict[str, int] = field(default_factory=dict)


def _read_manifest_rows(manifest: Path) -> tuple[list[str], list[str], list[dict]]:
    """(comment lines, column names, rows) of a manifest CSV, keeping every column."""
    if not manifest.is_file():
        raise EmotionlabError(f"{manifest}: manifest file not found")
    with manifest.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        lines = handle.readlines()
    comments = [line.rstrip("\r\n") for line in lines if line.startswith("#")]
    reader = csv.DictReader([line for line in lines if not line.startswith("#")])
    rows = list(reader)
    columns = list(reader.fieldnames or [])
    if "path" not in columns:
        raise EmotionlabError(f"{manifest}: not a manifest (no path column)")
    return comments, columns, rows


def _detect_row(cropper: FaceCropper, path: Path | str) -> tuple[FaceBox | None, str | None]:
    from emotionlab.isolation import error_reason

    try:
        return cropper.detect_file(Path(path)), None
    except ImageReadError as error:
        return None, error.reason
    except Exception as error:  # noqa: BLE001 - one image's failure is its "unreadable" line, the run goes on
        return None, error_reason(error)


def prepare_face_manifest(
    root: str | Path,
    out: str | Path,
    *,
    manifest: str | Path | None = None,
    config: FaceCropConfig | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    show_progress: bool = True,
) -> FaceReport:
    """Detect a face on every image, fill the crop cache, and write ``out``: the input manifest (or the
    folder tree's path,label,split) plus ``face_box`` (``x y w h``, empty when no face) and ``face_detector``.

    Nothing is written under ``root``.
    """
    root, out = Path(root), Path(out)
    config = config or FaceCropConfig()
    cropper = FaceCropper(config, cache_dir)
    if not root.is_dir():
        raise EmotionlabError(f"{root}: dataset folder not found")
    if is_inside(out, root):
        raise EmotionlabError(
            f"{out}: refusing to write inside the dataset folder {root}; choose another --output"
        )
    if is_inside(cropper.cache_dir, root):
        raise EmotionlabError(
            f"{cropper.cache_dir}: the face-crop cache must not be inside the dataset folder {root}"
        )
    create_detector(config.detector, model_file=config.detector_model)  # fail fast on a bad name or model

    if manifest is not None:
        comments, columns, rows = _read_manifest_rows(Path(manifest))
    else:
        from emotionlab.data.dataset import scan_image_folder

        sample_set = scan_image_folder(root, verify=False)
        comments, columns = [], ["path", "label", "split"]
        rows = [{"path": s.relpath, "label": s.label, "split": s.split or ""} for s in sample_set.samples]
    comments = [
        *(line for line in comments if not line.startswith("# face_box:")),
        f"# face_box: x y w h from the {config.detector} detector (emotionlab data faces) on {root.resolve()}",
    ]
    for column in ("face_box", "face_detector"):
        if column not in columns:
            columns.append(column)

    paths = [str(root / row["path"]) for row in rows]
    report = FaceReport(out=out, total=len(rows))
    results = _run_detection(cropper, paths, workers, show_progress)
    for row, (box, error) in zip(rows, results, strict=True):
        row["face_box"] = box.to_text() if box else ""
        row["face_detector"] = config.detector
        if error is not None:
            report.unreadable.append((row["path"], error))
            row["face_detector"] = ""
        elif box is None:
            report.no_face.append(row["path"])
        else:
            report.with_face += 1
            report.by_detector[box.detector] = report.by_detector.get(box.detector, 0) + 1

    def write(name: str) -> None:
        with open(name, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            handle.writelines(line + "\n" for line in comments)
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(out, write)
    return report


def _run_detection(cropper: FaceCropper, paths: list[str], workers: int, show_progress: bool):
    from functools import partial

    from emotionlab.isolation import isolated_map
    from emotionlab.progress import progress

    # Always in worker processes (one by default): a detector that kills its process on one image (native
    # code) costs that image an "unreadable" line, and a fresh worker goes on with the others. Processes, not
    # threads: each gets its own dlib detectors; never a plain fork (see isolation.worker_context).
    results = isolated_map(
        partial(_detect_row, cropper),
        paths,
        workers=max(1, workers),
        on_error=lambda _path, reason: (None, reason),
        preload=["emotionlab.faces"],
    )
    return list(progress(results, total=len(paths), description="detecting faces", enabled=show_progress))
