"""Recognizer and `emotionlab predict` on images: every face, no-face flag, --no-detect, output formats,
annotation, workers, --resume and --shard. Models are untrained tiny networks; detection is a stub so that
the tests do not depend on a real detector finding drawn faces."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import BIG, SMALL, BoxDetector, run_cli, save_tiny_model, two_face_image
from PIL import Image
from typer.testing import CliRunner

import emotionlab
from emotionlab.cli import app
from emotionlab.cli.predict import read_done, select_shard
from emotionlab.errors import EmotionlabError
from emotionlab.faces import FaceBox, FaceCropper, crop_face
from emotionlab.faces import detectors as faces_module
from emotionlab.inference import Classifier, Recognizer, load_recognizer
from emotionlab.labels import EMOTIONS
from emotionlab.synthetic import make_face


class NoCallDetector:
    name = "never"

    def detect(self, image):
        raise AssertionError("detection ran although it was switched off")


@pytest.fixture(scope="module")
def face_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "faces.safetensors")


@pytest.fixture(scope="module")
def whole_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "whole.safetensors", faces=None)


@pytest.fixture
def images(tmp_path) -> Path:
    """``in/`` with three 300x200 two-face images and one 64x64 image whose size the stub finds no face in."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        two_face_image(rng).save(folder / f"group_{index}.png")
    make_face("angry", rng, 64).save(folder / "lonely.png")
    return folder


@pytest.fixture
def stub_detector(monkeypatch) -> BoxDetector:
    """Every detector created by name (as the CLI does) is the stub: two faces in 300x200 images, none else."""
    detector = BoxDetector({(300, 200): [SMALL, BIG]})
    monkeypatch.setattr(faces_module, "create_detector", lambda name, model_file=None: detector)
    return detector


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


# ---- Recognizer -----------------------------------------------------------------------------------------


def test_every_face_is_classified_largest_first(face_model):
    rng = np.random.default_rng(0)
    image = two_face_image(rng)
    classifier = Classifier.from_file(face_model)
    recognizer = Recognizer(classifier, detector=BoxDetector([SMALL, BIG]))
    record = recognizer.predict(image)

    assert record["no_face"] is False
    assert [face["box"] for face in record["faces"]] == [[20, 30, 120, 120], [200, 60, 60, 60]]
    # Each face's probabilities are the network's on that face cropped with the model's margin.
    crops = [crop_face(image, box, margin=0.1) for box in (BIG, SMALL)]
    expected = classifier.predict_proba(crops)
    for face, row in zip(record["faces"], expected, strict=True):
        got = np.array([face["probabilities"][label] for label in EMOTIONS])
        assert np.abs(got - row).max() < 1e-5
        assert face["label"] == EMOTIONS[int(row.argmax())]
    # The image is named after its largest face.
    assert record["label"] == record["faces"][0]["label"]
    assert record["probabilities"] == record["faces"][0]["probabilities"]
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-4


def test_no_face_uses_the_whole_image_and_says_so(face_model):
    rng = np.random.default_rng(1)
    image = make_face("happy", rng, 64)
    classifier = Classifier.from_file(face_model)
    record = Recognizer(classifier, detector=BoxDetector([])).predict(image)
    assert record["no_face"] is True
    assert record["faces"] == []
    whole = classifier.predict_proba([image])[0]
    assert np.abs(np.array([record["probabilities"][label] for label in EMOTIONS]) - whole).max() < 1e-5


def test_a_degenerate_box_is_skipped_not_fatal(face_model):
    image = two_face_image(np.random.default_rng(5))
    outside = FaceBox(900, 900, 50, 50, detector="stub")
    record = load_recognizer(face_model, detector=BoxDetector([outside, SMALL])).predict(image)
    assert [face["box"] for face in record["faces"]] == [[200, 60, 60, 60]]
    assert load_recognizer(face_model, detector=BoxDetector([outside])).predict(image)["no_face"] is True


def test_no_detect_classifies_the_whole_image_as_one_face(face_model):
    image = make_face("sad", np.random.default_rng(2), 64)
    recognizer = load_recognizer(face_model, detect=False)
    recognizer.face_detector = NoCallDetector()
    record = recognizer.predict(image)
    assert record["no_face"] is False
    assert record["faces"][0]["box"] == [0, 0, 64, 64]


