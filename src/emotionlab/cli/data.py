"""`emotionlab data ...`: download, import, audit, split, face crops (library: emotionlab.data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from emotionlab.cli.root import data_app

# ---- data: audit, split, download (library: emotionlab.data.audit / manifest / download) -----------------


@data_app.command("audit")
def data_audit(
    data: Annotated[
        Path, typer.Option(help="Dataset folder ([split/]label/image). Only read, never changed.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for audit.json and class_balance.png (outside --data).")
    ],
    threshold: Annotated[
        int | None, typer.Option(help="Near-duplicate threshold: max perceptual-hash distance, bits of 64.")
    ] = None,
    people: Annotated[
        bool,
        typer.Option("--people", help="Also find the same person across splits (face embeddings, cached)."),
    ] = False,
    person_threshold: Annotated[
        float | None,
        typer.Option(help="With --people: max face-embedding distance of one person (default 0.4)."),
    ] = None,
    suspects: Annotated[
        bool,
        typer.Option(
            "--suspects",
            help="Also list likely label errors (out-of-fold predictions + confident learning): "
            "suspects.csv/.json/.html in --out.",
        ),
    ] = False,
    suspects_model: Annotated[
        str,
        typer.Option(
            help="With --suspects: the model whose frozen features are used (never trained on --data)."
        ),
    ] = "ferplus8",
    folds: Annotated[int, typer.Option(help="With --suspects: cross-validation folds.")] = 5,
) -> None:
    """Check a dataset: unreadable files, real formats, duplicates, cross-split leakage, label conflicts."""
    from emotionlab.data.audit import DEFAULT_THRESHOLD, run_audit

    if people:
        from emotionlab.data.people import DEFAULT_PERSON_THRESHOLD

        person_threshold = DEFAULT_PERSON_THRESHOLD if person_threshold is None else person_threshold
    run_audit(
        data,
        out,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        person_threshold=person_threshold if people else None,
        console=Console(),
    )
    if suspects:
        _run_suspects(data, out, model=suspects_model, folds=folds, threshold=threshold)


@data_app.command("suspects")
def data_suspects(
    data: Annotated[
        Path, typer.Option(help="Dataset folder ([split/]label/image). Only read, never changed.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for suspects.csv/.json/.html (outside --data).")],
    model: Annotated[
        str, typer.Option(help="The model whose frozen features are used (never trained on --data).")
    ] = "ferplus8",
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds.")] = 0,
) -> None:
    """Likely label errors: out-of-fold predictions ranked by confident learning (cleanlab); review them with
    `emotionlab label DATA --review OUT/suspects.csv`."""
    _run_suspects(data, out, model=model, folds=folds, seed=seed)


def _run_suspects(data: Path, out: Path, *, model: str, folds: int, seed: int = 0, threshold=None) -> None:
    from emotionlab.evaluation.suspects import find_suspects, write_suspects
    from emotionlab.fileio import ensure_outside_root

    ensure_outside_root(data, out)  # before minutes of work
    console = Console()
    console.print(f"likely label errors: features of {model}, {folds}-fold out-of-fold predictions ...")
    report = find_suspects(data, model=model, folds=folds, seed=seed, threshold=threshold)
    written = write_suspects(report, out)
    summary = report.summary()
    console.print(
        f"{summary['suspects']} suspect(s) among {summary['images']} photos "
        f"(out-of-fold accuracy {summary['out_of_fold_accuracy']:.1%}); given -> model: "
        + ", ".join(f"{pair} {count}" for pair, count in list(summary["given_to_suggested"].items())[:6]),
        highlight=False,
        soft_wrap=True,
    )
    for suspect in report.suspects[:10]:
        console.print(
            f"  #{suspect.rank} {suspect.path}: filed as {suspect.given}, model says {suspect.suggested} "
            f"(p(given) {suspect.quality:.2f})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"wrote {written['csv']}, {written['json'].name}, {written['html'].name}", soft_wrap=True)
    console.print(f"review them: emotionlab label {data} --review {written['csv']}", soft_wrap=True)


@data_app.command("split")
def data_split(
    data: Annotated[
        Path, typer.Option(help="Dataset folder ([split/]label/image). Only read, never changed.")
    ],
    output: Annotated[Path, typer.Option(help="Manifest CSV to write (outside --data).")],
    ratios: Annotated[str, typer.Option(help="train,validation,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    threshold: Annotated[
        int | None, typer.Option(help="Near-duplicate threshold: max perceptual-hash distance, bits of 64.")
    ] = None,
    keep_splits: Annotated[
        bool,
        typer.Option("--keep-splits", help="Keep the folder splits; move only duplicate groups that leak."),
    ] = False,
    group_by: Annotated[
        Literal["duplicates", "person"],
        typer.Option(
            help="Keep whole: duplicate groups, or people too (face embeddings; group = merged id)."
        ),
    ] = "duplicates",
    person_threshold: Annotated[
        float | None,
        typer.Option(help="With --group-by person: max face-embedding distance of one person (default 0.4)."),
    ] = None,
) -> None:
    """Write a manifest with a stratified split in which no duplicate group (or person) straddles splits."""
    from emotionlab.data.audit import DEFAULT_THRESHOLD
    from emotionlab.data.split import run_split

    run_split(
        data,
        output,
        ratios=ratios,
        seed=seed,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        keep_splits=keep_splits,
        group_by=group_by,
        person_threshold=person_threshold,
        console=Console(),
    )


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Dataset name: seed-emotions.")],
    dest: Annotated[Path, typer.Argument(help="New or empty folder to put the dataset in.")],
    url: Annotated[
        str | None, typer.Option(help="Archive URL (default: $EMOTIONLAB_SEED_URL, else GitHub).")
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--from", help="Use a local zip or an already extracted folder instead.")
    ] = None,
) -> None:
    """Fetch a known dataset (zip from its repository, or --from a local copy) and check its layout and counts."""
    from emotionlab.data.download import download_dataset

    download_dataset(name, dest, url=url, source=source, console=Console(stderr=True))


@data_app.command("import")
def data_import(
    source: Annotated[
        Path,
        typer.Argument(
            help="A CSV of url,label[,source,licence], a zip or tar archive, or a folder of label folders. Only read."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The new dataset folder: OUT/label/<sha256[:16]>.<ext> and OUT/provenance.csv. Re-running resumes.",
        ),
    ],
    against: Annotated[
        Path | None,
        typer.Option(
            help="An existing dataset (folder, or manifest with sha256/phash): its exact and near duplicates are skipped."
        ),
    ] = None,
    label_from: Annotated[
        Literal["folder", "csv"] | None,
        typer.Option(
            help="Archive/folder labels: the folder holding each file, or a CSV of path,label (--labels, else labels.csv in SOURCE)."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="With --label-from csv: the path,label[,source,licence] CSV (paths inside SOURCE)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Concurrent downloads.")] = 8,
    retries: Annotated[
        int,
        typer.Option(
            help="Extra attempts after a timeout, broken connection or HTTP 5xx/429 (back-off 0.5 s, 1 s, 2 s, ...)."
        ),
    ] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds without data before an attempt gives up.")] = 20.0,
    max_mb: Annotated[
        float, typer.Option(help="Largest file accepted, in MB (downloads stop past it).")
    ] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(help="Largest image accepted, in pixels (checked before decoding).")
    ] = 50_000_000,
    threshold: Annotated[
        int | None,
        typer.Option(
            help="Near-duplicate threshold: max perceptual-hash distance, bits of 64 (the audit's)."
        ),
    ] = None,
) -> None:
    """Import photos into a new dataset folder: checked by their bytes, duplicates skipped, provenance kept."""
    from emotionlab.data.audit import DEFAULT_THRESHOLD
    from emotionlab.data.importer import ImportOptions, import_photos, print_import_summary

    options = ImportOptions(
        workers=workers,
        retries=retries,
        timeout=timeout,
        max_bytes=int(max_mb * 1024**2),
        max_pixels=max_pixels,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        label_from=label_from,
        labels_csv=str(labels) if labels else None,
    )
    report = import_photos(source, out, against=against, options=options)
    print_import_summary(report, Console())


# ---- data: face detection and crops (library: emotionlab.faces) ------------------------------------


@data_app.command("faces")
def data_faces(
    data: Annotated[Path, typer.Option(help="Dataset folder. Only read, never changed.")],
    output: Annotated[
        Path, typer.Option(help="Manifest CSV to write (outside --data), with face_box filled.")
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(help="Input manifest (paths under --data); its columns are kept. Default: scan --data."),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help="Face detector: blaze (default), blaze-full, haar, hog, mmod, yunet, cascade, or a chain such as blaze+hog."
        ),
    ] = None,
    detector_model: Annotated[
        Path | None, typer.Option(help="YuNet ONNX file (for --detector yunet).")
    ] = None,
    margin: Annotated[float, typer.Option(help="Crop margin per side, as a fraction of the box.")] = 0.1,
    align: Annotated[bool, typer.Option("--align", help="Rotate crops so the eyes are level.")] = False,
    workers: Annotated[int, typer.Option(help="Detection processes.")] = 1,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Crop cache (default: $EMOTIONLAB_CACHE/faces or ~/.cache/emotionlab/faces)."),
    ] = None,
) -> None:
    """Detect a face on every image, fill the crop cache, and write a manifest with face_box (x y w h)."""
    from emotionlab.data.face_boxes import prepare_face_manifest
    from emotionlab.faces import PREPARE_DETECTOR, FaceCropConfig

    config = FaceCropConfig(
        detector=detector or PREPARE_DETECTOR,
        margin=margin,
        align=align,
        detector_model=str(detector_model) if detector_model else None,
    )
    try:
        report = prepare_face_manifest(
            data, output, manifest=manifest, config=config, cache_dir=cache_dir, workers=workers
        )
    except KeyboardInterrupt:
        from emotionlab.errors import Interrupted

        raise Interrupted(
            f"{output} not written; the crops made so far are cached, so the same command goes on from there"
        ) from None
    found_by = ", ".join(f"{name} {count}" for name, count in sorted(report.by_detector.items()))
    print(
        f"{report.total} images: face found in {report.with_face} ({found_by}), no face in {len(report.no_face)}"
    )
    from emotionlab.isolation import printable  # file names need not be UTF-8

    for path in report.no_face:
        print(f"  no face: {printable(path)}")
    for path, reason in report.unreadable:
        print(f"  unreadable: {printable(path)}: {printable(reason)}")
    print(f"wrote {report.out}")


@data_app.command("download-yunet")
def data_download_yunet(
    dest: Annotated[
        Path, typer.Argument(help="File to write, or a folder for face_detection_yunet_2023mar.onnx.")
    ],
    url: Annotated[
        str | None, typer.Option(help="Download URL (default: the OpenCV model zoo on GitHub).")
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--from", help="Copy this local file instead of downloading.")
    ] = None,
) -> None:
    """Fetch OpenCV's YuNet face-detector model (ONNX) for --detector yunet, or copy a local file --from."""
    from emotionlab.faces import YUNET_URL, download_yunet

    path = download_yunet(dest, url=url or YUNET_URL, source_file=source)
    print(f"wrote {path}; use it with --detector yunet --detector-model {path}")
