"""`pip install emotionlab` without extras: the wheel installed alone into a fresh virtual environment predicts and
serves the examples exactly as the full install does, has no PyTorch, and names the extra a command needs; and
`emotionlab predict` imports neither PyTorch nor OpenCV in the full install either.

The light-venv tests are slow (builds the wheel, creates a venv, installs about 35 packages: ~30 s from a local package cache, longer from
PyPI on a fresh CI machine). The versions of the packages both installs share are pinned to this environment's
(``pip freeze`` as constraints), so the same ONNX Runtime runs the same graphs on both sides.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
IMAGES = sorted(path for path in EXAMPLES.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], check=False, capture_output=True, text=True, **kwargs
    )


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout and its core dependencies only."""
    root = tmp_path_factory.mktemp("light")
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            root / "dist",
            REPO,
        ]
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("emotionlab-*.whl")
    frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"])
    constraints = root / "constraints.txt"
    constraints.write_text(
        "\n".join(
            line
            for line in frozen.stdout.splitlines()
            if "==" in line
            and not line.lower().startswith("emotionlab")  # versions, not links or this package
        )
    )
    venv = root / "venv"
    created = _run([sys.executable, "-m", "venv", venv])
    assert created.returncode == 0, created.stderr
    start = time.perf_counter()
    installed = _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", constraints, wheel])
    seconds = time.perf_counter() - start
    assert installed.returncode == 0, installed.stderr[-2000:]
    size = _folder_size(venv)
    print(f"\nlight install: {size / 1e6:.0f} MB in {venv}, pip install {seconds:.1f} s")
    return venv


def _records(lines: str) -> dict:
    records = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return {Path(record["path"]).name: record for record in records}


def _predict(command: list, cwd: Path) -> dict:
    result = _run([*command, "predict", *IMAGES, "--format", "jsonl", "--no-progress"], cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return _records(result.stdout)


@pytest.mark.slow
def test_light_install_has_no_torch_and_weighs_little(light_venv):
    python = light_venv / "bin" / "python"
    for module in ("torch", "torchvision", "timm", "lightning", "cv2", "dlib"):
        probe = _run([python, "-c", f"import {module}"])
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    # The light core is ONNX Runtime, numpy, Pillow and the web stack: a few hundred MB, where PyTorch alone is GBs.
    assert _folder_size(light_venv) < 400e6


@pytest.mark.slow
def test_light_predict_gives_the_full_install_records(light_venv, tmp_path):
    light = _predict([light_venv / "bin" / "emotionlab"], tmp_path)
    full = _predict([sys.executable, "-m", "emotionlab"], tmp_path)
    assert sorted(light) == sorted(path.name for path in IMAGES)
    assert light == full
    assert any(record["faces"] for record in light.values())  # faces were found, not whole images classified


@pytest.mark.slow
def test_light_python_api_predicts_without_importing_torch(light_venv):
    script = (
        "import sys, json, emotionlab\n"
        f"record = emotionlab.load_model().predict({str(IMAGES[0])!r})\n"
        "print(json.dumps({'label': record['label'], 'torch': 'torch' in sys.modules}))\n"
    )
    result = _run([light_venv / "bin" / "python", "-c", script])
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["torch"] is False and answer["label"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post_images(port: int) -> list[dict]:
    boundary = uuid.uuid4().hex
    body = b""
    for path in IMAGES:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + path.read_bytes()
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["results"]


def _serve(command: list, tmp_path: Path) -> list[dict]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [str(part) for part in [*command, "serve", "--port", port]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"the service did not start: {server.stdout.read()[-2000:]}"
                    ) from None
                time.sleep(0.3)
        return _post_images(port)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_light_serve_answers_as_the_full_install(light_venv, tmp_path):
    light = _serve([light_venv / "bin" / "emotionlab"], tmp_path)
    full = _serve([sys.executable, "-m", "emotionlab"], tmp_path)
    assert len(light) == len(IMAGES) and light == full
    assert all(record.get("label") for record in light)


@pytest.mark.slow
def test_a_command_of_an_extra_says_which_extra_in_one_line(light_venv, tmp_path):
    emotionlab = light_venv / "bin" / "emotionlab"
    cases = [
        (["train", "--help"], None),  # help needs nothing
        (
            ["train", "--data", tmp_path],
            "error: 'emotionlab train' needs PyTorch: pip install 'emotionlab[train]'",
        ),
        (
            ["predict", tmp_path / "clip.mp4"],
            "error: 'emotionlab predict' needs OpenCV: pip install 'emotionlab[video]'",
        ),
    ]
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    for args, expected in cases:
        result = _run([emotionlab, *args], cwd=tmp_path)
        if expected is None:
            assert result.returncode == 0, result.stderr[-2000:]
            continue
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert result.stderr.strip() == expected


def test_predict_imports_neither_torch_nor_opencv_in_the_full_install(tmp_path):
    """The shipped model runs on ONNX Runtime: the command never pays PyTorch's seconds of import."""
    result = _run(
        [sys.executable, "-X", "importtime", "-m", "emotionlab", "predict", IMAGES[0], "--format", "jsonl"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[0])["label"]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time")
    }
    assert "onnxruntime" in imported
    assert not imported & {
        "torch",
        "torchvision",
        "timm",
        "lightning",
        "cv2",
        "dlib",
        "sklearn",
        "matplotlib",
    }
