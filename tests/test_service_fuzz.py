"""Hostile and odd uploads against a real `emotionlab serve` on 127.0.0.1: never a 5xx, one-line 4xx reasons,
and the server still up and answering as before."""

from __future__ import annotations

import io
import random
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import IcoImagePlugin, Image, PpmImagePlugin
from service_helpers import multipart, start_server, stop_server

pytestmark = pytest.mark.slow  # a real `emotionlab serve` and hundreds of fuzzed uploads
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLIENT_ERRORS = {400, 413, 415, 422}


# emotionlab never loads these writers' plugins (data/images.py); the fuzz cases write such files on purpose.
_FOREIGN_WRITERS = (IcoImagePlugin, PpmImagePlugin)


def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb as far as any header check knows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def fuzz_uploads(
    count: int, seed: int = 0
) -> list[tuple[str, list[tuple[str, bytes, str]] | None, dict | None]]:
    """``count`` cases ``(kind, files, raw)``: ``files`` for a multipart POST, or ``raw`` = {"body", "headers"}."""
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed)
    photo = (EXAMPLES / "grace_hopper.jpg").read_bytes()
    small = Image.fromarray(pixels.integers(0, 255, (64, 48, 3), dtype=np.uint8))
    png, jpeg = _encoded(small, "PNG"), _encoded(small, "JPEG")

    def image_of(width, height, image_format="PNG", mode="RGB"):
        return _encoded(Image.new(mode, (width, height), 90), image_format)

    makers = {
        "truncated png": lambda: [("t.png", png[: rng.randrange(1, len(png))], "image/png")],
        "truncated jpeg": lambda: [("t.jpg", photo[: rng.randrange(1, len(photo))], "image/jpeg")],
        "random bytes": lambda: [("r.jpg", rng.randbytes(rng.randrange(1, 5000)), "image/jpeg")],
        "flipped bytes": lambda: [("f.jpg", _flip(photo, rng), "image/jpeg")],
        "header bomb": lambda: [
            ("bomb.png", _png_header_only(rng.choice([30000, 100000, 2**31 - 1]), 30000), "image/png")
        ],
        "eps": lambda: [("x.eps", _encoded(small, "EPS"), "application/postscript")],
        "pdf": lambda: [("x.pdf", _encoded(small, "PDF"), "application/pdf")],
        "ps header": lambda: [
            ("x.png", b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "image/png")
        ],
        "svg": lambda: [
            ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "image/svg+xml")
        ],
        "ico": lambda: [("x.ico", _encoded(small, "ICO"), "image/x-icon")],
        "ppm": lambda: [("x.ppm", _encoded(small, "PPM"), "image/x-portable-pixmap")],
        "zero bytes": lambda: [("empty.png", b"", "image/png")],
        "1x1": lambda: [("one.png", image_of(1, 1), "image/png")],
        "10x4000": lambda: [("tall.png", image_of(10, 4000), "image/png")],
        "4000x10": lambda: [("wide.png", image_of(4000, 10), "image/png")],
        "8x640": lambda: [("narrow.png", image_of(8, 640), "image/png")],
        "10x1000": lambda: [("narrow.jpg", image_of(10, 1000, "JPEG"), "image/jpeg")],
        "modes": lambda: [
            ("m.png", image_of(40, 30, "PNG", rng.choice(["1", "L", "LA", "P", "RGBA", "I;16"])), "image/png")
        ],
        "formats": lambda: [
            (f"f.{kind.lower()}", _encoded(small, kind), "image/x")
            for kind in [rng.choice(["WEBP", "BMP", "GIF", "TIFF", "JPEG"])]
        ],
        "wrong content type": lambda: [("photo.txt", photo, "text/plain")],
        "many files": lambda: [
            (f"{index}.jpg", jpeg, "image/jpeg") for index in range(rng.choice([2, 16, 17, 40]))
        ],
        "odd file names": lambda: [
            (rng.choice(["../../etc/passwd", "", "a\u00e9\u4e2d.png", "x" * 300]), png, "image/png")
        ],
        "missing field": lambda: ("image", [("a.png", png, "image/png")]),
        "text field": lambda: {
            "body": b'--b\r\nContent-Disposition: form-data; name="files"\r\n\r\nhello\r\n--b--\r\n',
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        "malformed multipart": lambda: {
            "body": rng.randbytes(200),
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        "no boundary": lambda: {"body": png, "headers": {"Content-Type": "multipart/form-data"}},
        "json body": lambda: {"body": b'{"files": ["x"]}', "headers": {"Content-Type": "application/json"}},
        "raw image body": lambda: {"body": png, "headers": {"Content-Type": "image/png"}},
    }
    kinds = sorted(makers)
    cases = []
    for index in range(count):
        kind = kinds[index % len(kinds)] if index < len(kinds) else rng.choice(kinds)
        made = makers[kind]()
        if isinstance(made, dict):
            cases.append((kind, None, made))
        elif isinstance(made, tuple):  # a different field name
            body, content_type = multipart(made[1], field=made[0])
            cases.append((kind, None, {"body": body, "headers": {"Content-Type": content_type}}))
        else:
            cases.append((kind, made, None))
    return cases


def _flip(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randrange(1, 20)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    return bytes(damaged)


def send_raw(port: int, head: bytes, chunks, *, timeout: float = 30.0) -> int:
    """Send ``head`` then ``chunks`` (stopping if the server has already answered); the response's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head)
        try:
            for chunk in chunks:
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = b""
        try:
            while b"\r\n" not in response:
                part = connection.recv(4096)
                if not part:
                    break
                response += part
        except ConnectionResetError:
            pass
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture(scope="module")
def server():
    server = start_server("--detector", "hog", "--workers", "2")
    yield server
    stop_server(server)


def test_300_fuzzed_uploads_get_no_5xx_and_the_server_answers_as_before(server):
    probe = [("grace_hopper.jpg", (EXAMPLES / "grace_hopper.jpg").read_bytes(), "image/jpeg")]
    before = server.post(probe)
    assert before[0] == 200
    statuses: dict[str, set[int]] = {}
    for kind, files, raw in fuzz_uploads(300):
        if raw is not None:
            status, _, body = server.post(None, body=raw["body"], headers=raw["headers"])
        else:
            status, _, body = server.post(files)
        statuses.setdefault(kind, set()).add(status)
        assert status < 500, (kind, status, body)
        if status != 200:
            assert status in CLIENT_ERRORS and isinstance(body, dict) and "\n" not in body["detail"], (
                kind,
                body,
            )
    assert statuses["eps"] == statuses["pdf"] == statuses["svg"] == statuses["ps header"] == {415}
    assert statuses["header bomb"] == {413} and statuses["zero bytes"] == {422}
    assert statuses["wrong content type"] == statuses["1x1"] == {200}
    assert statuses["missing field"] == statuses["json body"] == {422}
    assert server.alive() and server.post(probe)[2] == before[2]


def test_a_body_over_the_cap_is_refused_declared_or_chunked(server):
    cap = 20 * 1024 * 1024
    head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    declared = f"{head}Content-Length: {10**9}\r\n\r\n".encode()
    assert send_raw(server.port, declared, []) == 413
    chunked = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
    opening = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
    pieces = [opening] + [b"\0" * (1024 * 1024)] * (cap // (1024 * 1024) + 4)  # a file part that never ends
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
    assert send_raw(server.port, chunked, chunks) == 413
    assert server.get("/health")[0] == 200
