"""A real `emotionlab serve` process on 127.0.0.1 and a small HTTP client for it (load and fuzz tests)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int

    def get(self, path: str, *, timeout: float = 10.0) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def post(self, files, *, timeout: float = 120.0, headers: dict | None = None, body: bytes | None = None):
        """POST /predict: ``files`` is a list of ``(name, bytes, content_type)`` (field ``files``), or ``body``
        and ``headers`` as given. Returns ``(status, headers, parsed JSON or raw bytes)``."""
        if body is None:
            body, content_type = multipart(files)
            headers = {"Content-Type": content_type, **(headers or {})}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            # The server may answer before reading the whole body (e.g. 413): read that answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request("POST", "/predict", body=body, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            return response.status, dict(response.getheaders()), payload
        finally:
            connection.close()

    def alive(self) -> bool:
        return self.process.poll() is None


def multipart(files, *, field: str = "files") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, data, content_type in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def start_server(*args: str, timeout: float = 240.0) -> Server:
    """``emotionlab serve ARGS --port P`` on 127.0.0.1; returns once /health answers."""
    port = free_port()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "emotionlab", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    server = Server(process, port)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped while starting:\n{process.stdout.read()}")
        try:
            if server.get("/health", timeout=2)[0] == 200:
                return server
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s")


def stop_server(server: Server) -> str:
    """Stop the server (and so its workers); its console output."""
    server.process.terminate()
    try:
        output, _ = server.process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        output, _ = server.process.communicate()
    return output or ""