def test_whole_image_models_skip_detection_unless_forced(whole_model):
    image = two_face_image(np.random.default_rng(4))
    assert load_recognizer(whole_model).detect is False
    assert load_recognizer(whole_model).predict(image)["faces"][0]["box"] == [0, 0, 300, 200]
    forced = load_recognizer(whole_model, detect=True, detector=BoxDetector([SMALL, BIG]))
    assert len(forced.predict(image)["faces"]) == 2


def test_faces_of_many_images_share_one_network_call(face_model, images, stub_detector, monkeypatch):
    recognizer = load_recognizer(face_model)
    calls = []
    original = recognizer.classifier.probabilities
    monkeypatch.setattr(
        recognizer.classifier, "probabilities", lambda batch: calls.append(len(batch)) or original(batch)
    )
    records = list(recognizer.predict_many(sorted(images.iterdir()), batch_size=64))
    assert [len(r["faces"]) for r in records] == [2, 2, 2, 0]
    assert calls == [7]  # 3 images x 2 faces + 1 whole image, in one batch


def test_unreadable_files_give_an_error_record_in_place(face_model, images, stub_detector):
    (images / "broken.png").write_bytes(b"not an image")
    files = sorted(images.iterdir())
    records = list(load_recognizer(face_model).predict_many(files, batch_size=2))
    assert [r["path"] for r in records] == [str(f) for f in files]
    broken = records[0]
    assert broken["path"].endswith("broken.png") and "error" in broken and "label" not in broken
    with pytest.raises(EmotionlabError, match="broken.png"):
        load_recognizer(face_model).predict(images / "broken.png")


@pytest.mark.slow  # worker processes and `predict` processes
def test_worker_processes_give_the_same_records(face_model, images):
    files = sorted(images.iterdir())
    # Workers start as fresh processes: the detector travels to them pickled, not monkeypatched.
    recognizer = load_recognizer(face_model, detector=BoxDetector({(300, 200): [SMALL, BIG]}))
    in_process = list(recognizer.predict_many(files))
    assert [len(r["faces"]) for r in in_process] == [2, 2, 2, 0]
    assert list(recognizer.predict_many(files, workers=2)) == in_process


WORKER_SCRIPT = """
import sys, time
from PIL import Image
from emotionlab.inference import load_recognizer


class SlowDetector:
    name = "slow"

    def detect(self, image):
        time.sleep(0.2)
        return []


if __name__ == "__main__":
    image = sys.argv[2]
    recognizer = load_recognizer(sys.argv[1], detector=SlowDetector())
    for index, _ in enumerate(recognizer.predict_many([image] * 500, workers=2)):
        if index == 0:
            print("running", flush=True)
"""


