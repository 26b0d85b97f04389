"""The model in the browser: `emotionlab export --web DIR` writes a static site that finds and classifies faces
in the page (BlazeFace, the crop and the classifier by ONNX Runtime Web), and `emotionlab serve` offers it at
/local. In headless Chromium the example images give the Python path's records (same boxes and labels,
probabilities within 1e-3), Chromium's fake camera is classified frame after frame, and the page asks nothing
of any host but its own folder, never with a body. The browser tests need Debian's chromium and
chromium-driver (they skip without them, unless EMOTIONLAB_REQUIRE_BROWSER=1 as in CI).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import run_cli

from emotionlab.errors import EmotionlabError
from emotionlab.web import site
from emotionlab.web.site import export_web
from tests.browser import open_page, page_records, serve_folder, start_chromium, wait_for, write_y4m

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(path for path in (ROOT / "examples").iterdir() if path.suffix in (".jpg", ".png"))
TOLERANCE = 1e-3  # probabilities: float32 WebAssembly kernels against native ONNX Runtime


def onnx_metadata(path: Path) -> dict:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return json.loads(session.get_modelmeta().custom_metadata_map["emotionlab"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    folder, _ = export_web(tmp_path_factory.mktemp("site") / "site")
    return folder


# ---- the export ---------------------------------------------------------------------------------------------


def test_export_writes_a_static_site_with_the_models_settings_from_their_own_metadata(exported):
    config = json.loads((exported / "config.json").read_text())
    for name in (
        "index.html",
        "local.js",
        "vision.js",
        "predict.css",
        "faces.js",
        *(f"ort/{f}" for f in site.ORT_WEB_FILES),
    ):
        assert (exported / name).is_file(), name
    assert [model["name"] for model in config["models"]] == ["default", "ferplus8"]
    for model in config["models"]:
        onnx = exported / model["file"]
        metadata = onnx_metadata(onnx)
        assert onnx.read_bytes() == (site.ASSETS / onnx.name).read_bytes()
        assert model["labels"] == metadata["labels"]
        assert model["input_size"] == metadata["input_size"]
        assert model["grayscale"] == metadata["grayscale"]
        assert model["normalization"] == metadata["normalization"]
        assert model["faces"]["margin"] == metadata["faces"]["margin"]
    for spec in config["detector"]["models"].values():
        assert (exported / spec["file"]).is_file()
    assert config["onnxruntime_web"] in (exported / "ort" / "VERSION").read_text()


def test_the_page_loads_nothing_from_another_host(exported):
    for name in ("index.html", "local.js", "vision.js", "local.css", "predict.css", "faces.js"):
        text = (exported / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), name
    html = (exported / "index.html").read_text()
    assert f'content="{site.PAGE_POLICY}"' in html  # the same policy /local sends as a header


def test_export_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EmotionlabError, match="not empty"):
        export_web(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_again_into_an_earlier_export_replaces_it(exported, tmp_path):
    folder, _ = export_web(tmp_path / "again", ["default"])
    export_web(folder, ["ferplus8"])
    config = json.loads((folder / "config.json").read_text())
    assert [model["name"] for model in config["models"]] == ["ferplus8"]


def test_export_without_onnx_runtime_web_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setattr(site, "VENDOR", tmp_path / "missing")
    with pytest.raises(EmotionlabError, match="vendor_onnxruntime_web.py"):
        export_web(tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_export_refuses_a_model_the_page_cannot_crop_for(tmp_path):
    import onnx

    graph = onnx.load(str(site.ASSETS / "default_model.onnx"))
    metadata = json.loads(graph.metadata_props[0].value)
    metadata["faces"]["detector"] = "hog"
    graph.metadata_props[0].value = json.dumps(metadata)
    onnx.save(graph, str(tmp_path / "hog.onnx"))
    with pytest.raises(EmotionlabError, match="BlazeFace only"):
        export_web(tmp_path / "site", [tmp_path / "hog.onnx"])
    with pytest.raises(EmotionlabError, match="ONNX models"):
        export_web(tmp_path / "site", [tmp_path / "model.safetensors"])


def test_cli_export_web_and_its_one_line_errors(tmp_path):
    output = run_cli("export", "--web", tmp_path / "site", "--model", "default")
    assert "python -m http.server" in output
    assert (tmp_path / "site" / "models" / "default_model.onnx").is_file()
    with pytest.raises(EmotionlabError, match="one of --onnx"):
        run_cli("export")
    with pytest.raises(EmotionlabError, match="one of --onnx"):
        run_cli("export", "--web", tmp_path / "a", "--onnx", tmp_path / "b.onnx")


def test_serve_offers_the_same_page_at_local(exported):
    from emotionlab.inference import load_recognizer
    from emotionlab.serving.app import create_app

    with TestClient(create_app(load_recognizer())) as client:
        response = client.get("/local", follow_redirects=False)
        assert response.status_code in (301, 302, 307) and response.headers["location"].endswith("local/")
        page = client.get("/local/")
        assert page.text == (exported / "index.html").read_text()
        assert "wasm-unsafe-eval" in page.headers["content-security-policy"]
        assert client.get("/local/config.json").json() == json.loads((exported / "config.json").read_text())
        wasm = client.get("/local/ort/ort-wasm-simd-threaded.wasm")
        assert wasm.headers["content-type"] == "application/wasm"
        assert (
            client.get("/local/models/default_model.onnx").content
            == (site.ASSETS / "default_model.onnx").read_bytes()
        )
        assert client.get("/local/../pyproject.toml").status_code == 404
        assert client.get("/local/web/site.py").status_code == 404


def test_page_draws_faces_with_the_service_pages_script(exported):
    """One faces.js (colours, boxes, table) for both pages: the export copies the service's, and each page
    loads it before its own script."""
    service = ROOT / "src/emotionlab/serving/static"
    assert (exported / "faces.js").read_bytes() == (service / "faces.js").read_bytes()
    pages = {
        exported / "index.html": ["faces.js", "local.js"],
        service / "predict.html": ["static/faces.js", "static/predict.js"],
    }
    for html, order in pages.items():
        scripts = re.findall(r'<script src="([^"]+)"', html.read_text())
        assert [name for name in scripts if name in order] == order, html
    for page in (service / "predict.js", exported / "local.js"):
        assert "const COLOURS" not in page.read_text(), page  # drawn by faces.js only


# ---- in headless Chromium -------------------------------------------------------------------------------------


def assert_same_records(path: Path, python: dict, web: dict) -> None:
    from PIL import Image

    assert "error" not in web, web
    with Image.open(path) as image:
        assert web["size"] == list(image.size)
    assert (web["label"], web["no_face"]) == (python["label"], python["no_face"])
    assert [face["box"] for face in web["faces"]] == [face["box"] for face in python["faces"]]
    pairs = [(python, web), *zip(python["faces"], web["faces"], strict=True)]
    for expected, got in pairs:
        assert got["label"] == expected["label"]
        assert (got["compound"] or {}).get("labels") == (expected["compound"] or {}).get("labels")
        for label, probability in expected["probabilities"].items():
            assert abs(got["probabilities"][label] - probability) <= TOLERANCE, (label, expected, got)


@pytest.mark.browser
@pytest.mark.slow
def test_examples_give_the_python_records_in_the_page(exported, tmp_path):
    import emotionlab

    server, url, requests = serve_folder(exported)
    driver = start_chromium(tmp_path / "profile", window="1200,1000")
    try:
        open_page(driver, url)
        for name in ("default", "ferplus8"):
            recognizer = emotionlab.load_model(name)
            driver.execute_script(
                "const choice = document.getElementById('model-choice');"
                "choice.value = arguments[0]; choice.dispatchEvent(new Event('change'));",
                name,
            )
            records = page_records(driver, EXAMPLES)
            for path, web in zip(EXAMPLES, records, strict=True):
                assert web["path"] == path.name
                assert_same_records(path, recognizer.predict(path), web)
        # What the user sees: one block per photo, a numbered box per face, a table row per face.
        for path, web in zip(EXAMPLES, records, strict=True):
            block = driver.find_element("css selector", f'.result[data-name="{path.name}"]')
            boxes = block.find_elements("css selector", ".box")
            assert [box.get_attribute("data-label") for box in boxes] == [
                face["label"] for face in web["faces"]
            ]
            assert len(block.find_elements("css selector", "tbody tr")) == max(1, len(web["faces"]))
        driver.save_screenshot(str(tmp_path / "examples.png"))
        # A file the browser cannot decode gets its record with the reason, and the page says so.
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"not an image")
        [record] = page_records(driver, [broken])
        assert record["error"].startswith("cannot decode image")
        shown = driver.find_element("css selector", '.result[data-name="broken.jpg"]').text
        assert "broken.jpg: cannot decode image" in shown
        origin = url.rstrip("/")
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and all(name.startswith((origin, "blob:")) for name in resources)
    finally:
        driver.quit()
        server.shutdown()
    assert {method for method, _ in requests} == {"GET"}  # nothing was uploaded


@pytest.mark.browser
@pytest.mark.slow
def test_camera_frames_are_classified_with_chromiums_fake_camera(exported, tmp_path):
    video = write_y4m(ROOT / "examples" / "grace_hopper.jpg", tmp_path / "face.y4m")
    server, url, requests = serve_folder(exported)
    driver = start_chromium(
        tmp_path / "profile",
        window="1200,1000",
        extra=(
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ),
    )
    try:
        open_page(driver, url)
        driver.find_element("id", "camera").click()
        wait_for(driver, "const c = window.emotionlab.camera(); return c && c.frames >= 5")
        camera = driver.execute_script("return window.emotionlab.camera()")
        assert camera["last"]["size"] == [640, 480]
        assert len(camera["last"]["faces"]) == 1 and not camera["last"]["no_face"]
        # The boxes are redrawn every frame: read them in one go.
        boxes = driver.execute_script(
            "return Array.from(document.querySelectorAll('#live .box'), box => box.dataset.label)"
        )
        assert len(boxes) == 1 and boxes[0] in camera["last"]["probabilities"]
        assert "frames/s" in driver.find_element("id", "live-summary").text
        driver.save_screenshot(str(tmp_path / "camera.png"))
        driver.find_element("id", "camera").click()  # off again: the page stops analysing
        frames = driver.execute_script("return window.emotionlab.camera()")
        assert frames is None and not driver.find_element("id", "live").is_displayed()
    finally:
        driver.quit()
        server.shutdown()
    assert {method for method, _ in requests} == {"GET"}


@pytest.mark.browser
@pytest.mark.slow
def test_a_model_with_other_classes_size_and_colour_gives_the_python_records(tmp_path):
    """Nothing about the shipped model is written into the page: six classes, 64 px colour input with a mean and
    std per channel and a wider crop margin come from the ONNX file's metadata."""
    import torch
    from helpers import model_metadata

    import emotionlab
    from emotionlab.models.factory import create_model
    from emotionlab.models.io import save_model_file

    torch.manual_seed(3)
    net = create_model("seed_cnn", 6, image_size=64)
    for module in net.modules():  # trained-looking statistics, so that the probabilities differ between faces
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    metadata = model_metadata(
        faces={"detector": "blaze", "margin": 0.2, "align": False, "detector_model": None}
    )
    metadata["labels"] = [*metadata["labels"], "neutral"]
    metadata["normalization"] = {"type": "mean_std", "mean": [0.5, 0.45, 0.4], "std": [0.25, 0.24, 0.26]}
    model = save_model_file(tmp_path / "six.safetensors", net.eval(), metadata)
    run_cli("export", "--onnx", tmp_path / "six.onnx", "--model", model)
    folder, _ = export_web(tmp_path / "site", [tmp_path / "six.onnx"])
    config = json.loads((folder / "config.json").read_text())
    assert config["models"][0]["input_size"] == 64 and len(config["models"][0]["labels"]) == 6

    recognizer = emotionlab.load_model(tmp_path / "six.onnx")
    server, url, _ = serve_folder(folder)
    driver = start_chromium(tmp_path / "profile", window="1200,1000")
    try:
        open_page(driver, url)
        for path, web in zip(EXAMPLES, page_records(driver, EXAMPLES), strict=True):
            assert_same_records(path, recognizer.predict(path), web)
    finally:
        driver.quit()
        server.shutdown()
