"""An audit you can rerun: the doors issue 19 closed, each tried from outside.

    .venv/bin/python benchmarks/security.py                 # everything (a few minutes on 2 cores)
    .venv/bin/python benchmarks/security.py --only service  # decoders | service | paths

- decoders: a folder with EPS, PostScript and PDF files under photo names goes through every command that
  reads images (predict in one process and with workers, data audit, data faces, evaluate, train, label, the
  Python API) with a fake `gs` first on PATH that records every call (Pillow's EPS plugin runs the first `gs`
  it finds); also which Pillow plugins a reading process has loaded. Target: 0 Ghostscript calls, every
  document named as refused.
- service: a real `emotionlab serve` (default limits, 2 workers); 200 clients from 200 loopback addresses trickle
  a byte a second (half a never-ending header, half a body), reconnecting when cut off, while 1,000 real
  requests run at concurrency 8. Target: every real request 200 and equal to its serial answer, every slow
  connection cut off with 408 within its deadline, memory (PSS of the server and workers) under 2 GB. Then:
  connections over the per-address cap (503 + Retry-After), oversize and decompression-bomb uploads, an EPS
  upload, and a server with --token (401 without it, 200 with it, 403 for a foreign Host header).
- paths: a label journal naming files outside its folder (`label --apply` refuses, writes nothing), archives
  whose entries leave the destination or are links (`data import`).

Writes benchmarks/results/security.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the server helpers shared with the tests

import recorded
from serve_load import build_payloads, percentile, photo_paths, run_level, serial_reference
from service_helpers import start_server, stop_server

DEFAULT_OUT = REPO / "benchmarks" / "results" / "security.json"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 10 10 moveto 90 90 lineto stroke showpage\n"
POSTSCRIPT = b"%!PS\n(/tmp/emotionlab-security-ps-ran) (w) file closefile showpage\n"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
DOCUMENTS = {"eps_photo.jpg": EPS, "ps_photo.png": POSTSCRIPT, "pdf_photo.jpeg": PDF}


def emotionlab(*args, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotionlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


# ---- decoders ---------------------------------------------------------------------------------------------


def make_dataset(root: Path) -> int:
    """train/validation x happy/sad: four faces and the three documents in each; the number of documents."""
    import numpy as np

    from emotionlab.synthetic import make_face

    count = 0
    for split in ("train", "validation"):
        for label in ("happy", "sad"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(4):
                make_face(label, np.random.default_rng(index), 96).save(folder / f"face_{index}.png")
            for name, data in DOCUMENTS.items():
                (folder / name).write_bytes(data)
                count += 1
    return count


def label_scan(folder: Path, env: dict, cwd: Path) -> str:
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


PLUGINS_AFTER_API = """
import sys
import emotionlab
from PIL import Image
recognizer = emotionlab.load_model()
for path in sys.argv[1:]:
    try:
        recognizer.predict(path)
    except Exception as error:
        print("refused", path, error, file=sys.stderr)
