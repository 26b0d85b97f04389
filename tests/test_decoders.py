"""One decoder allow-list for every reader: an EPS, PostScript or PDF file named like a photo is refused by its
bytes (its real format named) and never reaches a decoder outside the list, Ghostscript above all.

The commands run in subprocesses with a fake `gs` first on PATH that records every call: Pillow's EPS plugin
runs whatever `gs` it finds, so a leak shows as a record here whether or not the real Ghostscript is
installed (CI installs it too, so that tests/test_awkward_files.py fails on a leak as well).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import save_tiny_model

from emotionlab.data.images import ALLOWED_FORMATS, ImageReadError, read_image
from emotionlab.synthetic import make_face

TIMEOUT = 300
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 10 10 moveto 90 90 lineto stroke showpage\n"
POSTSCRIPT = b"%!PS\n(/tmp/emotionlab-ps-ran) (w) file closefile showpage\n"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
# Files under photo names whose bytes are documents, one of each kind, in every class folder.
DOCUMENTS = {"eps_photo.jpg": EPS, "ps_photo.png": POSTSCRIPT, "pdf_photo.jpeg": PDF}


@pytest.mark.parametrize(
    ("data", "real"),
    [(EPS, "PostScript/EPS"), (POSTSCRIPT, "PostScript"), (PDF, "PDF")],
    ids=["eps", "ps", "pdf"],
)
def test_a_document_named_like_a_photo_is_refused_with_its_real_format(tmp_path, data, real):
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {real} file, not an accepted image format")
    assert "\n" not in message and all(name in message for name in ALLOWED_FORMATS)


LOADED_PLUGINS = """
import io, sys
from PIL import Image
from emotionlab.data.images import read_image, ImageReadError
for data in sys.argv[1:]:
    try:
        read_image(bytes.fromhex(data))
    except ImageReadError:
        pass
Image.init()  # what Pillow calls for an unknown format: must not load the other plugins either
Image.registered_extensions()
print(" ".join(sorted(name for name in sys.modules if name.endswith("ImagePlugin"))))
"""


def test_a_process_that_reads_images_loads_only_the_allowed_pillow_plugins():
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    samples = [png.getvalue(), EPS, POSTSCRIPT, PDF, b"P6\n1 1\n255\n\0\0\0", b"\0\0\1\0" + bytes(40)]
    result = subprocess.run(
        [sys.executable, "-c", LOADED_PLUGINS, *(data.hex() for data in samples)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(result.stdout.split())
    allowed = {"Jpeg", "Png", "WebP", "Bmp", "Gif", "Tiff", "Mpo"}  # MPO: camera JPEGs, opened as JPEG
    assert loaded and loaded <= {f"PIL.{name}ImagePlugin" for name in allowed}, loaded


@pytest.mark.skipif(not os.environ.get("EMOTIONLAB_REQUIRE_GHOSTSCRIPT"), reason="only where CI installs it")
def test_ci_has_the_real_ghostscript_installed():
    assert shutil.which("gs"), (
        ".ci/run installs ghostscript so that a decoder leak fails the awkward-files tests"
    )


# ---- every command over a folder holding documents under photo names, with a recording `gs` first on PATH ----


@pytest.fixture(scope="module")
def trap(tmp_path_factory) -> tuple[dict, Path]:
    """An environment whose first `gs` records its arguments into a file (and fails), and that file."""
    folder = tmp_path_factory.mktemp("fake_gs")
    calls = folder / "gs_calls.txt"
    fake = folder / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "gs $*" >> "{calls}"\nexit 1\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    return env, calls


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """train/ and validation/ with two classes of plain faces, and the three documents in every class folder."""
    root = tmp_path_factory.mktemp("documents") / "data"
    for split in ("train", "validation"):
        for label in ("happy", "sad"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(4):
                make_face(label, np.random.default_rng(index), 64).save(folder / f"face_{index}.png")
            for name, data in DOCUMENTS.items():
                (folder / name).write_bytes(data)
    return root


def emotionlab(*args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotionlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
        check=False,
    )


def label_scan(folder: Path, env: dict, cwd: Path) -> str:
    """`emotionlab label FOLDER`: its output up to the page's address (every file is decoded before it)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emotionlab",
            "label",
            str(folder),
            "--port",
            "0",
            "--journal",
            cwd / "j.jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=env,
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "open http://" in line:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return "".join(lines)


@pytest.mark.slow  # five commands in fresh processes, one of them training an epoch
def test_no_ghostscript_process_while_predicting_training_evaluating_labelling_and_auditing(
    dataset, trap, tmp_path
):
    env, calls = trap
    model = save_tiny_model(tmp_path / "model.safetensors", faces=None)
    documents = sorted(DOCUMENTS)

    output = tmp_path / "records.jsonl"
    result = emotionlab("predict", dataset, "--model", model, "--format", "jsonl", "-o", output,
                        "--workers", 2, env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    refused = sorted(
        {Path(r["path"]).name for r in records if "not an accepted image format" in r.get("error", "")}
    )
    assert refused == documents and len(records) == 16 + 12

    result = emotionlab(
        "data", "audit", "--data", dataset, "--out", tmp_path / "audit", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    unreadable = {Path(f["path"]).name for f in report["files"] if not f["readable"]}
    assert unreadable == set(documents)

    result = emotionlab("evaluate", "--model", model, "--data", dataset, "--split", "all",
                        "--out", tmp_path / "evaluation", env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["num_images"] == 16

    result = emotionlab("train", "--data", dataset, "--epochs", 1, "--image-size", 48, "--batch-size", 4,
                        "--out", tmp_path / "run", "--no-progress", env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert all(name in result.stderr + result.stdout for name in documents)  # each skipped, by name

    scan = label_scan(dataset, env, tmp_path)
    assert scan.count("not an accepted image format") == 12, scan

    assert not calls.exists(), f"Ghostscript was started: {calls.read_text()}"
