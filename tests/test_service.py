"""The HTTP service: predictions for uploaded images, bounded uploads, clear errors, no server-side paths."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from emotionlab.inference import load_recognizer
from emotionlab.serving.app import create_app


@pytest.fixture(scope="module")
def client(trained_model):
    return TestClient(create_app(load_recognizer(trained_model), max_upload_bytes=200_000, max_pixels=4_000_000))


def _png(path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, "PNG")
    return buffer.getvalue()


def test_predict_returns_the_same_record_as_the_python_api(client, trained_model, tiny_dataset):
    path = next((tiny_dataset / "test" / "happy").iterdir())
    response = client.post("/predict", files=[("files", ("face.png", _png(path), "image/png"))])
    assert response.status_code == 200
    record = response.json()["results"][0]
    expected = load_recognizer(trained_model).predict(path)
    assert record["path"] == "face.png"
    assert record["label"] == expected["label"]
    assert record["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)


def test_several_images_in_one_request(client, tiny_dataset):
    paths = sorted((tiny_dataset / "test" / "sad").iterdir())[:3]
    files = [("files", (p.name, _png(p), "image/png")) for p in paths]
    results = client.post("/predict", files=files).json()["results"]
    assert [r["path"] for r in results] == [p.name for p in paths]


def test_oversized_and_broken_uploads_are_refused_with_a_reason(client):
    big = bytes(300_000)
    response = client.post("/predict", files=[("files", ("big.png", big, "image/png"))])
    assert response.status_code == 413
    response = client.post("/predict", files=[("files", ("notes.txt", b"hello", "text/plain"))])
    assert response.status_code == 400 and "notes.txt" in response.json()["detail"]
    huge = io.BytesIO()
    Image.new("L", (2500, 2500)).save(huge, "PNG")
    response = client.post("/predict", files=[("files", ("huge.png", huge.getvalue(), "image/png"))])
    assert response.status_code == 400 and "too large" in response.json()["detail"]


def test_client_file_names_are_never_opened_on_the_server(client, tiny_dataset):
    path = next((tiny_dataset / "test" / "angry").iterdir())
    response = client.post("/predict", files=[("files", ("../../etc/passwd", _png(path), "image/png"))])
    assert response.status_code == 200 and response.json()["results"][0]["path"] == "passwd"


def test_page_model_and_health(client):
    assert "emotionlab" in client.get("/").text
    assert client.get("/health").json()["status"] == "ok"
    model = client.get("/model").json()
    assert model["labels"] == ["angry", "fearful", "happy", "sad", "surprised"]


def test_serve_command_listens_on_loopback_by_default(trained_model):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "emotionlab", "serve", "--model", str(trained_model), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.time() + 120, None
        while time.time() < deadline and body is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            except OSError:
                time.sleep(0.3)
        assert body is not None and b"ok" in body
        connections = subprocess.run(["ss", "-ltn"], capture_output=True, text=True, check=False).stdout if _has("ss") else ""
        if connections:
            listening = [line for line in connections.splitlines() if f":{port} " in line]
            assert listening and all("127.0.0.1" in line for line in listening)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _has(command: str) -> bool:
    import shutil

    return shutil.which(command) is not None