Image.init()
print(" ".join(sorted(name for name in sys.modules if name.endswith("ImagePlugin"))))
"""


def run_decoders(work: Path) -> dict:
    from helpers import save_tiny_model

    data = work / "data"
    documents = make_dataset(data)
    fake = work / "bin" / "gs"
    fake.parent.mkdir()
    calls = work / "gs_calls.txt"
    fake.write_text(f'#!/bin/sh\necho "gs $*" >> "{calls}"\nexit 1\n')
    fake.chmod(0o755)
    real_gs = shutil.which("gs")
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    model = save_tiny_model(work / "model.safetensors", faces=None)
    names = set(DOCUMENTS)
    commands = {}

    def record(command: str, result, refused: int, started: float) -> None:
        commands[command] = {
            "exit_code": result.returncode if hasattr(result, "returncode") else 0,
            "documents": documents,
            "documents_refused": refused,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"  {command:<22} exit {commands[command]['exit_code']}, refused {refused}/{documents}",
            flush=True,
        )

    for workers in (0, 2):
        started = time.perf_counter()
        out = work / f"records_{workers}.jsonl"
        result = emotionlab("predict", data, "--model", model, "--format", "jsonl", "-o", out, "--workers", workers,
                            env=env, cwd=work)  # fmt: skip
        records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        refused = sum(
            1 for r in records if Path(r["path"]).name in names and "not an accepted" in r.get("error", "")
        )
        record(f"predict --workers {workers}", result, refused, started)

    started = time.perf_counter()
    result = emotionlab("data", "audit", "--data", data, "--out", work / "audit", env=env, cwd=work)
    files = json.loads((work / "audit" / "audit.json").read_text())["files"] if result.returncode == 0 else []
    refused = sum(1 for f in files if Path(f["path"]).name in names and not f["readable"])
    record("data audit", result, refused, started)

    started = time.perf_counter()
    result = emotionlab("data", "faces", "--data", data, "--output", work / "faces.csv", "--detector", "haar",
                        "--cache-dir", work / "crops", env=env, cwd=work)  # fmt: skip
    refused = sum(
        1 for line in result.stdout.splitlines() if "unreadable:" in line and "not an accepted" in line
    )
    record("data faces", result, refused, started)

    started = time.perf_counter()
    result = emotionlab("evaluate", "--model", model, "--data", data, "--split", "all", "--out", work / "evaluation",
                        env=env, cwd=work)  # fmt: skip
    # The folder scan skips them before evaluation, one warning line each (metrics.json lists later failures).
    refused = sum(1 for line in result.stderr.splitlines() if "not an accepted image format" in line)
    record("evaluate", result, refused, started)

    started = time.perf_counter()
    result = emotionlab("train", "--data", data, "--epochs", 1, "--image-size", 48, "--batch-size", 4,
                        "--out", work / "run", "--no-progress", env=env, cwd=work)  # fmt: skip
    output = result.stdout + result.stderr
    # Each document is named where the folder is read and again in the run's summary: count files, not lines.
    refused = len(
        {
            line.split("skipped ", 1)[-1].split(": ", 1)[0]
            for line in output.splitlines()
            if "not an accepted" in line
        }
    )
    record("train", result, refused, started)

    started = time.perf_counter()
    scan = label_scan(data, env, work)
    record("label", subprocess.CompletedProcess([], 0), scan.count("not an accepted image format"), started)

    started = time.perf_counter()
    paths = [str(path) for path in sorted(data.rglob("*"))[:40] if path.is_file()]
    result = subprocess.run([sys.executable, "-c", PLUGINS_AFTER_API, *paths], capture_output=True, text=True,
                            env=env, cwd=work, timeout=300, check=False)  # fmt: skip
    loaded = result.stdout.split()
    record("python API", result, result.stderr.count("not an accepted image format"), started)
    gs_calls = calls.read_text().splitlines() if calls.exists() else []
    print(f"  Ghostscript calls: {len(gs_calls)}; Pillow plugins loaded by the Python API run: {loaded}")
    return {
        "real_ghostscript_installed": real_gs,
        "ghostscript_calls": len(gs_calls),
        "ghostscript_call_examples": gs_calls[:3],
        "commands": commands,
        "pillow_plugins_loaded_by_the_python_api": loaded,
    }


# ---- the service ------------------------------------------------------------------------------------------


class SlowClient(threading.Thread):
    """Trickles a byte a second from its own loopback address; when cut off, records how and when, reconnects."""

    def __init__(self, port: int, address: str, body: bool, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.address, self.body, self.stop = port, address, body, stop
        self.cutoffs: list[tuple[int | None, float]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(
                    ("127.0.0.1", self.port), timeout=5, source_address=(self.address, 0)
                )
            except OSError:
                time.sleep(1)
                continue
            opened = time.monotonic()
            try:
                if self.body:
                    sock.sendall(
                        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n"
                        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n"
                        b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
                        b"Content-Type: image/png\r\n\r\n"
                    )
                else:
                    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                while not self.stop.is_set():
                    readable, _, _ = select.select([sock], [], [], 1.0)
                    if readable:
                        head = sock.recv(4096).decode("latin-1")
                        status = int(head.split()[1]) if head.startswith("HTTP/") else None
                        self.cutoffs.append((status, time.monotonic() - opened))
                        break
                    sock.sendall(b"a")
            except OSError:
                self.cutoffs.append((None, time.monotonic() - opened))
            finally:
                sock.close()


def raw_status(port: int, request: bytes, timeout: float = 30) -> tuple[int | None, str, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer (413) before reading it all
            sock.sendall(request)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return (int(head.split()[1]) if head.startswith("HTTP/") else None), head, time.perf_counter() - started


def bomb_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def run_service(slow_clients: int, requests: int, concurrency: int) -> dict:
    paths, source = photo_paths()
    payloads = build_payloads(paths[:60])
    server = start_server()
    # The server's console goes to a pipe: read it, so that a burst of log lines can never stall the server.
    console: list[str] = []
    threading.Thread(target=lambda: console.extend(server.process.stdout), daemon=True).start()
    result: dict = {"photos": source, "distinct_payloads": len(payloads)}
    try:
        health = server.get("/health")[1]
        reference = serial_reference(server, payloads)
        stop = threading.Event()
        clients = [
            SlowClient(server.port, f"127.0.{1 + index // 250}.{2 + index % 250}", bool(index % 2), stop)
            for index in range(slow_clients)
        ]
        for client in clients:
            client.start()
        time.sleep(2)  # every slow client connected and trickling before the real requests start
        level = run_level(server, payloads, reference, requests, concurrency, seed=19)
        stop.set()
        print(f"  real requests: {json.dumps(level)}", flush=True)
        for client in clients:
            client.join(timeout=10)
        try:
            health = server.get("/health", timeout=60)[1]
        except OSError as error:
            health = {"error": f"/health did not answer: {error}"}
        cutoffs = [cut for client in clients for cut in client.cutoffs]
        cut_408 = [seconds for status, seconds in cutoffs if status == 408]
        result["slow_clients"] = {
            "clients": slow_clients,
            "deadline_seconds": {"header": 10.0, "body_grace": 10.0, "body_min_bytes_per_second": 100_000},
            "connections_cut_off": len(cutoffs),
            "cut_off_with_408": len(cut_408),
            "other_endings": {
                str(status): sum(1 for other, _ in cutoffs if other == status)
                for status in {status for status, _ in cutoffs if status != 408}
            },
            "seconds_to_408_p50": round(percentile(cut_408, 0.5), 2) if cut_408 else None,
            "seconds_to_408_max": round(max(cut_408), 2) if cut_408 else None,
            "health_after": health,
        }
        result["real_requests"] = level
        print(
            f"  {requests} real requests at concurrency {concurrency} beside {slow_clients} slow clients: "
            f"{level['failures']} failed, {level['differing_from_serial']} differ from serial, "
            f"{level['requests_per_second']} req/s, peak memory {level['peak_memory_mb']} MB; slow connections "
            f"cut off: {len(cutoffs)} ({len(cut_408)} with 408, max {result['slow_clients']['seconds_to_408_max']} s)",
            flush=True,
        )

        # After 200 clients drop at once the server may need a moment (under a loaded CPU): wait for /health.
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if server.get("/health", timeout=10)[0] == 200:
                    break
            except OSError:
                time.sleep(1)
        # One address past the per-client cap (32): the extra connections get 503 + Retry-After at once.
        held = [
            socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.3.1", 0))
            for _ in range(32)
        ]
        time.sleep(0.3)
        extra = []
        for _ in range(8):
            with socket.create_connection(
                ("127.0.0.1", server.port), source_address=("127.0.3.1", 0)
            ) as sock:
                sock.settimeout(30)
                try:
                    head = sock.recv(4096).decode("latin-1")
                except OSError:
                    head = ""
                extra.append((head.split()[1] if head else None, "retry-after" in head.lower()))
        for sock in held:
            sock.close()
        result["per_client_cap"] = {
            "held": 32,
            "extra_connections": len(extra),
            "extra_answered_503_with_retry_after": sum(
                1 for status, retry in extra if status == "503" and retry
            ),
        }
        print(f"  per-address cap: {result['per_client_cap']}")

        uploads = {}
        status, _, seconds = raw_status(
            server.port,
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 30000000\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n",
        )
        uploads["declared_30_MB"] = {"status": status, "seconds": round(seconds, 3)}
        part = b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        chunks = (
            b"%x\r\n" % len(part)
            + part
            + b"\r\n"
            + b"".join(b"100000\r\n" + bytes(0x100000) + b"\r\n" for _ in range(30))
            + b"0\r\n\r\n"
        )
        status, _, seconds = raw_status(
            server.port,
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n" + chunks,
        )
        uploads["chunked_48_MB"] = {"status": status, "seconds": round(seconds, 3)}
        for name, data in (
            ("bomb_100000x100000.png", bomb_png()),
            ("eps_photo.jpg", EPS),
            ("pdf_photo.png", PDF),
        ):
            started = time.perf_counter()
            status, _, body = server.post([(name, data, "image/png")])
            uploads[name] = {"status": status, "detail": body.get("detail") if isinstance(body, dict) else None,
                             "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
        result["uploads"] = uploads
        result["server_alive_after"] = server.alive()
        result["server_console_lines"] = len(console)
        for name, outcome in uploads.items():
            print(f"  {name}: {outcome['status']} in {outcome['seconds']} s")
    finally:
        stop_server(server)

    token = "security-benchmark-token-0123456789"
    server = start_server("--workers", "0", "--token", token)
    try:
        files = [("face.png", payloads[0][0][1], payloads[0][0][2])]
        without = server.post(files)[0]
        wrong = server.post(files, headers={"Authorization": "Bearer " + "x" * len(token)})[0]
        right = server.post(files, headers={"Authorization": f"Bearer {token}"})[0]
        foreign = raw_status(
            server.port,
            b"GET /model HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\n\r\n",
        )[0]
        result["token"] = {"without": without, "wrong": wrong, "right": right, "foreign_host_header": foreign}
        print(f"  token: {result['token']}")
    finally:
        stop_server(server)
    return result


# ---- path tricks ------------------------------------------------------------------------------------------


def run_paths(work: Path) -> dict:
    from PIL import Image

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    folder = work / "photos"
    folder.mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (32, 32), (index * 60, 90, 30)).save(folder / f"img{index}.png")
    secret = work / "outside.png"
    Image.new("RGB", (8, 8)).save(secret)
    (folder / "link.png").symlink_to(secret)
    results = {}
    for name, image in (
        ("dot_dot", "../outside.png"),
        ("absolute", str(secret)),
        ("nested_dot_dot", "sub/../../outside.png"),
        ("link_out", "link.png"),
    ):
        journal = work / f"{name}.labels.jsonl"
        lines = [
            {
                "time": "2026-01-01T00:00:00.000+00:00",
                "action": "label",
                "image": "img0.png",
                "label": "happy",
            },
            {"time": "2026-01-01T00:00:01.000+00:00", "action": "label", "image": image, "label": "sad"},
        ]
        journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
        dest = work / f"dest_{name}"
        result = emotionlab("label", folder, "--journal", journal, "--apply", dest, "--classes", "happy,sad",
                            env=env, cwd=work, timeout=120)  # fmt: skip
        results[f"label_apply_{name}"] = {
            "refused": result.returncode != 0,
            "written": dest.exists(),
            "message": (result.stderr.strip().splitlines() or [""])[-1][:200],
        }
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 90)).save(photo, "PNG")
    for name, entries in (
        ("zip_dot_dot", [("happy/1.png", photo.getvalue()), ("happy/../../escaped.png", photo.getvalue())]),
        ("zip_absolute", [("happy/1.png", photo.getvalue()), ("/tmp/escaped.png", photo.getvalue())]),
    ):
        archive = work / f"{name}.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            for entry, data in entries:
                bundle.writestr(entry, data)
        out = work / f"import_{name}"
        result = emotionlab("data", "import", archive, "--out", out, env=env, cwd=work, timeout=120)
        escaped = [str(path) for path in work.rglob("escaped.png")] + (
            ["/tmp/escaped.png"] if Path("/tmp/escaped.png").exists() else []
        )
        results[f"data_import_{name}"] = {
            "refused": result.returncode != 0,
            "escaped_files": escaped,
            "message": (result.stderr.strip().splitlines() or [""])[-1][:200],
        }
    for name, outcome in results.items():
        print(f"  {name}: {outcome}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("decoders", "service", "paths"), default=None)
    parser.add_argument("--slow-clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    report: dict = {
        "command": recorded.command_line(),  # with --only: the sections it ran; the others kept from before
        "machine": recorded.machine(),
    }
    if args.out.exists() and args.only:
        report = {**json.loads(args.out.read_text()), **report}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if args.only in (None, "decoders"):
            print("decoders: documents under photo names through every command", flush=True)
            (work / "decoders").mkdir()
            report["decoders"] = run_decoders(work / "decoders")
        if args.only in (None, "paths"):
            print("paths: label journals and archives that point outside", flush=True)
            (work / "paths").mkdir()
            report["paths"] = run_paths(work / "paths")
    if args.only in (None, "service"):
        print("service: slow clients, caps, uploads, token", flush=True)
        report["service"] = run_service(args.slow_clients, args.requests, args.concurrency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
