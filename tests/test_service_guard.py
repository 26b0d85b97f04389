"""Who may use the service and for how long: slow or idle clients are cut off (408) without holding a queue
place, connections are capped per client address (503 + Retry-After), the optional bearer token and the Host
check (403 against DNS rebinding)."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_helpers import start_server, stop_server
from typer.testing import CliRunner

from emotionlab.serving.app import create_app, service_hosts
from emotionlab.serving.workers import InferencePool

TOKEN = "a-token-of-twenty-characters"


class EchoSlot:
    """An inference slot that answers at once: these tests are about who may ask, not about faces."""

    needs_restart = False

    def __init__(self):
        self.model_info = {"architecture": "stub", "labels": ["happy", "sad"]}

    def run(self, name: str, data: bytes) -> tuple:
        return ("ok", {"path": name, "label": "happy", "size": [8, 8]})

    def close(self) -> None:
        pass


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 60, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def locked():
    app = create_app(pool=InferencePool([EchoSlot()]), token=TOKEN, allowed_hosts={"testserver"})
    with TestClient(app) as client:
        yield client


def test_with_a_token_the_api_answers_only_requests_that_carry_it(locked):
    files = [("files", ("face.png", _png(), "image/png"))]
    assert locked.post("/predict", files=files).status_code == 401
    refused = locked.post(
        "/predict", files=files, headers={"Authorization": "Bearer wrong-token-of-20-chars"}
    )
    assert refused.status_code == 401 and "token" in refused.json()["detail"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert locked.get("/model", headers={"Authorization": TOKEN}).status_code == 401  # the scheme is required
    answered = locked.post("/predict", files=files, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answered.status_code == 200 and answered.json()["results"][0]["path"] == "face.png"
    assert locked.get("/model", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert locked.get("/health").status_code == 200 and locked.get("/").status_code == 200  # no secrets there


def test_a_host_header_naming_another_site_is_refused(locked):
    headers = {"Authorization": f"Bearer {TOKEN}", "Host": "attacker.example:8000"}
    response = locked.get("/model", headers=headers)
    assert response.status_code == 403 and "attacker.example" in response.json()["detail"]


def test_the_hosts_accepted_on_loopback_are_the_loopback_names_only():
    assert service_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1", "[::1]"}
    assert "photos.lab" in service_hosts("0.0.0.0", ["Photos.lab"])
    assert service_hosts("0.0.0.0", ["*"]) is None


def test_the_token_comes_from_the_option_or_the_environment_and_a_short_one_is_refused(monkeypatch):
    import emotionlab.serving.app as service
    from emotionlab.cli import app

    seen = {}
    monkeypatch.setattr(service, "serve", lambda model, **options: seen.update(options))
    runner = CliRunner()
    result = runner.invoke(app, ["serve"], env={"EMOTIONLAB_TOKEN": TOKEN})
    assert result.exit_code == 0 and seen["token"] == TOKEN
    result = runner.invoke(app, ["serve", "--token", "short"])
    assert result.exit_code != 0 and "at least 16 characters" in str(result.exception)


# ---- a real `emotionlab serve`: slow clients and connection caps --------------------------------------------


def _read_answer(sock: socket.socket, timeout: float) -> tuple[int | None, str, float]:
    """The status and head of what the server sends on ``sock`` (None if it closes without a word), and when."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    when = time.monotonic()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(head.split()[1]) if head.startswith("HTTP/") else None
    return status, head, when


def _trickle(sock: socket.socket, data: bytes, stop: threading.Event, interval: float = 0.3) -> None:
    for byte in data:
        if stop.is_set():
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(interval)


@pytest.mark.slow  # a real server, and clients that take seconds on purpose
def test_slow_clients_are_cut_off_with_408_and_real_requests_go_on_meanwhile():
    # One slot and a queue of one: before the fix, two slow uploads held both places and every request got 503.
    server = start_server(
        "--workers", "0", "--queue-size", "1", "--header-timeout", "2", "--body-timeout", "30"
    )
    slow, stop = [], threading.Event()
    try:
        for index in range(6):
            sock = socket.create_connection(("127.0.0.1", server.port))
            if index % 2:  # a header that never ends
                data = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
            else:  # a complete header, then a body a byte at a time
                data = b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n' * 9
                sock.sendall(
                    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                    b"Content-Type: multipart/form-data; boundary=x\r\n\r\n"
                )
            opened = time.monotonic()
            threading.Thread(target=_trickle, args=(sock, data, stop), daemon=True).start()
            slow.append((sock, opened, index % 2))
        answers = [server.post([("face.png", _png(), "image/png")])[0] for _ in range(4)]
        assert answers == [200, 200, 200, 200]  # while six clients trickle
        for sock, opened, _ in slow:
            status, head, when = _read_answer(sock, timeout=15)
            assert status == 408, head
            assert when - opened < 2 + 3  # the deadline (2 s for headers, 2 s grace for a body) plus slack
        health = server.get("/health")[1]
        assert health["header_timeouts"] == 3 and health["body_timeouts"] == 3 and health["active"] == 0
    finally:
        stop.set()
        for sock, _, _ in slow:
            sock.close()
        stop_server(server)


@pytest.mark.slow  # a real server
def test_connections_over_the_per_client_cap_get_503_with_retry_after():
    server = start_server("--workers", "0", "--max-connections-per-client", "4")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.port))
        status, head, _ = _read_answer(extra, timeout=5)
        extra.close()
        assert status == 503 and "retry-after:" in head.lower()
    finally:
        for sock in idle:
            sock.close()
    try:
        time.sleep(0.3)
        assert server.post([("face.png", _png(), "image/png")])[0] == 200  # the places are free again
    finally:
        stop_server(server)


@pytest.mark.slow  # three short-lived servers
def test_a_missing_model_stops_serve_with_one_line_and_no_worker_traceback(tmp_path):
    import subprocess
    import sys

    for _ in range(3):  # the traceback came in about one start in three
        result = subprocess.run(
            [sys.executable, "-m", "emotionlab", "serve", "--model", "missing.safetensors", "--port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        output = (result.stdout + result.stderr).strip().splitlines()
        assert result.returncode != 0 and len(output) == 1, output
        assert "missing.safetensors" in output[0] and "Traceback" not in result.stderr


@pytest.mark.slow  # a real server with its two workers
def test_with_workers_the_server_process_never_loads_pytorch():
    from pathlib import Path

    server = start_server()  # the shipped model, two workers (the default)
    try:
        assert server.post([("face.png", _png(), "image/png")])[0] == 200
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "libtorch" not in maps and "libc10" not in maps
    finally:
        stop_server(server)