@pytest.mark.slow  # worker processes and `predict` processes
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to list child processes")
def test_workers_exit_when_the_main_process_is_killed(face_model, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    def descendants(pid: int) -> set[int]:
        found, stack = set(), [pid]
        while stack:
            for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
                try:
                    children = {int(c) for c in (task / "children").read_text().split()}
                except OSError:
                    children = set()
                stack += list(children - found)
                found |= children
        return found

    script, image = tmp_path / "run.py", tmp_path / "face.png"
    script.write_text(WORKER_SCRIPT)
    make_face("happy", np.random.default_rng(0), 64).save(image)
    process = subprocess.Popen(
        [sys.executable, str(script), str(face_model), str(image)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "running"
        helpers = descendants(process.pid)  # fork server, workers, resource tracker
        assert len(helpers) >= 3
    finally:
        process.send_signal(signal.SIGKILL)  # like kill -9 or the OOM killer
        process.wait()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in helpers if alive(pid)]
    for pid in left:  # do not leak them into the rest of the test run
        os.kill(pid, signal.SIGKILL)
    assert not left, "worker processes outlived the killed command"


def test_package_exports_and_evaluation_hooks(face_model):
    recognizer = emotionlab.load_model(face_model)
    assert isinstance(recognizer, emotionlab.Recognizer)
    # Faces found and cropped with the model file's settings (training's).
    assert recognizer.crop_config.detector == "haar" and recognizer.crop_config.margin == 0.1
    assert load_recognizer(face_model, detector="hog").crop_config.detector == "hog"
    with pytest.raises(EmotionlabError, match="unknown face detector"):
        load_recognizer(face_model, detector="nope")


# ---- CLI: formats, annotation, resume, shard -----------------------------------------------------------


def test_jsonl_records_list_faces_and_no_face(face_model, images, stub_detector):
    lines = run_cli("predict", images, "--model", face_model, "--format", "jsonl").splitlines()
    records = {Path(r["path"]).name: r for r in map(json.loads, lines)}
    assert set(records) == {"group_0.png", "group_1.png", "group_2.png", "lonely.png"}
    group = records["group_0.png"]
    assert group["no_face"] is False and len(group["faces"]) == 2
    assert set(group["faces"][0]) >= {"box", "label", "probabilities"}
    assert records["lonely.png"]["no_face"] is True and records["lonely.png"]["faces"] == []


def test_csv_has_one_row_per_image_with_the_largest_box(face_model, images, stub_detector):
    text = run_cli("predict", images, "--model", face_model, "--format", "csv")
    rows = {Path(row["path"]).name: row for row in csv.DictReader(io.StringIO(text))}
    assert rows["group_1.png"]["faces"] == "2" and rows["group_1.png"]["box"] == "20 30 120 120"
    assert rows["group_1.png"]["no_face"] == "0"
    assert rows["lonely.png"]["no_face"] == "1" and rows["lonely.png"]["box"] == ""
    assert abs(sum(float(rows["lonely.png"][label]) for label in EMOTIONS) - 1) < 1e-3


def test_no_detect_option(face_model, images, stub_detector):
    lines = run_cli("predict", images, "--model", face_model, "--format", "jsonl", "--no-detect").splitlines()
    assert stub_detector.calls == 0
    assert all(len(r["faces"]) == 1 and not r["no_face"] for r in map(json.loads, lines))


def test_annotate_writes_a_drawn_copy_of_each_image(face_model, images, stub_detector, tmp_path):
    (images / "sub").mkdir()
    two_face_image(np.random.default_rng(9)).save(images / "sub" / "group_0.png")  # same name, other folder
    out = tmp_path / "annotated"
    run_cli("predict", images, "--model", face_model, "--format", "jsonl", "--annotate", out)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["group_0.png", "group_1.png", "group_2.png", "lonely.png", "sub/group_0.png"]
    original = np.asarray(Image.open(images / "group_0.png").convert("RGB"))
    drawn = np.asarray(Image.open(out / "group_0.png").convert("RGB"))
    assert drawn.shape == original.shape and (drawn != original).any()
    assert (images / "group_0.png").stat().st_size > 0 and not list(images.rglob("*annotated*"))


def test_outputs_are_refused_inside_an_input_folder(face_model, images, stub_detector):
    result = CliRunner().invoke(
        app, ["predict", str(images), "--model", str(face_model), "--annotate", str(images / "drawn")]
    )
    assert isinstance(result.exception, EmotionlabError) and "inside the input folder" in str(
        result.exception
    )


def test_resume_skips_files_already_in_the_output(face_model, images, stub_detector, tmp_path):
    output = tmp_path / "predictions.jsonl"
    first = sorted(images.iterdir())[:2]
    run_cli("predict", *first, "--model", face_model, "--format", "jsonl", "--output", output)
    before = output.read_text().splitlines()
    with output.open("a") as handle:  # a crash mid-write leaves half a line
        handle.write('{"path": "half')
    calls_before = stub_detector.calls
    run_cli("predict", images, "--model", face_model, "--format", "jsonl", "--output", output, "--resume")
    lines = output.read_text().splitlines()
    paths = [json.loads(line)["path"] for line in lines]
    assert lines[:2] == before
    assert sorted(paths) == sorted(str(p) for p in sorted(images.iterdir()))  # each file once
    assert stub_detector.calls - calls_before == 2  # only the two new files were processed
    assert read_done(output, "jsonl").keys() == set(paths)


def test_resume_with_csv(face_model, images, stub_detector, tmp_path):
    output = tmp_path / "predictions.csv"
    files = sorted(images.iterdir())
    run_cli("predict", files[0], "--model", face_model, "--format", "csv", "--output", output)
    run_cli("predict", images, "--model", face_model, "--format", "csv", "--output", output, "--resume")
    rows = list(csv.DictReader(output.open()))
    assert sorted(row["path"] for row in rows) == sorted(str(f) for f in files)


def test_shards_are_disjoint_and_cover_everything(face_model, images, stub_detector):
    files = [f"img_{index:03d}.png" for index in range(10)]
    parts = [select_shard(files, f"{index}/3") for index in (1, 2, 3)]
    flat = [name for part in parts for name in part]
    assert sorted(flat) == files and len(flat) == len(files)  # disjoint and complete
    seen = []
    for index in (1, 2):
        lines = run_cli(
            "predict", images, "--model", face_model, "--format", "jsonl", "--shard", f"{index}/2"
        )
        seen += [json.loads(line)["path"] for line in lines.splitlines()]
    assert sorted(seen) == sorted(str(p) for p in images.iterdir())
    with pytest.raises(EmotionlabError, match="1 <= i <= n"):
        select_shard(files, "0/3")


# ---- fault isolation: exceptions, dying workers, resume after a crash -----------------------------------

CRASH_SIZE = (13, 17)  # the image size on which the crashing detectors below die

CRASHING_DETECTORS = '''
import os, signal


class SegfaultDetector:
    """Dies like dlib's CNN did on a 10x4000 image: SIGSEGV, no exception, no cleanup."""

    name = "segfault"

    def detect(self, image):
        height, width = image.shape[:2] if hasattr(image, "shape") else image.size[::-1]
        if (width, height) == (13, 17):
            os.kill(os.getpid(), signal.SIGSEGV)
        return []


class RaisingDetector:
    name = "raising"

    def detect(self, image):
        height, width = image.shape[:2] if hasattr(image, "shape") else image.size[::-1]
        if (width, height) == (13, 17):
            raise RuntimeError("Filter windows must be small enough\\n  to fit into the padded image.")
        return []
'''


@pytest.fixture
def crashing(tmp_path, monkeypatch):
    """A module of detectors that fail on 13x17 images, importable here and in worker processes."""
    import importlib
    import sys

    folder = tmp_path / "crashers"
    folder.mkdir()
    (folder / "crashing_detectors.py").write_text(CRASHING_DETECTORS)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))  # for the subprocess runs
    sys.modules.pop("crashing_detectors", None)
    return importlib.import_module("crashing_detectors")


