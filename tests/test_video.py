"""Videos and cameras: --fps sampling (frame indices and times), per-frame records, the emotion-over-time CSV
and plot, annotated videos, and a camera replaced by a fake frame source (headless)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_cli, save_tiny_model
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.errors import EmotionlabError
from emotionlab.faces import FaceBox
from emotionlab.faces import detectors as faces_module
from emotionlab.inference import load_recognizer, video
from emotionlab.labels import EMOTIONS
from emotionlab.synthetic import make_face

FPS = 10
FRAMES = 30
SIZE = (160, 120)
FACE = FaceBox(40, 20, 80, 80, detector="stub")


def synthetic_frames(count: int = FRAMES, seed: int = 0) -> list[np.ndarray]:
    """RGB frames with one drawn face at ``FACE`` whose expression changes every ten frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        canvas[FACE.y : FACE.y + FACE.h, FACE.x : FACE.x + FACE.w] = np.asarray(
            make_face(EMOTIONS[(index // 10) % 5], rng, FACE.w)
        )
        frames.append(canvas)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 3 s, 10 fps AVI (MJPG: every OpenCV build writes it) of synthetic faces."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for frame in synthetic_frames():
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors")


class OneFace:
    name = "stub"

    def detect(self, image):
        return [FACE]


@pytest.fixture(autouse=True)
def stub_detector(monkeypatch, tmp_path):
    monkeypatch.setattr(faces_module, "create_detector", lambda name, model_file=None: OneFace())
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


def test_fps_sampling_picks_frames_and_times(clip):
    every = list(video.video_frames(clip))
    assert len(every) == FRAMES and every[0].image.shape == (SIZE[1], SIZE[0], 3)
    two = list(video.video_frames(clip, fps=2))
    assert [f.index for f in two] == [0, 5, 10, 15, 20, 25]
    assert [f.time for f in two] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    three = list(video.video_frames(clip, fps=3))  # 10/3 frames apart: one frame per third of a second
    assert [f.index for f in three] == [0, 4, 7, 10, 14, 17, 20, 24, 27]
    assert len(list(video.video_frames(clip, fps=50))) == FRAMES  # above the file's rate: every frame
    assert [f.index for f in video.video_frames(clip, fps=2, start_frame=11)] == [15, 20, 25]


def test_video_errors_are_clear(tmp_path):
    with pytest.raises(EmotionlabError, match="not found"):
        list(video.video_frames(tmp_path / "missing.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(EmotionlabError, match="cannot open"):
        list(video.video_frames(bad))


def test_predict_video_writes_records_timeline_plot_and_annotated_video(clip, model, tmp_path):
    out, drawn = tmp_path / "out", tmp_path / "drawn"
    lines = run_cli(
        "predict", clip, "--model", model, "--fps", 2, "--format", "jsonl", "--out", out, "--annotate", drawn
    )
    records = [json.loads(line) for line in lines.splitlines()]
    assert [(r["frame"], r["time"]) for r in records] == [
        (0, 0.0),
        (5, 0.5),
        (10, 1.0),
        (15, 1.5),
        (20, 2.0),
        (25, 2.5),
    ]
    assert all(r["path"] == str(clip) and r["faces"][0]["box"] == [40, 20, 80, 80] for r in records)

    rows = list(csv.DictReader((out / "clip.timeline.csv").open()))
    assert [float(row["time"]) for row in rows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [row["label"] for row in rows] == [r["label"] for r in records]
    assert set(EMOTIONS) <= set(rows[0])
    assert (out / "clip.timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    capture = cv2.VideoCapture(str(drawn / "clip.annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (SIZE[1], SIZE[0], 3)


def test_video_and_images_together_in_csv(clip, model, tmp_path):
    image = tmp_path / "face.png"
    make_face("happy", np.random.default_rng(0), 64).save(image)
    text = run_cli("predict", image, clip, "--model", model, "--fps", 1, "--format", "csv")
    rows = list(csv.DictReader(text.splitlines()))
    assert [(Path(r["path"]).name, r["frame"], r["time"]) for r in rows] == [
        ("face.png", "", ""),
        ("clip.avi", "0", "0.0"),
        ("clip.avi", "10", "1.0"),
        ("clip.avi", "20", "2.0"),
    ]


def test_resume_continues_a_video_after_its_last_frame(clip, model, tmp_path):
    output = tmp_path / "frames.jsonl"
    full = run_cli("predict", clip, "--model", model, "--fps", 2, "--format", "jsonl")
    first_three = "".join(line + "\n" for line in full.splitlines()[:3])
    output.write_text(first_three)  # as if interrupted after three frames
    run_cli(
        "predict", clip, "--model", model, "--fps", 2, "--format", "jsonl", "--output", output, "--resume"
    )
    assert [json.loads(line)["frame"] for line in output.read_text().splitlines()] == [0, 5, 10, 15, 20, 25]


def test_one_bad_video_does_not_stop_a_folder_of_videos(clip, model, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    data = clip.read_bytes()
    (folder / "a_empty.mp4").write_bytes(b"")
    (folder / "b_random.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "c_good.avi").write_bytes(data)
    (folder / "d_truncated.avi").write_bytes(data[: len(data) // 3])
    os.mkfifo(folder / "e_fifo.mp4")  # OpenCV would wait on it for ever
    (folder / "f_good.avi").write_bytes(data)
    output = tmp_path / "frames.jsonl"
    args = ["predict", folder, "--model", model, "--fps", 1, "--format", "jsonl", "--output", output]
    run_cli(*args)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    errors = {Path(r["path"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) >= {"a_empty.mp4", "b_random.avi", "e_fifo.mp4"}
    assert errors["e_fifo.mp4"] == "not a regular file" and str(folder) not in errors["a_empty.mp4"]
    frames = [(Path(r["path"]).name, r["frame"]) for r in records if "error" not in r]
    assert [f for f in frames if f[0] == "f_good.avi"] == [
        ("f_good.avi", 0),
        ("f_good.avi", 10),
        ("f_good.avi", 20),
    ]
    assert [f for f in frames if f[0] == "c_good.avi"] == [
        ("c_good.avi", 0),
        ("c_good.avi", 10),
        ("c_good.avi", 20),
    ]
    run_cli(*args, "--resume")  # a video that failed is not tried again
    assert len(output.read_text().splitlines()) == len(records)


class FakeCapture:
    """Stands in for cv2.VideoCapture(camera): a few BGR frames, then the camera 'stops'."""

    def __init__(self, frames):
        self.frames = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames]
        self.released = False

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def release(self):
        self.released = True


def test_fake_frame_source_through_the_library(model):
    recognizer = load_recognizer(model)
    frames = [video.Frame(index, index / 4, image) for index, image in enumerate(synthetic_frames(4))]
    records = list(video.predict_camera(recognizer, iter(frames), name="camera:fake"))
    assert [(r["frame"], r["time"]) for r in records] == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]
    assert all(r["path"] == "camera:fake" and len(r["faces"]) == 1 for r in records)


def test_camera_headless_prints_a_record_per_frame(model, monkeypatch, tmp_path):
    capture = FakeCapture(synthetic_frames(5))
    monkeypatch.setattr(video, "open_camera", lambda index: capture)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert video.gui_available() is False  # so the command falls back to printing
    out = tmp_path / "camera"
    lines = run_cli(
        "predict", "--camera", 0, "--model", model, "--format", "jsonl", "--max-frames", 3, "--out", out
    )
    records = [json.loads(line) for line in lines.splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2] and all(r["path"] == "camera:0" for r in records)
    assert capture.released
    assert len(list(csv.DictReader((out / "camera0.timeline.csv").open()))) == 3
    # The default table format prints one line per frame live.
    monkeypatch.setattr(video, "open_camera", lambda index: FakeCapture(synthetic_frames(2)))
    text = run_cli("predict", "--camera", 0, "--model", model)
    assert text.count("camera:0 frame") == 2 and "1 face(s)" in text


def test_ctrl_c_still_writes_the_timeline(model, monkeypatch, tmp_path):
    class Interrupting(FakeCapture):
        def read(self):
            if len(self.frames) == 2:
                raise KeyboardInterrupt
            return super().read()

    monkeypatch.setattr(video, "open_camera", lambda index: Interrupting(synthetic_frames(5)))
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--camera",
            "0",
            "--model",
            str(model),
            "--format",
            "jsonl",
            "--no-window",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 130  # interrupted, as after Ctrl+C
    assert len(result.stdout.splitlines()) == 3
    assert len(list(csv.DictReader((tmp_path / "camera0.timeline.csv").open()))) == 3
    assert (tmp_path / "camera0.timeline.png").is_file()


def test_asking_for_a_window_without_a_display_is_an_error(model, monkeypatch):
    monkeypatch.setattr(video, "open_camera", lambda index: FakeCapture(synthetic_frames(1)))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(app, ["predict", "--camera", "0", "--model", str(model), "--window"])
    assert isinstance(result.exception, EmotionlabError) and "--no-window" in str(result.exception)


class TwoFacesWhenDrawn:
    """Two faces (the drawn one, then a small one in the corner) in frames with a face drawn; none otherwise."""

    name = "stub"
    corner = FaceBox(2, 2, 30, 30, detector="stub")

    def detect(self, image):
        region = np.asarray(image)[FACE.y : FACE.y + FACE.h, FACE.x : FACE.x + FACE.w]
        return [self.corner, FACE] if region.std() > 10 else []


def test_predict_video_to_dataframe_has_a_row_per_face_per_sampled_frame(model, monkeypatch, tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "half.avi"  # 3 s at 10 fps: no face for the first second, then a face
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for index, frame in enumerate(synthetic_frames()):
        writer.write(cv2.cvtColor(frame if index >= 10 else np.full_like(frame, 90), cv2.COLOR_RGB2BGR))
    writer.release()
    monkeypatch.setattr(faces_module, "create_detector", lambda name, model_file=None: TwoFacesWhenDrawn())
    recognizer = load_recognizer(model)

    table = video.predict_video(recognizer, path, fps=2).to_dataframe()
    records = list(video.predict_video(recognizer, path, fps=2))

    columns = ["path", "frame", "time", "face", "x", "y", "w", "h", "label", "confidence", "no_face"]
    assert list(table.columns[: len(columns)]) == columns and set(EMOTIONS) <= set(table.columns)
    # frames 0 and 5 without a face: one whole-frame row each; frames 10 to 25: a row for each of two faces
    assert table["frame"].tolist() == [0, 5, 10, 10, 15, 15, 20, 20, 25, 25]
    assert table["time"].tolist() == pytest.approx([frame / FPS for frame in table["frame"]])
    assert table["no_face"].tolist() == [True, True] + [False] * 8
    assert table["face"].isna().tolist() == [True, True] + [False] * 8
    faces = table[~table["no_face"]]
    assert faces["face"].tolist() == [0, 1] * 4  # 0 is the largest face, as in the records
    assert (
        faces[["x", "y", "w", "h"]].values.tolist() == [[FACE.x, FACE.y, FACE.w, FACE.h], [2, 2, 30, 30]] * 4
    )
    probabilities = table[list(EMOTIONS)]
    assert probabilities.sum(axis=1).tolist() == pytest.approx([1.0] * len(table), abs=1e-3)
    assert (probabilities.idxmax(axis=1) == table["label"]).all()
    expected = [face["label"] for record in records for face in record["faces"] or [record]]
    assert table["label"].tolist() == expected  # the same readings as iterating the records

    partly_read = video.predict_video(recognizer, path, fps=2)
    next(partly_read)
    with pytest.raises(EmotionlabError, match="already read"):
        partly_read.to_dataframe()
    partly_read.close()
