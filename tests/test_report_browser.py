"""The HTML report in a real headless Chromium, opened from disk: every figure loads, nothing is fetched, no
console error, the gallery sorts; a screenshot is saved in the test's folder.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`). Without them these
tests skip, unless EMOTIONLAB_REQUIRE_BROWSER=1 (as in CI), where a missing browser is a failure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from tests.browser import WAIT, start_chromium

pytestmark = pytest.mark.browser

runner = CliRunner()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = start_chromium(
        tmp_path_factory.mktemp("chromium-profile"),
        window="1280,900",
        extra=("--hide-scrollbars",),
        console_logs=True,
    )
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def evaluation(trained_model, tiny_dataset, tmp_path_factory) -> Path:
    """`emotionlab evaluate --report` of the session's small model on the synthetic test split."""
    out = tmp_path_factory.mktemp("report") / "evaluation"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained_model),
            "--data",
            str(tiny_dataset),
            "--split",
            "test",
            "--out",
            str(out),
            "--report",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def open_page(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"
        )
    )


def check_loaded_without_errors(driver) -> int:
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.currentSrc.slice(0, 11)])"
    )
    assert images, "the page shows figures"
    broken = [alt for alt, width, _ in images if width == 0]
    assert not broken, f"images that did not load: {broken}"
    assert all(source.startswith("data:image/") for _, _, source in images)
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
    )
    assert fetched == [], "a self-contained page fetches nothing"
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe
    return len(images)


def tile_values(driver, key: str) -> list[str]:
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('.gallery .tile')).map(t => t.dataset.{key})"
    )


def screenshot(driver, path: Path) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height, 8000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    assert path.stat().st_size > 10_000
    return path


def test_report_opens_from_disk_with_every_figure_and_the_gallery_sorts(driver, evaluation, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(driver, evaluation / "report.html")
    count = check_loaded_without_errors(driver)
    tiles = len(tile_values(driver, "name"))
    assert (
        count == 2 + 2 * tiles
    )  # training curves, reliability diagram, and each mistake's face and Grad-CAM
    assert tiles >= 2, "a gallery worth sorting"

    confidences = [float(value) for value in tile_values(driver, "confidence")]
    assert confidences == sorted(confidences, reverse=True)  # most confident mistakes first
    for text, key, expected in (
        ("confidence, lowest first", "confidence", lambda values: sorted(values, key=float)),
        ("true label", "true", sorted),
        ("predicted label", "pred", sorted),
        ("file name", "name", sorted),
    ):
        driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']").click()
        values = tile_values(driver, key)
        assert values == expected(values), f"sorted by {text}"
        pressed = driver.find_elements(By.CSS_SELECTOR, "button[aria-pressed='true']")
        assert [button.text for button in pressed] == [text]
    screenshot(driver, tmp_path / "report.png")


def test_a_comparison_report_opens_with_every_run_and_its_figures(driver, evaluation, tmp_path):
    second = tmp_path / "again"
    shutil.copytree(evaluation, second)
    out = tmp_path / "compare.html"
    result = runner.invoke(
        app, ["report", str(evaluation), str(second), "--output", str(out), "--no-gradcam"]
    )
    assert result.exit_code == 0, result.output
    open_page(driver, out)
    check_loaded_without_errors(driver)  # the runs' figures load inside their closed <details> too
    difference = driver.execute_script(
        "return document.querySelector('#paired tr[data-run]').cells[2].textContent.trim()"
    )
    assert difference == "+0.0"  # the same predictions: no difference
    screenshot(driver, tmp_path / "compare.png")
