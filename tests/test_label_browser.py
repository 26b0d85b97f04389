"""The labelling page in a real headless Chromium: keys, undo, counts, a killed server, resume, apply.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`). Without them these
tests skip, unless EMOTIONLAB_REQUIRE_BROWSER=1 (as in CI), where a missing browser is a failure.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import tree_state
from PIL import Image

from tests.browser import WAIT, start_chromium

pytestmark = pytest.mark.browser

CLASSES = "angry,fearful,happy,sad,surprised"
# One colour per image, so the test can check from the pixels which image the page really shows.
COLOURS = {f"img{index}.png": (40 * index, 200 - 25 * index, 90) for index in range(1, 7)}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = start_chromium(
        tmp_path_factory.mktemp("chromium-profile"), window="1100,850", extra=(), console_logs=False
    )
    yield browser
    browser.quit()


# ---- helpers ---------------------------------------------------------------------------------------------


def make_folder(root: Path) -> Path:
    for name, colour in COLOURS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), colour).save(path)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


class LabelServer:
    """`emotionlab label FOLDER --port 0` in a subprocess; its printed lines are collected as they come."""

    def __init__(self, folder: Path, cwd: Path):
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "emotionlab", "label", str(folder), "--classes", CLASSES, "--port", "0"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self.wait_for(r"open (http://\S+) in a browser").group(1)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + 60  # the first start imports everything: slow on a busy machine
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        self.kill()
        raise AssertionError(f"server never printed {pattern!r}; output:\n" + "\n".join(self.output))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the terminal dies."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def wait_shown(driver, name: str | None) -> None:
    """Wait until the page is idle and shows ``name`` (None: the all-done screen)."""
    from selenium.webdriver.support.ui import WebDriverWait

    expected = name or ""
    script = "return document.body.dataset.ready === '1' ? document.body.dataset.currentName : null"
    try:
        WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(script) == expected)
    except Exception as error:
        shown = driver.execute_script("return document.body.dataset.currentName")
        raise AssertionError(f"page shows {shown!r}, expected {expected!r}") from error


def shown_colour(driver) -> tuple[int, int, int]:
    """The centre pixel of the image on screen, read back through a canvas."""
    return tuple(
        driver.execute_script(
            """const img = document.getElementById('photo');
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            return Array.from(context.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data.slice(0, 3));"""
        )
    )


def press(driver, key: str, then: str | None) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()
    wait_shown(driver, then)


def counts(driver) -> str:
    return driver.find_element("id", "counts").text


def journal_actions(path: Path) -> list[tuple]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["action"], r["image"], r["label"]) for r in records if r["action"] != "start"]


# ---- tests -----------------------------------------------------------------------------------------------


def test_label_by_keys_undo_survive_a_kill_resume_and_apply(driver, tmp_path):
    from selenium.webdriver.common.keys import Keys

    folder = make_folder(tmp_path / "photos")
    before = tree_state(folder)
    journal = tmp_path / "photos.labels.jsonl"  # the default: the current directory, named after the folder

    server = LabelServer(folder, cwd=tmp_path)
    try:
        assert any("broken.png" in line for line in server.output), "unreadable files are listed at start"
        assert any(str(journal) in line for line in server.output), "the journal path is printed"
        driver.get(server.url)
        wait_shown(driver, "img1.png")
        assert counts(driver) == "6 left · 0 done of 6 · 1 unreadable not shown"
        assert shown_colour(driver) == COLOURS["img1.png"]
        buttons = driver.find_elements("css selector", "#buttons button")
        shown_keys = {
            b.get_attribute("data-label"): [k.text for k in b.find_elements("tag name", "kbd")]
            for b in buttons
        }
        assert shown_keys == {
            "angry": ["1", "a"],
            "fearful": ["2", "f"],
            "happy": ["3", "h"],
            "sad": ["4"],
            "surprised": ["5"],
        }

        # Keys work at once, without clicking into the page first.
        press(driver, "1", "img2.png")  # angry
        press(driver, "h", "img3.png")  # happy
        press(driver, Keys.SPACE, "img4.png")  # skip img3
        press(driver, "4", "img5.png")  # sad
        assert counts(driver) == "3 left · 3 done of 6 · 1 skipped · 1 unreadable not shown"
        assert shown_colour(driver) == COLOURS["img5.png"]
        happy = driver.find_element("css selector", "button[data-label='happy'] .count")
        assert happy.text == "1"

        press(driver, "z", "img4.png")  # undo the sad label: img4 again
        assert counts(driver).startswith("4 left · 2 done of 6 · 1 skipped")
        assert "Undone: label sad on img4.png" in driver.find_element("id", "last").text
        press(driver, Keys.BACKSPACE, "img3.png")  # undo the skip
        press(driver, "2", "img4.png")  # img3 fearful
        assert counts(driver).startswith("3 left · 3 done of 6")
        assert shown_colour(driver) == COLOURS["img4.png"]
    finally:
        server.kill()

    assert journal_actions(journal) == [
        ("label", "img1.png", "angry"),
        ("label", "img2.png", "happy"),
        ("skip", "img3.png", None),
        ("label", "img4.png", "sad"),
        ("undo", "img4.png", "sad"),
        ("undo", "img3.png", None),
        ("label", "img3.png", "fearful"),
    ]
    # The page says so when its server is gone, instead of silently dropping the key.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    ActionChains(driver).send_keys("3").perform()
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element("id", "banner").is_displayed())
    assert "not reachable" in driver.find_element("id", "banner").text

    server = LabelServer(folder, cwd=tmp_path)
    try:
        assert any("7 earlier action(s) replayed" in line for line in server.output)
        driver.get(server.url)
        wait_shown(driver, "img4.png")  # resumes at the next unlabelled image
        assert counts(driver).startswith("3 left · 3 done of 6")
        press(driver, "z", "img3.png")  # undo reaches back into the killed run
        assert counts(driver).startswith("4 left · 2 done of 6")
        press(driver, "3", "img4.png")  # img3 happy
        press(driver, "5", "img5.png")  # img4 surprised
        press(driver, "a", "img6.png")  # img5 angry
        press(driver, "4", None)  # img6 sad: all done
        assert counts(driver) == "0 left · 6 done of 6 · 1 unreadable not shown"
        assert driver.find_element("id", "done").is_displayed()
        assert "--apply DEST" in driver.find_element("id", "apply-command").text
    finally:
        server.kill()

    dest = tmp_path / "sorted"
    result = subprocess.run(
        [sys.executable, "-m", "emotionlab", "label", str(folder), "--apply", str(dest)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "copied 6 image(s)" in result.stdout
    expected = {
        "angry": ["img1.png", "img5.png"],
        "happy": ["img2.png", "img3.png"],
        "sad": ["img6.png"],
        "surprised": ["img4.png"],
    }
    assert {label.name: sorted(p.name for p in label.iterdir()) for label in dest.iterdir()} == expected
    for label, names in expected.items():
        for name in names:
            assert (dest / label / name).read_bytes() == (folder / name).read_bytes()
    assert tree_state(folder) == before, "the labelled folder must be left exactly as it was"


def test_model_suggestion_enter_accepts_and_buttons_never_steal_the_keys(driver, tmp_path):
    """The page in front of an in-process server whose model is a stand-in (the app factory takes any)."""
    import uvicorn
    from selenium.webdriver.common.keys import Keys

    from emotionlab.labeling import LabelSession
    from emotionlab.labeling.app import _bind, create_label_app

    class FakeModel:
        def predict(self, image):
            return {"label": "surprised", "probabilities": {"surprised": 0.73, "happy": 0.27}}

    folder = make_folder(tmp_path / "photos")
    journal = tmp_path / "photos.labels.jsonl"
    session = LabelSession(folder, CLASSES.split(","), journal)
    sock = _bind("127.0.0.1", 0)
    config = uvicorn.Config(
        create_label_app(session, predictor=FakeModel()), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        wait_shown(driver, "img1.png")
        from selenium.webdriver.support.ui import WebDriverWait

        suggestion = driver.find_element("id", "suggestion")
        WebDriverWait(driver, WAIT).until(lambda d: "surprised (73%)" in suggestion.text)
        assert "Enter" in suggestion.text
        button = driver.find_element("css selector", "button[data-label='surprised']")
        assert "suggested" in button.get_attribute("class")

        press(driver, Keys.ENTER, "img2.png")  # accept the suggestion
        driver.find_element("css selector", "button[data-label='sad']").click()
        wait_shown(driver, "img3.png")
        press(driver, Keys.SPACE, "img4.png")  # Space skips; it does not press the last clicked button again
        driver.find_element("id", "undo").click()
        wait_shown(driver, "img3.png")
        press(driver, "z", "img2.png")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        session.close()
        sock.close()
    assert journal_actions(journal) == [
        ("label", "img1.png", "surprised"),
        ("label", "img2.png", "sad"),
        ("skip", "img3.png", None),
        ("undo", "img3.png", None),
        ("undo", "img2.png", "sad"),
    ]


def test_the_page_shows_images_of_any_size_and_format(driver, tmp_path):
    """A big JPEG, a PNG named .jpg and a 16-bit TIFF all display (the server re-encodes what it sends)."""
    folder = tmp_path / "formats"
    folder.mkdir()
    Image.new("RGB", (3000, 2000), (200, 30, 30)).save(folder / "a_big.jpg", quality=95)
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (30, 200, 30)).save(buffer, format="PNG")
    (folder / "b_png_named.jpg").write_bytes(buffer.getvalue())
    Image.new("I;16", (50, 50), 40000).save(folder / "c_deep.tif")
    server = LabelServer(folder, cwd=tmp_path)
    try:
        driver.get(server.url)
        for name, next_name in (("a_big.jpg", "b_png_named.jpg"), ("b_png_named.jpg", "c_deep.tif")):
            wait_shown(driver, name)
            width = driver.execute_script("return document.getElementById('photo').naturalWidth")
            assert width == (1280 if name == "a_big.jpg" else 40)
            assert driver.find_element("id", "photo").size["height"] > 300  # shown big, whatever its size
            press(driver, "3", next_name)
        assert driver.execute_script("return document.getElementById('photo').naturalWidth") == 50
    finally:
        server.kill()
