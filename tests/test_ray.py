"""`emotionlab predict --engine ray` and ``emotionlab.inference.ray``: on a local Ray instance with 2 CPUs and
generated images, the same records as the plain path (a corrupt file and a no-face image included), nothing
lost or duplicated when a worker process or an actor is killed mid-run, an image that crashes its worker every
time getting the plain path's error record, --resume, and the one-line error
without Ray. Models are untrained tiny networks; the detector is a picklable stub (it must reach Ray's worker
processes, which import this folder's modules through PYTHONPATH)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import BIG, SMALL, BoxDetector, assert_same_records, run_cli, save_tiny_model, two_face_image

from emotionlab.faces import FaceBox
from emotionlab.inference import load_recognizer
from emotionlab.synthetic import make_face

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for the module; its workers can import the stubs defined here."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'emotionlab[ray]')")

    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def face_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "faces.safetensors")


@pytest.fixture(scope="module")
def whole_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "whole.safetensors", faces=None)


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` two-face 300x200 images, a 64x64 image the stub finds no face in, and a corrupt file."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"group_{index:03d}.png"
        two_face_image(rng).save(path)
        paths.append(path)
    make_face("sad", rng, 64).save(folder / "lonely.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a whole JPEG")
    return sorted([*paths, folder / "lonely.png", folder / "broken.jpg"])


def stub() -> BoxDetector:
    return BoxDetector({(300, 200): [SMALL, BIG]})


class KillsItsWorkerOnce(BoxDetector):
    """Kills the process it runs in (a Ray task's worker) the first time it sees an image, as native code
    crashing would; the marker file makes the retried task succeed."""

    def __init__(self, marker: Path):
        super().__init__({(300, 200): [SMALL, BIG]})
        self.marker = str(marker)

    def detect(self, image):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().detect(image)


def _box_killing_once(marker: str, fields: tuple) -> FaceBox:
    if not os.path.exists(marker):
        Path(marker).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return FaceBox(*fields)


class KillerBox(FaceBox):
    """A face box that kills the process unpickling it the first time: prepared images are unpickled in the
    classifying actor, so this kills an actor in the middle of a batch."""

    marker: str = ""

    def __reduce__(self):
        from dataclasses import fields

        return _box_killing_once, (self.marker, tuple(getattr(self, field.name) for field in fields(self)))


class KillsAnActorOnce(BoxDetector):
    def __init__(self, marker: Path):
        super().__init__({(300, 200): [SMALL, BIG]})
        self.marker = str(marker)

    def detect(self, image):
        boxes = super().detect(image)
        if boxes:
            killer = KillerBox(*(getattr(boxes[0], name) for name in ("x", "y", "w", "h")), detector="stub")
            object.__setattr__(killer, "marker", self.marker)
            boxes = [killer, *boxes[1:]]
        return boxes


CRASH_SIZE = (13, 17)  # the image size SegfaultsOnOneImage dies on


class SegfaultsOnOneImage(BoxDetector):
    """Dies like native code crashing on one image (SIGSEGV, no exception, no cleanup), every time it sees it:
    in a Ray task's worker and in any process that tries it again."""

    def __init__(self):
        super().__init__({(300, 200): [SMALL, BIG]})

    def detect(self, image):
        height, width = np.asarray(image).shape[:2]
        if (width, height) == CRASH_SIZE:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().detect(image)


def plain_records(model: Path, paths: list[Path], detector) -> list[dict]:
    return list(load_recognizer(model, detector=detector).predict_many(paths))


@pytest.mark.slow  # a Ray instance takes ~10 s to start, its actors a few more to load the model
def test_ray_gives_the_plain_paths_records(ray_instance, face_model, tmp_path):
    from emotionlab.inference.ray import predict_records

    paths = make_images(tmp_path / "in", 12)
    got = list(predict_records(paths, model=face_model, detector=stub(), batch_size=4))
    want = plain_records(face_model, paths, stub())
    assert got == want
    assert [record["path"] for record in got] == [str(path) for path in paths]
    by_name = {Path(record["path"]).name: record for record in got}
    assert "error" in by_name["broken.jpg"]
    assert by_name["lonely.png"]["no_face"] is True
    assert len(by_name["group_000.png"]["faces"]) == 2


@pytest.mark.slow
def test_ray_dataset_has_one_jsonl_line_per_path(ray_instance, face_model, tmp_path):
    from emotionlab.inference.ray import predict_dataset

    paths = make_images(tmp_path / "in", 3)
    rows = predict_dataset(paths, model=face_model, detector=stub()).take_all()
    assert [row["index"] for row in rows] == list(range(len(paths)))
    assert [json.loads(row["record"]) for row in rows] == plain_records(face_model, paths, stub())


@pytest.mark.slow
@pytest.mark.parametrize("killer", [KillsItsWorkerOnce, KillsAnActorOnce], ids=["task worker", "actor"])
def test_a_killed_worker_loses_and_duplicates_nothing(ray_instance, face_model, tmp_path, killer):
    from emotionlab.inference.ray import predict_records

    paths = make_images(tmp_path / "in", 20)
    marker = tmp_path / "killed"
    got = list(predict_records(paths, model=face_model, detector=killer(marker), batch_size=4))
    assert marker.is_file()  # a process really died mid-run
    assert Counter(record["path"] for record in got) == Counter(str(path) for path in paths)
    assert got == plain_records(face_model, paths, stub())


@pytest.mark.slow
def test_an_image_that_kills_its_worker_every_time_gets_the_plain_paths_error_record(
    ray_instance, face_model, tmp_path, monkeypatch
):
    import importlib

    from PIL import Image

    import emotionlab.inference

    folder = tmp_path / "in"
    crasher = folder / "group_004_crash.png"  # in the middle
    paths = make_images(folder, 10)
    Image.new("RGB", CRASH_SIZE, (90, 90, 90)).save(crasher)
    # The command's recognizer (and the one Ray's preparation uses) with the crashing detector.
    real = emotionlab.inference.load_recognizer

    def with_crasher(path, **options):
        return real(path, **{**options, "detector": SegfaultsOnOneImage()})

    monkeypatch.setattr(importlib.import_module("emotionlab.cli.predict"), "load_recognizer", with_crasher)
    monkeypatch.setattr(emotionlab.inference, "load_recognizer", with_crasher)
    plain = tmp_path / "plain.jsonl"
    common = ["predict", folder, "--model", face_model, "--format", "jsonl", "--no-progress"]
    run_cli(*common, "--output", plain, "--workers", "1")  # the plain path: isolated worker processes
    # To stdout, where Ray's own "(raylet) A worker died ..." lines must not land among the records.
    written = run_cli(*common, "--engine", "ray", "--workers", "2")  # run_cli checks the exit code is 0

    records = [json.loads(line) for line in written.splitlines()]
    assert [record["path"] for record in records] == [str(path) for path in sorted([*paths, crasher])]
    dead = [record for record in records if "error" in record and record["error"].startswith("worker died")]
    assert dead == [{"path": str(crasher), "error": "worker died (killed by SIGSEGV)"}]
    assert written == plain.read_text()  # every other record too, byte for byte


@pytest.mark.slow
def test_cli_ray_engine_writes_the_same_file_and_resume_skips_written_paths(
    ray_instance, whole_model, tmp_path
):
    folder = tmp_path / "in"
    paths = make_images(folder, 6)
    plain, ray_output = tmp_path / "plain.jsonl", tmp_path / "ray.jsonl"
    common = ["predict", folder, "--model", whole_model, "--format", "jsonl", "--no-progress"]
    run_cli(*common, "--output", plain)
    run_cli(*common, "--output", ray_output, "--engine", "ray", "--workers", "2")
    assert_same_records(_records(ray_output), _records(plain))

    # A run that stopped after three records, the last cut off mid-write: --resume keeps the first two
    # whole lines, drops the cut one, and appends every other path once.
    lines = plain.read_text().splitlines(keepends=True)
    ray_output.write_text("".join(lines[:2]) + lines[2][:25])
    run_cli(*common, "--output", ray_output, "--engine", "ray", "--resume")
    assert_same_records(_records(ray_output), _records(plain))
    run_cli(*common, "--output", ray_output, "--engine", "ray", "--resume")  # nothing left to do
    assert [json.loads(line)["path"] for line in ray_output.read_text().splitlines()] == [
        str(p) for p in paths
    ]


@pytest.mark.slow
def test_cli_ray_csv_is_the_plain_csv(ray_instance, whole_model, tmp_path):
    folder = tmp_path / "in"
    make_images(folder, 3)
    common = ["predict", folder, "--model", whole_model, "--format", "csv", "--no-progress"]
    assert run_cli(*common, "--engine", "ray") == run_cli(*common)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["--engine", "spark"], "unknown --engine 'spark'"),
        (["--address", "auto"], "--address joins a Ray cluster"),
        (["--engine", "ray", "--annotate", "drawn"], "--annotate draws in this process"),
    ],
)
def test_options_the_engine_cannot_take_are_refused_in_one_line(whole_model, tmp_path, options, reason):
    from typer.testing import CliRunner

    from emotionlab.cli import app
    from emotionlab.errors import EmotionlabError

    image = tmp_path / "face.png"
    make_face("happy", np.random.default_rng(0), 64).save(image)
    options = [str(tmp_path / option) if option == "drawn" else option for option in options]
    result = CliRunner().invoke(app, ["predict", str(image), "--model", str(whole_model), *options])
    assert isinstance(result.exception, EmotionlabError)
    assert reason in str(result.exception)


def test_without_ray_the_engine_says_how_to_install_it_in_one_line(whole_model, tmp_path):
    image = tmp_path / "face.png"
    make_face("happy", np.random.default_rng(0), 64).save(image)
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now fails as if Ray were not installed
        "from emotionlab.cli import main\n"
        f"sys.argv = ['emotionlab', 'predict', {str(image)!r}, '--model', {str(whole_model)!r}, '--engine', 'ray']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 2
    message = (result.stdout + result.stderr).strip()
    assert "Ray is not installed: pip install 'emotionlab[ray]'" in message
    assert len(message.splitlines()) == 1 and "Traceback" not in message


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
