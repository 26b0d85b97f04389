"""Emotion over time for a video or camera: per sampled frame the largest face's label and probabilities, as a
CSV streamed while the video runs and a PNG plot drawn at the end (``Timeline``; used by ``inference.video``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


class Timeline:
    """Per sampled frame: time, the largest face's label and probabilities. Streams rows to a CSV and draws
    the probabilities over time as a PNG when closed."""

    def __init__(
        self,
        labels: list[str],
        csv_path: str | Path | None = None,
        png_path: str | Path | None = None,
        *,
        title: str = "",
    ):
        self.labels = list(labels)
        self.csv_path = Path(csv_path) if csv_path else None
        self.png_path = Path(png_path) if png_path else None
        self.title = title
        self.times: list[float] = []
        self.rows: list[list[float]] = []
        self.no_face: list[bool] = []
        self._handle = None
        self._writer = None
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.csv_path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._handle)
            self._writer.writerow(["time", "frame", "faces", "no_face", "label", "confidence", *self.labels])

    def add(self, record: dict) -> None:
        if "error" in record:
            return
        probabilities = [record["probabilities"][label] for label in self.labels]
        self.times.append(float(record["time"]))
        self.rows.append(probabilities)
        self.no_face.append(bool(record["no_face"]))
        if self._writer is not None:
            self._writer.writerow(
                [
                    f"{record['time']:.3f}",
                    record.get("frame", ""),
                    len(record["faces"]),
                    int(record["no_face"]),
                    record["label"],
                    f"{record['confidence']:.4f}",
                    *(f"{p:.4f}" for p in probabilities),
                ]
            )

    def close(self) -> list[Path]:
        """Finish the CSV and draw the PNG; returns the files written."""
        written = []
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            written.append(self.csv_path)
        if self.png_path is not None and self.times:
            written.append(self.plot(self.png_path))
        return written

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from emotionlab.inference.annotate import label_color

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        values = np.asarray(self.rows)
        figure, axis = plt.subplots(figsize=(10, 4), dpi=100)
        for column, label in enumerate(self.labels):
            color = np.asarray(label_color(label)) / 255
            axis.plot(self.times, values[:, column], label=label, color=color, linewidth=1.6, marker=".")
        missing = [t for t, flag in zip(self.times, self.no_face, strict=True) if flag]
        if missing:
            axis.scatter(
                missing, [-0.03] * len(missing), marker="|", color="grey", label="no face (whole frame)"
            )
        axis.set_xlabel("time (s)")
        axis.set_ylabel("probability (largest face)")
        axis.set_ylim(-0.06, 1.02)
        axis.set_title(self.title or "emotion over time")
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        return path
