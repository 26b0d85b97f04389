"""`emotionlab data download`: a local HTTP server stands in for GitHub; local zips and folders work offline."""

from __future__ import annotations

import functools
import io
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.download import DATASETS, check_layout, download_dataset
from emotionlab.errors import EmotionlabError
from emotionlab.labels import EMOTIONS

PER_SPLIT = {"train": 3, "validation": 1, "test": 1}  # images per label; far fewer than the real dataset


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def expected_files() -> dict[str, bytes]:
    files, seed = {}, 0
    for split, count in PER_SPLIT.items():
        for label in EMOTIONS:
            for index in range(count):
                files[f"{split}/{label}/{split}_{label}_{index}.png"] = _png(seed)
                seed += 1
    return files


def make_repo_zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A zip shaped like GitHub's archive of the study's repository: a top folder, code, and emotion_images/."""
    top = "deep_learning_project-c13086fc65fb"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(f"{top}/README.md", "the study\n")
        bundle.writestr(f"{top}/Script/main.py", "print('hi')\n")
        bundle.writestr(f"{top}/emotion_images/.DS_Store", b"\0\0")
        bundle.writestr(f"{top}/emotion_images/train/.DS_Store", b"\0\0")
        bundle.writestr(f"{top}/emotion_images/angry human face/raw.jpg", b"raw collection, not the dataset")
        for name, data in expected_files().items():
            bundle.writestr(f"{top}/emotion_images/{name}", data)
        for name, data in (extra or {}).items():
            bundle.writestr(name, data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1 from a thread; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _cli(*args: str):
    return CliRunner().invoke(app, ["data", "download", "seed-emotions", *args])


def test_download_extracts_only_the_dataset_and_warns_about_counts(server, tmp_path):
    base, www = server
    make_repo_zip(www / "repo.zip")
    dest = tmp_path / "seed"
    result = _cli(str(dest), "--url", f"{base}/repo.zip")
    assert result.exit_code == 0, (result.output, result.exception)
    assert tree(dest) == expected_files()  # no README, no .DS_Store, no raw collection folder
    assert "warning" in result.output
    assert "train: 15 images, expected 836" in result.output
    assert "test: 5 images, expected 138" in result.output
    assert not list(tmp_path.glob(".seed.partial-*"))


def test_download_url_can_come_from_the_environment(server, tmp_path, monkeypatch):
    base, www = server
    make_repo_zip(www / "mirror.zip")
    monkeypatch.setenv("EMOTIONLAB_SEED_URL", f"{base}/mirror.zip")
    report = download_dataset("seed-emotions", tmp_path / "seed")
    assert report.source.endswith("/mirror.zip")
    assert tree(tmp_path / "seed") == expected_files()


def test_matching_dataset_gives_no_warning(server, tmp_path):
    base, www = server
    make_repo_zip(www / "repo.zip")
    spec = DATASETS["seed-emotions"]
    small = type(spec)(**{**spec.__dict__, "counts": {s: n * len(EMOTIONS) for s, n in PER_SPLIT.items()}})
    report = download_dataset("seed-emotions", tmp_path / "seed", url=f"{base}/repo.zip", spec=small)
    assert report.problems == []


def test_check_layout_lists_every_difference():
    spec = DATASETS["seed-emotions"]
    counts = {"train": {label: 100 for label in EMOTIONS}, "val": {"angry": 3}}
    counts["train"].pop("sad")
    counts["train"]["neutral"] = 1
    problems = check_layout(counts, spec)
    assert any("splits" in p and "val" in p for p in problems)
    assert any("missing sad" in p and "unexpected neutral" in p for p in problems)
    assert "validation: 0 images, expected 126" in problems


def test_offline_download_fails_with_one_clear_line(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/repo.zip"
    with pytest.raises(EmotionlabError) as caught:
        download_dataset("seed-emotions", tmp_path / "seed", url=url)
    message = str(caught.value)
    assert "download failed" in message and url in message and "--from" in message and "\n" not in message
    assert not (tmp_path / "seed").exists() and not list(tmp_path.glob(".seed.partial-*"))


def test_http_error_is_reported_with_its_status(server, tmp_path):
    base, _ = server
    result = _cli(str(tmp_path / "seed"), "--url", f"{base}/missing.zip")
    assert isinstance(result.exception, EmotionlabError)
    assert "HTTP 404" in str(result.exception) and "--from" in str(result.exception)


def test_from_local_zip_and_from_extracted_folders(tmp_path):
    archive = make_repo_zip(tmp_path / "repo.zip")
    assert _cli(str(tmp_path / "a"), "--from", str(archive)).exit_code == 0
    assert tree(tmp_path / "a") == expected_files()
    checkout = tmp_path / "checkout"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(checkout)
    # A repository checkout (folder above emotion_images) and the dataset folder itself both work.
    assert _cli(str(tmp_path / "b"), "--from", str(checkout)).exit_code == 0
    assert tree(tmp_path / "b") == expected_files()
    assert _cli(str(tmp_path / "c"), "--from", str(tmp_path / "b")).exit_code == 0
    assert tree(tmp_path / "c") == expected_files()


def test_zip_path_traversal_is_refused_and_nothing_is_written(tmp_path):
    evil = "deep_learning_project-x/emotion_images/train/angry/../../../../../escaped.png"
    archive = make_repo_zip(tmp_path / "evil.zip", extra={evil: _png(99)})
    dest = tmp_path / "inner" / "seed"
    with pytest.raises(EmotionlabError, match="unsafe path"):
        download_dataset("seed-emotions", dest, source=archive)
    assert not dest.exists()
    assert not list(tmp_path.rglob("escaped.png"))
    absolute = make_repo_zip(tmp_path / "abs.zip", extra={"/tmp/emotion_images/train/angry/x.png": b"x"})
    with pytest.raises(EmotionlabError, match="unsafe path"):
        download_dataset("seed-emotions", dest, source=absolute)


def test_download_refuses_a_non_empty_destination(tmp_path):
    dest = tmp_path / "seed"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    archive = make_repo_zip(tmp_path / "repo.zip")
    with pytest.raises(EmotionlabError, match="not an empty folder"):
        download_dataset("seed-emotions", dest, source=archive)
    assert tree(dest) == {"keep.txt": b"mine"}


def test_unknown_dataset_and_bad_zip_are_clear_errors(tmp_path):
    with pytest.raises(EmotionlabError, match="unknown dataset"):
        download_dataset("imagenet", tmp_path / "x")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip")
    with pytest.raises(EmotionlabError, match="not a valid zip"):
        download_dataset("seed-emotions", tmp_path / "y", source=bad)