@pytest.fixture
def with_crasher(tmp_path) -> Path:
    """``mixed/``: ten 40x30 faces with one 13x17 image (the crasher) in the middle."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for index in range(10):
        make_face("happy", rng, 40).resize((40, 30)).save(folder / f"img_{index:02d}.png")
    Image.new("RGB", CRASH_SIZE, (90, 90, 90)).save(folder / "img_04_crash.png")
    return folder


def test_a_detector_exception_is_that_images_error_record(face_model, with_crasher, crashing):
    recognizer = load_recognizer(face_model, detector=crashing.RaisingDetector())
    files = sorted(with_crasher.iterdir())
    records = list(recognizer.predict_many(files, batch_size=4))
    assert [r["path"] for r in records] == [str(f) for f in files]
    bad = [r for r in records if "error" in r]
    assert [Path(r["path"]).name for r in bad] == ["img_04_crash.png"]
    assert bad[0]["error"].startswith("face detection: RuntimeError: Filter windows")
    assert "\n" in CRASHING_DETECTORS and "\n" not in bad[0]["error"]  # one line


@pytest.mark.slow  # worker processes
def test_a_worker_killed_by_one_image_costs_only_that_image(face_model, with_crasher, crashing):
    files = sorted(with_crasher.iterdir())
    good = [f for f in files if "crash" not in f.name]
    recognizer = load_recognizer(face_model, detector=crashing.SegfaultDetector())
    expected = list(recognizer.predict_many(good))  # in this process: never meets the crasher
    records = list(recognizer.predict_many(files, workers=2))
    assert [r["path"] for r in records] == [str(f) for f in files]  # every image, in order
    (dead,) = [r for r in records if "error" in r]
    assert dead["path"].endswith("img_04_crash.png") and dead["error"] == "worker died (killed by SIGSEGV)"
    assert [r for r in records if "error" not in r] == expected  # the others exactly as without workers


CRASH_SCRIPT = """
import sys
import crashing_detectors
import emotionlab.cli.predict as predict_job

