"""The page of `emotionlab serve` and its API documentation in a real headless Chromium: boxes in their
emotion's colour and numbered as the table's rows, a failed upload clears the last result and shows the
server's message, and no page fetches anything from another host. Screenshots are saved in the test's folder.

The service runs in this process (uvicorn in a thread) around a stub classifier (the first face of an image
reads happy, the second sad) and the stub detector of test_inference, so the test knows what the page must
show. Needs Debian's chromium and chromium-driver; without them these tests skip, unless
EMOTIONLAB_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import BIG, SMALL, BoxDetector, two_face_image
from PIL import Image

from emotionlab.inference import BaseClassifier, Recognizer
from emotionlab.labels import EMOTIONS
from emotionlab.serving.app import create_app
from tests.browser import WAIT, start_chromium
from tests.service_helpers import free_port, multipart

pytestmark = pytest.mark.browser

READINGS = ("happy", "sad", "fearful")  # what the stub reads for the first, second and third face


class StubClassifier(BaseClassifier):
    """Reads the faces of an image in the order they come (largest first): happy, sad, fearful."""

    def __init__(self):
        super().__init__(
            {
                "architecture": "stub",
                "labels": list(EMOTIONS),
                "input_size": 32,
                "normalization": {"type": "per_image"},
                "faces": {"detector": "haar", "margin": 0.1, "align": False, "detector_model": None},
            }
        )

    def probabilities(self, batch) -> np.ndarray:
        rows = np.full((len(batch), len(self.labels)), 0.05, dtype=np.float32)
        for index in range(len(batch)):
            rows[index, self.labels.index(READINGS[index % len(READINGS)])] = 0.8
        return rows


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the service did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_service() -> ThreadServer:
    recognizer = Recognizer(StubClassifier(), detector=BoxDetector({(300, 200): [SMALL, BIG]}))
    return ThreadServer(create_app(recognizer, max_upload_bytes=300_000))


@pytest.fixture(scope="module")
def service():
    server = start_service()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = start_chromium(
        tmp_path_factory.mktemp("chromium-profile"), window="1100,1000", console_logs=True
    )
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    paths = {"two": folder / "two_faces.png", "bad": folder / "notes.png", "big": folder / "big.png"}
    two_face_image(np.random.default_rng(5)).save(paths["two"])
    paths["bad"].write_text("not an image at all\n")
    noise = np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(paths["big"])  # ~480 KB of noise: over the service's 300 KB per image
    assert paths["big"].stat().st_size > 300_000
    return paths


# ---- helpers ---------------------------------------------------------------------------------------------


def open_page(driver, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script("return document.readyState") == "complete")


def upload(driver, path: Path) -> str:
    """Choose ``path`` in the page's file input; the page's state once it has answered (done or error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.body.dataset.state = 'test'")
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error")
    )
    return driver.execute_script("return document.body.dataset.state")


def other_hosts(driver, origin: str) -> list[str]:
    """Resources the page fetched from anywhere but ``origin``."""
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [name for name in fetched if name.startswith(("http:", "https:")) and not name.startswith(origin)]


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def shown_result(driver) -> dict:
    return driver.execute_script(
        """
        const colour = node => getComputedStyle(node).backgroundColor;
        const photo = document.getElementById('photo'), frame = photo.getBoundingClientRect();
        return {
          visible: !document.getElementById('result').hidden,
          photo: photo.getAttribute('src'),
          error: document.getElementById('error').textContent,
          boxes: Array.from(document.querySelectorAll('#boxes .box')).map(box => {
            const rect = box.getBoundingClientRect(), scale = photo.naturalWidth / frame.width;
            return {face: box.dataset.face, label: box.dataset.label, tag: box.textContent,
                    colour: getComputedStyle(box).borderTopColor,
                    tagColour: colour(box.querySelector('.tag')),
                    box: [(rect.left - frame.left) * scale, (rect.top - frame.top) * scale,
                          rect.width * scale, rect.height * scale]};
          }),
          rows: Array.from(document.querySelectorAll('#faces tbody tr')).map(row => ({
            face: row.cells[0].textContent.trim(), label: row.dataset.label,
            reading: row.cells[1].textContent, colour: colour(row.querySelector('.swatch'))})),
          legend: Object.fromEntries(Array.from(document.querySelectorAll('#legend li')).map(
            item => [item.dataset.label, colour(item.querySelector('.swatch'))])),
        };
        """
    )


