"""`emotionlab predict` output: the record writers (table, jsonl, csv) and reading back what a run wrote
(--resume)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from emotionlab.errors import EmotionlabError
from emotionlab.isolation import printable

# ``read_done``'s value for a video whose processing ended with an error: resuming skips it like a finished one.
VIDEO_FAILED = 2**62


def read_done(output: Path, output_format: str) -> dict[str, int]:
    """Inputs already in an output file: path -> last frame written (-1 for images, ``VIDEO_FAILED`` for a
    video that ended in an error record). Streams the file; a last line cut off by a crash is removed from
    it, so appending continues cleanly."""

    from emotionlab.data.images import is_video_name

    if output_format not in ("jsonl", "csv"):
        raise EmotionlabError("--resume needs --format jsonl or csv")
    done: dict[str, int] = {}
    if not output.is_file():
        return done

    def note(path: str, frame, error) -> None:
        try:
            value = int(frame) if frame not in (None, "") else -1
        except ValueError:
            value = -1
        if error and value == -1 and is_video_name(path):
            value = VIDEO_FAILED
        done[path] = max(done.get(path, -1), value)

    complete = 0  # bytes up to the end of the last whole line

    def lines():
        nonlocal complete
        with output.open("rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    return  # the last record was cut off mid-write
                complete += len(raw)
                yield raw.decode("utf-8", errors="surrogateescape")

    if output_format == "jsonl":
        for line in lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "path" in record:
                note(str(record["path"]), record.get("frame"), record.get("error"))
    else:
        for row in csv.DictReader(lines()):
            if row.get("path"):
                note(row["path"], row.get("frame"), row.get("error"))
    if complete < output.stat().st_size:
        with output.open("rb+") as handle:
            handle.truncate(complete)
    return done


class PreparingNote:
    """A small hidden file beside ``--output`` naming the image this process is preparing (single-process
    runs). It survives only a run that died (it is removed otherwise), so ``--resume`` knows which image to
    run in isolation instead of crashing on it again; a run killed for another reason (kill -9) loses
    nothing, since that image then simply succeeds."""

    def __init__(self, output: Path):
        self.path = output.with_name(f".{output.name}.preparing")
        self._handle = None

    def mark(self, source) -> None:

        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
        # Three system calls per image (microseconds); no fsync: the note must outlive the process, not the OS.
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps(str(source)) + "\n")
        self._handle.flush()

    def read(self) -> str | None:

        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None

    def clear(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


def _format_probabilities(record: dict, labels: list[str]) -> list[str]:
    probabilities = record.get("probabilities", {})
    return [f"{probabilities[label]:.4f}" if label in probabilities else "" for label in labels]


FORMAT_OF_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def output_format_for(output_format: str | None, output: Path | None) -> str:
    """``--format`` as given, else taken from ``--output``'s extension (.jsonl, .ndjson, .csv), else ``table``."""
    if output_format is not None:
        return output_format
    if output is None:
        return "table"
    found = FORMAT_OF_EXTENSION.get(Path(output).suffix.lower())
    if found is None:
        raise EmotionlabError(
            f"{output}: no record format for this extension (.jsonl or .csv), or add --format jsonl|csv"
        )
    return found


class RecordWriter:
    """Writes records as they come: ``jsonl`` and ``csv`` stream (to stdout or a file); ``table`` collects
    rows and prints one table at the end, or one line per record when ``live`` (camera)."""

    def __init__(
        self,
        output_format: str,
        labels: list[str],
        *,
        output: Path | None = None,
        append: bool = False,
        live: bool = False,
        stream=None,
    ):
        if output_format not in ("table", "jsonl", "csv"):
            raise EmotionlabError(f"unknown --format {output_format!r}: use table, jsonl or csv")
        if output is not None and output_format == "table":
            raise EmotionlabError("--output needs --format jsonl or csv")

        self.format, self.labels, self.live = output_format, list(labels), live
        self.count = 0
        self._rows: list[dict] = []
        self._file = None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            fresh = not append or not output.is_file() or output.stat().st_size == 0
            # surrogateescape: a file name that is not UTF-8 is written back as its own bytes, so --resume
            # recognises it (jsonl escapes such names itself).
            self._file = output.open(
                "a" if append else "w", newline="", encoding="utf-8", errors="surrogateescape"
            )
            self.stream = self._file
            self._name = str
        else:
            fresh = True
            self.stream = stream or sys.stdout
            self._name = printable  # a terminal or pipe may refuse undecodable bytes
        if output_format == "csv":
            self._csv = csv.writer(self.stream)
            if fresh:
                self._csv.writerow(self.csv_header())

    def csv_header(self) -> list[str]:
        return [
            "path",
            "frame",
            "time",
            "label",
            "confidence",
            "no_face",
            "faces",
            "box",
            *self.labels,
            "error",
        ]

    def write(self, record: dict) -> None:

        if self.format == "jsonl":
            self.stream.write(json.dumps(record) + "\n")
        elif self.format == "csv":
            faces = record.get("faces") or []
            box = " ".join(str(v) for v in faces[0]["box"]) if faces else ""
            confidence = f"{record['confidence']:.4f}" if "confidence" in record else ""
            no_face = "" if "error" in record else int(bool(record.get("no_face")))
            self._csv.writerow(
                [
                    self._name(record["path"]),
                    record.get("frame", ""),
                    record.get("time", ""),
                    record.get("label", ""),
                    confidence,
                    no_face,
                    len(faces) if "error" not in record else "",
                    box,
                    *_format_probabilities(record, self.labels),
                    record.get("error", ""),
                ]
            )
        elif self.live:
            self.stream.write(self._name(_summary_line(record)) + "\n")
        else:
            self._rows.append(record)
        # Counted once written: a Ctrl+C inside this method must not report a record that is not in the file.
        self.count += 1
        if self.format != "table" or self.live:
            self.stream.flush()

    def close(self) -> None:
        if self.format == "table" and not self.live and self._rows:
            self._print_table()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _print_table(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table()
        for column in ("path", "faces", "label", "confidence", *self.labels):
            table.add_column(column, justify="left" if column in ("path", "label") else "right")
        for record in self._rows:
            name = self._name(record["path"]) + (f" @ {record['time']:.2f}s" if "time" in record else "")
            if "error" in record:
                error = escape(self._name(record["error"]))
                table.add_row(escape(name), "", "[red]error[/]", error, *[""] * len(self.labels))
                continue
            faces = "none" if record["no_face"] else str(len(record["faces"]))
            table.add_row(
                escape(name),
                faces,
                record["label"],
                f"{record['confidence']:.2f}",
                *(f"{record['probabilities'][label]:.2f}" for label in self.labels),
            )
        Console(file=self.stream).print(table)


def _summary_line(record: dict) -> str:
    where = record["path"] + (f" frame {record['frame']} t={record['time']:.2f}s" if "time" in record else "")
    if "error" in record:
        return f"{where}: error: {record['error']}"
    faces = record["faces"]
    if record["no_face"]:
        return f"{where}: no face, whole image {record['label']} {record['confidence']:.2f}"
    rest = ", ".join(f"{face['label']} {face['confidence']:.2f}" for face in faces)
    return f"{where}: {len(faces)} face(s): {rest}"
