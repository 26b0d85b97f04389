"""`emotionlab predict`: the job behind the command (inputs, shards, --resume, writers, videos and camera)
and the command itself. The library part (classify images) is ``emotionlab.inference``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer

from emotionlab.cli.predict_ray import RAY_OPTIONS, check_ray_options, ray_results
from emotionlab.cli.records import VIDEO_FAILED, PreparingNote, RecordWriter, output_format_for, read_done
from emotionlab.cli.root import Backend, Classes, DetectorOverride, DetectOverride, Five, answer_classes, app
from emotionlab.data.images import is_video_name, list_inputs
from emotionlab.errors import EmotionlabError, Interrupted
from emotionlab.fileio import is_inside
from emotionlab.inference import PreparedImage, load_recognizer, progress_bar
from emotionlab.isolation import error_reason, printable

log = logging.getLogger("emotionlab")
ENGINES = ("local", "ray")


@dataclass
class PredictOptions:
    """Everything `emotionlab predict` can be asked for (see the command's help for each option)."""

    inputs: list[str] = field(default_factory=list)
    model: Path | None = None
    output_format: str = "table"
    output: Path | None = None
    resume: bool = False
    shard: str | None = None
    batch_size: int = 32
    workers: int = 0
    detect: bool | None = None
    detector: str | None = None
    max_faces: int | None = None
    backend: str = "auto"
    int8: bool = False
    fps: float | None = None
    out_dir: Path | None = None
    annotate: Path | None = None
    camera: int | None = None
    max_frames: int | None = None
    window: bool | None = None  # None: a window when OpenCV has a GUI and there is a display
    progress: bool | None = None  # None: on (a bar on a terminal, lines in a log)
    engine: str = "local"  # local: this process and --workers; ray: Ray Data (cli/predict_ray.py)
    # --engine ray: the cluster to join (None: $RAY_ADDRESS, else a local instance)
    address: str | None = None
    actors: int = 1  # --engine ray: model copies classifying at once
    # --five / --classes: answer among these of the model's classes (None: all of them)
    classes: list[str] | None = None


def refuse_inside(target: Path | None, inputs: list[str], what: str) -> None:
    """Outputs never go inside an input folder: a dataset root stays untouched, and a rerun would read them."""
    if target is None:
        return
    for item in inputs:
        if Path(item).is_dir() and is_inside(target, item):
            raise EmotionlabError(
                f"{target}: {what} must not be inside the input folder {item}; choose another"
            )


def select_shard(files: Sequence, shard: str | None) -> list:
    """Shard ``i/n`` (1 <= i <= n) of the list: every n-th file starting at the i-th. The same command on n
    machines (same inputs, so the same sorted list) splits the files into n disjoint parts covering them all."""
    if not shard:
        return list(files)
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise EmotionlabError(f"--shard {shard!r}: write it as i/n, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise EmotionlabError(f"--shard {shard!r}: need 1 <= i <= n")
    return list(files[index - 1 :: count])


def run_predict(options: PredictOptions, *, stream=None) -> int:
    """Run `emotionlab predict`; returns the number of records written."""

    if options.camera is None and not options.inputs:
        raise EmotionlabError("give images, folders, globs or videos to predict, or --camera INDEX")
    if options.resume and options.output is None:
        raise EmotionlabError("--resume needs --output FILE (the file to continue)")
    for target, what in (
        (options.output, "--output"),
        (options.out_dir, "--out"),
        (options.annotate, "--annotate"),
    ):
        refuse_inside(target, options.inputs, what)
    if options.batch_size < 1:
        raise EmotionlabError("--batch-size must be at least 1")
    if options.engine not in ENGINES:  # each engine's options are checked before any model loads
        raise EmotionlabError(f"unknown --engine {options.engine!r}: use local or ray")
    if options.engine == "ray":
        check_ray_options(annotate=options.annotate, camera=options.camera)
    elif options.address:
        raise EmotionlabError("--address joins a Ray cluster: use it with --engine ray")
    recognizer = load_recognizer(
        options.model,
        detect=options.detect,
        detector=options.detector,
        backend=options.backend,
        int8=options.int8,
        max_faces=options.max_faces,
        classes=options.classes,
    )
    # A bar on a terminal, else lines; none by default when jsonl/csv records stream onto the same terminal.
    records_on_terminal = options.output is None and options.output_format != "table" and sys.stdout.isatty()
    progress = options.progress if options.progress is not None else not records_on_terminal

    if options.camera is not None:
        from emotionlab.inference import video as video_module  # OpenCV: the [video] extra

        window = options.window if options.window is not None else video_module.gui_available()
        if options.window and not video_module.gui_available():
            raise EmotionlabError(
                "no window possible here (opencv-python-headless or no display); use --no-window"
            )
        writer = RecordWriter(
            options.output_format, recognizer.labels, output=options.output, live=True, stream=stream
        )
        frames = video_module.camera_frames(options.camera, fps=options.fps, max_frames=options.max_frames)
        try:
            records = video_module.predict_camera(
                recognizer,
                frames,
                name=f"camera:{options.camera}",
                window=window,
                out_dir=options.out_dir,
                annotate_dir=options.annotate,
                fps=options.fps,
            )
            with closing(records):  # Ctrl+C still finishes the timeline and the annotated video
                for record in records:
                    writer.write(record)
        finally:
            writer.close()
        return writer.count

    listing = list_inputs(options.inputs)
    for line in listing.summary():  # every file of a folder is scored, named here, or counted as junk
        log.warning("%s", line)
    files = select_shard(listing.files, options.shard)
    if not files:
        raise EmotionlabError(
            f"no images or videos in {', '.join(options.inputs)}"
            + (f" (shard {options.shard})" if options.shard else "")
        )
    done = read_done(options.output, options.output_format) if options.resume else {}
    videos = [f for f in files if is_video_name(f) and done.get(str(f), -1) != VIDEO_FAILED]
    images = [f for f in files if not is_video_name(f) and str(f) not in done]
    note = PreparingNote(options.output) if options.output is not None else None
    # An image this process was preparing when it died (native code can kill it: a crash, not an exception):
    # on --resume it goes first, alone, in a worker process, so it cannot take this run down again.
    suspect = note.read() if note is not None and options.resume else None
    suspects = [f for f in images if str(f) == suspect]
    if suspects:
        images.remove(suspects[0])
    writer = RecordWriter(
        options.output_format, recognizer.labels, output=options.output, append=options.resume, stream=stream
    )
    annotate_base = None
    if options.annotate is not None:
        from emotionlab.inference.annotate import common_base

        annotate_base = common_base([*suspects, *images])

    def write_results(results) -> None:
        for item, record in results:
            if options.annotate is not None and item.image is not None:
                _annotate_image(options.annotate, item, record, annotate_base)
                item.image = None
            writer.write(record)

    try:
        common = {"batch_size": options.batch_size, "keep_images": options.annotate is not None}
        if suspects:
            write_results(recognizer.iter_predictions(suspects, workers=1, **common))
        if options.engine == "ray":
            ray_options = {name: getattr(options, name) for name in RAY_OPTIONS}
            write_results(ray_results(images, progress=progress and bool(images), **ray_options))
        else:
            write_results(
                recognizer.iter_predictions(
                    images,
                    workers=options.workers,
                    progress=progress and bool(images),
                    on_prepare=note.mark if note is not None and options.workers == 0 else None,
                    **common,
                )
            )
        if note is not None:
            note.clear()
        for path in videos:
            _predict_one_video(recognizer, path, options, done, writer, progress)
    except KeyboardInterrupt:
        where = f"{writer.count} record(s) written" + (f" to {options.output}" if options.output else "")
        how = "; the same command with --resume goes on from there" if options.output else ""
        raise Interrupted(where + how) from None
    finally:
        writer.close()
        if note is not None:
            note.clear()
    return writer.count


def _annotate_image(folder: Path, item: PreparedImage, record: dict, base: Path | None) -> None:
    """Write the annotated copy of one image; a failure is reported and the run goes on."""
    from emotionlab.inference.annotate import annotated_image_path, draw_record, write_image

    try:
        write_image(annotated_image_path(folder, item.name, base), draw_record(item.image, record))
    except Exception as error:  # noqa: BLE001 - the prediction stands; only its picture is missing
        log.warning("%s: no annotated copy: %s", printable(item.name), error_reason(error))


def _predict_one_video(recognizer, path: Path, options: PredictOptions, done: dict, writer, progress) -> None:
    """Write one video's frame records; a video that cannot be read (or fails part way) gets an error record
    and the next video goes on."""

    from emotionlab.inference import video as video_module

    # A resumed video continues after its last written frame; its timeline and annotated video are not
    # rewritten (they would hold only the remaining frames).
    resumed = str(path) in done
    frames = 0
    try:
        records = video_module.predict_video(
            recognizer,
            path,
            fps=options.fps,
            out_dir=None if resumed else options.out_dir,
            annotate_dir=None if resumed else options.annotate,
            batch_size=min(options.batch_size, 16),
            start_frame=done.get(str(path), -1) + 1,
        )
        with closing(records):
            for record in progress_bar(records, total=None, description=path.name, enabled=progress):
                writer.write(record)
                frames += 1
    except Exception as error:  # noqa: BLE001 - one bad video never stops a folder of videos
        reason = error_reason(error)
        reason = reason.removeprefix(f"{path}: ")  # the record names the file already
        if frames:
            reason = f"video stopped after {frames} frame(s): {reason}"
        writer.write({"path": str(path), "error": reason})


@app.command()
def predict(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Images, videos, folders (recursive) or glob patterns.")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file (.safetensors, or .onnx with --backend onnx), or a shipped model: default, ferplus8 (default: default)."
        ),
    ] = None,
    output_format: Annotated[
        Literal["table", "jsonl", "csv"] | None,
        typer.Option(
            "--format",
            help="Records as a table, jsonl or csv (default: from --output's extension, else table).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the records to this file (.jsonl or .csv) instead of stdout."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip inputs already in --output and append the rest.")
    ] = False,
    shard: Annotated[
        str | None, typer.Option(help="i/n: process only the i-th of n disjoint parts of the sorted inputs.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Faces per network call.")] = 32,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes that decode, detect and crop images (0: in this process). --engine ray: the local Ray instance's CPUs (0: all)."
        ),
    ] = 0,
    detect: DetectOverride = None,
    detector: DetectorOverride = None,
    max_faces: Annotated[
        int | None, typer.Option(help="Classify at most this many faces per image (largest first).")
    ] = None,
    backend: Backend = "auto",
    int8: Annotated[
        bool, typer.Option("--int8", help="With --backend onnx: an int8-quantised export.")
    ] = False,
    fps: Annotated[
        float | None,
        typer.Option(help="Videos and camera: frames per second to classify (default: every frame)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for each video's emotion-over-time CSV and PNG plot.")
    ] = None,
    annotate: Annotated[
        Path | None,
        typer.Option(help="Folder for copies of images and videos with boxes, labels and confidences drawn."),
    ] = None,
    camera: Annotated[
        int | None, typer.Option(help="Read this camera (0: the first) instead of files.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Camera: stop after this many frames.")] = None,
    window: Annotated[
        bool | None,
        typer.Option(
            "--window/--no-window", help="Camera: show a live window (default: when a display exists)."
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress on stderr: a bar on a terminal, a line per 10% in a log.",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process and --workers) | ray (Ray Data: a local instance, or the cluster of --address; pip install 'emotionlab[ray]')."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the Ray cluster to join, e.g. auto or HEAD_IP:6379 (default: $RAY_ADDRESS, else a local instance)."
        ),
    ] = None,
    actors: Annotated[
        int, typer.Option(help="--engine ray: model copies classifying at once (one CPU each).")
    ] = 1,
    five: Five = False,
    classes: Classes = None,
) -> None:
    """Predict the emotion of every face in images, videos or a camera; jsonl/csv give one record per image or frame.

    A file that cannot be used (unreadable, not an image, a video that does not open, an image that kills a
    worker process) gets a record with an "error" reason in its place and the run goes on: the exit code is 0
    when every input has its record. Records are written as they come, so a run that dies keeps them, and
    --resume continues after them (an image the run died on is retried alone, in a separate process).
    """

    # OpenMP threads that sleep rather than spin while they wait keep PyTorch fast when other processes share the
    # CPU (batch-1 faces/s 128 -> 354 on a loaded 2-core machine, benchmarks/speed.py, set before the process
    # started). OpenMP reads it when torch loads: nothing has loaded torch here (the shipped models never do), and
    # a PyTorch model file loads it after this line (benchmarks/omp_wait_policy.py checks; whole commands on the
    # PyTorch backend under load: 0.3-0.4 images/s PASSIVE, 0.2-0.3 ACTIVE).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    run_predict(
        PredictOptions(
            inputs=list(paths or []),
            model=model,
            output_format=output_format_for(output_format, output),
            output=output,
            resume=resume,
            shard=shard,
            batch_size=batch_size,
            workers=workers,
            detect=detect,
            detector=detector,
            max_faces=max_faces,
            backend=backend,
            int8=int8,
            fps=fps,
            out_dir=out,
            annotate=annotate,
            camera=camera,
            max_frames=max_frames,
            window=window,
            progress=progress,
            engine=engine,
            address=address,
            actors=actors,
            classes=answer_classes(five, classes),
        )
    )