real = predict_job.load_recognizer
predict_job.load_recognizer = lambda path, **kw: real(
    path, **{**kw, "detector": crashing_detectors.SegfaultDetector()}
)
sys.argv[0] = "emotionlab"
from emotionlab.cli import main
main()
"""


@pytest.mark.slow  # worker processes and `predict` processes
def test_resume_after_a_crash_goes_on_past_the_image_that_crashed(
    face_model, with_crasher, crashing, tmp_path
):
    import subprocess
    import sys

    script, output = tmp_path / "predict.py", tmp_path / "out" / "records.jsonl"
    script.write_text(CRASH_SCRIPT)
    command = [sys.executable, str(script), "predict", str(with_crasher), "--model", str(face_model)]
    command += ["--format", "jsonl", "--output", str(output), "--batch-size", "1"]
    first = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert first.returncode == -11  # the whole process died, in the detector, on one image
    written = [json.loads(line)["path"] for line in output.read_text().splitlines()]
    # Kept, not lost: what was written before the crash, in order; images prepared ahead of the classifier
    # (a thread prepares the next ones) may not be written yet, and --resume does them.
    names = [Path(p).name for p in written]
    assert names and names == [f"img_{i:02d}.png" for i in range(5)][: len(names)]
    second = subprocess.run([*command, "--resume"], check=False, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["path"] for r in records) == sorted(str(f) for f in with_crasher.iterdir())  # each once
    (dead,) = [r for r in records if "error" in r]
    assert dead["path"].endswith("img_04_crash.png") and "worker died" in dead["error"]
    assert not list(output.parent.glob(".*preparing"))  # the crash note is gone after a finished run


def test_resume_after_kill_9_loses_no_image(face_model, images, stub_detector, tmp_path):
    from emotionlab.cli.predict import PreparingNote

    output = tmp_path / "records.jsonl"
    files = sorted(images.iterdir())
    run_cli("predict", files[0], "--model", face_model, "--format", "jsonl", "--output", output)
    PreparingNote(output).mark(files[1])  # as a run killed while preparing files[1] leaves it
    run_cli("predict", images, "--model", face_model, "--format", "jsonl", "--output", output, "--resume")
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["path"] for r in records) == sorted(str(f) for f in files)
    assert not any("error" in r for r in records)  # files[1] ran again (alone) and succeeded


# ---- decode less: large JPEGs are decoded at a reduced scale for detection ---------------------------------


class FractionDetector:
    """Finds one 'face' at fixed fractions of whatever image it is given; records the sizes it saw."""

    name = "fraction"

    def __init__(self, fraction: float = 0.3):
        self.fraction, self.seen = fraction, []

    def detect(self, image):
        height, width = image.shape[:2]
        self.seen.append((width, height))
        side = round(self.fraction * min(width, height))
        return [FaceBox(round(0.4 * width), round(0.3 * height), side, side, detector=self.name)]


@pytest.fixture
def large_jpeg(tmp_path) -> Path:
    """A 4000 x 3000 JPEG with a 900 px face where FractionDetector(0.3) looks."""
    canvas = Image.new("RGB", (4000, 3000), (120, 110, 100))
    canvas.paste(make_face("happy", np.random.default_rng(4), 900), (1600, 900))
    path = tmp_path / "large.jpg"
    canvas.save(path, quality=92)
    return path


def test_large_jpegs_are_detected_on_a_reduced_decode_with_boxes_in_file_pixels(face_model, large_jpeg):
    reduced, full = FractionDetector(), FractionDetector()
    record = load_recognizer(face_model, detector=reduced).predict(large_jpeg)
    recognizer = load_recognizer(face_model, detector=full)
    expected = next(recognizer.classify([recognizer.preparer(decode_less=False)(large_jpeg)]))[1]
    assert full.seen == [(4000, 3000)] and reduced.seen == [(1000, 750)]  # a quarter of the pixels per side
    assert record["faces"][0]["box"] == expected["faces"][0]["box"] == [1600, 900, 900, 900]
    assert record["label"] == expected["label"]
    for label, value in expected["probabilities"].items():
        assert abs(record["probabilities"][label] - value) < 0.02


def test_a_face_too_small_in_the_reduced_decode_is_cropped_from_the_full_image(face_model, large_jpeg):
    # A 30 px face in the 1000 px decode: its crop (36 px) is under twice the 64 px input, so decode in full.
    detector = FractionDetector(0.04)
    preparer = load_recognizer(face_model, detector=detector).preparer()
    item = preparer(large_jpeg)
    assert detector.seen == [(1000, 750)] and item.size == (4000, 3000)
    assert [(box.x, box.y, box.w, box.h) for box in item.boxes] == [(1600, 900, 120, 120)]
    full = load_recognizer(face_model, detector=FractionDetector(0.04)).preparer(decode_less=False)(
        large_jpeg
    )
    assert np.array_equal(item.inputs, full.inputs)  # the same crop, from the same full decode


def test_annotation_keeps_the_full_image_but_classifies_the_same_crops(face_model, large_jpeg, images):
    detector = FractionDetector()
    recognizer = load_recognizer(face_model, detector=detector)
    item = recognizer.preparer(keep_image=True)(large_jpeg)
    assert detector.seen == [(1000, 750)] and item.image.shape == (3000, 4000, 3)
    assert np.array_equal(
        item.inputs, recognizer.preparer()(large_jpeg).inputs
    )  # `predict --annotate` = predict
    recognizer.preparer()(images / "group_0.png")  # a PNG, and small: nothing to gain
    assert detector.seen[-1] == (300, 200)


# ---- one crop path: evaluation scores the crops that `predict` classifies ---------------------------------


def _evaluation_input(recognizer, path: Path) -> np.ndarray:
    """The network input evaluation makes for ``path`` (``evaluate``'s own code: crop, then the transform)."""
    from emotionlab.data.samples import Sample
    from emotionlab.evaluation.evaluate import _inputs, prepare_samples

    (image,), _ = _inputs(prepare_samples(recognizer, [Sample(path=path, label="happy", relpath=path.name)]))
    return recognizer.classifier.transform(image)


def test_evaluation_and_predict_classify_pixel_identical_crops(face_model, tmp_path, monkeypatch):
    # A detector whose largest box lies outside the image: both paths leave it out and use the next face
    # (evaluation used to stop on it while predict skipped it), and a photo without a face is whole in both.
    outside = FaceBox(900, 900, 400, 400, detector="stub")
    detector = BoxDetector({(300, 200): [SMALL, outside, BIG]})
    monkeypatch.setattr(faces_module, "create_detector", lambda name, model_file=None: detector)
    rng = np.random.default_rng(11)
    group, lonely = tmp_path / "group.png", tmp_path / "lonely.png"
    two_face_image(rng).save(group)
    make_face("angry", rng, 64).save(lonely)
    recognizer = load_recognizer(face_model)
    for path, box in ((group, BIG), (lonely, None)):
        item = recognizer.preparer()(path)  # what `predict` classifies, largest face first
        evaluated = _evaluation_input(recognizer, path)
        assert np.array_equal(evaluated, item.inputs[0]), path.name  # bit for bit
        # training's cropper (its cache) finds the same face and makes the same crop
        cropper = FaceCropper(
            recognizer.crop_config, tmp_path / "cache", input_size=recognizer.classifier.input_size
        )
        crop, found = cropper(path)
        assert found == box and item.no_face == (box is None)
        assert np.array_equal(recognizer.classifier.transform(crop), item.inputs[0]), path.name
        if box is not None:
            assert item.boxes[0] == box and len(item.boxes) == 2  # predict keeps the other face too