def answer_of(service: ThreadServer, path: Path) -> dict:
    """What POST /predict answers for ``path`` (the JSON the page shows)."""
    body, content_type = multipart([(path.name, path.read_bytes(), "image/png")])
    request = urllib.request.Request(
        service.url + "predict", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["results"][0]


def assert_cleared(result: dict) -> None:
    assert not result["visible"], "the previous result is still shown"
    assert result["photo"] is None and result["boxes"] == [] and result["rows"] == []


# ---- tests -----------------------------------------------------------------------------------------------


def test_boxes_are_numbered_as_the_table_and_coloured_by_emotion(driver, service, files, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(driver, service.url)
    WebDriverWait(driver, WAIT).until(lambda d: len(shown_result(d)["legend"]) == len(EMOTIONS))
    assert upload(driver, files["two"]) == "done"
    driver.save_screenshot(str(tmp_path / "service_page.png"))
    result = shown_result(driver)
    answer = answer_of(service, files["two"])

    assert [row["face"] for row in result["rows"]] == ["1", "2"]
    assert [row["label"] for row in result["rows"]] == [face["label"] for face in answer["faces"]]
    assert [row["label"] for row in result["rows"]] == ["happy", "sad"]
    assert [box["face"] for box in result["boxes"]] == ["1", "2"]
    for box, row, face in zip(result["boxes"], result["rows"], answer["faces"], strict=True):
        assert box["tag"].startswith(f"{box['face']} {row['label']} ")  # the number and class drawn on it
        assert box["label"] == row["label"]
        assert box["colour"] == box["tagColour"] == row["colour"] == result["legend"][row["label"]]
        assert box["box"] == pytest.approx(face["box"], abs=1.5)  # drawn where the face was found
    assert result["boxes"][0]["colour"] != result["boxes"][1]["colour"]  # one colour per emotion
    assert len(set(result["legend"].values())) == len(EMOTIONS)
    assert answer["faces"][0]["box"] == [BIG.x, BIG.y, BIG.w, BIG.h]  # face 1 is the largest

    curl = driver.find_element("id", "curl-example").text
    assert curl == f"curl -F files=@photo.jpg {service.url}predict"
    assert other_hosts(driver, service.url) == []
    assert console_errors(driver) == []


def test_a_bad_file_clears_the_last_result_and_shows_the_servers_reason(driver, service, files):
    open_page(driver, service.url)
    assert upload(driver, files["two"]) == "done"
    assert len(shown_result(driver)["boxes"]) == 2

    assert upload(driver, files["bad"]) == "error"
    result = shown_result(driver)
    assert_cleared(result)
    assert "415" in result["error"] and "notes.png: not an accepted image format" in result["error"]

    assert upload(driver, files["two"]) == "done"
    assert upload(driver, files["big"]) == "error"
    result = shown_result(driver)
    assert_cleared(result)
    assert "413" in result["error"] and "big.png: upload of" in result["error"]
    assert "over the limit of 300,000 bytes per image" in result["error"]


def test_api_docs_open_offline_with_the_real_address(driver, service, tmp_path):
    open_page(driver, service.url + "docs")
    text = driver.find_element("tag name", "body").text
    assert "POST /predict" in text and "GET /model" in text and "GET /health" in text
    assert f"curl -F files=@photo.jpg {service.url}predict" in text
    stylesheet = driver.execute_script(
        "return Array.from(document.styleSheets).map(s => s.cssRules.length)"  # the local stylesheet applied
    )
    assert stylesheet and all(count > 0 for count in stylesheet)
    driver.save_screenshot(str(tmp_path / "service_docs.png"))
    assert other_hosts(driver, service.url) == []
    assert console_errors(driver) == []


def test_a_network_error_clears_the_last_result(driver, files):
    server = start_service()
    try:
        open_page(driver, server.url)
        assert upload(driver, files["two"]) == "done"
    finally:
        server.stop()
    assert upload(driver, files["two"]) == "error"
    result = shown_result(driver)
    assert_cleared(result)
    assert "two_faces.png: could not reach the service" in result["error"]
