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
    app = create_app(load_recognizer(trained_model), max_upload_bytes=200_000, max_pixels=4_000_000)
    with TestClient(app) as client:
        yield client


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
    assert response.status_code == 415 and "notes.txt" in response.json()["detail"]
    huge = io.BytesIO()
    Image.new("L", (2500, 2500)).save(huge, "PNG")
    response = client.post("/predict", files=[("files", ("huge.png", huge.getvalue(), "image/png"))])
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_eps_and_pdf_never_reach_a_decoder_outside_the_allow_list(client):
    # Registered in this test process only to write the documents: the service passes its allow-list to every
    # open, so even a registered EPS opener is never tried.
    from PIL import EpsImagePlugin, PdfImagePlugin

    assert EpsImagePlugin and PdfImagePlugin
    for image_format in ("EPS", "PDF"):
        document = io.BytesIO()
        Image.new("RGB", (32, 32)).save(document, image_format)
        response = client.post("/predict", files=[("files", ("x.png", document.getvalue(), "image/png"))])
        assert response.status_code == 415 and "not an accepted image format" in response.json()["detail"]


def test_a_body_over_the_cap_is_refused_before_it_is_read(client):
    body = b"--x\r\n" + bytes(25 * 1024 * 1024)
    response = client.post(
        "/predict", content=body, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413 and "limit" in response.json()["detail"]

    def chunks():  # no Content-Length: counted while it arrives
        for _ in range(30):
            yield bytes(1024 * 1024)

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413


def test_missing_or_malformed_forms_get_one_line_422(client):
    assert client.post("/predict", data={"name": "x"}).status_code == 422
    assert client.post("/predict", json={"files": []}).status_code == 422
    garbage = client.post(
        "/predict", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert garbage.status_code == 422 and garbage.json()["detail"]


def test_too_many_files_or_pixels_in_one_request_are_refused(client, tiny_dataset):
    path = next((tiny_dataset / "test" / "happy").iterdir())
    files = [("files", (f"{index}.png", _png(path), "image/png")) for index in range(17)]
    assert client.post("/predict", files=files).status_code == 413
    large = io.BytesIO()
    Image.new("L", (1900, 1900)).save(large, "PNG")  # 3.6 MP each: 14 are over the 50 MP per request
    files = [("files", (f"{index}.png", large.getvalue(), "image/png")) for index in range(14)]
    response = client.post("/predict", files=files)
    assert response.status_code == 413 and "per request" in response.json()["detail"]


def test_client_file_names_are_never_opened_on_the_server(client, tiny_dataset):
    path = next((tiny_dataset / "test" / "angry").iterdir())
    response = client.post("/predict", files=[("files", ("../../etc/passwd", _png(path), "image/png"))])
    assert response.status_code == 200 and response.json()["results"][0]["path"] == "passwd"


def test_page_model_and_health(client):
    assert "emotionlab" in client.get("/").text
    assert client.get("/health").json()["status"] == "ok"
    model = client.get("/model").json()
    assert model["labels"] == ["angry", "fearful", "happy", "sad", "surprised"]


def test_pages_fetch_only_their_own_assets_and_name_no_other_host(client):
    """Offline use: every asset a page references is served (200), and no page, asset or schema names a URL
    on another host (FastAPI's /docs and /redoc load scripts from a CDN: replaced, and gone)."""
    import re
    from urllib.parse import urljoin, urlsplit

    served, references = {}, set()
    for page in ("/", "/docs"):
        response = client.get(page)
        assert (
            response.status_code == 200
            and "default-src 'none'" in response.headers["content-security-policy"]
        )
        served[page] = response.text
        for reference in re.findall(r'(?:src|href)="([^"]+)"', response.text):
            if not reference.startswith("data:"):
                references.add(urlsplit(urljoin("http://testserver" + page, reference)).path)
    assert {"/static/predict.js", "/static/predict.css", "/docs", "/openapi.json"} <= references
    for path in references:
        response = client.get(path)
        assert response.status_code == 200, path
        served[path] = response.text
    hosts = {
        (path, urlsplit(url).hostname)
        for path, text in served.items()
        for url in re.findall(r"https?://[^\s\"'<>)]+", text)
    }
    assert {host for _path, host in hosts} <= {"testserver"}, hosts  # the curl examples name this service
    assert "curl -F files=@photo.jpg http://testserver/predict" in served["/docs"]
    assert client.get("/redoc").status_code == 404
    assert client.get("/static/app.py").status_code == 404  # only the page's own files, by name


@pytest.mark.slow  # an `emotionlab serve` process
def test_serve_command_listens_on_loopback_by_default(trained_model):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "emotionlab", "serve", "--model", str(trained_model), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, body = time.time() + 120, None
        while time.time() < deadline and body is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            except OSError:
                time.sleep(0.3)
        assert body is not None and b"ok" in body
        connections = (
            subprocess.run(["ss", "-ltn"], capture_output=True, text=True, check=False).stdout
            if _has("ss")
            else ""
        )
        if connections:
            listening = [line for line in connections.splitlines() if f":{port} " in line]
            assert listening and all("127.0.0.1" in line for line in listening)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _has(command: str) -> bool:
    import shutil

    return shutil.which(command) is not None


@pytest.mark.slow  # an `emotionlab serve` process
@pytest.mark.parametrize("damage", ["flipped byte"])
def test_serve_refuses_a_model_file_that_predict_refuses(trained_model, tiny_dataset, tmp_path, damage):
    import subprocess
    import sys

    data = bytearray(trained_model.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[-100] ^= 0xFF  # inside the weights
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    image = next((tiny_dataset / "test" / "happy").iterdir())
    commands = {
        "predict": ["predict", str(image), "--model", str(bad)],
        "serve": ["serve", "--model", str(bad), "--port", "1"],  # refused before it would bind
        "serve --workers 0": ["serve", "--model", str(bad), "--port", "1", "--workers", "0"],
    }
    outcomes = {}
    for name, arguments in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", "emotionlab", *arguments],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        outcomes[name] = (
            done.returncode,
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
        )
    assert outcomes["predict"][0] == 2, outcomes
    assert outcomes["serve"] == outcomes["serve --workers 0"] == (2, outcomes["predict"][1]), outcomes
