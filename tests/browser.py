"""Headless Debian Chromium for the browser tests (labelling page, HTML report, in-browser page): one way to
start it, a plain static server, and a fake-camera video."""

from __future__ import annotations

import functools
import os
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# Debian's paths; other systems can point these variables at their own Chromium and matching driver.
CHROMIUM = Path(os.environ.get("EMOTIONLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EMOTIONLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
WAIT = 15  # seconds; generous for a loaded 2-core machine, never reached when things work


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not found: install Debian's chromium and chromium-driver to run the browser tests"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def start_chromium(profile: Path, *, window: str, extra: tuple[str, ...] = (), console_logs: bool = False):
    """A headless Chromium driven by selenium; skips (or fails with EMOTIONLAB_REQUIRE_BROWSER=1) without one."""
    reason = browser_missing()
    if reason:
        if os.environ.get("EMOTIONLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (EMOTIONLAB_REQUIRE_BROWSER=1 requires the browser tests to run)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={window}",
        f"--user-data-dir={profile}",
        *extra,
    ):
        options.add_argument(argument)
    if console_logs:
        options.set_capability(
            "goog:loggingPrefs", {"browser": "ALL"}
        )  # console messages, CSP violations included
    # A fixed driver path: selenium-manager never tries to download a browser or a driver.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def write_y4m(image_path: Path, out: Path, *, width: int = 640, height: int = 480, frames: int = 2) -> Path:
    """A still photo as a Y4M video (4:2:0) for Chromium's fake camera (``--use-file-for-fake-video-capture``):
    the photo scaled to fit ``width`` x ``height``, centred on grey; the camera loops it."""
    import numpy as np
    from PIL import Image

    with Image.open(image_path) as photo:
        photo = photo.convert("RGB")
        photo.thumbnail((width, height))
        canvas = Image.new("RGB", (width, height), (128, 128, 128))
        canvas.paste(photo, ((width - photo.width) // 2, (height - photo.height) // 2))
    rgb = np.asarray(canvas, dtype=np.float64)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Full-range BT.601 (what "C420jpeg" means), chroma averaged over 2 x 2 pixels.
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    blue_diff = 128 - 0.168736 * red - 0.331264 * green + 0.5 * blue
    red_diff = 128 + 0.5 * red - 0.418688 * green - 0.081312 * blue

    def half(plane):
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = [luma, half(blue_diff), half(red_diff)]
    frame = b"".join(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes() for plane in planes)
    with open(out, "wb") as stream:
        stream.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        stream.writelines(b"FRAME\n" + frame for _ in range(frames))
    return out


# ---- the in-browser page (emotionlab.web): a static host, and waiting for the page ----------------------


class _Handler(SimpleHTTPRequestHandler):
    requests: list  # (method, path) of every request, set per server

    def log_message(self, *args):
        pass

    def log_request(self, *args):
        self.requests.append((self.command, self.path))


def serve_folder(folder: Path):
    """A plain static server (as any host would be) on a free port; records every request it gets."""
    requests: list = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/", requests


def wait_for(driver, script: str, *, timeout: float = WAIT * 4):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def open_page(driver, url: str) -> None:
    driver.get(url)
    state = wait_for(
        driver, "return document.body.dataset.state !== 'loading' && document.body.dataset.state"
    )
    assert state == "ready", driver.find_element("id", "model").text


def page_records(driver, files: list[Path]) -> list[dict]:
    before = driver.execute_script("return window.emotionlab.state.records.length")
    driver.find_element("id", "file").send_keys("\n".join(str(path) for path in files))
    wait_for(driver, f"return window.emotionlab.state.records.length >= {before + len(files)}")
    return driver.execute_script("return window.emotionlab.state.records")[before:]
