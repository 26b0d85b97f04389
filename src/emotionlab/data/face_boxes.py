"""`emotionlab data faces`: detect a face on every image of a dataset (boxes cached by content) and write the
manifest with ``face_box`` (``x y w h``). Detection runs in worker processes, so one crash costs one image.

A dataset job (it reads and writes manifests) that uses the face detectors: the one module of ``data`` that
imports ``faces`` for a job rather than for a sample's crop."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from emotionlab.data.dataset import scan_image_folder
from emotionlab.data.images import ImageReadError
from emotionlab.data.manifest import read_manifest_file, write_manifest
from emotionlab.errors import EmotionlabError
from emotionlab.faces import FaceBox, FaceCropConfig, FaceCropper, create_detector
from emotionlab.fileio import is_inside
from emotionlab.isolation import error_reason, isolated_map
from emotionlab.progress import progress


@dataclass
class FaceReport:
    """What ``prepare_face_manifest`` did: counts, the images without a face, the unreadable ones."""

    out: Path
    total: int = 0
    with_face: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    by_detector: dict[str, int] = field(default_factory=dict)


def _detect_row(cropper: FaceCropper, path: Path | str) -> tuple[FaceBox | None, str | None]:
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
    """Detect a face on every image (boxes cached) and write ``out``: the input manifest (or the folder tree's
    path,label,split) plus ``face_box`` (``x y w h``, empty when no face) and ``face_detector``.

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
        comments, columns, rows = read_manifest_file(manifest)
        if "path" not in columns:
            raise EmotionlabError(f"{manifest}: not a manifest (no path column)")
    else:
        sample_set = scan_image_folder(root, verify=False)
        comments, columns = [], ["path", "label", "split"]
        rows = [{"path": s.relpath, "label": s.label, "split": s.split or ""} for s in sample_set.samples]
    comments = [
        *(line for line in comments if not line.startswith("face_box:")),
        f"face_box: x y w h from the {config.detector} detector (emotionlab data faces) on {root.resolve()}",
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

    write_manifest(rows, out, comments=comments, columns=columns)
    return report


def _run_detection(cropper: FaceCropper, paths: list[str], workers: int, show_progress: bool):
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
