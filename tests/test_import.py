"""`emotionlab data import`: a local HTTP server serves good photos, slow, broken, failing, oversized and wrong
responses; archives and folders are imported without being changed; re-running resumes."""

from __future__ import annotations

import csv
import hashlib
import io
import socket
import tarfile
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.importer import ImportOptions, OfflineError, import_photos, label_problem, sources
from emotionlab.errors import EmotionlabError

# Fast settings for tests: short timeouts and back-off, small limits.
FAST = ImportOptions(workers=4, retries=2, backoff=0.01, timeout=0.5, max_bytes=200_000, max_pixels=1_000_000)


def photo(seed: int, size: int = 64, fmt: str = "PNG") -> bytes:
    """A random image: different seeds give perceptual hashes far apart (about 32 bits of 64)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
    image = Image.fromarray(pixels).resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def near_copy(data: bytes) -> bytes:
    """The same picture rescaled and saved as JPEG: other bytes, same perceptual hash (within a few bits)."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((80, 80), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """Routes: /ok/NAME (files), /slow, /broken, /flaky503 (two 503s then the photo), /gone (404), /big, /stream,
    /html, /redirect-ftp. Every request is counted per path."""

    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[Counter] = Counter()
    streamed: ClassVar[list[int]] = []
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, content_type: str = "image/png", length: bool = True) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with self.lock:
            self.hits[self.path] += 1
            count = self.hits[self.path]
        path = self.path
        if path.startswith("/ok/") and path[4:] in self.files:
            self._send(200, self.files[path[4:]])
        elif path == "/slow":
            time.sleep(2.0)
            self._send(200, self.files["slow"])
        elif path == "/broken":
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(self.files["broken"][:100])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/flaky503":
            if count <= 2:
                self._send(503, b"busy", "text/plain")
            else:
                self._send(200, self.files["flaky"])
        elif path == "/gone":
            self._send(404, b"not here", "text/plain")
        elif path == "/big":  # honest Content-Length over the limit
            self._send(200, b"\xff" * 1_000_000, "image/jpeg")
        elif path == "/stream":  # no Content-Length: the client must stop reading by itself
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            sent = 0
            try:
                for _ in range(200):
                    self.wfile.write(b"\xff" * 65536)
                    sent += 65536
            except OSError:
                pass
            with self.lock:
                self.streamed.append(sent)
            self.close_connection = True
        elif path == "/trickle":  # a byte at a time, each well within the timeout: only a deadline stops it
            self.send_response(200)
            self.send_header("Content-Length", "10000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif path == "/html":
            self._send(200, b"<html><body>not a photo</body></html>", "text/html")
        elif path == "/redirect-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/x.jpg")
            self.end_headers()
        else:
            self._send(404, b"no", "text/plain")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client that hung up early is what some tests do
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"files": {}, "hits": Counter(), "streamed": []})
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def write_csv(path: Path, rows: list[tuple], header: bool = True) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(["url", "label", "source", "licence"])
        writer.writerows(rows)
    return path


def provenance(out: Path) -> list[dict]:
    with (out / "provenance.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def by_origin(rows: list[dict]) -> dict[str, dict]:
    return {row["origin"]: row for row in rows}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- URL lists ----------------------------------------------------------------------------------------------


def test_url_list_keeps_good_photos_and_says_why_each_other_one_was_skipped(server, tmp_path):
    base, handler = server
    good = [photo(seed) for seed in range(3)]
    handler.files.update(
        {
            "a.png": good[0],
            "b.png": good[1],
            "c.jpg": good[2],
            "copy.png": good[0],
            "near.jpg": near_copy(good[1]),
            "slow": photo(10),
            "broken": photo(11),
            "flaky": photo(12),
            "huge.png": photo(13, size=1200),
        }
    )
    rows = [
        (f"{base}/ok/a.png", "happy", "site-a", "CC-BY-4.0"),
        (f"{base}/ok/b.png", "sad", "site-b", "CC0"),
        (f"{base}/ok/c.jpg", "happy", "", ""),  # a PNG named .jpg: the bytes decide, kept as .png
        (f"{base}/ok/copy.png", "sad", "", ""),  # same bytes as a.png
        (f"{base}/ok/near.jpg", "sad", "", ""),  # b.png rescaled and re-encoded
        (f"{base}/slow", "happy", "", ""),
        (f"{base}/broken", "happy", "", ""),
        (f"{base}/flaky503", "angry", "", ""),
        (f"{base}/gone", "angry", "", ""),
        (f"{base}/big", "angry", "", ""),
        (f"{base}/stream", "angry", "", ""),
        (f"{base}/html", "angry", "", ""),
        (f"{base}/ok/huge.png", "angry", "", ""),  # 1200 x 1200 = 1.44 MP over the 1 MP limit
        (f"{base}/redirect-ftp", "angry", "", ""),
        (f"{base}/ok/a.png?again", "../escape", "", ""),  # never fetched: the label is not a folder name
        ("ftp://127.0.0.1/x.jpg", "angry", "", ""),
    ]
    source = write_csv(tmp_path / "urls.csv", rows)
    before = source.read_bytes()
    out = tmp_path / "new"
    started = time.monotonic()
    report = import_photos(source, out, options=FAST)
    elapsed = time.monotonic() - started

    rows_by_origin = by_origin(provenance(out))
    status = {origin.removeprefix(base): row["status"] for origin, row in rows_by_origin.items()}
    assert status == {
        "/ok/a.png": "imported",
        "/ok/b.png": "imported",
        "/ok/c.jpg": "imported",
        "/ok/copy.png": "duplicate",
        "/ok/near.jpg": "near-duplicate",
        "/slow": "failed",
        "/broken": "failed",
        "/flaky503": "imported",
        "/gone": "failed",
        "/big": "rejected",
        "/stream": "rejected",
        "/html": "rejected",
        "/ok/huge.png": "rejected",
        "/redirect-ftp": "failed",
        "/ok/a.png?again": "invalid",
        "ftp://127.0.0.1/x.jpg": "invalid",
    }
    reason = {origin.removeprefix(base): row["reason"] for origin, row in rows_by_origin.items()}
    assert reason["/slow"] == "timed out"
    assert "connection broken" in reason["/broken"]
    assert reason["/gone"] == "HTTP 404 Not Found"
    assert "file too large" in reason["/big"] and "file too large" in reason["/stream"]
    assert "not an accepted image format" in reason["/html"]
    assert "image too large" in reason["/ok/huge.png"]
    assert "/ok/a.png" in reason["/ok/copy.png"] or "happy/" in reason["/ok/copy.png"]
    assert "perceptual hash" in reason["/ok/near.jpg"]
    assert "folder-safe" in reason["/ok/a.png?again"]

    # Retries: two 503s then success; the timeout three times; a 404 and an oversized file only once.
    assert handler.hits["/flaky503"] == 3
    assert handler.hits["/slow"] == 3
    assert handler.hits["/gone"] == 1 and handler.hits["/big"] == 1
    assert "/ok/a.png?again" not in handler.hits
    assert handler.streamed and handler.streamed[0] < 200 * 65536  # stopped reading long before the end
    assert elapsed < 20

    # Files: OUT/label/<sha256[:16]>.<real format>, the exact bytes served, nothing else.
    expected = {}
    for data, label in ((good[0], "happy"), (good[1], "sad"), (good[2], "happy"), (photo(12), "angry")):
        sha = hashlib.sha256(data).hexdigest()
        expected[f"{label}/{sha[:16]}.png"] = data
    files = tree(out)
    assert files.pop("provenance.csv")
    assert files == expected
    kept = rows_by_origin[f"{base}/ok/a.png"]
    assert kept["sha256"] == hashlib.sha256(good[0]).hexdigest()
    assert (kept["source"], kept["licence"], kept["format"]) == ("site-a", "CC-BY-4.0", "PNG")
    assert kept["fetched_utc"].endswith("Z") and kept["path"] == f"happy/{kept['sha256'][:16]}.png"
    assert report.counts == Counter(
        imported=4, duplicate=1, **{"near-duplicate": 1}, failed=4, rejected=4, invalid=2
    )
    assert source.read_bytes() == before


def test_a_server_that_trickles_bytes_is_cut_off(server, tmp_path):
    base, _ = server
    options = ImportOptions(**{**FAST.__dict__, "retries": 0, "timeout": 0.3})
    started = time.monotonic()
    import_photos(
        write_csv(tmp_path / "urls.csv", [(f"{base}/trickle", "sad")]), tmp_path / "new", options=options
    )
    assert time.monotonic() - started < 5
    (row,) = provenance(tmp_path / "new")
    assert (row["status"], row["reason"]) == ("failed", "timed out (still downloading after 1.8 s)")


def test_rerun_fetches_only_what_failed_and_adds_no_duplicate_rows(server, tmp_path):
    base, handler = server
    handler.files.update({"a.png": photo(1), "b.png": photo(2)})
    source = write_csv(
        tmp_path / "urls.csv",
        [(f"{base}/ok/a.png", "happy"), (f"{base}/ok/b.png", "sad"), (f"{base}/ok/later.png", "sad")],
    )
    out = tmp_path / "new"
    first = import_photos(source, out, options=FAST)
    assert first.counts == Counter(imported=2, failed=1)  # later.png: 404 for now
    handler.files["later.png"] = photo(3)
    second = import_photos(source, out, options=FAST)
    assert second.counts == Counter(imported=1) and second.already_done == 2
    assert handler.hits["/ok/a.png"] == 1 and handler.hits["/ok/later.png"] == 2
    statuses = [(row["origin"].removeprefix(base), row["status"]) for row in provenance(out)]
    assert statuses == [
        ("/ok/a.png", "imported"),
        ("/ok/b.png", "imported"),
        ("/ok/later.png", "failed"),
        ("/ok/later.png", "imported"),
    ]
    third = import_photos(source, out, options=FAST)
    assert third.counts == Counter() and third.already_done == 3
    assert len(provenance(out)) == 4


def test_duplicates_of_an_existing_dataset_are_skipped(server, tmp_path):
    base, handler = server
    existing = tmp_path / "existing"
    (existing / "train" / "happy").mkdir(parents=True)
    (existing / "train" / "happy" / "old.png").write_bytes(photo(5))
    (existing / "train" / "happy" / "older.png").write_bytes(photo(6))
    handler.files.update({"same.png": photo(5), "near.jpg": near_copy(photo(6)), "new.png": photo(7)})
    source = write_csv(
        tmp_path / "urls.csv",
        [(f"{base}/ok/same.png", "happy"), (f"{base}/ok/near.jpg", "sad"), (f"{base}/ok/new.png", "sad")],
        header=False,
    )
    out = tmp_path / "new"
    import_photos(source, out, against=existing, options=FAST)
    rows = {row["origin"].removeprefix(base): row for row in provenance(out)}
    assert rows["/ok/same.png"]["status"] == "duplicate"
    assert (
        "train/happy/old.png" in rows["/ok/same.png"]["reason"]
        and str(existing) in rows["/ok/same.png"]["reason"]
    )
    assert rows["/ok/near.jpg"]["status"] == "near-duplicate"
    assert "train/happy/older.png" in rows["/ok/near.jpg"]["reason"]
    assert rows["/ok/new.png"]["status"] == "imported"
    assert tree(existing) == {"train/happy/old.png": photo(5), "train/happy/older.png": photo(6)}


def test_offline_fails_with_one_line_and_leaves_nothing(tmp_path):
    port = closed_port()
    source = write_csv(
        tmp_path / "urls.csv", [(f"http://127.0.0.1:{port}/{i}.jpg", "happy") for i in range(20)]
    )
    out = tmp_path / "new"
    result = CliRunner().invoke(app, ["data", "import", str(source), "--out", str(out), "--retries", "1"])
    assert result.exit_code != 0
    assert isinstance(result.exception, OfflineError)
    message = str(result.exception)
    assert message.startswith("offline:") and "connection refused" in message and "\n" not in message
    assert not out.exists()


def test_dns_failure_everywhere_is_offline(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    hosts = [f"http://photos{i}.example/{i}.jpg" for i in range(12)]
    source = write_csv(tmp_path / "urls.csv", [(url, "sad") for url in hosts])
    with pytest.raises(OfflineError, match="host name not found"):
        import_photos(source, tmp_path / "new", options=FAST)
    assert not (tmp_path / "new").exists()


def test_one_dead_host_among_live_ones_is_not_offline(server, tmp_path):
    base, handler = server
    handler.files["a.png"] = photo(1)
    dead = f"http://127.0.0.1:{closed_port()}"
    rows = [(f"{dead}/{i}.jpg", "happy") for i in range(6)] + [(f"{base}/ok/a.png", "happy")]
    report = import_photos(write_csv(tmp_path / "urls.csv", rows), tmp_path / "new", options=FAST)
    assert report.counts == Counter(imported=1, failed=6)
    reasons = [row["reason"] for row in provenance(tmp_path / "new") if row["status"] == "failed"]
    # Downloads run side by side: the first ones to reach the dead host are refused, the rest are not tried.
    assert "connection refused" in reasons and any("host not reachable" in reason for reason in reasons)
    assert all(reason == "connection refused" or "host not reachable" in reason for reason in reasons)


# ---- archives and folders -------------------------------------------------------------------------------------


def test_folder_import_reads_labels_from_folders_and_never_changes_the_source(tmp_path):
    source = tmp_path / "photos"
    (source / "train" / "happy").mkdir(parents=True)
    (source / "sad").mkdir()
    (source / "bad label!").mkdir()
    (source / "train" / "happy" / "1.jpg").write_bytes(photo(1, fmt="JPEG"))
    (source / "sad" / "2.png").write_bytes(photo(2))
    (source / "sad" / "2-copy.png").write_bytes(photo(2))
    (source / "sad" / ".DS_Store").write_bytes(b"\0\0")
    (source / "sad" / "notes.txt").write_text("not a photo")
    (source / "bad label!" / "3.png").write_bytes(photo(3))
    (source / "loose.png").write_bytes(photo(4))
    (source / "sad" / "link.png").symlink_to(source / "sad" / "2.png")
    before = tree(source)
    out = tmp_path / "new"
    report = import_photos(source, out, options=FAST)
    assert tree(source) == before
    status = {Path(row["origin"]).relative_to(source).as_posix(): row["status"] for row in provenance(out)}
    assert status == {
        "train/happy/1.jpg": "imported",
        "sad/2-copy.png": "imported",
        "sad/2.png": "duplicate",
        "sad/notes.txt": "rejected",
        "bad label!/3.png": "invalid",
        "loose.png": "invalid",
        "sad/link.png": "rejected",
    }
    assert report.left_out == 1
    assert sorted(tree(out)) == sorted(
        [
            "provenance.csv",
            f"happy/{hashlib.sha256(photo(1, fmt='JPEG')).hexdigest()[:16]}.jpg",
            f"sad/{hashlib.sha256(photo(2)).hexdigest()[:16]}.png",
        ]
    )
    with pytest.raises(EmotionlabError, match="inside"):
        import_photos(source, source / "out", options=FAST)


def test_zip_import_refuses_path_traversal_and_skips_links_and_bombs(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("photos/happy/1.png", photo(1))
        bundle.writestr("photos/sad/2.png", photo(2))
        bundle.writestr("__MACOSX/photos/sad/._2.png", b"fork")
        link = zipfile.ZipInfo("photos/sad/link.png")
        link.external_attr = 0o120777 << 16
        bundle.writestr(link, "/etc/passwd")
        bundle.writestr("photos/sad/bomb.png", b"\0" * 5_000_000)  # 5 MB of zeros, 5 kB compressed
    out = tmp_path / "new"
    report = import_photos(good, out, options=FAST)
    status = {row["origin"].split("!")[1]: (row["status"], row["reason"]) for row in provenance(out)}
    assert status["photos/happy/1.png"][0] == "imported" and status["photos/sad/2.png"][0] == "imported"
    assert status["photos/sad/link.png"][0] == "rejected" and "link" in status["photos/sad/link.png"][1]
    assert status["photos/sad/bomb.png"] == ("rejected", "file too large (5,000,000 bytes, limit 200,000)")
    assert report.left_out == 1

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("happy/1.png", photo(1))
        bundle.writestr("happy/../../escaped.png", photo(2))
    with pytest.raises(EmotionlabError, match="unsafe path"):
        import_photos(evil, tmp_path / "evil-out", options=FAST)
    assert not (tmp_path / "evil-out").exists() and not list(tmp_path.rglob("escaped.png"))


def test_tar_import_with_labels_csv_skips_links_and_bounds_the_total(tmp_path, monkeypatch):
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for name, data in (
            ("a.png", photo(1)),
            ("b.png", photo(2)),
            ("labels.csv", b"path,label,source,licence\na.png,happy,lab,CC0\nb.png,surprised,lab,CC0\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("c.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        bundle.addfile(link)
    out = tmp_path / "new"
    import_photos(archive, out, options=ImportOptions(**{**FAST.__dict__, "label_from": "csv"}))
    rows = {row["origin"].split("!")[1]: row for row in provenance(out)}
    assert (rows["a.png"]["status"], rows["a.png"]["label"], rows["a.png"]["licence"]) == (
        "imported",
        "happy",
        "CC0",
    )
    assert rows["b.png"]["label"] == "surprised"
    assert rows["c.png"]["status"] == "rejected" and "link" in rows["c.png"]["reason"]

    monkeypatch.setattr(sources, "MAX_ARCHIVE_BYTES", 1000)
    with pytest.raises(EmotionlabError, match="refused"):
        import_photos(
            archive, tmp_path / "bounded", options=ImportOptions(**{**FAST.__dict__, "label_from": "csv"})
        )
    assert not (tmp_path / "bounded").exists()


def test_cli_import_prints_counts_and_reasons(server, tmp_path):
    base, handler = server
    handler.files["a.png"] = photo(1)
    source = write_csv(tmp_path / "urls.csv", [(f"{base}/ok/a.png", "happy"), (f"{base}/html", "sad")])
    out = tmp_path / "new"
    result = CliRunner().invoke(app, ["data", "import", str(source), "--out", str(out), "--timeout", "2"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "1 imported, 1 rejected" in result.output
    assert "not an accepted image format" in result.output and "provenance.csv" in result.output


@pytest.mark.parametrize(
    ("label", "ok"),
    [
        ("happy", True),
        ("Very happy", True),
        ("joie", True),
        ("à-la_carte.2", True),
        ("../x", False),
        ("a/b", False),
        (".hidden", False),
        ("train", False),
        ("Test", False),
        ("nul", False),
        ("", False),
        ("x" * 65, False),
        ("trailing.", False),
    ],
)
def test_labels_must_be_folder_safe(label, ok):
    assert (label_problem(label) is None) == ok
